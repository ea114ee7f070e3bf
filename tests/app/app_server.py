"""The real ``app.py`` in a subprocess, for the app tests and the benchmarks.

The server gets a free port, ``GRADIO_SERVER_NAME=127.0.0.1``, and ``TMPDIR`` plus
``GRADIO_TEMP_DIR`` inside one fresh folder, so callers can measure what it writes and nothing
lands elsewhere. It is always stopped (its whole process group; it also dies with its parent,
through PR_SET_PDEATHSIG on Linux). Readiness is read from the app's own log line, not by polling
the port we picked: when that port is taken, Gradio quietly moves to the next free one, and polling
could reach somebody else's server.
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

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
# The app's own settings are pinned to their documented defaults so the tests know the limits.
PINNED_ENV = {"MIDIGEN_TIME_LIMIT": "30", "MIDIGEN_CONCURRENCY": "2", "MIDIGEN_QUEUE_SIZE": "16"}
_RUNNING = re.compile(r"Running on local URL:\s+(http://\S+)")


class AppDidNotStart(RuntimeError):
    """The app exited or never answered; the message ends with its log."""


@dataclass
class AppServer:
    url: str  # ends with "/"
    process: subprocess.Popen
    temp_dir: Path  # TMPDIR of the server; GRADIO_TEMP_DIR is temp_dir / "gradio"
    log_path: Path
    queue_size: int
    started_at: float  # time.monotonic() at process start
    ready_after_s: float = float("nan")  # seconds from process start until the page answered

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


def stop(process: subprocess.Popen) -> None:
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


def _start(temp_dir: Path, attempt: int, extra_env: dict[str, str], repo: Path) -> AppServer:
    port = _free_port()
    gradio_dir = temp_dir / "gradio"
    gradio_dir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GRADIO_", "MIDIGEN_", "SPACES_"))}
    env.update(PINNED_ENV)
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_TEMP_DIR=str(gradio_dir),
        GRADIO_ANALYTICS_ENABLED="False",
        TMPDIR=str(temp_dir),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env)
    log_path = temp_dir.parent / f"{temp_dir.name}-server-{attempt}.log"
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(PYTHON), "app.py"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
        )
    return AppServer(f"http://127.0.0.1:{port}/", process, temp_dir, log_path, int(env["MIDIGEN_QUEUE_SIZE"]),
                     started)


def _wait_until_ready(server: AppServer) -> str | None:
    """None when the app answers; else why it never will."""
    deadline = server.started_at + START_TIMEOUT_S
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
                    server.ready_after_s = time.monotonic() - server.started_at
                    return None
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    return f"the app did not answer within {START_TIMEOUT_S:.0f} s"


@contextlib.contextmanager
def running_app(temp_dir: Path, extra_env: dict[str, str] | None = None, repo: Path = REPO) -> Iterator[AppServer]:
    """The real app (``repo``'s ``app.py``, this checkout's by default), started in ``temp_dir`` with ``extra_env``,
    stopped on exit; raises ``AppDidNotStart``."""
    if not PYTHON.exists():
        raise AppDidNotStart(f"{PYTHON} is missing; run scripts/setup.sh")
    temp_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # the free port can be taken between picking and binding it
        server = _start(temp_dir, attempt, extra_env or {}, repo)
        try:
            problem = _wait_until_ready(server)
        except BaseException:
            stop(server.process)
            raise
        if problem is None:
            break
        stop(server.process)
        log = server.log()
        if "port" in (problem + log).lower() and attempt < 2:
            continue
        raise AppDidNotStart(f"{problem}; its log:\n{log}")
    try:
        yield server
    finally:
        stop(server.process)
