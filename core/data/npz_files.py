"""NPZ files read safely: the archive is inspected before any array is loaded.

`np.load` trusts an archive: a 1 MB .npz can inflate into a 1 GiB array, and a crafted
.npy header can declare any shape. Here every member's declared size and compression
ratio, and the .npy headers of x and y (shape, dtype), are checked against `DataLimits`
first; only then are the arrays read, with allow_pickle=False.

Example:
    >>> np.savez("digits.npz", x=images, y=labels)
    >>> read_npz(Path("digits.npz"), "digits.npz", DatasetSpec(source="npz")).x.shape
    (1797, 28, 28, 1)
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from core.data.csv_files import check_file_size, dataset_from_arrays
from core.data.dataset import Dataset
from core.data.limits import DEFAULT_LIMITS, DataError, DataLimits
from core.limits import format_bytes
from core.spec import DatasetSpec

# The compression ratio is checked only for members inflating to more than this: a small
# array of zeros legitimately compresses 1000x and can do no harm.
RATIO_CHECK_MIN_BYTES = 1 << 20
# numpy writes headers of a few hundred bytes; a longer one is crafted.
MAX_NPY_HEADER_BYTES = 16 * 1024
# np.savez writes one member per array; zipfile builds an object per member when it opens
# an archive, so a crafted central directory of millions of entries is refused first.
MAX_MEMBERS = 256
SAVE_HINT = "Save it with np.savez('data.npz', x=features, y=targets)."


class NpyHeader(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype
    data_bytes: int


def read_npz(path: Path, name: str, spec: DatasetSpec, limits: DataLimits = DEFAULT_LIMITS) -> Dataset:
    """Read arrays x and y from an NPZ file, inspecting the archive before loading.

    Every member's declared size and compression ratio, and x's and y's .npy headers
    (shape, dtype), are checked first, so a zip bomb or a crafted header is refused
    without allocating; arrays are then read with allow_pickle=False.

    Args:
        path: the file to read.
        name: the file name to show in messages.
        spec: the task (see `dataset_from_arrays`); the scaling is the model's
            (`core.build.preprocessing.prepare`).
        limits: file, array, row and ratio limits.

    Returns:
        A Dataset; x keeps its shape (samples, ...) and its values (a uint8 image array
        gets pixel_range 255, so the model rescales it).

    Raises:
        DataError: not a zip, missing x or y, object or non-numeric arrays, sizes over
            the limits, members that inflate too far, or bad values.

    Example:
        >>> np.savez("digits.npz", x=images, y=labels)
        >>> read_npz(Path("digits.npz"), "digits.npz", DatasetSpec(source="npz"))
    """
    if check_file_size(path, name, limits) == 0:
        raise DataError(f"'{name}' is empty (0 bytes). {SAVE_HINT}")
    members = _declared_member_count(path)
    if members is not None and members > MAX_MEMBERS:
        raise DataError(f"'{name}' declares {members} archive members (more than {MAX_MEMBERS}); "
                        f"an NPZ needs only x and y. {SAVE_HINT}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DataError(f"'{name}' is not an NPZ archive (a zip of .npy arrays). {SAVE_HINT}") from None
    with archive:
        for info in archive.infolist():
            check_member(info, name, limits)
        arrays = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        for key in ("x", "y"):
            if key not in arrays:
                raise DataError(f"'{name}' has no array '{key}' (found: {sorted(arrays) or 'none'}). "
                                f"{SAVE_HINT}")
        headers = {key: read_npy_header(archive, arrays[key], name) for key in ("x", "y")}
        _check_headers(headers, name, limits)
        loaded = {key: read_npy(archive, arrays[key], name) for key in ("x", "y")}
    return dataset_from_arrays(loaded["x"], loaded["y"], name=name, task=spec.task, limits=limits)


def _declared_member_count(path: Path) -> int | None:
    """Entries declared by the zip's end record, read before zipfile parses them all."""
    with open(path, "rb") as file:
        size = file.seek(0, io.SEEK_END)
        file.seek(max(0, size - (22 + 0xFFFF)))  # the end record plus the longest comment
        tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None  # not a zip; zipfile says so next
    # 0xFFFF means "see the ZIP64 record": only archives with that many entries need it.
    return struct.unpack("<H", tail[at + 10:at + 12])[0]


