"""What the web app does for one click, independent of the UI toolkit.

``Studio.run`` loads the seed safely, samples, writes the MIDI, renders audio and draws the
piano roll into a fresh per-request folder. (The settings are checked before, in ``settings``.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pretty_midi

from . import pianoroll
from .generate import Generated, GenerationRequest, Generator
from .midi_io import MidiLimits, load_midi, trim_to_last
from .render import RenderUnavailable, get_renderer, write_audio
from .settings import UserError, setting


@dataclass(frozen=True)
class AppLimits:
    """Bounds that protect the public app (the CLI has none of these)."""

    max_seconds: float = setting("seconds").high
    max_variations: int = setting("variations").high
    max_seed_notes: int = 1000
    max_seed_seconds: float = 90.0
    upload: MidiLimits = field(default_factory=MidiLimits)
    output_max_age_s: float = 900.0


@dataclass
class StudioResult:
    """Files and facts of one run, all inside ``folder``."""

    folder: Path
    midi_paths: list[Path]
    audio_paths: list[Path]
    roll: dict  # pianoroll.roll: the notes the page draws
    random_seed: int
    summary: str
    notices: list[str]


class Studio:
    """The loaded model plus the per-request pipeline."""

    def __init__(self, generator: Generator, output_root: Path | None = None, limits: AppLimits | None = None):
        self.generator = generator
        self.limits = limits or AppLimits()
        self.output_root = output_root or Path(tempfile.gettempdir()) / "midigen-outputs"
        self.output_root.mkdir(parents=True, exist_ok=True)

    def load_seed(self, path: str | Path | None) -> tuple[object | None, list[str]]:
        """The uploaded seed, validated and cut to its last part if long (with a notice)."""
        if not path:
            return None, []
        try:
            midi = load_midi(path, self.limits.upload)
        except ValueError as error:
            raise UserError(str(error)) from None
        midi, trimmed = trim_to_last(midi, self.limits.max_seed_notes, self.limits.max_seed_seconds)
        notice = (f"The seed was long: only its last {self.limits.max_seed_notes} notes / "
                  f"{self.limits.max_seed_seconds:.0f} seconds are used.")
        return midi, [notice] if trimmed else []

    def run(self, seed_path, request: GenerationRequest, sample: Callable | None = None,
            progress: Callable[[float, str], None] | None = None) -> StudioResult:
        """Generate, write and render. ``sample(request, seed_midi) -> (pieces, notices)`` decides where
        sampling runs (``device.ZeroGpuSampler``); by default this studio's generator samples."""
        progress = progress or (lambda fraction, message: None)
        started = time.perf_counter()
        self.sweep()
        progress(0.05, "Reading the seed")
        seed_midi, notices = self.load_seed(seed_path)
        progress(0.15, "Composing")
        results: list[Generated]
        if sample is None:
            results = self.generator.generate(request, seed_midi)
        else:
            results, sample_notices = sample(request, seed_midi)
            notices += sample_notices
        sampled = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.output_root))
        stems = [folder / f"midigen-{result.random_seed}-{index}" for index, result in enumerate(results, start=1)]
        midi_paths, audio_paths = [stem.with_suffix(".mid") for stem in stems], []
        for result, midi_path in zip(results, midi_paths, strict=True):
            result.midi.write(str(midi_path))
        progress(0.5, "Rendering audio")
        try:
            renderer = get_renderer()
            encoded = []
            with ThreadPoolExecutor(1, thread_name_prefix="midigen-encode") as encoder:
                for result, stem in zip(results, stems, strict=True):
                    # LAME encodes this variation while FluidSynth renders the next (both release the GIL)
                    samples = renderer.render(result.midi, max_seconds=self.limits.max_seconds * 3)
                    encoded.append(encoder.submit(write_audio, samples, stem.with_suffix(".mp3")))
            audio_paths = [job.result() for job in encoded]
        except RenderUnavailable as error:
            notices.append(f"Audio is unavailable on this server ({error}); the MIDI and piano roll still work.")
        progress(0.9, "Drawing the piano roll")
        roll = pianoroll.roll([pianoroll.lane(r.midi, self._boundary(r, request)) for r in results])
        elapsed = time.perf_counter() - started
        first = results[0]
        summary = (
            f"{len(first.continuation.notes)} new notes"
            + (f" after {len(first.seed.notes)} seed notes" if first.seed.notes else "")
            + f", {first.seconds:.1f} s at {first.midi.get_tempo_changes()[1][0]:.0f} BPM"
            + (f", {len(results)} variations" if len(results) > 1 else "")
            + f". Random seed {first.random_seed}. Composed in {sampled - started:.2f} s, ready in {elapsed:.2f} s."
        )
        return StudioResult(folder, midi_paths, audio_paths, roll, first.random_seed, summary, notices)

    def _boundary(self, result: Generated, request: GenerationRequest) -> float:
        """Seconds into the output where the new music starts."""
        if request.continuation_only or not result.continuation.notes:
            return 0.0 if request.continuation_only else result.seconds
        steps_per_second = self.generator.tokenizer.config.steps_per_beat * result.continuation.bpm / 60.0
        return result.continuation.notes[0].start / steps_per_second

    def sweep(self) -> None:
        """Remove request folders older than ``output_max_age_s``."""
        cutoff = time.time() - self.limits.output_max_age_s
        for folder in self.output_root.glob("request-*"):
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue

    def new_folder(self) -> Path:
        """A fresh request folder (swept like the others)."""
        return Path(tempfile.mkdtemp(prefix="request-", dir=self.output_root))

    def write_seed(self, data: bytes, name: str) -> Path:
        """A seed file made from MIDI bytes kept in a page's history, for Continue."""
        path = self.new_folder() / Path(name).name
        path.write_bytes(data)
        return path

    def restore(self, takes: list[bytes], names: list[str]) -> tuple[list[Path], list[Path]]:
        """A step's files made again from its bytes, after the sweep removed them: MIDI and audio.
        (The bytes are the app's own output, kept in the server-side session state.)"""
        folder = self.new_folder()
        midi_paths = [folder / Path(name).name for name in names]
        for data, path in zip(takes, midi_paths, strict=True):
            path.write_bytes(data)
        audio_paths = []
        try:
            renderer = get_renderer()
            for path in midi_paths:
                samples = renderer.render(pretty_midi.PrettyMIDI(str(path)), max_seconds=self.limits.max_seconds * 3)
                audio_paths.append(write_audio(samples, path.with_suffix(".mp3")))
        except RenderUnavailable:
            audio_paths = []
        return midi_paths, audio_paths

    @staticmethod
    def keep(paths: list[str | Path]) -> bool:
        """Mark the files and their folders as just used, so the sweep leaves them; False if one is gone."""
        try:
            for path in {Path(p) for p in paths} | {Path(p).parent for p in paths}:
                os.utime(path)
        except FileNotFoundError:
            return False
        return True
