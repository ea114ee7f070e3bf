"""midigen performance benchmarks: sampling, variations, rendering, the web app end to end, seeds, GPU,
training, MIDI loading, prepare, training memory, live music (first sound, endless listeners), the duet (key press to
sound, pause to answer).

    .venv/bin/python benchmarks/run.py            # every section (a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run of every section at toy sizes (no targets)
    .venv/bin/python benchmarks/run.py --json results.json

Timings are the best of several runs (the machine may be shared); ratios are taken within one process.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import platform
import random
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import psutil
import torch
from mido.midifiles.meta import encode_variable_int

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "app")]  # the package, and the launcher the app tests use

from app_server import running_app  # noqa: E402
from app_testkit import call_generate  # noqa: E402

from midigen import checkpoint, pianoroll  # noqa: E402
from midigen.device import usable_cores  # noqa: E402
from midigen.generate import TOKENS_PER_NOTE, GenerationRequest, Generator  # noqa: E402
from midigen.midi_io import (  # noqa: E402
    MidiError,
    MidiLimits,  # noqa: E402
    load_midi,
)
from midigen.model import MidiGRU, ModelConfig  # noqa: E402
from midigen.prepare import TokenCache, midi_files, prepare  # noqa: E402
from midigen.render import SAMPLE_RATE, Renderer, find_soundfont, write_audio  # noqa: E402
from midigen.rules import grammar  # noqa: E402
from midigen.sample import NumbaSampler, SamplingSettings, TorchSampler  # noqa: E402
from midigen.studio import AppLimits, Studio  # noqa: E402
from midigen.tokenizer import BOS, Note, Score, Tokenizer  # noqa: E402
from midigen.train import Piece, TrainConfig, stream_batches, train_step  # noqa: E402

MB = 1e6
SHARED_DATA = Path("/work/shared/data/ff-piano")  # the collection the shipped model was trained on
MAX_VARIATIONS = AppLimits().max_variations


@dataclass
class Row:
    section: str
    metric: str
    value: float | str
    unit: str = ""
    target: str = ""  # "<= 1.5", ">= 10": checked against value
    passed: bool | None = None

    def __post_init__(self):
        if self.target and isinstance(self.value, float):
            op, bound = self.target.split()
            self.passed = self.value <= float(bound) if op == "<=" else self.value >= float(bound)


def best_of(repeats: int, run, *args) -> tuple[float, float, object]:
    """(best wall seconds, best CPU seconds of this thread, last result) of ``repeats`` calls of ``run(*args)``."""
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.thread_time()
        result = run(*args)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return min(wall), min(cpu), result


class PeakRSS:
    """Highest resident set size of process ``pid`` while the block runs (sampled every millisecond)."""

    def __init__(self, pid: int | None = None):
        self.process = psutil.Process(pid)
        self.peak = self.start = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.001):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def in_fresh_process(quick: bool, function, *args):
    """``function(*args)`` in a new interpreter, so its memory figures are its own (in this one for --quick)."""
    if quick:
        return function(*args)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def weights_path(folder: Path) -> tuple[Path, str]:
    """The shipped weights, or a random model of the same size saved in ``folder`` when they are missing."""
    try:
        checkpoint.load()
        return checkpoint.DEFAULT_WEIGHTS, "shipped weights"
    except checkpoint.CheckpointError:
        tokenizer = Tokenizer()
        config = ModelConfig(vocab_size=len(tokenizer.vocab))
        tensors = {k: v.numpy() for k, v in MidiGRU(config).state_dict().items()}
        checkpoint.save(checkpoint.Checkpoint(config, tokenizer.config, tensors), folder / "random")
        return folder / "random", "random weights (the shipped ones are missing)"


# -- 1. sampling ---------------------------------------------------------------------------------


class NaiveSampler:
    """The old recipe: torch eager one step at a time, top-p filtering by a full sort + cumsum + scatter
    (the classic ``top_k_top_p_filtering``), ``multinomial`` and ``.item()`` per step, a Python list.
    The grammar mask is applied too, so both samplers write the same kind of music."""

    def __init__(self, ck: checkpoint.Checkpoint, tokenizer: Tokenizer):
        model = MidiGRU.from_checkpoint(ck)
        self.embedding, self.gru, self.head = model.embedding, model.gru, model.head
        self.may_follow = torch.from_numpy(grammar(tokenizer))
        self.pitches = tokenizer.vocab.kind_ranges()["PITCH"]

    @torch.no_grad()
    def sample(self, prompt: list[int], notes: int, temperature: float, top_p: float, random_seed: int) -> list[int]:
        torch.manual_seed(random_seed)
        sequence = list(prompt)
        _, state = self.gru(self.embedding(torch.tensor([prompt[:-1]])))
        count = 0
        while count < notes:
            output, state = self.gru(self.embedding(torch.tensor([[sequence[-1]]])), state)
            logits = self.head(output[0, -1]) / temperature
            logits = logits.masked_fill(~self.may_follow[sequence[-1]], -float("inf"))
            ordered, order = torch.sort(logits, descending=True)
            remove = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1) > top_p
            remove[1:] = remove[:-1].clone()  # keep the token that crosses top_p
            remove[0] = False
            logits[order[remove]] = -float("inf")
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1).item()
            sequence.append(token)
            count += token in self.pitches
        return sequence[len(prompt) :]


def sampling(ck, tokenizer, quick: bool) -> tuple[list[Row], float]:
    """Batch-1 notes per second against the naive sampler; also returns the tokens per note."""
    notes, repeats = (60, 1) if quick else (2000, 3)
    prompt = [BOS, tokenizer.vocab.encode("TEMPO", 10)]
    naive, ours = NaiveSampler(ck, tokenizer), NumbaSampler(ck, tokenizer)
    settings = SamplingSettings(1.0, 0.95, max_notes=notes, max_tokens=notes * 16)
    ours.sample(prompt, SamplingSettings(max_tokens=4), 1, 0)  # compile (or load the cache)
    torch.set_num_threads(1)  # a single stream of tiny ops: extra threads only add overhead here
    results = {"naive": [], "ours": []}
    for random_seed in range(repeats):  # interleaved, so both see the same load
        results["naive"].append(best_of(1, naive.sample, prompt, notes, 1.0, 0.95, random_seed))
        results["ours"].append(best_of(3, ours.sample, prompt, settings, 1, random_seed))
    results = {name: {"wall": min(r[0] for r in runs), "cpu": min(r[1] for r in runs),
                      "tokens": statistics.mean(len(r[2]) if name == "naive" else len(r[2][0]) for r in runs)}
               for name, runs in results.items()}
    rows = []
    for name, label in (("naive", "naive torch sampler"), ("ours", "NumbaSampler")):
        r = results[name]
        rows += [Row("sampling", f"{label}: time per token", r["wall"] / r["tokens"] * 1e6, "µs"),
                 Row("sampling", f"{label}: notes per second", notes / r["wall"], "notes/s")]
    speedup = results["naive"]["wall"] / results["ours"]["wall"]
    rows += [Row("sampling", "speedup (notes/s, wall clock)", speedup, "x", "" if quick else ">= 10"),
             Row("sampling", "speedup (CPU time)", results["naive"]["cpu"] / results["ours"]["cpu"], "x")]
    return rows, results["ours"]["tokens"] / notes


# -- 2. variations -------------------------------------------------------------------------------


def variations(ck, tokenizer, quick: bool) -> list[Row]:
    """Four variations in one batch against one: wall time (the batch may use every core) and CPU time."""
    steps, repeats = (200, 2) if quick else (3000, 9)
    sampler = NumbaSampler(ck, tokenizer)
    prompt = [BOS, tokenizer.vocab.encode("TEMPO", 10)]
    settings = SamplingSettings(1.0, 0.95, max_notes=2**31 - 1, max_tokens=steps)
    wall, cpu = {1: [], 4: []}, {1: [], 4: []}
    for random_seed in range(repeats):  # interleaved, so both see the same load
        for batch in wall:
            started, used = time.perf_counter(), time.process_time()
            sampler.sample(prompt, settings, batch, random_seed)
            cpu[batch].append(time.process_time() - used)
            wall[batch].append(time.perf_counter() - started)
    one, four = min(wall[1]), min(wall[4])
    return [Row("variations", "batch 1: time per step", one / steps * 1e6, "µs"),
            Row("variations", f"batch 4: time per step ({sampler.workers} threads)", four / steps * 1e6, "µs"),
            Row("variations", "4 variations / 1 (wall clock)", four / one, "x", "" if quick else "<= 1.5"),
            Row("variations", "4 variations / 1 (CPU time, all threads)", min(cpu[4]) / min(cpu[1]), "x")]


# -- 3. rendering --------------------------------------------------------------------------------


def render_child(method: str, midi_path: str, soundfont: str, repeats: int) -> dict:
    """Time and memory of one way of rendering, measured in a fresh process."""
    midi = pretty_midi.PrettyMIDI(midi_path)
    if method == "Renderer.render":
        renderer = Renderer(soundfont)  # built once per process: the soundfont stays loaded

        def run():
            return renderer.render(midi)
    else:
        def run():
            return midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=soundfont)
    with PeakRSS() as rss:
        run()
    tracemalloc.start()
    run()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": best_of(repeats, run)[0], "rss": rss.peak - rss.start, "traced": traced}


def rendering(generator: Generator, quick: bool) -> list[Row]:
    seconds, repeats = (5.0, 1) if quick else (60.0, 3)
    soundfont = find_soundfont()
    if soundfont is None:
        return [Row("rendering", "Renderer vs pretty_midi", "skipped: no soundfont")]
    midi = generator.generate(GenerationRequest(seconds=seconds, random_seed=1))[0].midi
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "piece.mid")
        midi.write(path)
        result = {m: in_fresh_process(quick, render_child, m, path, str(soundfont), repeats)
                  for m in ("Renderer.render", "PrettyMIDI.fluidsynth")}
    new, old = result["Renderer.render"], result["PrettyMIDI.fluidsynth"]
    check = not quick
    return [
        Row("rendering", f"piece length ({soundfont.name})", midi.get_end_time(), "s"),
        *[Row("rendering", f"{m}: time", r["seconds"], "s") for m, r in result.items()],
        Row("rendering", "speedup", old["seconds"] / new["seconds"], "x", ">= 1.5" if check else ""),
        *[Row("rendering", f"{m}: peak RSS growth", r["rss"] / MB, "MB") for m, r in result.items()],
        Row("rendering", "peak RSS growth, new / old", new["rss"] / old["rss"], "x", "<= 0.3333" if check else ""),
        *[Row("rendering", f"{m}: tracemalloc peak", r["traced"] / MB, "MB") for m, r in result.items()],
        Row("rendering", "tracemalloc peak, new / old", new["traced"] / old["traced"], "x",
            "<= 0.3333" if check else ""),
        *soundfont_speeds(midi, repeats),
    ]


def soundfont_speeds(midi: pretty_midi.PrettyMIDI, repeats: int) -> list[Row]:
    """Seconds to load each installed soundfont and to render ``midi`` through it, and the render time against the
    default soundfont's."""
    from midigen.settings import setting

    spec, rows, renders = setting("soundfont"), [], {}
    for _, name in spec.choices:
        started = time.perf_counter()
        renderer = Renderer(find_soundfont(name))
        rows.append(Row("rendering", f"soundfont {name}: load", time.perf_counter() - started, "s"))
        renders[name] = best_of(repeats, renderer.render, midi)[0]
        renderer.close()
    return rows + [row for name, seconds in renders.items()
                   for row in (Row("rendering", f"soundfont {name}: time", seconds, "s"),
                               Row("rendering", f"soundfont {name}: time / {spec.default}'s",
                                   seconds / renders[spec.default], "x"))]


