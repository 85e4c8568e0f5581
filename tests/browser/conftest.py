"""Browser-test fixtures: the real editor (python launch.py) in a subprocess on free ports with its own
data folder, and Debian's headless Chromium driven by Playwright. Tests skip with the reason when
chromium or playwright is missing (install: apt-get install -y chromium chromium-driver)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "artifacts" / "ui"
JOB_TIMEOUT_MS = 600_000  # a chunk takes 10-20 s on a quiet 2-core CPU, minutes when the machine is busy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EditorProcess:
    """`python launch.py` on free ports; start() waits for the ready line, stop() ends it by its pid."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.viewer_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "EditorProcess":
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        t0 = time.time()
        log = open(self.data / f"editor-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            ["nice", "-n", "5", sys.executable, str(REPO / "launch.py"), "--data", str(self.data), "--port",
             str(self.port), "--viewer-port", str(self.viewer_port)], cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT)
        text = ""
        while time.time() - t0 < 120:
            text = (self.data / f"editor-{self.port}.log").read_text()
            if "editor ready" in text:
                self.startup_s = time.time() - t0
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the editor did not start:\n{text[-3000:]}")

    def stacks(self, wait_s: float = 2.0) -> str:
        """The editor's log after asking it for every thread's stack (SIGUSR1, launch.editor): where a job
        waits when a test gave up on it."""
        if self.proc is None or self.proc.poll() is not None:
            return "(the editor is not running)"
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(wait_s)
        return (self.data / f"editor-{self.port}.log").read_text()[-20000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test reports the editor's thread stacks and log tail with it (an intermittent stall
    of a job is otherwise a bare time-out)."""
    outcome = yield
    report = outcome.get_result()
    proc = getattr(item, "funcargs", {}).get("editor")
    if report.when == "call" and report.failed and isinstance(proc, EditorProcess):
        report.sections.append(("editor stacks and log", proc.stacks()))


@pytest.fixture(scope="session")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def editor(tmp_path_factory, chromium):
    proc = EditorProcess(tmp_path_factory.mktemp("editor")).start()
    yield proc
    proc.stop()
