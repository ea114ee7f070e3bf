"""What the web app does for one click, independent of the UI toolkit.

``clean_settings`` turns whatever arrives from the page or the API into a valid
``GenerationRequest`` (clamping numbers to the documented ranges, rejecting
non-numbers); ``Studio.run`` loads the seed safely, samples, writes the MIDI,
renders audio and draws the piano roll into a fresh per-request folder. The MIDI
holds the whole seed; audio and piano roll may start shortly before the new music.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import pianoroll
from .generate import MAX_RANDOM_SEED, Generated, GenerationRequest, Generator
from .midi_io import MidiLimits, read_midi, trim_to_last
from .render import RenderUnavailable, get_renderer, write_audio
from .splice import Seed, excerpt

# Audio and piano roll start this long before the new music, or later if the seed has more events (notes,
# controller changes, pitch bends) in that time; the MIDI file holds all. So long or dense seeds cost no more
# to render and draw than short ones.
PREVIEW_SEED_SECONDS = 15.0
PREVIEW_SEED_EVENTS = 3000
PREVIEW_HELD_NOTES = 64  # at most this many of the notes still held where the preview starts sound in it


class UserError(ValueError):
    """A problem the user can fix; the message is shown as is."""


@dataclass(frozen=True)
class AppLimits:
    """Bounds that protect the public app (the CLI has none of these)."""

    max_seconds: float = 60.0
    max_variations: int = 4
    max_seed_notes: int = 1000
    max_seed_seconds: float = 90.0
    upload: MidiLimits = field(default_factory=MidiLimits)
    output_max_age_s: float = 900.0


RANGES = {
    "temperature": (0.05, 2.0),
    "top_p": (0.05, 1.0),
    "seconds": (1.0, 60.0),
    "bpm": (40.0, 240.0),
    "program": (0, 127),
    "random_seed": (0, MAX_RANDOM_SEED),
    "variations": (1, 4),
}


def _number(name: str, value, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{name} must be a number") from None
    if not math.isfinite(number):
        raise UserError(f"{name} must be a finite number")
    if integer and number != int(number):
        raise UserError(f"{name} must be a whole number")
    low, high = RANGES[name]
    number = min(max(number, low), high)
    return int(number) if integer else number


def _flag(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", 1):
        return True
    if value in ("false", "False", 0, None):
        return False
    raise UserError(f"{name} must be true or false")


def clean_settings(temperature, top_p, seconds, bpm, program, random_seed, randomize, variations,
                   keep_seed) -> GenerationRequest:
    """A valid request from raw values: numbers are clamped to ``RANGES``; a bpm of 0
    or empty means automatic; non-numbers, NaN and infinities are rejected."""
    automatic_bpm = bpm is None or bpm == "" or (not isinstance(bpm, bool) and bpm == 0)
    return GenerationRequest(
        temperature=_number("temperature", temperature),
        top_p=_number("top_p", top_p),
        seconds=_number("seconds", seconds),
        notes=None,
        bpm=None if automatic_bpm else _number("bpm", bpm),
        program=_number("program", program, integer=True),
        random_seed=None if _flag("randomize", randomize) else _number("random_seed", random_seed, integer=True),
        variations=_number("variations", variations, integer=True),
        continuation_only=not _flag("keep_seed", keep_seed),
    )


@dataclass
class StudioResult:
    """Files and facts of one run, all inside ``folder``."""

    folder: Path
    midi_paths: list[Path]
    audio_paths: list[Path]
    pianoroll_path: Path
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

    def load_seed(self, path: str | Path | None) -> tuple[Seed | None, list[str]]:
        """The uploaded seed, validated; the model reads only its last part if it is long (with a notice)."""
        if not path:
            return None, []
        try:
            file = read_midi(path, self.limits.upload)
        except ValueError as error:
            raise UserError(str(error)) from None
        part = trim_to_last(file.midi, self.limits.max_seed_notes, self.limits.max_seed_seconds)
        notice = (f"The seed was long: the music continues from its last {self.limits.max_seed_notes} notes / "
                  f"{self.limits.max_seed_seconds:.0f} seconds. With the seed kept, the MIDI file holds all of it.")
        return Seed(file, part.midi, part.start), [notice] if part.trimmed else []

    def run(self, seed_path, request: GenerationRequest, sample: Callable | None = None,
            progress: Callable[[float, str], None] | None = None) -> StudioResult:
        """Generate, write and render; ``sample(request, seed)`` defaults to the CPU generator."""
        progress = progress or (lambda fraction, message: None)
        started = time.perf_counter()
        self.sweep()
        progress(0.05, "Reading the seed")
        seed, notices = self.load_seed(seed_path)
        progress(0.15, "Composing")
        results: list[Generated] = (sample or self.generator.generate)(request, seed)
        sampled = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.output_root))
        stems = [folder / f"midigen-{result.random_seed}-{index}" for index, result in enumerate(results, start=1)]
        midi_paths, audio_paths = [stem.with_suffix(".mid") for stem in stems], []
        for result, midi_path in zip(results, midi_paths, strict=True):
            midi_path.write_bytes(result.data)
        kept = seed is not None and not request.continuation_only
        first = results[0]
        if kept and request.bpm:
            notices.append(f"The new music keeps the seed's tempo ({seed.bpm:.0f} BPM); the Tempo setting applies "
                           "when the seed is left out.")
        preview_start = _preview_start(seed) if kept else 0.0
        if preview_start:
            notices.append(f"Audio and piano roll start {round(seed.last_onset - preview_start, 1):g} s before the new "
                           f"music, at {_clock(preview_start)}; the MIDI file holds the whole piece "
                           f"({_clock(first.seconds)}).")
        previews = [excerpt(result.midi, preview_start, PREVIEW_HELD_NOTES) for result in results]
        progress(0.5, "Rendering audio")
        try:
            renderer = get_renderer()
            encoded = []
            with ThreadPoolExecutor(1, thread_name_prefix="midigen-encode") as encoder:
                for preview, stem in zip(previews, stems, strict=True):
                    # LAME encodes this variation while FluidSynth renders the next (both release the GIL)
                    samples = renderer.render(preview, max_seconds=self.limits.max_seconds * 3)
                    encoded.append(encoder.submit(write_audio, samples, stem.with_suffix(".mp3")))
            audio_paths = [job.result() for job in encoded]
        except RenderUnavailable as error:
            notices.append(f"Audio is unavailable on this server ({error}); the MIDI and piano roll still work.")
        progress(0.9, "Drawing")
        lanes = [([n for i in p.instruments[:-1] if not i.is_drum for n in i.notes], p.instruments[-1].notes)
                 for p in previews]
        roll = pianoroll.draw(lanes)
        pianoroll_path = folder / "pianoroll.png"
        Image.fromarray(roll).save(pianoroll_path, optimize=False, compress_level=1)
        elapsed = time.perf_counter() - started
        summary = (
            f"{len(first.continuation.notes)} new notes"
            + (f" after {seed.note_count} seed notes" if kept else "")
            + f", {first.seconds:.1f} s at {first.continuation.bpm:.0f} BPM"
            + (f", {len(results)} variations" if len(results) > 1 else "")
            + f". Random seed {first.random_seed}. Composed in {sampled - started:.2f} s, ready in {elapsed:.2f} s."
        )
        return StudioResult(folder, midi_paths, audio_paths, pianoroll_path, first.random_seed, summary, notices)

    def sweep(self) -> None:
        """Remove request folders older than ``output_max_age_s``."""
        cutoff = time.time() - self.limits.output_max_age_s
        for folder in self.output_root.glob("request-*"):
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue


def _preview_start(seed: Seed) -> float:
    """Where audio and piano roll begin: ``PREVIEW_SEED_SECONDS`` before the new music, later if more than
    ``PREVIEW_SEED_EVENTS`` of the seed's note onsets, controller changes and pitch bends come from there on,
    0 when that is the seed's beginning."""
    instruments = seed.file.midi.instruments
    times = sorted([n.start for i in instruments for n in i.notes]
                   + [e.time for i in instruments for e in (*i.control_changes, *i.pitch_bends)])
    nth_last = times[-PREVIEW_SEED_EVENTS] if len(times) > PREVIEW_SEED_EVENTS else 0.0
    return min(max(seed.last_onset - PREVIEW_SEED_SECONDS, nth_last, 0.0), seed.last_onset)


def _clock(seconds: float) -> str:
    """``m:ss``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"
