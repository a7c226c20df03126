"""`pip install .` gives a working `stacklab`: the wheel holds both packages, the console
script, and the files StackLab needs beside them; an installed copy runs the CLI."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT

# What a fresh clone does not have: built and cached files, which an in-place build would
# read (setuptools never empties build/lib, so a module deleted since would still ship).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "test-artifacts", "__pycache__",
                                    ".*_cache", "*.keras", "*.h5")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source") / "stacklab"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    folder = tmp_path_factory.mktemp("wheel")
    # No build isolation: the project's own venv has setuptools, and no network is needed.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(folder), str(source)], cwd=folder, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    (path,) = folder.glob("stacklab-*.whl")
    return path


def test_the_wheel_holds_both_packages_the_script_and_the_shipped_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"core/__main__.py", "core/spec/__init__.py", "core/runs/worker.py", "dashboard/app.py",
            "dashboard/app_pages/train.py", "dashboard/favicon.png"} <= names
    assert not any(name.startswith("tests/") for name in names)
    shipped = {name.split(".data/data/share/stacklab/")[1] for name in names if ".data/data/share/stacklab/" in name}
    assert {".streamlit/config.toml", "examples/seed_sequential.json"} <= shipped
    assert "stacklab = core.__main__:main" in entry_points


def test_an_installed_copy_runs_the_cli_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-4000:]
    # The installed packages first, the test venv's dependencies after; run from elsewhere.
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-m", "core", "datasets", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "digits28" in done.stdout
    located = subprocess.run([sys.executable, "-c", "import core; print(core.__file__)"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert located.stdout.strip().startswith(str(target))
