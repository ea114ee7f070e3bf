"""Mixed load on the real app, as a crowd of users brings it, and the app's memory over a long run.

    python benchmarks/load.py --minutes 10              # 1 client, then 4 clients, the mixed load
    python benchmarks/load.py --soak 60                  # 2 clients for an hour; RSS every minute
    python benchmarks/load.py --capacity 3b7088c         # server CPU per 30 s request (API, page), against a commit

The load: pieces from scratch, continuations with the seed kept and not kept, Regenerate from here, every
style, 1-4 variations of 5-60 s, about 5 % bad requests; the seeds are built in code like real uploads
(recorded performances with pedal and free timing, band arrangements with drums, a long piece, an empty
file). Each request ends as a result, a clear refusal (a known short message) or an unexpected failure.
Server CPU per request is the app process's CPU time over the run divided by the requests it answered.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "app")]

from app_server import running_app  # noqa: E402
from app_testkit import TEST_SETTINGS  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from seed_pieces import band, long_piece, performance  # noqa: E402

from app import SEED_INPUT  # noqa: E402
from midigen.styles import STYLES  # noqa: E402

REFUSALS = ("must be", "could not be read", "not a MIDI", "has no notes", "Queue is full", "too large", "at most",
            "is not", "no notes", "empty")


def seed_files(folder: Path) -> list[Path]:
    """Seeds like real uploads, written once."""
    seeds = {f"performance-{i}.mid": performance(seconds=30 + 10 * i, random_seed=i) for i in range(4)}
    seeds |= {f"band-{i}.mid": band(bars=8 + 4 * i, random_seed=i) for i in range(4)}
    seeds["long.mid"] = long_piece()
    seeds["empty.mid"] = b""
    paths = []
    for name, data in seeds.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def mixed_request(rng: random.Random, seeds: list[Path]) -> tuple[str, Path | None, dict]:
    """(kind, seed, settings) of one request of the mix."""
    settings = {"seconds": rng.choice((5, 10, 15, 20, 30, 45, 60)), "variations": rng.choice((1, 1, 1, 2, 3, 4)),
                "randomize": True, "style": rng.choice(["auto", "auto", *(s.name for s in STYLES)])}
    roll = rng.random()
    if roll < 0.05:
        return "bad", None, {**settings, rng.choice(("temperature", "seconds", "key")): "nonsense"}
    seed = rng.choice(seeds)
    if roll < 0.30:
        return "scratch", None, settings
    if roll < 0.60:
        return "continue, seed kept", seed, {**settings, "keep_seed": True}
    if roll < 0.80:
        return "continue, seed left out", seed, {**settings, "keep_seed": False}
    return "regenerate from here", seed, {**settings, "keep_seed": True, "keep_seed_until": rng.uniform(2, 20)}


@dataclass
class Outcome:
    kind: str
    seconds: float
    result: str  # "ok", "refused: ...", "failed: ..."


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    def latencies(self) -> list[float]:
        return [o.seconds for o in self.outcomes if o.result == "ok"]

    def summary(self, label: str) -> str:
        ok, times = self.latencies(), self.latencies()
        refused = [o for o in self.outcomes if o.result.startswith("refused")]
        failed = [o for o in self.outcomes if o.result.startswith("failed")]
        answered = len(ok) + len(refused)
        lines = [f"{label}: {len(self.outcomes)} requests in {self.wall_seconds / 60:.1f} min: {len(ok)} results, "
                 f"{len(refused)} clear refusals, {len(failed)} unexpected failures"]
        if times:
            lines.append(f"  latency of results: p50 {np.percentile(times, 50):.2f} s, p95 "
                         f"{np.percentile(times, 95):.2f} s, max {max(times):.2f} s")
        if answered:
            lines.append(f"  server CPU per request answered: {self.cpu_seconds / answered:.3f} s")
        for outcome in failed[:10]:
            lines.append(f"  failed ({outcome.kind}, {outcome.seconds:.1f} s): {outcome.result[8:200]}")
        return "\n".join(lines)


def one_request(client: Client, kind: str, seed: Path | None, settings: dict, common: bool = False) -> Outcome:
    """One ``/generate``; ``common``: ``settings`` alone, the rest left at the server's defaults (any version's)."""
    started = time.perf_counter()
    values = settings if common else {**TEST_SETTINGS, **settings}
    try:
        client.predict(**{SEED_INPUT: handle_file(str(seed)) if seed else None}, **values, api_name="/generate")
        result = "ok"
    except AppError as error:
        message = str(error)
        known = any(word in message for word in REFUSALS) and "went wrong" not in message
        result = ("refused: " if known else "failed: ") + message
    except Exception as error:  # a timeout or a broken connection: the worst kind
        result = f"failed: {type(error).__name__}: {error}"
    return Outcome(kind, time.perf_counter() - started, result)


def load(url: str, pid: int, clients: int, minutes: float, seeds: list[Path], rss: list | None = None) -> Run:
    """``clients`` clients sending the mix back to back for ``minutes``; with ``rss``, the server's RSS each
    minute is appended to it."""
    run, lock, stop_at = Run(), threading.Lock(), time.monotonic() + minutes * 60
    server = psutil.Process(pid)
    cpu_before, started = sum(server.cpu_times()[:2]), time.monotonic()

    def client_loop(index: int) -> None:
        client, rng = Client(url, verbose=False, ssl_verify=False), random.Random(index)
        while time.monotonic() < stop_at:
            outcome = one_request(client, *mixed_request(rng, seeds))
            with lock:
                run.outcomes.append(outcome)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(min(60.0, max(stop_at - time.monotonic(), 1.0)))
        if rss is not None:
            rss.append((time.monotonic() - started, server.memory_info().rss / 1e6))
    for thread in threads:
        thread.join()
    run.cpu_seconds = sum(server.cpu_times()[:2]) - cpu_before
    run.wall_seconds = time.monotonic() - started
    return run


def checkout(ref: str, folder: Path) -> Path:
    """Commit ``ref`` of this repository written out under ``folder``, sharing this checkout's virtual environment."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    os.symlink(ROOT / ".venv", folder / ".venv")
    return folder


