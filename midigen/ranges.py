"""The pitch range each instrument sounds in, per soundfont, measured by rendering.

A soundfont's instruments are sampled over a range of keys only: FluidR3's Contrabass (program 43) is silent from
A#3 up, so music written above that plays as silence. ``measure`` asks FluidSynth itself: for each of the 128
General MIDI programs it renders a short note (``PROBE_SECONDS`` at velocity ``PROBE_VELOCITY``, the synth's notes
killed between probes) on every ``GRID``-th key, then key by key outward from the lowest and highest that sounded,
and takes a key as sounding when its RMS comes within ``QUIET_DB`` of the program's loudest probe. (Counting the
voices a note-on starts is not enough: a voice may start on a key that makes no sound.) About 4,300 probes per
soundfont, on the soundfont's shared ``render.Renderer`` (its cost: docs/performance.md).

``table`` measures a soundfont once per process, and keeps the result in a small JSON file under the user's cache
folder (``$XDG_CACHE_HOME/midigen``), named after the soundfont file's size and modification time, so later
processes read it instead. ``sounding`` is one program's range; ``describe`` says it in words for the page.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pretty_midi

from . import soundfonts
from .render import BLOCK_FRAMES, SAMPLE_RATE, Renderer, get_renderer, installed_soundfont, write_float

log = logging.getLogger("midigen.ranges")

PROBE_SECONDS = 0.15
PROBE_VELOCITY = 100
GRID = 4  # keys probed first: every 4th (and 127); then the edges key by key
QUIET_DB = -40.0  # a key whose RMS lies this far below the program's loudest probe is silent
SILENT_RMS = 1e-6  # a program whose loudest probe is below this (float full scale) is silent everywhere
VERSION = 1  # in the cache files' names: raised when the measure changes
KEYBOARD = (21, 108)  # a piano's keys, A0 to C8: the words say only the edges that fall inside them

Range = tuple[int, int]  # lowest and highest sounding MIDI pitch

_tables: dict[tuple[Path, int, int], tuple[Range | None, ...]] = {}
_lock = threading.Lock()


def measure(renderer: Renderer) -> tuple[Range | None, ...]:
    """The sounding range of each of the 128 programs (None: silent) through ``renderer``'s soundfont, by rendering
    (module docstring). A program missing from the soundfont sounds as ``Renderer.render`` plays it: as program 0."""
    frames = round(PROBE_SECONDS * SAMPLE_RATE) // BLOCK_FRAMES * BLOCK_FRAMES
    buffer = np.empty((frames, 2), dtype=np.float32)
    with renderer.borrowed() as (synth, sfid):
        def level(pitch: int) -> float:
            synth.noteon(0, pitch, PROBE_VELOCITY)
            write_float(synth, buffer, frames)
            rms = float(np.sqrt(np.mean(np.square(buffer))))
            synth.all_sounds_off(0)
            write_float(synth, buffer, BLOCK_FRAMES)  # the kill takes effect
            return rms

        ranges = []
        for program in range(128):
            if synth.program_select(0, sfid, 0, program) == -1:
                synth.program_select(0, sfid, 0, 0)
            ranges.append(_edges(level))
    return tuple(ranges)


def _edges(level) -> Range | None:
    """The lowest and highest key whose ``level(key)`` is within ``QUIET_DB`` of the loudest on the grid."""
    grid = [*range(0, 128, GRID), 127]
    levels = {pitch: level(pitch) for pitch in grid}
    loudest = max(levels.values())
    if loudest < SILENT_RMS:
        return None
    floor = loudest * 10 ** (QUIET_DB / 20)
    sounding = [pitch for pitch in grid if levels[pitch] > floor]
    low, high = sounding[0], sounding[-1]
    while low > 0 and level(low - 1) > floor:
        low -= 1
    while high < 127 and level(high + 1) > floor:
        high += 1
    return low, high


def table(soundfont: str | None = None) -> tuple[Range | None, ...]:
    """Every program's sounding range through the soundfont choice ``soundfont`` (default: the setting's):
    measured on first use, then kept in memory and in the cache folder.

    Raises
    ------
    RenderUnavailable
        Without FluidSynth or that soundfont.
    """
    path = installed_soundfont(soundfont)
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _tables:
            cached = _cache_file(*key)
            _tables[key] = _read(cached)
            if _tables[key] is None:
                started = time.perf_counter()
                _tables[key] = measure(get_renderer(soundfont))
                log.info("measured the programs' ranges in %s in %.2f s", path.name, time.perf_counter() - started)
                _write(cached, _tables[key])
        return _tables[key]


def sounding(soundfont: str | None, program: int) -> Range | None:
    """The lowest and highest pitch ``program`` sounds at through ``soundfont`` (None: silent); ``table``."""
    return table(soundfont)[program]


def describe(soundfont: str | None, program: int) -> str:
    """``program``'s range in words, e.g. "FluidR3 GM's Contrabass sounds only up to A3"."""
    sound = soundfonts.BY_NAME[soundfont or soundfonts.CATALOGUE[0].name].label.split(" (")[0]
    instrument = f"{sound}'s {pretty_midi.program_to_instrument_name(program)}"
    span = sounding(soundfont, program)
    if span is None:
        return f"{instrument} makes no sound"
    low, high = span
    if low > KEYBOARD[0] and high < KEYBOARD[1]:
        return f"{instrument} sounds only from {note_name(low)} to {note_name(high)}"
    if low > KEYBOARD[0]:
        return f"{instrument} sounds only from {note_name(low)} up"
    if high < KEYBOARD[1]:
        return f"{instrument} sounds only up to {note_name(high)}"
    return f"{instrument} sounds over the whole keyboard"


def note_name(pitch: int) -> str:
    """``pitch`` as a note name with its octave, middle C being C4."""
    return pretty_midi.note_number_to_name(pitch).replace("♯", "#")


def _cache_file(path: Path, size: int, mtime_ns: int) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "midigen"
    return root / f"ranges-v{VERSION}-{path.stem}-{size}-{mtime_ns}.json"


def _read(file: Path) -> tuple[Range | None, ...] | None:
    try:
        ranges = json.loads(file.read_text())["ranges"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(ranges) != 128:
        return None
    return tuple(None if span is None else (int(span[0]), int(span[1])) for span in ranges)


def _write(file: Path, ranges: tuple[Range | None, ...]) -> None:
    """Keep ``ranges`` in ``file``; a cache folder that cannot be written is left alone."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"ranges": [None if span is None else list(span) for span in ranges]}))
        partial.replace(file)
    except OSError as error:
        log.warning("could not keep the ranges in %s: %s", file, error)
