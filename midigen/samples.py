"""The duet keyboard's sound: one short note every few semitones, rendered by FluidSynth with the page's soundfont.

The browser plays a key at once from these, with no server in the way (``web/duet.js``): the nearest sample, its
``playbackRate`` moved by at most ``STEP // 2`` semitones (3 above the highest). All the samples of one soundfont
and instrument come as one mono FLAC file, ``SLOT_SECONDS`` per sample from ``LOWEST`` up by ``STEP`` semitones:
each key pressed at ``VELOCITY``, held ``HOLD_SECONDS``, then released. They are rendered once per soundfont and
instrument (70-200 ms on a busy 2-core machine; the app makes the default's in the background at start-up) and kept
in memory (about 1 MB each).
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pretty_midi
import soundfile as sf

from .render import SAMPLE_RATE, RenderUnavailable, get_renderer
from .settings import UserError

LOWEST, HIGHEST, STEP = 21, 108, 4  # A0 to C8, a sample every major third
HOLD_SECONDS = 1.6
SLOT_SECONDS = 2.0
VELOCITY = 100


def sample_pitches() -> list[int]:
    return list(range(LOWEST, HIGHEST + 1, STEP))


def render_samples(soundfont: str | None = None, program: int = 0) -> bytes:
    """The samples of ``soundfont`` (a ``soundfont`` setting choice) playing ``program``, as mono FLAC bytes."""
    instrument = pretty_midi.Instrument(program)
    instrument.notes = [pretty_midi.Note(VELOCITY, pitch, index * SLOT_SECONDS, index * SLOT_SECONDS + HOLD_SECONDS)
                        for index, pitch in enumerate(sample_pitches())]
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(instrument)
    audio = get_renderer(soundfont).render(midi, max_seconds=len(instrument.notes) * SLOT_SECONDS)
    mono = audio.astype(np.int32).sum(axis=1) // 2
    buffer = io.BytesIO()
    sf.write(buffer, mono.astype(np.int16), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


class SampleCache:
    """``render_samples`` made once per (soundfont, program) and kept; unknown ones raise ``UserError``."""

    def __init__(self):
        self._made: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def get(self, soundfont: str, program: int) -> bytes:
        if not 0 <= program <= 127:
            raise UserError("program must be from 0 to 127")
        with self._lock:
            if (soundfont, program) not in self._made:
                try:
                    self._made[soundfont, program] = render_samples(soundfont, program)
                except (ValueError, RenderUnavailable) as error:
                    raise UserError(str(error)) from None
            return self._made[soundfont, program]