# -- 4. the web app end to end -------------------------------------------------------------------


def timed_requests(url: str, count: int) -> list[tuple[float, int, float]]:
    """(seconds, audio bytes, seconds outside the pipeline) of ``count`` /generate calls from one client.

    The pipeline's own time is read from the summary ("ready in X s"); the rest is Gradio, the queue
    and the transfers."""
    from gradio_client import Client

    # Plain HTTP on this machine: no TLS to verify. (With verification on, gradio_client loads the CA
    # bundle for every file it downloads, about 30 ms of CPU per file taken from the server under test.)
    client = Client(url, verbose=False, ssl_verify=False)
    out = []
    for _ in range(count):
        started = time.perf_counter()
        result = call_generate(client, seconds=30, randomize=True)
        seconds = time.perf_counter() - started
        ready = re.search(r"ready in ([0-9.]+) s", result["summary"])
        out.append((seconds, os.path.getsize(result["audio_1"]), seconds - float(ready[1]) if ready else math.nan))
    return out


def end_to_end(weights: Path, quick: bool) -> list[Row]:
    """Cold start, then warm latency (1 and 4 clients), time outside the pipeline, payload, memory."""
    if quick:
        return [Row("app", "web app end to end", "skipped in --quick (starts a server)")]
    with tempfile.TemporaryDirectory() as folder, running_app(Path(folder), {"MIDIGEN_WEIGHTS": str(weights)}) as app:
        url, cold = app.url, app.ready_after_s
        with PeakRSS(app.pid) as rss:
            timed_requests(url, 2)  # warm the server
            single = timed_requests(url, 5)
            with ThreadPoolExecutor(4) as pool:
                runs = [r for batch in pool.map(lambda _: timed_requests(url, 5), range(4)) for r in batch]
    latency = [r[0] for r in runs]
    return [
        Row("app", "cold start (process start to first HTTP 200)", cold, "s", "<= 6"),
        Row("app", "/generate 30 s, 1 client: median", statistics.median(r[0] for r in single), "s"),
        Row("app", "  of which outside the pipeline (Gradio, transfers)", statistics.median(r[2] for r in single), "s"),
        Row("app", "/generate 30 s, 4 clients: p50", float(np.percentile(latency, 50)), "s", "<= 1.0"),
        Row("app", "/generate 30 s, 4 clients: p95", float(np.percentile(latency, 95)), "s", "<= 2.0"),
        Row("app", "  of which outside the pipeline (queue, Gradio), median", statistics.median(r[2] for r in runs),
            "s"),
        Row("app", "audio payload per 30 s", statistics.median(r[1] for r in runs) / MB, "MB", "<= 1.0"),
        Row("app", "app process peak RSS", rss.peak / MB, "MB"),
    ]


