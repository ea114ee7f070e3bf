"""Fixtures for the tests of the running web app: the real ``app.py`` in a subprocess.

The server gets a free port, ``GRADIO_SERVER_NAME=127.0.0.1``, and ``TMPDIR`` plus
``GRADIO_TEMP_DIR`` inside one fresh folder, so the tests can measure what it writes and
nothing lands elsewhere. It is started once per session and always stopped (its whole
process group; it also dies with the test process, through PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from app_testkit import write_bad_uploads, write_seed

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
# The app's own settings are pinned to their documented defaults so the tests know the limits.
_RUNNING = re.compile(r"Running on local URL:\s+(http://\S+)")
PINNED_ENV = {"MIDIGEN_TIME_LIMIT": "30", "MIDIGEN_CONCURRENCY": "2", "MIDIGEN_QUEUE_SIZE": "16"}


@dataclass
class AppServer:
    url: str  # ends with "/"
    process: subprocess.Popen
    temp_dir: Path  # TMPDIR of the server; GRADIO_TEMP_DIR is temp_dir / "gradio"
    log_path: Path
    queue_size: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, last: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-last:]
        except FileNotFoundError:
            return "(no log)"

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"the app exited with {self.process.returncode}:\n{self.log()}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)  # the server's own group (start_new_session=True)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start(temp_dir: Path, attempt: int) -> AppServer:
    port = _free_port()
    gradio_dir = temp_dir / "gradio"
    gradio_dir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRADIO_")}
    env.update(PINNED_ENV)
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_TEMP_DIR=str(gradio_dir),
        GRADIO_ANALYTICS_ENABLED="False",
        TMPDIR=str(temp_dir),
        PYTHONUNBUFFERED="1",
    )
    log_path = temp_dir.parent / f"{temp_dir.name}-server-{attempt}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(PYTHON), "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
        )
    return AppServer(f"http://127.0.0.1:{port}/", process, temp_dir, log_path, int(PINNED_ENV["MIDIGEN_QUEUE_SIZE"]))


def _wait_until_ready(server: AppServer) -> str | None:
    """None when the app answers; else why it never will.

    The URL is taken from the app's own log line: when its port is taken, Gradio quietly moves to
    the next free one, and polling the port we picked could reach somebody else's server.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    announced = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"the app exited with {server.process.returncode} while starting"
        if announced is None and (match := _RUNNING.search(server.log(last=20_000))):
            announced = match.group(1).rstrip("/") + "/"
            if announced != server.url:
                return f"the app is on {announced}, not on the port it was given ({server.url})"
        if announced is not None:
            try:
                if httpx.get(server.url, timeout=5).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    return f"the app did not answer within {START_TIMEOUT_S:.0f} s"


@pytest.fixture(scope="session")
def midigen_app(tmp_path_factory) -> Iterator[AppServer]:
    """The real app, started once: yields an ``AppServer`` (url, process, temp_dir, log)."""
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing; run scripts/setup.sh")
    temp_dir = tmp_path_factory.mktemp("midigen-app")
    for attempt in range(3):  # the free port can be taken between picking and binding it
        server = _start(temp_dir, attempt)
        try:
            problem = _wait_until_ready(server)
        except BaseException:
            _stop(server.process)
            raise
        if problem is None:
            break
        _stop(server.process)
        log = server.log()
        if "port" in (problem + log).lower() and attempt < 2:
            continue
        pytest.fail(f"{problem}; its log:\n{log}")
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture(scope="session")
def app_client(midigen_app, tmp_path_factory):
    """A gradio_client ``Client`` for the app, downloading into a temporary folder."""
    from gradio_client import Client

    client = Client(midigen_app.url, verbose=False, ssl_verify=False,  # plain HTTP: no CA bundle per download
                    download_files=str(tmp_path_factory.mktemp("downloads")))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def seed_files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad seed files by name: ``scale`` (8 notes, 120 BPM) plus ``write_bad_uploads``."""
    folder = tmp_path_factory.mktemp("seeds")
    files = write_bad_uploads(folder / "bad")
    files["scale"] = write_seed(folder / "scale.mid")
    return files


@pytest.fixture
def check_healthy(midigen_app, app_client):
    """Call to assert the app still composes (a short request succeeds)."""

    def check() -> None:
        midigen_app.assert_alive()
        result = app_client.predict(None, 1.0, 0.95, 2, 0, 0, 3, False, 1, True, api_name="/generate")
        assert result[0] and Path(result[0]).stat().st_size > 0, result
        assert len(result[4]) == 1, result

    return check
