"""The running app under load: many clients at once, Gradio's queue limit, and a long run of
sequential requests with the server's memory and temporary files measured.

Sizes (environment variables): MIDIGEN_LOAD_CLIENTS concurrent clients (default 20),
MIDIGEN_LOAD_REQUESTS sequential requests (default 200, about 45-60 s on 2 busy cores).
Run with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from app_testkit import (
    CLIENT_QUEUE_FULL,
    SERVER_QUEUE_FULL,
    TEST_SETTINGS,
    api_values,
    call_generate,
    dir_size,
    midi_facts,
    raw_generate,
    read_event,
)
from gradio_client import Client
from gradio_client.utils import QueueError

from app import SEED_INPUT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = int(os.environ.get("MIDIGEN_LOAD_CLIENTS", "20"))
REQUESTS = int(os.environ.get("MIDIGEN_LOAD_REQUESTS", "200"))
MAX_RSS_GROWTH_MB = 150
MAX_TEMP_GROWTH_MB = 50
MB = 2**20


def _settings(seconds, random_seed, randomize=False) -> dict:
    return {"seconds": seconds, "random_seed": random_seed, "randomize": randomize}


def test_gradio_busy_messages_are_the_ones_asserted_on():
    """The queue-full texts asserted on come from the installed Gradio; fail loudly if they change.
    (The sources are read, not imported: importing gradio takes seconds.)"""
    def source(package: str, module: str) -> str:
        return (Path(importlib.util.find_spec(package).origin).parent / module).read_text()

    server = 'f"Queue is full. Max size is {self.max_size} and size is {len(self)}."'
    assert server in source("gradio", "queueing.py")
    assert f'QueueError("{CLIENT_QUEUE_FULL}")' in source("gradio_client", "client.py")


def test_concurrent_clients(midigen_app, tmp_path):
    """``CLIENTS`` users, each with their own Client, press Generate at the same moment."""
    barrier = threading.Barrier(CLIENTS, timeout=120)
    outcomes: list[tuple] = [None] * CLIENTS

    def user(index: int) -> None:
        client = None
        try:
            client = Client(midigen_app.url, verbose=False, ssl_verify=False,
                            download_files=str(tmp_path / f"user-{index}"))
            barrier.wait()
            started = time.perf_counter()
            result = call_generate(client, **_settings(5 + index % 6, index))
            outcomes[index] = ("ok", time.perf_counter() - started, result)
        except QueueError as error:
            outcomes[index] = ("busy", str(error))
        except Exception as error:  # AppError or anything else: a failure to report
            outcomes[index] = ("error", f"{type(error).__name__}: {error}")
        finally:
            if client is not None:
                client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(user, range(CLIENTS)))
    wall = time.perf_counter() - started
    midigen_app.assert_alive()

    ok = [o for o in outcomes if o and o[0] == "ok"]
    busy = [o for o in outcomes if o and o[0] == "busy"]
    failed = [o for o in outcomes if not o or o[0] == "error"]
    latencies = sorted(o[1] for o in ok)
    print(f"\n[load] {CLIENTS} concurrent clients: {len(ok)} ok, {len(busy)} busy, {len(failed)} failed in "
          f"{wall:.1f} s; latency median {statistics.median(latencies):.2f} s, max {latencies[-1]:.2f} s"
          if latencies else f"\n[load] {CLIENTS} concurrent clients: none succeeded: {outcomes}")
    assert not failed, failed
    assert all(message == CLIENT_QUEUE_FULL for _, message in busy), busy
    assert len(ok) >= 0.75 * CLIENTS, f"only {len(ok)}/{CLIENTS} succeeded"
    for _, _, result in ok:
        assert result["audio_1"] and Path(result["audio_1"]).stat().st_size > 0
        assert len(result["midi_files"]) == 1 and midi_facts(result["midi_files"][0]).end_time > 0


def test_queue_full_gives_gradios_busy_message(midigen_app):
    """More requests than the queue holds, sent at once: the extra ones get Gradio's busy message
    (HTTP 503 from the API, ``QueueError`` from gradio_client); every accepted one completes."""
    flood = midigen_app.queue_size * 3
    data = api_values(**_settings(12, 1))
    client = Client(midigen_app.url, verbose=False, download_files=False)
    limits = httpx.Limits(max_connections=flood)
    with httpx.Client(timeout=60, limits=limits) as http, ThreadPoolExecutor(flood) as pool:
        endpoint = midigen_app.url + "gradio_api/call/generate"
        responses = list(pool.map(lambda _: http.post(endpoint, json={"data": data}), range(flood)))
        try:  # while the queue is still full, gradio_client users are turned away too
            values = {SEED_INPUT: None, **TEST_SETTINGS, **_settings(2, 2)}
            jobs = [client.submit(**values, api_name="/generate") for _ in range(10)]
            client_outcomes = []
            for job in jobs:
                try:
                    job.result(timeout=120)
                    client_outcomes.append("ok")
                except QueueError as error:
                    client_outcomes.append(str(error))
        finally:
            client.close()
        accepted = [r.json()["event_id"] for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        results = list(pool.map(lambda event_id: read_event(midigen_app.url, event_id, 120, http), accepted))

    print(f"\n[load] flood of {flood}: {len(accepted)} accepted, {len(refused)} refused "
          f"({refused[0].json()['detail'] if refused else '-'}); gradio_client: {client_outcomes}")
    assert {r.status_code for r in refused} <= {503}, [(r.status_code, r.text[:200]) for r in refused]
    assert refused, "the queue never filled up"
    for response in refused:
        match = SERVER_QUEUE_FULL.match(response.json()["detail"])
        assert match and int(match.group(1)) == midigen_app.queue_size, response.text
    assert len(accepted) >= midigen_app.queue_size
    assert [r.kind for r in results] == ["complete"] * len(accepted), [r for r in results if r.kind != "complete"]
    assert CLIENT_QUEUE_FULL in client_outcomes, client_outcomes
    assert set(client_outcomes) <= {"ok", CLIENT_QUEUE_FULL}, client_outcomes
    midigen_app.assert_alive()
    assert raw_generate(midigen_app.url, api_values(**_settings(2, 3))).kind == "complete"


def test_sequential_requests_do_not_leak(midigen_app):
    """``REQUESTS`` short requests one after another: server memory and temp files stay bounded."""
    server = psutil.Process(midigen_app.pid)
    client = Client(midigen_app.url, verbose=False, download_files=False)
    try:
        def one(index: int) -> dict:
            result = call_generate(client, **_settings(2 + index % 3, index, randomize=True))
            assert result["audio_1"] and result["midi_files"], result
            return result

        for index in range(10):  # warm up: first-use allocations are not a leak
            one(index)
        rss_before = server.memory_info().rss
        temp_before = dir_size(midigen_app.temp_dir)
        started = time.perf_counter()
        with httpx.Client(timeout=30) as http:
            for index in range(REQUESTS):
                result = one(index)
                if index % 25 == 0:  # now and then, download the files like a browser would
                    for item in (result["audio_1"], result["midi_files"][0]):
                        response = http.get(item["url"])
                        assert response.status_code == 200 and len(response.content) > 0
        elapsed = time.perf_counter() - started
        rss_after = server.memory_info().rss
        temp_after = dir_size(midigen_app.temp_dir)
        outputs_mb = dir_size(midigen_app.temp_dir / "gradio" / "midigen") / MB
        cache_mb = dir_size(midigen_app.temp_dir / "gradio") / MB - outputs_mb
    finally:
        client.close()

    rss_growth = (rss_after - rss_before) / MB
    temp_growth = (temp_after - temp_before) / MB
    print(f"\n[load] {REQUESTS} sequential requests in {elapsed:.1f} s ({REQUESTS / elapsed:.2f} req/s); "
          f"server RSS {rss_before / MB:.0f} -> {rss_after / MB:.0f} MB ({rss_growth:+.1f} MB); "
          f"temp dir {temp_before / MB:.1f} -> {temp_after / MB:.1f} MB ({temp_growth:+.1f} MB, "
          f"{(temp_after - temp_before) / max(REQUESTS, 1) / 1024:.0f} KB per request; now {outputs_mb:.1f} MB in "
          f"midigen's request folders and {cache_mb:.1f} MB elsewhere in Gradio's cache)")
    midigen_app.assert_alive()
    assert rss_growth < MAX_RSS_GROWTH_MB, f"server RSS grew by {rss_growth:.0f} MB"
    assert temp_growth < MAX_TEMP_GROWTH_MB, f"temp dir grew by {temp_growth:.1f} MB"