def stages(generator: Generator, quick: bool) -> dict[str, float]:
    """Median seconds of each stage of ``Studio.run`` for a 30 s request, timed directly."""
    request = GenerationRequest(seconds=5.0 if quick else 30.0)
    renderer = Renderer()
    sampler, sampling_time, times = generator.sampler, [], {}

    class TimedSampler:
        """The sampler, with the time spent in its sampling and state-advancing calls added up."""

        def __getattr__(self, name):
            method = getattr(sampler, name)
            if name not in ("sample", "sample_states", "advance"):
                return method

            def timed(*args, **kwargs):
                started = time.perf_counter()
                result = method(*args, **kwargs)
                sampling_time[-1] += time.perf_counter() - started
                return result

            return timed

    def clock(stage, run, *args, **kwargs):
        started = time.perf_counter()
        result = run(*args, **kwargs)
        times.setdefault(stage, []).append(time.perf_counter() - started)
        return result

    generator.sampler = TimedSampler()
    try:
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(2 if quick else 7):
                sampling_time.append(0.0)
                result = clock("generate", generator.generate, request)[0]
                clock("MIDI file writing", (Path(folder) / "a.mid").write_bytes, result.data)
                samples = clock("rendering (FluidSynth)", renderer.render, result.midi, max_seconds=180)
                clock("MP3 encoding (LAME)", write_audio, samples, Path(folder) / "a.mp3")
                clock("piano roll (note data)", lambda r=result: pianoroll.roll([pianoroll.of_midi(r.midi)]))
    finally:
        generator.sampler = sampler
        renderer.close()
    medians = {stage: statistics.median(values) for stage, values in times.items()}
    sampled = statistics.median(sampling_time)
    midi = medians.pop("generate") - sampled
    return {"sampling (GRU + draw)": sampled, "tokens to MIDI (objects and file bytes)": midi, **medians}


def whole_requests(generator: Generator, quick: bool) -> dict[int, float]:
    """Median seconds of ``Studio.run`` (sampling to piano roll) for 1 and 4 variations."""
    request = GenerationRequest(seconds=5.0 if quick else 30.0)
    with tempfile.TemporaryDirectory() as folder:
        studio = Studio(generator, output_root=Path(folder))
        return {variations: statistics.median(
                    best_of(1, studio.run, None, replace(request, variations=variations, random_seed=random_seed))[0]
                    for random_seed in range(2 if quick else 5))
                for variations in (1, MAX_VARIATIONS)}


def breakdown(generator: Generator, quick: bool) -> list[Row]:
    medians = stages(generator, quick)
    rows = [Row("stages", stage, seconds * 1e3, "ms") for stage, seconds in medians.items()]
    whole = whole_requests(generator, quick)
    return [*rows, Row("stages", "pipeline total (Gradio's share: see app)", sum(medians.values()) * 1e3, "ms"),
            *[Row("stages", f"Studio.run, {n} variation{'s' * (n > 1)} (median)", seconds * 1e3, "ms")
              for n, seconds in whole.items()],
            Row("stages", f"Studio.run, {MAX_VARIATIONS} variations / 1", whole[MAX_VARIATIONS] / whole[1], "x")]


