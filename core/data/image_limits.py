"""How much a ZIP of image folders may hold before StackLab refuses it. No Keras import.

A ZIP is hostile until inspected: its central directory declares every member's path, kind
and sizes, so zip bombs, zip slip, links and floods of files are refused from it alone, and
each image's header declares its pixel count before a byte of it is decoded. These limits
bound what is read; `DataLimits` still bounds the file on disk (max_file_bytes), the
decoded array (max_array_bytes), the samples (max_rows) and the classes (max_classes).

Example:
    >>> ImageLimits.from_env({"STACKLAB_MAX_IMAGE_PIXELS": "1e6"}).max_image_pixels
    1000000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

from core.limits import EnvLimits

MiB = 1 << 20

# Environment variable for each limit, so an operator can raise or lower them without code.
IMAGE_LIMIT_ENV_VARS = {
    "max_entries": "STACKLAB_MAX_ZIP_ENTRIES",
    "max_uncompressed_bytes": "STACKLAB_MAX_ZIP_UNCOMPRESSED_BYTES",
    "max_compression_ratio": "STACKLAB_MAX_ZIP_COMPRESSION_RATIO",
    "max_image_file_bytes": "STACKLAB_MAX_IMAGE_FILE_BYTES",
    "max_image_pixels": "STACKLAB_MAX_IMAGE_PIXELS",
}

# The compression ratio is checked only for members inflating to more than this: a small
# flat-coloured BMP legitimately compresses far more and can do no harm.
RATIO_CHECK_MIN_BYTES = 1 * MiB


@dataclass(frozen=True)
class ImageLimits(EnvLimits):
    """What a ZIP of class folders may hold.

    Every limit can be set from the environment (`ImageLimits.from_env()`):

    - max_entries (STACKLAB_MAX_ZIP_ENTRIES): members of the archive (files and folders),
      read from its end record before the central directory is parsed.
    - max_uncompressed_bytes (STACKLAB_MAX_ZIP_UNCOMPRESSED_BYTES): the sum of the sizes
      the members declare once inflated.
    - max_compression_ratio (STACKLAB_MAX_ZIP_COMPRESSION_RATIO): how many times a member
      over 1 MiB may inflate relative to its compressed size.
    - max_image_file_bytes (STACKLAB_MAX_IMAGE_FILE_BYTES): one image file, inflated
      (it is read into memory whole before its header is parsed).
    - max_image_pixels (STACKLAB_MAX_IMAGE_PIXELS): width x height one image may declare
      in its header; also Pillow's own `Image.MAX_IMAGE_PIXELS` while StackLab decodes.
    """

    ENV_VARS: ClassVar[Mapping[str, str]] = IMAGE_LIMIT_ENV_VARS
    FRACTIONAL: ClassVar[frozenset[str]] = frozenset({"max_compression_ratio"})

    # 20,000 images is a generous hobby dataset; a crafted central directory of millions of
    # entries makes zipfile build millions of objects before anything else can be checked.
    max_entries: int = 20_000
    # Photos are already compressed (JPEG, PNG inflate about 1x), so this is about the
    # data's own size: a GiB of image files is far more than a dashboard upload needs.
    max_uncompressed_bytes: int = 1024 * MiB
    # Image files compress 1-2x and flat synthetic BMPs a few dozen; DEFLATE bombs ~1000x.
    max_compression_ratio: float = 200.0
    max_image_file_bytes: int = 32 * MiB
    # 5,000 x 5,000: a 25-megapixel photo decodes to 75 MB of RGB, once, before resizing.
    # Pillow's default (89.5 million, an error only past twice that) trusts far more.
    max_image_pixels: int = 25_000_000


DEFAULT_IMAGE_LIMITS = ImageLimits.from_env()
