"""Every test file is collected: a folder pytest skips by name (its default norecursedirs has
"build", and tests/core/build/ mirrors core/build/) would drop its tests silently."""

import subprocess
import sys

from tests.conftest import ROOT


def test_every_test_file_under_tests_is_collected():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    collected = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    on_disk = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")}
    assert on_disk - collected == set(), done.stdout[-2000:]
