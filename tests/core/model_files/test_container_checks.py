"""Tests for core/model_files/container_checks.py: hostile or corrupt archives and HDF5 files are
refused by static inspection, before any Keras deserialization and without a child process.
"""

import json
import shutil
import stat
import zipfile

import h5py
import pytest

from core.model_files import loading
from core.model_files.loading import LoadLimits
from tests.core.model_files.loading_models import LIMITS, refuse, rewrite_keras

pytest_plugins = ["tests.core.model_files.loading_fixtures"]  # the fixture saved


def test_a_deflated_keras_archive_is_accepted(saved, tmp_path):
    path = rewrite_keras(saved["functional", "keras"][0], tmp_path / "zipped-again.keras",
                         compression=zipfile.ZIP_DEFLATED)
    assert loading.inspect_model_file(path, LIMITS).weight_bytes > 0


# ---------------------------------------------------------------------------------------
# Hostile archives


def symlink_member(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("member, match", [
    ("../marker", "'../marker' points outside the archive"),
    ("assets/../../marker", "points outside the archive"),
    ("/tmp/marker", "'/tmp/marker' has an absolute path"),
    ("C:/marker", "absolute path"),
    (symlink_member("assets/link"), "'assets/link' is a symbolic link"),
    ("payload.py", "unexpected member 'payload.py'"),
    ("config.json", "holds 'config.json' twice"),
], ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink", "unexpected", "duplicate"])
def test_hostile_archive_members_are_refused(saved, tmp_path, member, match):
    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras",
                         members={member: b"/etc/passwd"})
    refuse(path, match)


def test_zip_bomb_is_refused_by_its_compression_ratio(saved, tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(saved["sequential", "keras"][0]) as archive, \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("config.json", archive.read("config.json"))
        out.writestr("model.weights.h5", b"\0" * (64 * 2**20))
    assert path.stat().st_size < 200_000
    refuse(path, "'model.weights.h5' inflates .* to 64.0 MiB .*limit 100:1\\); this is a zip bomb")


def test_total_inflated_size_and_member_count_are_bounded(saved, tmp_path):
    source = saved["sequential", "keras"][0]
    many = {f"assets/vocabulary_{index}.txt": b"word\n" for index in range(600)}
    refuse(rewrite_keras(source, tmp_path / "many.keras", members=many), "has 603 members, over the limit of 512")
    big = {"assets/big.bin": b"x" * 5000}
    refuse(rewrite_keras(source, tmp_path / "big.keras", members=big), "inflate to .* over the .* limit",
           LoadLimits(max_uncompressed_bytes=4000))
    refuse(source, "config.json is .* over the 100 bytes limit", LoadLimits(max_config_bytes=100))
    refuse(source, "the file is .* over the 1,000 bytes limit", LoadLimits(max_file_bytes=1000))


def test_external_link_inside_keras_weights_is_refused(saved, tmp_path):
    source = saved["sequential", "keras"][0]
    weights = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(source) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
    with h5py.File(weights, "a") as h5:
        h5["layers/secret"] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/data")
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(path, "w") as out:
        for name in archive.namelist():
            out.writestr(name, weights.read_bytes() if name == "model.weights.h5" else archive.read(name))
    refuse(path, "'/layers/secret' is an external link to .*secret.h5")


# ---------------------------------------------------------------------------------------
# Hostile HDF5 files


@pytest.fixture
def h5_copy(saved, tmp_path):
    path = tmp_path / "model.h5"
    shutil.copy(saved["sequential", "h5"][0], path)
    return path


def test_h5_external_link_is_refused(h5_copy, tmp_path):
    with h5py.File(h5_copy, "a") as h5:
        h5["model_weights/stolen"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
    refuse(h5_copy, "HDF5 object '/model_weights/stolen' is an external link to .*other.h5")


def test_h5_soft_link_is_refused(h5_copy):
    with h5py.File(h5_copy, "a") as h5:
        h5["model_weights/alias"] = h5py.SoftLink("/model_weights/hidden")
    refuse(h5_copy, "'/model_weights/alias' is a soft link to '/model_weights/hidden'")


def test_h5_external_dataset_storage_is_refused(h5_copy, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"password" * 8)
    with h5py.File(h5_copy, "a") as h5:
        h5.create_dataset("model_weights/hidden/leak", shape=(16,), dtype="f4",
                          external=[(str(secret), 0, 64)])
    refuse(h5_copy, "'/model_weights/hidden/leak' keeps its data in the external file .*secret.txt")


def test_h5_huge_declared_dataset_is_refused(h5_copy):
    with h5py.File(h5_copy, "a") as h5:  # chunked and never written: the file stays tiny
        h5.create_dataset("model_weights/hidden/huge", shape=(10**6, 10**6), dtype="f4", chunks=(64, 64))
    assert h5_copy.stat().st_size < 1_000_000
    refuse(h5_copy, "datasets declare more than 256.0 MiB of weights \\(at '/model_weights/hidden/huge'\\)")


def test_h5_object_count_and_missing_config_are_refused(h5_copy, tmp_path):
    refuse(h5_copy, "more than 5 objects", LoadLimits(max_h5_objects=5))
    weights_only = tmp_path / "weights.h5"
    with h5py.File(h5_copy) as source, h5py.File(weights_only, "w") as target:
        source.copy("model_weights", target)
    refuse(weights_only, "no model config \\(a weights-only file\\)")


def test_h5_model_config_size_is_measured_as_text(h5_copy):
    # HDF5 reports 16 bytes of storage for a variable-length string of any length.
    refuse(h5_copy, "its model_config is .* over the 200 bytes limit", LoadLimits(max_config_bytes=200))


def test_h5_config_with_a_custom_class_is_refused(h5_copy):
    with h5py.File(h5_copy, "a") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"][1]["class_name"] = "MyCustomDense"
        h5.attrs["model_config"] = json.dumps(config)
    refuse(h5_copy, "layer 'hidden' uses the class 'MyCustomDense', which Keras does not know")


# ---------------------------------------------------------------------------------------
# Corrupt files, wrong suffixes


@pytest.mark.parametrize("name, content, match", [
    ("model.keras", b"definitely not a zip" * 10, "not a zip archive"),
    ("model.h5", b"definitely not hdf5" * 10, "not an HDF5 file"),
    ("model.keras", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "is an HDF5 file, not a .keras zip archive; rename it to .h5"),
    ("model.h5", b"PK\x03\x04" + b"\0" * 100, "is a zip archive, not an HDF5 file; rename it to .keras"),
    ("model.hdf5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "HDF5 file is corrupt"),
    ("model.pkl", b"\x80\x04K\x01.", "files ending in '.pkl' are not Keras model files"),
    ("model", b"{}", "files ending in '\\(no suffix\\)'"),
], ids=["not-zip", "not-hdf5", "hdf5-as-keras", "zip-as-h5", "truncated-hdf5", "pickle", "no-suffix"])
def test_corrupt_or_misnamed_files_are_refused(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    refuse(path, match)


def test_a_directory_is_refused_and_a_missing_file_is_not_found(tmp_path):
    (tmp_path / "model.keras").mkdir()
    refuse(tmp_path / "model.keras", "it is not a regular file")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loading.inspect_model_file(tmp_path / "missing.keras", LIMITS)
