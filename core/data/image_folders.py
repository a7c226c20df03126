"""Image folders in a ZIP, read safely: the archive is inspected, nothing is ever extracted.

The layout is the one `keras.utils.image_dataset_from_directory` reads: one folder per class
(`cats/001.jpg`, `dogs/002.png`, ...), optionally inside one folder that wraps them all.
A ZIP is hostile input, so `inspect_image_zip` refuses, from the central directory alone and
before any member is read, every member that is not a plain image file at a plain relative
path: zip bombs (total inflated size, compression ratio), zip slip (`..`) and absolute
paths, links and other special files, encrypted members, floods of entries, non-image files,
files outside class folders, empty classes and fewer than two classes. Images are then read
straight from the archive into memory, one at a time, and Pillow decodes each only after its
header's pixel count passed `ImageLimits.max_image_pixels`. Every refusal is a `DataError`
of one line: what was wrong, the limit, how to fix it.

Example:
    >>> dataset = read_image_folders(Path("pets.zip"), "pets.zip",
    ...                              DatasetSpec(source="images", image_size=(32, 32)))
    >>> dataset.x.shape, dataset.task.class_names
    ((120, 32, 32, 3), ('cats', 'dogs'))
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.data.csv_files import check_file_size
from core.data.dataset import Dataset
from core.data.image_limits import DEFAULT_IMAGE_LIMITS, IMAGE_LIMIT_ENV_VARS, RATIO_CHECK_MIN_BYTES, ImageLimits
from core.data.limits import DEFAULT_LIMITS, DataError, DataLimits
from core.limits import format_bytes
from core.spec import DatasetSpec
from core.spec.tasks import TaskInfo

# What keras.utils.image_dataset_from_directory reads, and the Pillow decoders allowed to
# read them: a file named .png is decoded only if it is one of these formats, so none of
# Pillow's rarer (and less exercised) decoders ever sees uploaded bytes.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
PIL_FORMATS = ("BMP", "GIF", "JPEG", "PNG")
CHANNELS = {"rgb": 3, "grayscale": 1}
PIL_MODES = {"rgb": "RGB", "grayscale": "L"}
WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I")
# Files that archivers and file browsers add by themselves (macOS's __MACOSX/ and ._ forks,
# Finder's .DS_Store, Windows's Thumbs.db): skipped, never read, but their paths are checked.
OS_FOLDERS = ("__MACOSX",)
OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")
LAYOUT = "one folder per class (cats/001.jpg, dogs/002.jpg, ...)"
# The end-of-central-directory record: at the file's end, before a comment of up to 64 KiB.
END_RECORD = b"PK\x05\x06"
END_RECORD_BYTES = 22
# zipfile parses the whole central directory into objects, however few entries the end
# record declares; an entry takes 46 bytes plus its name and extras, so a directory larger
# than this per allowed entry holds more entries than allowed (or absurd names).
MAX_CENTRAL_ENTRY_BYTES = 46 + 1024 + 330


@dataclass(frozen=True)
class ImageFolderIndex:
    """What an inspected ZIP of class folders holds; nothing of it has been decoded yet.

    Args:
        root: the folder wrapping the class folders ("" when they are at the top).
        class_names: the class folders' names, sorted (label i is class_names[i]).
        files: the archive members of each class, sorted, in class_names' order.
        inflated_bytes: the sum of the sizes the archive's members declare.
    """

    root: str
    class_names: tuple[str, ...]
    files: tuple[tuple[str, ...], ...]
    inflated_bytes: int

    @property
    def num_images(self) -> int:
        return sum(len(members) for members in self.files)

    def class_counts(self) -> dict[str, int]:
        """Images per class, in label order."""
        return {name: len(members) for name, members in zip(self.class_names, self.files)}


def inspect_image_zip(path: Path, name: str, limits: DataLimits = DEFAULT_LIMITS,
                      image_limits: ImageLimits = DEFAULT_IMAGE_LIMITS) -> ImageFolderIndex:
    """Check a ZIP of class folders from its end record and central directory alone.

    Args:
        path: the file to inspect.
        name: the file name to show in messages.
        limits: the file's size on disk, the number of samples and of classes.
        image_limits: entries, inflated size, compression ratio and image file size.

    Returns:
        The ImageFolderIndex of the archive's classes and images.

    Raises:
        DataError: one line naming the file, the member and the rule it broke.

    Example:
        >>> inspect_image_zip(Path("pets.zip"), "pets.zip").class_counts()
        {'cats': 60, 'dogs': 60}
    """
    if check_file_size(path, name, limits) == 0:
        raise DataError(f"'{name}' is empty (0 bytes). Zip {LAYOUT}.")
    declared = _end_record(path)
    if declared is not None:
        entries, directory_bytes = declared
        if entries > image_limits.max_entries:
            raise _too_many(name, entries, image_limits)
        if directory_bytes > image_limits.max_entries * MAX_CENTRAL_ENTRY_BYTES:
            variable = IMAGE_LIMIT_ENV_VARS["max_entries"]
            raise DataError(f"'{name}' has a central directory of {format_bytes(directory_bytes)}, more than "
                            f"{image_limits.max_entries:,} entries ({variable}) can take: it holds more entries "
                            f"than its end record declares. Zip the folders again, or raise {variable}.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise DataError(f"'{name}' is not a ZIP archive. Zip {LAYOUT}.") from None
    with archive:
        infos = archive.infolist()
    if len(infos) > image_limits.max_entries:  # an end record that under-declares
        raise _too_many(name, len(infos), image_limits)
    seen: set[str] = set()
    for info in infos:
        _check_member(info, name, image_limits)
        if info.filename in seen:
            raise DataError(f"'{name}' holds '{info.filename}' twice (a reader could take either copy). "
                            f"Zip the folders again.")
        seen.add(info.filename)
    inflated = sum(info.file_size for info in infos)
    if inflated > image_limits.max_uncompressed_bytes:
        raise DataError(
            f"'{name}' inflates to {format_bytes(inflated)}, over the limit of "
            f"{format_bytes(image_limits.max_uncompressed_bytes)}; archives like this are zip bombs or far "
            f"more data than a dashboard upload needs. Use fewer or smaller images, or raise "
            f"{IMAGE_LIMIT_ENV_VARS['max_uncompressed_bytes']}."
        )
    root, classes = _class_folders(infos, name)
    if len(classes) < 2:
        found = f" ('{next(iter(classes))}')" if classes else ""
        raise DataError(f"'{name}' holds {len(classes)} class folder{'' if len(classes) == 1 else 's'}{found} "
                        f"with images; a classifier needs at least 2. Zip {LAYOUT}.")
    if len(classes) > limits.max_classes:
        raise DataError(f"'{name}' holds {len(classes):,} class folders, over the limit of {limits.max_classes:,}. "
                        f"Merge classes, or raise STACKLAB_MAX_CLASSES.")
    for class_name, members in sorted(classes.items()):
        if not members:
            raise DataError(f"'{name}' has an empty class folder '{root}{class_name}/': every class needs at "
                            f"least one image. Add images to it or remove it, then zip again.")
    total = sum(len(members) for members in classes.values())
    if total > limits.max_rows:
        raise DataError(f"'{name}' holds {total:,} images, over the limit of {limits.max_rows:,}. "
                        f"Use fewer images, or raise STACKLAB_MAX_ROWS.")
    names = tuple(sorted(classes))
    return ImageFolderIndex(root, names, tuple(tuple(sorted(classes[c])) for c in names), inflated)


def read_image_folders(path: Path, name: str, spec: DatasetSpec, limits: DataLimits = DEFAULT_LIMITS,
                       image_limits: ImageLimits = DEFAULT_IMAGE_LIMITS) -> Dataset:
    """Read a ZIP of class folders as a Dataset of raw pixels, inspecting it first.

    Args:
        path: the file to read.
        name: the file name to show in messages.
        spec: image_size (height, width), color_mode ("rgb" or "grayscale") and task
            ("auto" or "classification": folders are classes).
        limits: file size, decoded array size, samples and classes.
        image_limits: see `inspect_image_zip`, and the pixels one image may declare.

    Returns:
        A Dataset: x float32 of shape (images, height, width, channels) holding the raw
        pixel values 0..255, y the class index of each image (classes sorted by name).

    Raises:
        DataError: the archive is refused (see `inspect_image_zip`), the images would
            not fit in max_array_bytes, or an image is a decompression bomb or unreadable.

    Example:
        >>> read_image_folders(Path("pets.zip"), "pets.zip", DatasetSpec(source="images")).x.shape
        (120, 64, 64, 3)
    """
    if spec.task == "regression":
        raise DataError(f"'{name}' is a ZIP of class folders, which makes a classification dataset; its task "
                        f"cannot be 'regression'. Set the task to 'auto' or 'classification'.")
    index = inspect_image_zip(path, name, limits, image_limits)
    height, width = spec.image_size
    shape = (height, width, _channels(spec.color_mode))
    needed = index.num_images * int(np.prod(shape)) * 4  # float32
    if needed > limits.max_array_bytes:
        raise DataError(
            f"'{name}' holds {index.num_images:,} images; at {height}x{width} {spec.color_mode} they need "
            f"{format_bytes(needed)} as float32, over the limit of {format_bytes(limits.max_array_bytes)}. "
            f"Choose a smaller image size or grayscale, or raise STACKLAB_MAX_ARRAY_BYTES."
        )
    x = np.empty((index.num_images,) + shape, np.float32)
    y = np.empty(index.num_images, np.int64)
    row = 0
    with zipfile.ZipFile(path) as archive:
        for label, members in enumerate(index.files):
            for member in members:
                x[row] = _decode(_read_member(archive, member, name), member, name, spec, image_limits)
                y[row] = label
                row += 1
    classes = len(index.class_names)
    task = TaskInfo("binary" if classes == 2 else "multiclass", shape, num_classes=classes,
                    class_names=index.class_names)
    description = (f"{name}: {index.num_images:,} images in {classes} class folders, resized to "
                   f"{height}x{width} ({spec.color_mode}), raw pixel values 0-255.")
    return Dataset(Path(name).stem, x, y, task, description=description, pixel_range=255.0)


def class_samples(path: Path, name: str, spec: DatasetSpec, per_class: int = 6, max_classes: int | None = None,
                  limits: DataLimits = DEFAULT_LIMITS,
                  image_limits: ImageLimits = DEFAULT_IMAGE_LIMITS) -> dict[str, np.ndarray]:
    """The first `per_class` images of every class, as the model sees them, for a preview.

    Args:
        path, name, spec, limits, image_limits: as for `read_image_folders`.
        per_class: images per class (fewer when a class has fewer).
        max_classes: only the first this many classes (None: all).

    Returns:
        Class name -> uint8 array (k, height, width, channels), classes in label order.

    Raises:
        DataError: as `read_image_folders`.

    Example:
        >>> {c: a.shape for c, a in class_samples(Path("pets.zip"), "pets.zip", spec, 2).items()}
        {'cats': (2, 64, 64, 3), 'dogs': (2, 64, 64, 3)}
    """
    index = inspect_image_zip(path, name, limits, image_limits)
    with zipfile.ZipFile(path) as archive:
        return {class_name: np.stack([_decode(_read_member(archive, member, name), member, name, spec, image_limits)
                                      for member in members[:per_class]])
                for class_name, members in list(zip(index.class_names, index.files))[:max_classes]}


# -- the central directory ------------------------------------------------------------------


def _end_record(path: Path) -> tuple[int, int] | None:
    """(entries, central directory bytes) as the end record declares them, read before zipfile
    parses the directory; None when there is no end record (zipfile then says it is no zip).
    ZIP64 archives mark both fields with all ones: they read as over any limit."""
    with open(path, "rb") as file:
        size = file.seek(0, io.SEEK_END)
        file.seek(max(0, size - (END_RECORD_BYTES + 0xFFFF)))
        tail = file.read()
    at = tail.rfind(END_RECORD)
    if at < 0 or len(tail) - at < END_RECORD_BYTES:
        return None
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10:at + 16])
    return entries, directory_bytes


def _too_many(name: str, entries: int, image_limits: ImageLimits) -> DataError:
    variable = IMAGE_LIMIT_ENV_VARS["max_entries"]
    return DataError(f"'{name}' declares {entries:,} entries, over the limit of {image_limits.max_entries:,} "
                     f"({variable}). Use fewer images, or raise {variable}.")


def _check_member(info: zipfile.ZipInfo, name: str, image_limits: ImageLimits) -> None:
    """Refuse a member that is not a plain file or folder at a plain relative path, or a bomb."""
    member = info.filename
    held = f"'{name}' holds '{member}'"
    if member.startswith("/") or re.match(r"^[A-Za-z]:", member):
        raise DataError(f"{held}, an absolute path. Zip {LAYOUT} with relative paths.")
    if "\\" in member:
        raise DataError(f"{held}, a path with backslashes, which a reader may take for folders outside the "
                        f"archive. Zip the folders again with a standard tool (zip, 7-Zip, Finder, Explorer).")
    parts = member.rstrip("/").split("/")
    if ".." in parts:
        raise DataError(f"{held}, which points outside the archive (a '..' part). Zip {LAYOUT}.")
    if any(part in ("", ".") for part in parts):
        raise DataError(f"{held}, an irregular path (an empty or '.' part). Zip the folders again.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(f"{held}, a symbolic link; a dataset holds image files only. Replace the link by the "
                        f"file it points to, then zip again.")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"{held}, which is not a regular file (a device, pipe or socket). Remove it.")
    if info.flag_bits & 0x1:
        raise DataError(f"{held}, which is encrypted. Zip the folders again without a password.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DataError(f"{held}, compressed with method {info.compress_type}; StackLab reads stored and "
                        f"deflated members (what zip, Finder and Explorer write). Zip the folders again.")
    if not member.endswith("/") and info.file_size > image_limits.max_image_file_bytes:
        variable = IMAGE_LIMIT_ENV_VARS["max_image_file_bytes"]
        raise DataError(f"{held}, which inflates to {format_bytes(info.file_size)}, over the limit of "
                        f"{format_bytes(image_limits.max_image_file_bytes)} for one image ({variable}). "
                        f"Downscale it, or raise {variable}.")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_CHECK_MIN_BYTES and ratio > image_limits.max_compression_ratio:
        variable = IMAGE_LIMIT_ENV_VARS["max_compression_ratio"]
        raise DataError(f"{held}, which inflates {ratio:,.0f}x ({format_bytes(info.compress_size)} -> "
                        f"{format_bytes(info.file_size)}), over the limit of {image_limits.max_compression_ratio:g}x; "
                        f"files like this are zip bombs. Zip real image files, or raise {variable}.")


def _is_os_metadata(parts: tuple[str, ...]) -> bool:
    return parts[0] in OS_FOLDERS or parts[-1] in OS_FILES or parts[-1].startswith("._")


def _class_folders(infos: list[zipfile.ZipInfo], name: str) -> tuple[str, dict[str, list[str]]]:
    """The wrapping folder ("root/" or "") and each class folder's image members."""
    files, folders = [], []
    for info in infos:
        parts = tuple(PurePosixPath(info.filename).parts)
        if _is_os_metadata(parts):
            continue
        if info.is_dir():
            folders.append(parts)
            continue
        if PurePosixPath(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"'{name}' holds '{info.filename}', which is not an image (accepted: "
                            f"{', '.join(IMAGE_SUFFIXES)}). Remove it from the ZIP, or convert it.")
        files.append(parts)
    tops = {parts[0] for parts in files + folders}
    # One folder at the top holding folders of images wraps the class folders; one holding
    # only images is itself the only class (and refused as such by the caller).
    wrapped = len(tops) == 1 and any(len(parts) >= 3 for parts in files)
    depth = 1 if wrapped else 0
    root = f"{next(iter(tops))}/" if wrapped else ""
    classes: dict[str, list[str]] = {}
    for parts in folders:
        if len(parts) > depth:
            classes.setdefault(parts[depth], [])
    for parts in files:
        if len(parts) <= depth + 1:
            raise DataError(f"'{name}' holds '{'/'.join(parts)}' outside any class folder; images go in "
                            f"{LAYOUT}{' inside ' + root if root else ''}. Move it into its class's folder.")
        classes.setdefault(parts[depth], []).append("/".join(parts))
    return root, classes


