"""Static checks of a model file's container: a .keras zip archive or an HDF5 file.

No Keras deserialization happens here. A `.keras` archive may hold only what Keras writes
(no absolute or `..` paths, links, encryption, odd compression or zip bombs); an HDF5 file,
or the weights inside an archive, may hold no links, external or virtual storage, plugin
filters or non-numeric data, and its datasets may declare only so many bytes. Then the
model config inside is handed to `core.model_files.config_checks`.

The checks raise `Refusal` (see `core.model_files.limits`); the caller names the file.

Example:
    >>> with refusals_for("model.keras"):
    ...     facts = check_model_file(Path("model.keras"), "keras", LoadLimits())
    >>> facts["layer_classes"]
    ('InputLayer', 'Dense')
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import h5py

from core.limits import format_bytes
from core.model_files.config_checks import check_model_config
from core.model_files.limits import MIB, LoadLimits, first_line, refuse

MODEL_FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}

# What Keras itself writes into a .keras archive; lookup vocabularies go under assets/.
# The weights must be model.weights.h5: Keras can also read model.weights.npz, but never
# writes it by default, and we only bound HDF5 weights.
KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
ASSETS_DIR = "assets/"
# Keras stores members uncompressed (1:1), so a high ratio only matters for big members.
RATIO_FLOOR_BYTES = 1 * MIB
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Standard HDF5 filters (deflate, shuffle, fletcher32, szip, nbit, scaleoffset, lzf):
# anything else makes HDF5 load a plugin library.
HDF5_FILTERS = {1, 2, 3, 4, 5, 6, 32000}
# What h5py raises on a malformed file, depending on which structure is broken.
H5_ERRORS = (OSError, RuntimeError, ValueError, KeyError)


def check_model_file(path: Path, fmt: str, limits: LoadLimits) -> dict[str, Any]:
    """Check a "keras" or "h5" file; return the `ModelFileReport` fields it tells.

    Those are model_class, model_name, layer_count, layer_classes, weight_bytes and
    keras_version, plus members for an archive.

    Raises:
        Refusal: the file breaks a rule; the reason says which.
    """
    inspect = _inspect_keras_archive if fmt == "keras" else _inspect_h5_file
    return inspect(path, limits)


def copy_regular_file(source: Path, target: Path, limits: LoadLimits) -> tuple[int, str]:
    """Copy `source` to `target` if it is a regular file within the size limit; (size, sha256)."""
    # O_NONBLOCK: opening a FIFO must not hang; fstat then tells what was opened.
    descriptor = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            refuse("it is not a regular file.")
        if info.st_size > limits.max_file_bytes:
            refuse(f"the file is {format_bytes(info.st_size)}, over the {format_bytes(limits.max_file_bytes)} limit.")
        digest, size = hashlib.sha256(), 0
        with open(descriptor, "rb", closefd=False) as reader, open(target, "wb") as writer:
            while chunk := reader.read(MIB):
                size += len(chunk)
                if size > limits.max_file_bytes:  # it grew while we read it
                    refuse(f"the file is over the {format_bytes(limits.max_file_bytes)} limit.")
                digest.update(chunk)
                writer.write(chunk)
    finally:
        os.close(descriptor)
    return size, digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Static checks: .keras archives


def _inspect_keras_archive(path: Path, limits: LoadLimits) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_SIGNATURE:
        refuse("it is an HDF5 file, not a .keras zip archive; rename it to .h5.")
    if not head.startswith(b"PK") or not zipfile.is_zipfile(path):
        refuse("it is not a zip archive, and a .keras file is one; it is corrupt or not a Keras model.")
    try:
        with zipfile.ZipFile(path) as archive:
            return _inspect_archive_members(archive, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            OSError) as error:
        refuse(f"the zip archive is corrupt ({first_line(error)}).")


def _inspect_archive_members(archive: zipfile.ZipFile, limits: LoadLimits) -> dict[str, Any]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        refuse(f"the archive has {len(infos)} members, over the limit of {limits.max_members}.")
    seen, total = set(), 0
    for info in infos:
        _check_member(info, limits)
        if info.filename in seen:
            refuse(f"the archive holds '{info.filename}' twice (a loader could read either copy).")
        seen.add(info.filename)
        total += info.file_size
    if total > limits.max_uncompressed_bytes:
        refuse(
            f"its members inflate to {format_bytes(total)}, over the {format_bytes(limits.max_uncompressed_bytes)} "
            f"limit (a possible zip bomb)."
        )
    for required in ("config.json", "model.weights.h5"):
        if required not in seen:
            refuse(f"the archive has no {required}; save the model with model.save('model.keras').")
    metadata = {}
    if "metadata.json" in seen:
        metadata = _read_json_member(archive, "metadata.json", limits)
    config = _read_json_member(archive, "config.json", limits)
    # Keras drops the top-level compile_config when compile=False, so it is never read.
    facts = check_model_config(config, skip_keys={"compile_config"})
    weights = archive.getinfo("model.weights.h5")
    with archive.open(weights) as member:
        if weights.compress_type == zipfile.ZIP_STORED:
            weight_bytes = _inspect_weights(member, limits)
        else:  # HDF5 seeks a lot; seeking backwards in a deflated member re-inflates it
            with tempfile.TemporaryFile() as spool:
                while chunk := member.read(MIB):
                    spool.write(chunk)
                spool.seek(0)
                weight_bytes = _inspect_weights(spool, limits)
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return {**facts, "weight_bytes": weight_bytes, "members": tuple(sorted(seen)),
            "keras_version": version if isinstance(version, str) else None}


def _check_member(info: zipfile.ZipInfo, limits: LoadLimits) -> None:
    name = info.filename
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        refuse(f"the archive member '{name}' has an absolute path.")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if ".." in parts:
        refuse(f"the archive member '{name}' points outside the archive ('..').")
    if any(part in ("", ".") for part in parts):
        refuse(f"the archive member '{name}' has an irregular path.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        refuse(f"the archive member '{name}' is a symbolic link.")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        refuse(f"the archive member '{name}' is not a regular file.")
    if name not in KERAS_MEMBERS and not name.startswith(ASSETS_DIR):
        refuse(
            f"the archive holds an unexpected member '{name}'; a .keras file holds only "
            f"{', '.join(KERAS_MEMBERS)} and {ASSETS_DIR}."
        )
    if info.flag_bits & 0x1:
        refuse(f"the archive member '{name}' is encrypted.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        refuse(f"the archive member '{name}' uses an unsupported compression method.")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
        refuse(
            f"the archive member '{name}' inflates {info.compress_size:,} bytes to "
            f"{format_bytes(info.file_size)} ({ratio:,.0f}:1, limit {limits.max_compression_ratio:g}:1); "
            f"this is a zip bomb."
        )


def _read_json_member(archive: zipfile.ZipFile, name: str, limits: LoadLimits) -> Any:
    size = archive.getinfo(name).file_size
    if size > limits.max_config_bytes:
        refuse(f"{name} is {format_bytes(size)}, over the {format_bytes(limits.max_config_bytes)} limit.")
    return _parse_json(archive.read(name), name)


def _parse_json(raw: bytes | str, what: str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        refuse(f"{what} is nested too deeply.")
    except (UnicodeDecodeError, ValueError) as error:
        refuse(f"{what} is not valid JSON ({first_line(error)}).")


def _inspect_weights(fileobj, limits: LoadLimits) -> int:
    if fileobj.read(8) != HDF5_SIGNATURE:
        refuse("model.weights.h5 in the archive is not an HDF5 file.")
    fileobj.seek(0)
    try:
        with h5py.File(fileobj, "r") as h5:
            return _check_h5_objects(h5, limits)
    except H5_ERRORS as error:
        refuse(f"model.weights.h5 in the archive is corrupt ({first_line(error)}).")


# ---------------------------------------------------------------------------------------
# Static checks: HDF5


def _inspect_h5_file(path: Path, limits: LoadLimits) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        refuse("it is a zip archive, not an HDF5 file; rename it to .keras.")
    if head != HDF5_SIGNATURE:
        refuse("it is not an HDF5 file; it is corrupt or not a Keras model.")
    try:
        with h5py.File(path, "r", locking=False) as h5:
            weight_bytes = _check_h5_objects(h5, limits)
            raw = h5.attrs.get("model_config")
            if raw is None:
                refuse(
                    "it has no model config (a weights-only file); save the whole model "
                    "with model.save('model.keras')."
                )
            version = h5.attrs.get("keras_version")
    except H5_ERRORS as error:
        refuse(f"the HDF5 file is corrupt ({first_line(error)}).")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        refuse("its model_config attribute is not text.")
    # A variable-length string's storage size does not count its text: measure the text.
    if len(raw) > limits.max_config_bytes:
        refuse(f"its model_config is {format_bytes(len(raw))}, over the {format_bytes(limits.max_config_bytes)} limit.")
    # training_config is only read by compile=True, which we never use.
    facts = check_model_config(_parse_json(raw, "model_config"), skip_keys=set())
    if isinstance(version, bytes):
        version = version.decode("utf-8", errors="replace")
    return {**facts, "weight_bytes": weight_bytes,
            "keras_version": version if isinstance(version, str) else None}


def _check_h5_objects(root: h5py.File, limits: LoadLimits) -> int:
    """Walk every link without following it; return the declared dataset bytes."""
    count, declared, seen, pending = 0, 0, {root.id}, [root]
    count += _check_attributes(root, "/", limits)
    while pending:
        group = pending.pop()
        for name in group:
            count += 1
            if count > limits.max_h5_objects:
                refuse(f"the HDF5 data has more than {limits.max_h5_objects:,} objects.")
            path = f"{group.name.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                refuse(
                    f"HDF5 object '{path}' is an external link to '{link.filename}' "
                    f"(it would read another file)."
                )
            if isinstance(link, h5py.SoftLink):
                refuse(f"HDF5 object '{path}' is a soft link to '{link.path}'; Keras never writes links.")
            if not isinstance(link, h5py.HardLink):
                refuse(f"HDF5 object '{path}' is a link of an unsupported kind.")
            item = group[name]
            count += _check_attributes(item, path, limits)
            if isinstance(item, h5py.Dataset):
                declared += _check_dataset(item, path)
                if declared > limits.max_weight_bytes:
                    refuse(
                        f"its datasets declare more than {format_bytes(limits.max_weight_bytes)} of "
                        f"weights (at '{path}')."
                    )
            elif isinstance(item, h5py.Group) and item.id not in seen:
                seen.add(item.id)
                pending.append(item)
    return declared


def _check_attributes(item, path: str, limits: LoadLimits) -> int:
    names = list(item.attrs)
    for name in names:
        try:
            size = item.attrs.get_id(name).get_storage_size()
        except RuntimeError:  # HDF5 reports an empty attribute's size of 0 as an error
            size = 0
        if size > limits.max_config_bytes:
            refuse(
                f"HDF5 attribute '{name}' of '{path}' is {format_bytes(size)}, over the "
                f"{format_bytes(limits.max_config_bytes)} limit."
            )
    return len(names)


def _check_dataset(dataset: h5py.Dataset, path: str) -> int:
    if dataset.external:
        refuse(
            f"HDF5 dataset '{path}' keeps its data in the external file "
            f"'{dataset.external[0][0]}' (it would read another file)."
        )
    if dataset.is_virtual:
        refuse(f"HDF5 dataset '{path}' is a virtual dataset (it would read other files).")
    dtype = dataset.dtype
    if not (dtype.kind in "biufc" or (dtype.kind == "V" and dtype.fields is None and not dtype.subdtype)):
        refuse(f"HDF5 dataset '{path}' holds {dtype} values; weights are numbers.")
    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in HDF5_FILTERS:
            refuse(f"HDF5 dataset '{path}' uses filter {code}, which would load an HDF5 plugin.")
    return math.prod(dataset.shape) * dtype.itemsize if dataset.shape is not None else 0