def check_member(info: zipfile.ZipInfo, name: str, limits: DataLimits) -> None:
    """Refuse an archive member from its central-directory entry alone, before any byte of it
    is read: encrypted, inflating past `limits.max_array_bytes`, or compressed past
    `limits.max_compression_ratio`.

    Raises:
        DataError: what the member is, the limit, and how to fix it.
    """
    if info.flag_bits & 0x1:
        raise DataError(f"Member '{info.filename}' of '{name}' is encrypted. {SAVE_HINT}")
    if info.file_size > limits.max_array_bytes:
        raise DataError(
            f"Member '{info.filename}' of '{name}' inflates to {format_bytes(info.file_size)}, "
            f"over the limit of {format_bytes(limits.max_array_bytes)}. Use a smaller dataset "
            f"(or float32 instead of float64), or raise STACKLAB_MAX_ARRAY_BYTES."
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_CHECK_MIN_BYTES and ratio > limits.max_compression_ratio:
        raise DataError(
            f"Member '{info.filename}' of '{name}' inflates {ratio:.0f}x "
            f"({format_bytes(info.compress_size)} -> {format_bytes(info.file_size)}), over the "
            f"limit of {limits.max_compression_ratio:.0f}x; files like this are zip bombs. "
            f"Save real data with np.savez, or raise STACKLAB_MAX_COMPRESSION_RATIO."
        )


def read_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> NpyHeader:
    """Shape and dtype from a member's .npy header, reading only the header's bytes."""
    where = f"Member '{info.filename}' of '{name}'"
    with archive.open(info) as member:
        magic = member.read(npy_format.MAGIC_LEN)
        if len(magic) < npy_format.MAGIC_LEN or not magic.startswith(npy_format.MAGIC_PREFIX):
            raise DataError(f"{where} is not a .npy array. {SAVE_HINT}")
        major = magic[-2]
        if major not in (1, 2):  # version 3 exists only for unicode field names
            raise DataError(f"{where} uses .npy format version {major}, which StackLab does not "
                            f"read. Save plain numeric arrays. {SAVE_HINT}")
        length_format = "<H" if major == 1 else "<I"
        length_bytes = member.read(struct.calcsize(length_format))
        if len(length_bytes) < struct.calcsize(length_format):
            raise DataError(f"{where} is truncated. {SAVE_HINT}")
        header_length = struct.unpack(length_format, length_bytes)[0]
        # Checked before reading: numpy would read a 4 GB "header" before judging it.
        if header_length > MAX_NPY_HEADER_BYTES:
            raise DataError(f"{where} has a {format_bytes(header_length)} header; real ones are "
                            f"a few hundred bytes. {SAVE_HINT}")
        header = member.read(header_length)
    buffer = io.BytesIO(magic + length_bytes + header)
    npy_format.read_magic(buffer)
    read_header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
    try:
        shape, _, dtype = read_header(buffer, max_header_size=MAX_NPY_HEADER_BYTES)
    except ValueError as error:
        raise DataError(f"{where} has an unreadable .npy header ({error}). {SAVE_HINT}") from None
    if any(dim < 0 for dim in shape):
        raise DataError(f"{where} declares an impossible shape {shape}. {SAVE_HINT}")
    data_bytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    available = info.file_size - (len(magic) + len(length_bytes) + header_length)
    if not dtype.hasobject and data_bytes > available:
        raise DataError(
            f"{where} declares shape {shape} of {dtype} ({format_bytes(data_bytes)}) but holds "
            f"only {format_bytes(max(available, 0))}: the file is truncated or crafted. {SAVE_HINT}"
        )
    return NpyHeader(tuple(shape), dtype, data_bytes)


def _check_headers(headers: dict[str, NpyHeader], name: str, limits: DataLimits) -> None:
    for key, header in headers.items():
        if header.dtype.hasobject:
            hint = " If y holds class names, save them as strings: y.astype(str)." if key == "y" else ""
            raise DataError(
                f"Array {key} of '{name}' has dtype object, which would need pickle to load; "
                f"StackLab never loads pickles. Save numbers instead, e.g. {key}.astype('float32')."
                f"{hint}"
            )
        allowed = "biuf" if key == "x" else "biufUS"
        if header.dtype.kind not in allowed:
            raise DataError(f"Array {key} of '{name}' has dtype {header.dtype}, which is not "
                            f"numeric. Save it as numbers, e.g. {key}.astype('float32').")
    x = headers["x"]
    if x.shape and x.shape[0] > limits.max_rows:
        raise DataError(f"'{name}' has {x.shape[0]:,} samples, over the limit of "
                        f"{limits.max_rows:,}. Sample it down, or raise STACKLAB_MAX_ROWS.")
    # Loading holds x as stored, its float32 copy and y at the same time.
    float32_copy = 0 if x.dtype == np.float32 else math.prod(x.shape) * 4
    needed = x.data_bytes + float32_copy + headers["y"].data_bytes
    if needed > limits.max_array_bytes:
        raise DataError(
            f"'{name}' declares arrays x {x.shape} {x.dtype} and y {headers['y'].shape}, needing "
            f"{format_bytes(needed)} to load, over the limit of {format_bytes(limits.max_array_bytes)}. "
            f"Use fewer samples or float32, or raise STACKLAB_MAX_ARRAY_BYTES."
        )


def read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """The array of a checked member (`check_member`, `read_npy_header`), never with pickle.

    Raises:
        DataError: the member does not read as a .npy array.
    """
    try:
        with archive.open(info) as member:
            return npy_format.read_array(member, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"Member '{info.filename}' of '{name}' could not be read ({error}); "
                        f"the file may be damaged. {SAVE_HINT}") from None