# -- 5. seeds: the worst uploads the app accepts ---------------------------------------------------


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (any length: hostile files may use more than 4 bytes)."""
    return bytes(encode_variable_int(value))


def worst_upload(kind: str, limits: MidiLimits, bpm: float = 120.0, resolution: int = 960) -> bytes:
    """A type-0 file at the upload limits: the most notes (every event a note-on or note-off, no running
    status), 10 s short of the longest piece, padded with a text event to the largest size. ``spread``: notes
    evenly over the piece; ``dense end``: all but the first in its last 15 s; ``held``: every note held to
    the end, so a player started near the end hears all of them at once; ``controllers``: the events are
    sustain-pedal changes in the last 15 s but for a note at the start and one at the end."""
    notes = limits.max_events // 2 - 5
    ticks_per_second = resolution * bpm / 60
    end = round((limits.max_seconds - 10) * ticks_per_second)
    if kind == "dense end":
        first = end - round(15 * ticks_per_second)
        spans = [(0, 48)] + [(first + i * (end - first) // notes, 48) for i in range(notes - 1)]
    else:
        spans = [(i * end // notes, end // notes // 2) for i in range(notes)]
    events = []
    if kind == "controllers":
        first = end - round(15 * ticks_per_second)
        events += [(first + i * (end - first) // (2 * notes), 2, bytes([0xB0, 64, i % 128])) for i in range(2 * notes)]
        spans = [(0, 48), (end, 48)]
    for index, (start, length) in enumerate(spans):
        pitch = 24 + index % 80
        stop = end + 1 if kind == "held" else start + length
        events += [(start, 1, bytes([0x90, pitch, 20 + index % 100])), (stop, 0, bytes([0x80, pitch, 0]))]
    body, now = bytearray(b"\x00\xff\x51\x03" + round(60e6 / bpm).to_bytes(3, "big")), 0
    for tick, _, message in sorted(events):
        body += vlq(tick - now) + message
        now = tick
    padding = limits.max_bytes - len(body) - 14 - 8 - 4 - 8
    body += b"\x00\xff\x01" + vlq(padding) + b"." * padding + b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, resolution) + b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def seeds_child(weights: str, paths: dict[str, str], seconds: float, variations: int) -> dict:
    """``Studio.run`` without a seed, then with each worst upload, in a fresh process: wall time, RSS growth."""
    studio = Studio(Generator(weights, device="cpu"), output_root=Path(tempfile.mkdtemp()))
    request = GenerationRequest(seconds=seconds, variations=variations, random_seed=1)
    studio.run(None, replace(request, seconds=2.0))  # compiled code and soundfont loaded
    results = {}
    for kind, path in {"no seed": None, **paths}.items():
        with PeakRSS() as rss:
            wall = best_of(1, studio.run, path, request)[0]
        results[kind] = {"seconds": wall, "rss": rss.peak - rss.start}
    return results


def seeds(weights: Path, quick: bool) -> list[Row]:
    limits = AppLimits().upload
    seconds, variations = (5.0, 1) if quick else (AppLimits().max_seconds, MAX_VARIATIONS)
    if quick:
        limits = replace(limits, max_events=4000, max_seconds=120.0, max_bytes=32 << 10)
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for kind in ("spread", "dense end", "held", "controllers"):
            paths[kind] = str(Path(folder) / f"{kind.replace(' ', '-')}.mid")
            Path(paths[kind]).write_bytes(worst_upload(kind, limits))
        results = in_fresh_process(quick, seeds_child, str(weights), paths, seconds, variations)
    base = results.pop("no seed")
    size = f"{limits.max_bytes / 2**20:.2g} MB, {limits.max_events // 2 - 5:,} notes, {limits.max_seconds / 60:.0f} min"
    rows = [Row("seeds", f"Studio.run, {seconds:.0f} s x {variations} variations, no seed", base["seconds"], "s")]
    for kind, r in results.items():
        rows += [Row("seeds", f"  worst upload ({size}), {kind}", r["seconds"], "s"),
                 Row("seeds", "    / no seed", r["seconds"] / base["seconds"], "x"),
                 Row("seeds", "    peak RSS growth during the request", r["rss"] / MB, "MB")]
    return rows


# -- 6. GPU --------------------------------------------------------------------------------------


def gpu(ck, tokenizer, quick: bool) -> list[Row]:
    if not torch.cuda.is_available():
        return [Row("gpu", "TorchSampler on CUDA", "skipped: no CUDA device")]
    import warnings

    steps = 128 if quick else 2048
    sampler = TorchSampler(ck, tokenizer, "cuda")
    prompt = [BOS, tokenizer.vocab.encode("TEMPO", 10)]
    settings = SamplingSettings(max_notes=2**31 - 1, max_tokens=steps)
    rows = [Row("gpu", "device", torch.cuda.get_device_name())]
    for batch in (1, 4):
        sampler.sample(prompt, SamplingSettings(max_tokens=8), batch, 0)
        seconds = best_of(3, sampler.sample, prompt, settings, batch, 1)[0]
        rows.append(Row("gpu", f"batch {batch}: time per step", seconds / steps * 1e6, "µs"))
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler.sample(prompt, settings, 1, 2)
    torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    rows.append(Row("gpu", f"host syncs in {steps} steps (design: one per {sampler.sync_every} + the end)",
                    float(syncs), "", f"<= {steps // sampler.sync_every + 8}"))
    shape = ("--batch-size", "8", "--length", "64", "--steps", "3") if quick else ("--steps", "20")
    model = ("--model", json.dumps({k: v for k, v in asdict(ck.model_config).items() if k != "vocab_size"}))
    plain = torchrun_throughput(1, 1, "--device", "cuda", "--plain", *model, *shape)
    fast = torchrun_throughput(1, 1, "--device", "cuda", *model, *shape)
    rows += [Row("gpu", "training, float32, AdamW (foreach)", plain["tokens_per_s_per_process"], "tokens/s per GPU"),
             Row("gpu", f"training, bf16 autocast {fast['bf16']}, fused AdamW {fast['fused']}",
                 fast["tokens_per_s_per_process"], "tokens/s per GPU"),
             Row("gpu", "training speedup of bf16 + fused", fast["tokens_per_s"] / plain["tokens_per_s"], "x")]
    return rows


# -- 7. training, on one process and on several -----------------------------------------------------


def train_child(model_config, batches: int, batch_size: int, length: int) -> dict:
    """The training step of midigen.train on random tokens, in a fresh process (for its peak RSS)."""
    config = TrainConfig()
    model = MidiGRU(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    block = torch.randint(3, model_config.vocab_size, (batch_size, length + 1))
    inputs, targets = block[:, :-1], block[:, 1:]

    def step():
        return train_step(model, optimizer, inputs, targets, config.grad_clip)

    step()
    started = time.perf_counter()
    for _ in range(batches):
        step()
    elapsed = time.perf_counter() - started
    return {"tokens_per_s": batches * batch_size * length / elapsed, "threads": torch.get_num_threads(),
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def training(ck, quick: bool, tokens_per_note: float) -> list[Row]:
    config = TrainConfig()
    batches, batch_size, length = (2, 4, 64) if quick else (5, config.batch_size, config.sequence_length)
    r = in_fresh_process(quick, train_child, ck.model_config, batches, batch_size, length)
    return [Row("training", f"throughput (batch {batch_size} x {length}, {r['threads']} threads)",
                r["tokens_per_s"], "tokens/s"),
            Row("training", f"throughput (at {tokens_per_note:.2f} tokens per sampled note)",
                r["tokens_per_s"] / tokens_per_note, "notes/s"),
            Row("training", "trainer peak RSS", r["peak_rss"] / MB, "MB")]


# -- 8. MIDI loading -----------------------------------------------------------------------------


def midi_bytes(messages: list, ticks_per_beat: int = 480) -> bytes:
    """A type-0 MIDI file of ``messages`` (mido writes running status)."""
    file = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    file.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    file.save(file=buffer)
    return buffer.getvalue()


def presses(pitches, step: int, length: int) -> list:
    """A note-on/note-off pair per pitch, one every ``step`` ticks."""
    out = []
    for index, pitch in enumerate(pitches):
        out.append(mido.Message("note_on", note=pitch, velocity=100, time=0 if index == 0 else step - length))
        out.append(mido.Message("note_off", note=pitch, velocity=64, time=length))
    return out


def midi_loading(quick: bool) -> list[Row]:
    """``load_midi`` on the heaviest uploads its limits refuse (each within 1.5 s) and on a large legal file
    (within 10 s), against pretty_midi parsing the same bytes without any check (sizes are the limits'
    own, so --quick keeps them and only skips that baseline)."""
    repeats = 1 if quick else 3
    files = {  # (bytes, whether load_midi accepts it)
        "100,001 note-ons (over the note limit)":
            (midi_bytes([mido.Message("note_on", note=60, velocity=100, time=1)] * 100_001), False),
        "200,002 events (over the event limit)": (midi_bytes(presses([60] * 100_001, 1, 1)), False),
        "99,000 notes (legal)": (midi_bytes(presses([48 + i % 24 for i in range(99_000)], 2, 1)), True),
    }
    rows = []
    for label, (data, legal) in files.items():
        def load(data=data, legal=legal):
            try:
                load_midi(data)
            except MidiError:
                assert not legal, "a legal file was refused"
                return
            assert legal, "a file over the limits was loaded"

        seconds = best_of(repeats, load)[0]
        target = "" if quick else ("<= 10" if legal else "<= 1.5")
        rows.append(Row("midi_io", f"load_midi, {label}: {'loaded' if legal else 'refused'} in", seconds, "s", target))
        if not quick:  # slow: timed once
            parsed = best_of(1, lambda data=data: pretty_midi.PrettyMIDI(io.BytesIO(data)))[0]
            rows.append(Row("midi_io", f"  / PrettyMIDI parsing it unchecked ({parsed:.2f} s)", seconds / parsed, "x"))
    return rows


def torchrun_throughput(processes: int, threads: int, *args: str) -> dict:
    """benchmarks/train_throughput.py under torchrun: its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(ROOT / "benchmarks" / "train_throughput.py"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode:
        raise RuntimeError((result.stderr.strip().splitlines() or ["torchrun failed"])[-1])
    return json.loads(result.stdout.strip().splitlines()[-1])


def parallel_training(ck, quick: bool) -> list[Row]:
    """Training tokens/s with 1 process (1 thread, then all cores as threads) against 2 processes (the cores
    shared out)."""
    cores = usable_cores()
    shape = ("--batch-size", "8", "--length", "64", "--steps", "2") if quick else ("--steps", "5")
    model = ("--model", json.dumps({k: v for k, v in asdict(ck.model_config).items() if k != "vocab_size"}))
    single = torchrun_throughput(1, 1, "--device", "cpu", *model, *shape)
    one = torchrun_throughput(1, cores, "--device", "cpu", *model, *shape)
    two = torchrun_throughput(2, max(1, cores // 2), "--device", "cpu", *model, *shape)
    return [Row("parallel", "1 process, 1 thread", single["tokens_per_s"], "tokens/s"),
            Row("parallel", f"1 process, {one['threads']} threads", one["tokens_per_s"], "tokens/s"),
            Row("parallel", f"2 processes (gloo), {two['threads']} thread(s) each", two["tokens_per_s"], "tokens/s"),
            Row("parallel", f"2 processes / 1 process with {one['threads']} threads",
                two["tokens_per_s"] / one["tokens_per_s"], "x")]


# -- 9. prepare ----------------------------------------------------------------------------------


def prepare_speed(data: Path, quick: bool) -> list[Row]:
    """``prepare`` from scratch on one process, then on every usable core, then a re-run with nothing new."""
    if not data.is_dir():
        return [Row("prepare", "files per second", f"skipped: no folder {data}")]
    files = midi_files(data)[: 8 if quick else None]
    cores = usable_cores()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "midi"
        for path in files:  # links, so that --quick can take a few files
            link = folder / path.relative_to(data)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
        rates = {}
        for workers in (1, cores):
            started = time.perf_counter()
            prepare(folder, Path(scratch) / f"cache-{workers}", workers=workers, progress=False)
            rates[workers] = len(files) / (time.perf_counter() - started)
        started = time.perf_counter()
        report = prepare(folder, Path(scratch) / f"cache-{cores}", workers=cores, progress=False)
        rerun = time.perf_counter() - started
    return [Row("prepare", f"{len(files)} files, 1 process", rates[1], "files/s"),
            Row("prepare", f"{len(files)} files, {cores} processes (all usable cores)", rates[cores], "files/s"),
            Row("prepare", f"{cores} processes / 1", rates[cores] / rates[1], "x"),
            Row("prepare", f"re-run, nothing changed ({report.tokenized} tokenized)", rerun * 1e3, "ms")]


# -- 10. training memory ---------------------------------------------------------------------------


def synthetic_pieces(count: int, tokenizer: Tokenizer) -> list[Piece]:
    """``count`` made-up piano pieces of 400 to 1,400 notes (chords, rests, changing loudness)."""
    rng = np.random.default_rng(0)
    pieces = []
    for index in range(count):
        notes = 400 + index * 1000 // max(count - 1, 1)
        starts = np.cumsum(rng.choice([0, 0, 3, 6, 12], notes))
        score = Score([Note(int(p), int(s), int(d), int(v)) for p, s, d, v in zip(
            rng.integers(36, 96, notes), starts, rng.choice([3, 6, 12, 24], notes), rng.integers(30, 120, notes),
            strict=True)])
        pieces.append(Piece(f"piece{index}", np.asarray(tokenizer.score_to_tokens(score), dtype=np.int64), notes))
    return pieces


def traced_peak(run, *args) -> int:
    """Peak tracemalloc bytes (Python objects and NumPy arrays) while ``run(*args)`` runs, from empty free lists."""
    gc.collect()
    tracemalloc.start()
    try:
        run(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def one_epoch(pieces: list[Piece], config: TrainConfig, tokenizer: Tokenizer) -> None:
    for _ in stream_batches(pieces, config, tokenizer, random.Random(0)):
        pass


def training_memory(tokenizer: Tokenizer, data: Path, quick: bool) -> list[Row]:
    """Peak memory of one epoch's batches (built as ``train`` builds them) for a collection and for 8 copies of
    it, the tokens made beforehand: made-up pieces, then the shared collection's token cache (full run only)."""
    config = TrainConfig(batch_size=4, sequence_length=64) if quick else TrainConfig()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        collections = {"made-up pieces": synthetic_pieces(8 if quick else 64, tokenizer)}
        if not quick and data.is_dir():
            prepare(data, Path(folder), tokenizer.config, progress=False)
            collections[f"{data.name} token cache"] = [Piece(*piece) for piece in TokenCache(folder).pieces()]
        for label, pieces in collections.items():
            tokens = sum(len(p.tokens) for p in pieces)
            epoch = [traced_peak(one_epoch, pieces * copies, config, tokenizer) for copies in (1, 8)]
            rows += [Row("training_memory", f"{label}, {len(pieces)} pieces ({tokens:,} tokens): one epoch's peak",
                         epoch[0] / MB, "MB"),
                     Row("training_memory", f"  8 copies ({8 * len(pieces)} pieces): one epoch's peak", epoch[1] / MB,
                         "MB"),
                     Row("training_memory", "  8 copies / 1", epoch[1] / epoch[0], "x", "" if quick else "<= 1.5")]
    return rows


# -- live: first sound in the browser, endless listeners -------------------------------------------


def endless_cost(generator: Generator, minutes: float) -> dict[str, float]:
    """CPU seconds of this process per minute of endless music (writing, synthesis, MP3), in-process."""
    from midigen.endless import EndlessStream
    from midigen.live import EndlessLive

    live = EndlessLive(EndlessStream(generator, GenerationRequest(seconds=1, random_seed=1)), 0, minutes * 60)
    audio, last, started = 0, False, time.process_time()
    while not last:
        data, last = live.next_frame()
        audio += len(data)
    live.close()
    cpu = time.process_time() - started
    return {"cpu_per_minute": cpu / minutes, "mb_per_minute": audio / MB / minutes}


FIRST_SOUND = """() => window.midigenLive && window.midigenLive.firstSound.length > window.__heard"""
SUMMARY_TEXT = """() => [...document.querySelectorAll('[data-testid=markdown]')].map(e => e.innerText)
                          .find(t => t.includes('ready in')) || ''"""
NEW_SUMMARY = f"(before) => {{ const text = ({SUMMARY_TEXT})(); return text && text !== before; }}"
# Every player has decoded its audio and drawn it (WaveSurfer shows a duration): the page is idle again.
PLAYERS_DRAWN = """(count) => [...document.querySelectorAll('time')].map(t => t.textContent.trim())
                                .filter(t => /^[0-9]+:[0-9]+$/.test(t) && t !== '0:00').length >= count"""


def first_sounds(url: str, requests: list[tuple[int, int]], tries: int) -> dict[tuple[int, int], float]:
    """Median milliseconds from the click on Generate to the live player's first sound, in Chromium, for each
    (seconds, variations); the requests take turns, so the machine's drift touches them alike."""
    from app_testkit import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    clock = ("window.__click = 0; document.addEventListener('click', e => { if (e.target.closest('button')) "
             "window.__click = performance.now(); }, true);")
    times: dict[tuple[int, int], list[float]] = {request: [] for request in requests}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.add_init_script(clock)
        page.goto(url)
        generate = page.get_by_role("button", name="Generate", exact=True)
        generate.wait_for()
        for attempt in range(tries + 1):  # the first round warms up
            for seconds, variations in requests:
                for label, value in (("Length (seconds)", seconds), ("Variations", variations)):
                    box = page.get_by_label(f"number input for {label}")
                    box.fill(str(value))
                    box.press("Enter")
                # as a listener would: the last piece paused, then Generate
                page.evaluate("() => { const live = window.midigenLive || {firstSound: []}; "
                              "if (live.audio) live.audio.pause(); window.__heard = live.firstSound.length; }")
                before = page.evaluate(SUMMARY_TEXT)
                generate.click()
                page.wait_for_function(FIRST_SOUND, timeout=60_000)
                heard = page.evaluate("() => window.midigenLive.firstSound.at(-1) - window.__click")
                page.wait_for_function(NEW_SUMMARY, arg=before, timeout=60_000)
                page.wait_for_function(PLAYERS_DRAWN, arg=variations, timeout=60_000)
                if attempt:
                    times[(seconds, variations)].append(heard)
        browser.close()
    return {request: float(statistics.median(values)) for request, values in times.items()}


def listen(url: str, seconds: float, stop: threading.Event) -> int:
    """One endless listener: start a stream through the ``/endless`` API and read it for ``seconds``; bytes read."""
    import httpx
    from gradio_client import Client

    address = Client(url, verbose=False, ssl_verify=False).predict(seed_file=None, api_name="/endless")
    received, ended = 0, time.monotonic() + seconds
    with httpx.stream("GET", url + address, timeout=30) as response:
        for chunk in response.iter_raw():
            received += len(chunk)
            if time.monotonic() > ended or stop.is_set():
                break
    return received


def live(generator: Generator, weights: Path, quick: bool) -> list[Row]:
    """First sound of Generate in the browser against the length asked; endless CPU per listener-minute; /generate
    latency with and without endless listeners, in one run."""
    cost = endless_cost(generator, 0.5 if quick else 10.0)
    rows = [
        Row("live", "endless: CPU per minute of music (write, synthesize, MP3; in-process)", cost["cpu_per_minute"],
            "s"),
        Row("live", "endless: listeners one core holds (in-process)", 60 / cost["cpu_per_minute"], "", "" if quick
            else ">= 50"),
        Row("live", "endless: stream size", cost["mb_per_minute"], "MB/min"),
    ]
    if quick:
        return [*rows, Row("live", "browser and server figures", "skipped in --quick (starts a server)")]
    with tempfile.TemporaryDirectory() as folder, running_app(Path(folder), {"MIDIGEN_WEIGHTS": str(weights)}) as app:
        url = app.url
        sounds = first_sounds(url, [(5, 1), (30, 1), (60, 1), (60, 4)], tries=5)
        rows += [Row("live", f"first sound after the click, {s} s x {v} (Chromium, median of 5)", ms, "ms",
                     "<= 500" if v == 1 else "") for (s, v), ms in sounds.items()]
        rows.append(Row("live", "first sound, 60 s / 5 s", sounds[(60, 1)] / sounds[(5, 1)], "x", "<= 1.3"))

        server = psutil.Process(app.pid)
        timed_requests(url, 2)
        idle_before = sum(server.cpu_times()[:2])
        time.sleep(20)
        idle = sum(server.cpu_times()[:2]) - idle_before
        alone, shared, received, busy = [], [], [], 0.0
        for _ in range(2):  # alone and with listeners, in turn, so that the machine's drift touches both
            with ThreadPoolExecutor(4) as pool:
                alone += [r[0] for batch in pool.map(lambda _: timed_requests(url, 8), range(4)) for r in batch]
            stop = threading.Event()
            with ThreadPoolExecutor(8) as pool:
                listeners = [pool.submit(listen, url, 600, stop) for _ in range(4)]
                time.sleep(3)  # the streams are playing
                busy_before = sum(server.cpu_times()[:2])
                time.sleep(10)
                busy += sum(server.cpu_times()[:2]) - busy_before
                shared += [r[0] for batch in pool.map(lambda _: timed_requests(url, 8), range(4)) for r in batch]
                stop.set()
                received += [job.result() for job in listeners]
    per_listener_minute = (busy - idle) / 4 / (20 / 60)  # 2 x 10 s with listeners against 20 s idle
    p95_alone, p95_shared = float(np.percentile(alone, 95)), float(np.percentile(shared, 95))
    return rows + [
        Row("live", "endless: server CPU per listener-minute (4 listeners, 2 x 10 s, less idle)", per_listener_minute,
            "s"),
        Row("live", "endless: listeners one core holds (server)", 60 / max(per_listener_minute, 1e-9), "", ">= 50"),
        Row("live", "/generate 30 s, 4 clients x 16: p95 alone", p95_alone, "s"),
        Row("live", "/generate 30 s, 4 clients x 16: p95 with 4 endless listeners", p95_shared, "s"),
        Row("live", "  ratio", p95_shared / p95_alone, "x", "<= 1.5"),
        Row("live", "endless listeners: bytes each", statistics.median(received) / MB, "MB"),
    ]


# -- duet: a key's sound and the answer's, in Chromium ---------------------------------------------------------------


def duet_in_chromium(url: str, tries: int) -> dict[str, list[float]]:
    """Per key pressed, ms from its keydown to its sound (audio clock; and the event's timeStamp to the start call,
    page clock); per phrase (C E G C, then the 1 s pause), ms from the end of the pause to the answer's first sound.
    The first phrase warms up."""
    import duet_testkit as kit
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"audio": [], "page": [], "answer": []}
    with sync_playwright() as playwright:
        browser = kit.launch(playwright)
        page = browser.new_page()
        page.add_init_script(kit.SOUND_HOOK)
        kit.open_duet(page, url)
        for attempt in range(tries + 1):
            kit.play_keys(page, kit.C_E_G_C_KEYS)
            page.wait_for_function(kit.ANSWERED, arg=attempt + 1, timeout=30_000)
            if attempt:
                for index in range(attempt * 4, attempt * 4 + 4):
                    audio_ms, page_ms = kit.key_latency_ms(page, index)
                    times["audio"].append(audio_ms)
                    times["page"].append(page_ms)
                times["answer"].append(kit.answer_latency_ms(page))
        browser.close()
    return times


def duet(generator: Generator, weights: Path, quick: bool) -> list[Row]:
    """The Duet tab: the samples' rendering and an answer's writing in-process, then key press to sound and pause
    end to answer in Chromium against the real app."""
    from midigen.duet import AnswerSettings, Duet, phrase_from_notes
    from midigen.samples import render_samples

    render_ms = 1000 * best_of(3, render_samples)[0]
    phrase = [{"pitch": pitch, "velocity": 80, "start": 0.5 * i, "end": 0.5 * i + 0.45}
              for i, pitch in enumerate((60, 64, 67, 72))]
    answering, writer = [], Duet(generator)
    for random_seed in range(11):
        started = time.perf_counter()
        writer.answer(phrase_from_notes(phrase), AnswerSettings(random_seed=random_seed))
        answering.append(1000 * (time.perf_counter() - started))
    rows = [Row("duet", "keyboard samples: render one soundfont (FluidSynth, in-process, best of 3)", render_ms, "ms"),
            Row("duet", "answer, 2 bars to C E G C: write (in-process, p50 of 10)", statistics.median(answering[1:]),
                "ms")]
    if quick:
        return [*rows, Row("duet", "browser figures", "skipped in --quick (starts a server)")]
    with tempfile.TemporaryDirectory() as folder, running_app(Path(folder), {"MIDIGEN_WEIGHTS": str(weights)}) as app:
        times = duet_in_chromium(app.url, tries=10)
    for name, what, target in (("audio", "key press -> sound, audio clock", "<= 30"),
                               ("page", "key press -> start(), event.timeStamp to performance.now()", "<= 30"),
                               ("answer", "pause end -> answer's first sound (server round trip included)", "<= 250")):
        rows += [Row("duet", f"{what} (Chromium, p50 of {len(times[name])})", statistics.median(times[name]), "ms",
                     target),
                 Row("duet", f"{what} (Chromium, max)", max(times[name]), "ms", target)]
    return rows


def styles_child(quick: bool) -> list[Row]:
    """What the styles cost: memory and time to load the others after the default (as the app does in the
    background), Auto's choice for a seed, and each model's sampling speed against the default's."""
    from midigen.style_choice import StyleBook

    process = psutil.Process()
    book = StyleBook("cpu")
    request = GenerationRequest(notes=200, seconds=None, random_seed=0)
    book.generate(request)
    before, started = process.memory_info().rss, time.perf_counter()
    book.load_all()
    loaded = time.perf_counter() - started
    book.generate(replace(request, style=book.names[-1]))
    rows = [Row("styles", f"load {len(book.names) - 1} more styles", loaded * 1e3, "ms"),
            Row("styles", "RSS added by them (loaded and sampled once)", (process.memory_info().rss - before) / MB,
                "MB", "<= 150")]
    seed_score = book.generate(replace(request, notes=150))[0].continuation
    picks = [best_of(1, book.pick, seed_score)[0] for _ in range(3 if quick else 20)]
    rows.append(Row("styles", f"Auto's choice for a 150-note seed, {len(book.names)} styles (median)",
                    statistics.median(picks) * 1e3, "ms"))
    notes = 100 if quick else 1000
    base = None
    for name in book.names:
        wall, _, pieces = best_of(1 if quick else 3, book.generate,
                                  GenerationRequest(notes=notes, seconds=None, random_seed=1, style=name))
        per_token = wall / max(len(pieces[0].tokens), 1) * 1e6
        base = base or per_token
        rows.append(Row("styles", f"{name}: sampling, µs per token (against game-piano)",
                        f"{per_token:.1f} ({per_token / base:.2f}x)"))
    return rows


SECTIONS = ("sampling", "variations", "rendering", "app", "stages", "seeds", "gpu", "training", "midi_io", "parallel",
            "prepare", "training_memory", "live", "duet", "styles")


# -- report --------------------------------------------------------------------------------------


def show(value) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def print_table(rows: list[Row]) -> None:
    lines = [("section", "metric", "value", "unit", "target", "")]
    for r in rows:
        verdict = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append((r.section, r.metric, show(r.value), r.unit, r.target, verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    for line in lines:
        cells = [c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        print("  ".join(cells).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, no targets: a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--data", type=Path, default=SHARED_DATA,
                        help="MIDI collection for the prepare and training_memory sections")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    weights, described = weights_path(Path(scratch.name))
    generator = Generator(weights, device="cpu")
    ck, tokenizer = generator.checkpoint, generator.tokenizer
    rows: list[Row] = []

    def section(name, run):
        if args.only and name not in args.only:
            return None
        started = time.perf_counter()
        try:
            result = run()
        except Exception as error:  # a broken section is reported, the others still run
            rows.append(Row(name, "error", f"{type(error).__name__}: {error}"))
            return None
        print(f"[{name}: {time.perf_counter() - started:.1f} s]", file=sys.stderr)
        return result

    sampled = section("sampling", lambda: sampling(ck, tokenizer, args.quick))
    if sampled:
        rows += sampled[0]
    rows += section("variations", lambda: variations(ck, tokenizer, args.quick)) or []
    rows += section("rendering", lambda: rendering(generator, args.quick)) or []
    rows += section("app", lambda: end_to_end(weights, args.quick)) or []
    rows += section("stages", lambda: breakdown(generator, args.quick)) or []
    rows += section("seeds", lambda: seeds(weights, args.quick)) or []
    rows += section("gpu", lambda: gpu(ck, tokenizer, args.quick)) or []
    rows += section("training", lambda: training(ck, args.quick, sampled[1] if sampled else TOKENS_PER_NOTE)) or []
    rows += section("midi_io", lambda: midi_loading(args.quick)) or []
    rows += section("parallel", lambda: parallel_training(ck, args.quick)) or []
    rows += section("prepare", lambda: prepare_speed(args.data, args.quick)) or []
    rows += section("training_memory", lambda: training_memory(tokenizer, args.data, args.quick)) or []
    rows += section("live", lambda: live(generator, weights, args.quick)) or []
    rows += section("duet", lambda: duet(generator, weights, args.quick)) or []
    rows += section("styles", lambda: in_fresh_process(args.quick, styles_child, args.quick)) or []
    print(f"midigen benchmarks ({'quick' if args.quick else 'full'}; {described}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "weights": described, "rows": [asdict(r) for r in rows]},
                                        indent=1) + "\n")
    if any(row.metric == "error" for row in rows):
        sys.exit("some benchmark sections failed (rows marked error)")


if __name__ == "__main__":
    main()
