"""What the web app does for one click, independent of the UI toolkit.

``Studio.run`` loads the seed safely, samples, writes the MIDI, renders audio and makes the
piano roll's data in a fresh per-request folder. The MIDI holds the whole seed; audio and piano
roll may start shortly before the new music. (The settings are checked before, in ``settings``.)
A take whose new music will not sound, or did not, is named in a notice (``silent_takes``, ``quiet_takes``).
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

import numpy as np
import pretty_midi

from . import heap, pianoroll, ranges, soundfonts
from .generate import Generated, GenerationRequest, Generator
from .midi_io import MidiLimits, parse_midi, read_midi, trim_to_last
from .render import SAMPLE_RATE, TAIL_SECONDS, TARGET_PEAK, RenderUnavailable, get_renderer, write_audio
from .settings import UserError, setting
from .splice import Seed, cut, excerpt
from .style_choice import StyleBook
from .styles import AUTO

# Audio and piano roll start this long before the new music, or later if the seed has more events (notes,
# controller changes, pitch bends) in that time; the MIDI file holds all. So long or dense seeds cost no more
# to render and draw than short ones.
PREVIEW_SEED_SECONDS = 15.0
PREVIEW_SEED_EVENTS = 3000
PREVIEW_HELD_NOTES = 64  # at most this many of the notes still held where the preview starts sound in it
# A take is nearly silent when this share of its new notes lies outside its instrument's sounding range
# (``ranges``), or when its new music's audio is quieter than QUIET_DBFS (RMS, after the take's normalization).
SILENT_SHARE = 0.5
QUIET_DBFS = -60.0


# The first take's audio as its live stream recorded it: the MP3 bytes and the ``NewMusicMeter`` level of its new
# music; None if the stream could not render it (``live.PieceStream.recording``).
Recording = Callable[[], "tuple[bytes, float | None] | None"]


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
class Composition:
    """A request composed (``Studio.compose``): its files not yet written, its audio not yet rendered."""

    results: list[Generated]
    stems: list[Path]  # each take's files without suffix, in the request's folder
    midi_paths: list[Path]
    previews: list[pretty_midi.PrettyMIDI]  # what each take's audio and piano roll play
    preview_start: float  # where in the MIDI files the previews start (seconds)
    random_seed: int
    summary: str  # without the time it was ready in
    notices: list[str]
    started: float  # perf_counter() when the request began
    soundfont: str = setting("soundfont").default  # what the audio is played with
    silent: dict[int, str] = field(default_factory=dict)  # take number -> why it will not sound (also in notices)


@dataclass
class StudioResult:
    """Files and facts of one run, all inside ``folder``."""

    folder: Path
    midi_paths: list[Path]
    audio_paths: list[Path]
    roll: dict  # pianoroll.roll: the notes the page draws, and where in the MIDI its audio starts
    random_seed: int
    summary: str
    notices: list[str]


class Studio:
    """The styles' models plus the per-request pipeline. Given one ``Generator``, it writes in that style only."""

    def __init__(self, styles: StyleBook | Generator, output_root: Path | None = None,
                 limits: AppLimits | None = None):
        self.styles = styles if isinstance(styles, StyleBook) else StyleBook.single(styles)
        self.limits = limits or AppLimits()
        self.output_root = output_root or Path(tempfile.gettempdir()) / "midigen-outputs"
        self.output_root.mkdir(parents=True, exist_ok=True)

    def load_seed(self, path: str | Path | None, until: float | None = None) -> tuple[Seed | None, list[str]]:
        """The uploaded seed, validated and cut at ``until`` seconds if given; the model reads only its last
        part if it is long. Notices say so, and what the loader repaired."""
        if not path:
            return None, []
        try:
            upload = read_midi(path, self.limits.upload)
            file = cut(upload, until) if until else upload
        except ValueError as error:
            raise UserError(str(error)) from None
        part = trim_to_last(file.midi, self.limits.max_seed_notes, self.limits.max_seed_seconds)
        notice = (f"The seed was long: the music continues from its last {self.limits.max_seed_notes} notes / "
                  f"{self.limits.max_seed_seconds:.0f} seconds. With the seed kept, the MIDI file holds all of it.")
        return Seed(file, part.midi, part.start), upload.notices + ([notice] if part.trimmed else [])

    def run(self, seed_path, request: GenerationRequest, sample: Callable | None = None,
            progress: Callable[[float, str], None] | None = None) -> StudioResult:
        """Generate, write and render. ``sample(request, seed) -> (pieces, notices)`` decides where sampling
        runs (``device.ZeroGpuSampler``); by default this studio's generator samples."""
        return self.finish(self.compose(seed_path, request, sample, progress), progress)

    def compose(self, seed_path, request: GenerationRequest, sample: Callable | None = None,
                progress: Callable[[float, str], None] | None = None) -> Composition:
        """The first half of ``run``: the seed read and the music sampled; what will be rendered
        (``Composition.previews``) is known, so the first take can start to stream."""
        progress = progress or (lambda fraction, message: None)
        started = time.perf_counter()
        self.sweep()
        progress(0.05, "Reading the seed")
        seed, notices = self.load_seed(seed_path, request.keep_seed_until)
        progress(0.15, "Composing")
        results: list[Generated]
        if sample is None:
            results = self.styles.generate(request, seed)
        else:
            results, sample_notices = sample(request, seed)
            notices += sample_notices
        sampled = time.perf_counter()
        folder = self.new_folder()
        stems = [folder / f"midigen-{result.random_seed}-{index}" for index, result in enumerate(results, start=1)]
        midi_paths = [stem.with_suffix(".mid") for stem in stems]
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
        silent = silent_takes(results, request.soundfont)
        notices += silent.values()
        summary = (
            f"{len(first.continuation.notes)} new notes"
            + (f" after {seed.note_count} seed notes" if kept else "")
            + f", {first.seconds:.1f} s at {first.continuation.bpm:.0f} BPM"
            + (f", {len(results)} variations" if len(results) > 1 else "")
            + f", style {first.style}" + (" (Auto's choice for this seed)" if request.style == AUTO and seed else "")
            + f". Random seed {first.random_seed}. Composed in {sampled - started:.2f} s"
        )
        return Composition(results, stems, midi_paths, previews, preview_start, first.random_seed, summary, notices,
                           started, request.soundfont, silent)

    def finish(self, composition: Composition, progress: Callable[[float, str], None] | None = None,
               first_take: Recording | None = None) -> StudioResult:
        """The second half of ``run``: the MIDI files, audio and piano roll of a ``compose``d request. With
        ``first_take``, the first take's audio is what its live stream recorded (rendered once, not twice)."""
        progress = progress or (lambda fraction, message: None)
        notices, audio_paths = list(composition.notices), []
        for result, midi_path in zip(composition.results, composition.midi_paths, strict=True):
            midi_path.write_bytes(result.data)
        try:
            audio_paths, levels = self._render(composition.previews, composition.stems, composition.soundfont,
                                               progress, first_take)
            notices += [notice for take, notice in quiet_takes(levels, composition.soundfont).items()
                        if take not in composition.silent]
        except RenderUnavailable as error:
            notices.append(f"Audio is unavailable on this server ({error}); the MIDI and piano roll still work.")
        progress(0.9, "Drawing the piano roll")
        roll = pianoroll.roll([pianoroll.of_midi(preview) for preview in composition.previews],
                              composition.preview_start)
        summary = f"{composition.summary}, ready in {time.perf_counter() - composition.started:.2f} s."
        return StudioResult(composition.stems[0].parent, composition.midi_paths, audio_paths, roll,
                            composition.random_seed, summary, notices)

    def _render(self, previews: list[pretty_midi.PrettyMIDI], stems: list[Path], soundfont: str,
                progress: Callable[[float, str], None] | None = None,
                first_take: Recording | None = None) -> tuple[list[Path], list[float | None]]:
        """MP3 files of ``previews`` at ``stems`` through ``soundfont``, and the level of each one's new music
        (``NewMusicMeter``); LAME encodes one while FluidSynth renders the next. ``progress`` is told before each
        take (a request past its time limit stops there). The first take comes from ``first_take`` when given,
        after the others (its stream renders meanwhile), and is rendered here only if the recording failed."""
        progress = progress or (lambda fraction, message: None)
        renderer = get_renderer(soundfont)
        paths = [stem.with_suffix(".mp3") for stem in stems]
        levels: list[float | None] = [None] * len(previews)
        order = list(range(1, len(previews))) + [0] if first_take else range(len(previews))
        with ThreadPoolExecutor(1, thread_name_prefix="midigen-encode") as encoder:
            encoded = []
            for step, index in enumerate(order):
                progress(0.5 + 0.4 * step / len(previews), "Rendering audio")
                recorded = first_take() if index == 0 and first_take else None
                if recorded is not None:
                    paths[0].write_bytes(recorded[0])
                    levels[0] = recorded[1]
                    continue
                audio = renderer.render(previews[index], max_seconds=self.limits.max_seconds * 3)
                encoded.append(encoder.submit(write_audio, audio, paths[index]))
                levels[index] = new_music_level(previews[index], audio)
            for job in encoded:
                job.result()
        return paths, levels

    def sweep(self) -> None:
        """Remove request folders older than ``output_max_age_s``; now and then, give freed memory back
        (``heap``)."""
        cutoff = time.time() - self.limits.output_max_age_s
        for folder in self.output_root.glob("request-*"):
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue
        heap.release_free_memory()

    def new_folder(self) -> Path:
        """A fresh request folder (swept like the others)."""
        return Path(tempfile.mkdtemp(prefix="request-", dir=self.output_root))

    def write_seed(self, data: bytes, name: str) -> Path:
        """A seed file made from MIDI bytes kept in a page's history, for Continue."""
        path = self.new_folder() / Path(name).name
        path.write_bytes(data)
        return path

    def restore(self, takes: list[bytes], names: list[str], preview_start: float,
                soundfont: str = setting("soundfont").default) -> tuple[list[Path], list[Path]]:
        """A step's files made again from its bytes, after the sweep removed them: MIDI and audio (from
        ``preview_start``, through ``soundfont``, as first rendered). The bytes are the app's own output, kept in
        the session state."""
        folder = self.new_folder()
        midi_paths = [folder / Path(name).name for name in names]
        for data, path in zip(takes, midi_paths, strict=True):
            path.write_bytes(data)
        previews = [excerpt(parse_midi(data), preview_start, PREVIEW_HELD_NOTES) for data in takes]
        try:
            audio_paths = self._render(previews, [path.with_suffix("") for path in midi_paths], soundfont)[0]
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


