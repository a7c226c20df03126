"""The real dashboard server and Debian's Chromium, started and stopped for end-to-end tests
and for bench/dashboard_latency.py.

`start_dashboard` runs `python -m streamlit run dashboard/server.py` on a free port in a given
$STACKLAB_HOME and waits until it serves; `DashboardServer.stop` ends it with everything it
started: the inspector, and run workers, which live in sessions of their own and may have
been re-parented (they are found by their $STACKLAB_HOME). `launch_chromium` starts
/usr/bin/chromium through Playwright; never a browser that Playwright downloads.

Example:
    >>> server = start_dashboard(home, log_path)
    >>> server.url
    'http://localhost:38211'
    >>> server.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("STACKLAB_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """The dashboard did not start; the message holds the end of its console output."""


@dataclass
class DashboardServer:
    """A running dashboard: its address, process and home, and the console it writes to."""

    url: str
    process: subprocess.Popen
    home: Path
    log_path: Path

    def log_text(self, start: int = 0) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(start)
            return log.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def processes(self) -> list[psutil.Process]:
        """The server and every process it started that still exists: its descendants, and
        run workers re-parented after their supervisor ended (they carry this $STACKLAB_HOME)."""
        found: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.process.pid)
            found[root.pid] = root
            found.update((child.pid, child) for child in root.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        for process in psutil.process_iter():
            if process.pid in found or process.pid == os.getpid():
                continue
            try:
                if process.environ().get("STACKLAB_HOME") == str(self.home):
                    found[process.pid] = process
            except (psutil.Error, OSError):
                continue
        return list(found.values())

    def stop(self) -> None:
        """SIGTERM to the server and all it started; SIGKILL to what is left after a while."""
        processes = self.processes()
        for process in processes:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(processes, timeout=STOP_TIMEOUT_S)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)
        if self.process.poll() is None:
            self.process.wait(timeout=STOP_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_dashboard(home: Path, log_path: Path, env: dict[str, str] | None = None,
                    script: str = "dashboard/server.py") -> DashboardServer:
    """Start the dashboard in $STACKLAB_HOME `home`, its console going to `log_path`; return
    once it serves. `script`: another Streamlit script to serve the same way (a benchmark's
    reference page).

    Raises:
        ServerError: it exited, or did not serve within START_TIMEOUT_S.
    """
    port = _free_port()
    url = f"http://localhost:{port}"
    environment = {**os.environ, **(env or {}), "STACKLAB_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(log_path, "wb") as log:
        # cwd: Streamlit reads the app's hardened config from ROOT/.streamlit/config.toml.
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
             "--server.headless", "true"],
            cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = DashboardServer(url=url, process=process, home=Path(home), log_path=Path(log_path))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _serving(url):
        problem = None
        if process.poll() is not None:
            problem = f"The dashboard exited with code {process.returncode} before serving"
        elif time.monotonic() > deadline:
            problem = f"The dashboard did not serve {url} within {START_TIMEOUT_S:.0f} s"
        if problem:
            server.stop()
            raise ServerError(f"{problem}:\n{server.log_text()[-3000:]}")
        time.sleep(0.2)
    return server


def launch_chromium(playwright):
    """Headless Debian Chromium through a started Playwright (`sync_playwright().start()`).

    Raises:
        FileNotFoundError: Chromium is not installed where expected.
    """
    if not CHROMIUM.exists():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: the end-to-end tests drive Debian's Chromium. Install it with `make chromium` "
            f"(apt-get install chromium), or point STACKLAB_E2E_CHROMIUM at it.")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