# -- the images -----------------------------------------------------------------------------


def _channels(color_mode: str) -> int:
    if color_mode not in CHANNELS:
        raise DataError(f"Colour mode must be one of {list(CHANNELS)}, received {color_mode!r}.")
    return CHANNELS[color_mode]


def _read_member(archive: zipfile.ZipFile, member: str, name: str) -> bytes:
    """A member's bytes; zipfile stops at the size the central directory declared (checked)."""
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise DataError(f"'{name}' holds '{member}', which could not be read ({error}); the ZIP may be "
                        f"damaged. Zip the folders again.") from None


def _decode(data: bytes, member: str, name: str, spec: DatasetSpec, image_limits: ImageLimits) -> np.ndarray:
    """One image as uint8 (height, width, channels), resized as Keras's image loader does
    (bilinear, no crop), after its header's pixel count passed the limit."""
    held = f"'{name}' holds '{member}'"
    limit = image_limits.max_image_pixels
    variable = IMAGE_LIMIT_ENV_VARS["max_image_pixels"]
    bomb = (f"over the limit of {limit:,} ({variable}); images like this are decompression bombs. "
            f"Downscale it, or raise {variable}.")
    # Pillow's own fence is a module global, checked when it parses a header: set it to ours.
    # Past twice it, Pillow raises; between, it only warns, and the check below refuses.
    Image.MAX_IMAGE_PIXELS = limit
    try:
        image = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except Image.DecompressionBombError as error:
        declared = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's message names the count
        count = f"{int(declared.group(1)):,}" if declared else f"more than {2 * limit:,}"
        raise DataError(f"{held}, whose header declares {count} pixels, {bomb}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise DataError(f"{held}, which is not a readable {'/'.join(PIL_FORMATS)} image. Remove it, or save it "
                        f"again as PNG or JPEG.") from None
    with image:
        width, height = image.size
        if width * height > limit:
            raise DataError(f"{held}, whose header declares {width:,} x {height:,} = {width * height:,} pixels, "
                            f"{bomb}")
        size = (spec.image_size[1], spec.image_size[0])  # Pillow sizes are (width, height)
        mode = PIL_MODES[spec.color_mode]
        try:
            image.draft(mode, size)  # JPEG only: decode at the smallest scale still >= size
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # the palette's transparency, as Pillow asks
            elif image.mode in WIDE_GRAY_MODES:
                # 16-bit grayscale (scans, microscopy): Pillow's convert clips it at 255, so scale
                # 0..65535 to 0..255 as TensorFlow's decode_png does for 8-bit output.
                wide = np.asarray(image, dtype=np.float64) / 257.0
                image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), "L")
            pixels = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise DataError(f"{held}, which could not be decoded ({error}). Remove it, or save it again as PNG "
                            f"or JPEG.") from None
    return np.asarray(pixels, dtype=np.uint8).reshape(spec.image_size[0], spec.image_size[1], -1)