def silent_takes(results: list[Generated], soundfont: str) -> dict[int, str]:
    """The takes (numbered from 1) of which ``SILENT_SHARE`` or more of the new notes lie outside the range their
    instrument sounds in through ``soundfont`` (``ranges``), each with a sentence saying so; none when the ranges
    cannot be measured here (no FluidSynth)."""
    silent = {}
    for take, result in enumerate(results, start=1):
        notes, program = result.new_music.notes, result.new_music.program
        try:
            span = ranges.sounding(soundfont, program)
        except RenderUnavailable:
            return {}
        mute = sum(span is None or not span[0] <= note.pitch <= span[1] for note in notes)
        if notes and mute >= SILENT_SHARE * len(notes):
            silent[take] = (f"{_take(take, len(results))} nearly silent: {ranges.describe(soundfont, program)}; "
                            "choose another instrument or sound.")
    return silent


def quiet_takes(levels: list[float | None], soundfont: str) -> dict[int, str]:
    """The takes (numbered from 1) whose new music's ``levels`` (dBFS) lie below ``QUIET_DBFS``, each with a
    sentence saying so."""
    sound = soundfonts.BY_NAME[soundfont].label.split(" (")[0]
    return {take: f"{_take(take, len(levels))} nearly silent through {sound} (its new music "
                  + ("makes no sound" if level == -np.inf else f"plays at {level:.0f} dBFS")
                  + "); choose another instrument or sound."
            for take, level in enumerate(levels, start=1) if level is not None and level < QUIET_DBFS}