def server_cpu(pid: int) -> float:
    return sum(psutil.Process(pid).cpu_times()[:2])


def capacity(ref: str, requests: int, seeds: list[Path], folder: Path) -> None:
    """Server CPU per 30 s request (one variation), for this checkout and for commit ``ref``, one request at a time
    to each server in turn: through the API (from scratch and continuing a recorded performance, in turn), then
    clicked on the page in a real browser (from scratch: the page plays it, live where it can)."""
    requests_of = [("scratch", None), ("continue", seeds[0])]
    with running_app(folder / "this") as this, running_app(folder / "then", repo=checkout(ref, folder / ref)) as then:
        servers = {"this checkout": this, ref: then}
        clients = {name: Client(app.url, verbose=False, ssl_verify=False) for name, app in servers.items()}
        cpu = dict.fromkeys(servers, 0.0)
        for index in range(-2, requests):  # two requests each to warm up, not counted
            for name, app in servers.items():
                kind, seed = requests_of[index % 2]
                before = server_cpu(app.pid)
                outcome = one_request(clients[name], kind, seed, {"seconds": 30, "variations": 1, "randomize": True},
                                      common=True)
                assert outcome.result == "ok", f"{name}: {outcome.result}"
                if index >= 0:
                    cpu[name] += server_cpu(app.pid) - before
        report("API", cpu, requests, ref)
        report("page", page_cpu(servers, requests), requests, ref)


def page_cpu(servers: dict, requests: int) -> dict[str, float]:
    """Server CPU of ``requests`` clicks on Generate (30 s from scratch, the defaults) on each server's page, up to
    its player's audio loaded; one page per server, after two clicks each to warm up."""
    from app_testkit import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright
    from test_browser import LOADED_AUDIO, MEDIA_HOOK, SUMMARY

    cpu = dict.fromkeys(servers, 0.0)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = {}
        for name, app in servers.items():
            context = browser.new_context()
            context.add_init_script(MEDIA_HOOK)
            context.set_default_timeout(120_000)
            pages[name] = context.new_page()
            pages[name].goto(app.url, wait_until="domcontentloaded")
        summaries, sources = dict.fromkeys(servers), dict.fromkeys(servers)
        for index in range(-2, requests):
            for name, app in servers.items():
                page, before = pages[name], server_cpu(app.pid)
                page.get_by_role("button", name="Generate", exact=True).click()
                summaries[name] = page.wait_for_function(SUMMARY, arg=summaries[name]).json_value()
                sources[name] = page.wait_for_function(LOADED_AUDIO, arg=sources[name]).json_value()["src"]
                if index >= 0:
                    cpu[name] += server_cpu(app.pid) - before
        browser.close()
    return cpu


def report(path: str, cpu: dict[str, float], requests: int, ref: str) -> None:
    for name, seconds in cpu.items():
        print(f"{path}, {name}: server CPU per 30 s request {seconds / requests * 1000:.0f} ms ({requests} requests)")
    print(f"{path}, this checkout against {ref}: {cpu['this checkout'] / cpu[ref]:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of 4 clients (1 client: a fifth)")
    parser.add_argument("--soak", type=float, help="instead: minutes of 2 clients, the server's RSS each minute")
    parser.add_argument("--capacity", metavar="COMMIT", help="instead: server CPU per 30 s request against COMMIT")
    parser.add_argument("--requests", type=int, default=20, help="requests to each server for --capacity")
    args = parser.parse_args()
    if args.capacity:
        with tempfile.TemporaryDirectory() as folder:
            capacity(args.capacity, args.requests, seed_files(Path(folder)), Path(folder))
        return
    with tempfile.TemporaryDirectory() as folder, running_app(Path(folder)) as app:
        seeds = seed_files(Path(folder))
        print(f"app ready in {app.ready_after_s:.1f} s; {psutil.cpu_count()} CPUs", flush=True)
        if args.soak:
            rss: list[tuple[float, float]] = []
            run = load(app.url, app.pid, 2, args.soak, seeds, rss)
            print(run.summary(f"soak, 2 clients, {args.soak:g} min"))
            for seconds, mb in rss:
                print(f"  minute {seconds / 60:5.1f}: RSS {mb:7.1f} MB")
            later = [(s, m) for s, m in rss if s >= 600]
            if len(later) >= 2:
                slope = np.polyfit([s / 3600 for s, _ in later], [m for _, m in later], 1)[0]
                print(f"  RSS growth after the first 10 minutes: {slope:+.1f} MB/h")
            return
        single = load(app.url, app.pid, 1, args.minutes / 5, seeds)
        print(single.summary("1 client"), flush=True)
        crowd = load(app.url, app.pid, 4, args.minutes, seeds)
        print(crowd.summary("4 clients"))
        ratio = (crowd.cpu_seconds / max(len(crowd.outcomes), 1)) / (single.cpu_seconds / max(len(single.outcomes), 1))
        p50 = statistics.median(crowd.latencies() or [float("nan")]) / statistics.median(
            single.latencies() or [float("nan")])
        print(f"4 clients against 1: CPU per request {ratio:.2f}x, p50 latency {p50:.2f}x")


if __name__ == "__main__":
    main()