class NewMusicMeter:
    """The RMS level of a take's new music (``preview``'s last instrument), in dB relative to the take's audio
    normalized to a -1 dBFS peak, as the files are: ``add`` the audio (int16, at ``SAMPLE_RATE``) whole or a chunk
    at a time, then read ``level``.

    The new music is measured from its first note, or ``TAIL_SECONDS`` after the seed's last note ends when that
    leaves at least half of it (the seed's release is not counted), to the end of its last note."""

    def __init__(self, preview: pretty_midi.PrettyMIDI):
        notes = preview.instruments[-1].notes if preview.instruments else []
        self.span = None  # (first, last) frame of the new music
        if notes:
            start, end = min(note.start for note in notes), max(note.end for note in notes)
            released = max((note.end for part in preview.instruments[:-1] for note in part.notes),
                           default=0.0) + TAIL_SECONDS
            if start < released <= (start + end) / 2:
                start = released
            first = round(start * SAMPLE_RATE)
            self.span = (first, max(round(end * SAMPLE_RATE), first + 1))
        self.peak = 0
        self.squares = 0.0
        self.values = 0  # samples counted, of both channels

    def add(self, audio: np.ndarray, first_frame: int = 0) -> NewMusicMeter:
        """Count ``audio``, the frames from ``first_frame`` on."""
        if len(audio):
            self.peak = max(self.peak, int(audio.max()), -int(audio.min()))
        if self.span is not None:
            part = audio[max(self.span[0] - first_frame, 0) : max(self.span[1] - first_frame, 0)]
            values = part.reshape(-1).astype(np.float32)
            self.squares += float(np.dot(values, values))
            self.values += part.size
        return self

    def level(self) -> float | None:
        """The level in dB; None without new notes or their audio, -inf when nothing sounds."""
        if not self.values:
            return None
        rms = np.sqrt(self.squares / self.values)
        return 20 * np.log10(rms / self.peak * TARGET_PEAK) if rms > 0 else -np.inf


def new_music_level(preview: pretty_midi.PrettyMIDI, audio: np.ndarray) -> float | None:
    """``NewMusicMeter``'s level of ``audio``, the whole of ``preview``'s."""
    return NewMusicMeter(preview).add(audio).level()


def _take(take: int, takes: int) -> str:
    return "The new music is" if takes == 1 else f"Variation {take} is"


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
