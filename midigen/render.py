"""Render MIDI to audio with one long-lived FluidSynth synthesizer.

``Renderer`` keeps a single ``fluidsynth.Synth`` with its soundfont loaded once and
reuses it for every request (serialized by a lock); ``get_renderer`` keeps one per soundfont
choice (``soundfonts``). A piece is rendered by walking a time-sorted event list; FluidSynth
writes float samples into a small scratch buffer, which is stored as 16-bit PCM in one
preallocated ``(n, 2)`` buffer, peak-normalized in place at the end:
half the memory of float32 and what the encoders take.

pyfluidsynth and libfluidsynth are optional: without them (or without a General MIDI
soundfont) the constructor raises ``RenderUnavailable`` with a one-line reason.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

from . import soundfonts
from .settings import setting

# 32 kHz keeps everything up to 16 kHz, about what LAME keeps of a 128 kbps MP3 at 44.1 kHz (it cuts near
# 17 kHz), for 27% less synthesis and encoding than 44.1 kHz.
SAMPLE_RATE = 32000
TAIL_SECONDS = 1.0  # kept after the last event so releases ring out (as pretty_midi does)
FADE_SECONDS = 0.05  # fade applied when max_seconds cuts a piece short
TARGET_PEAK = 10 ** (-1 / 20)  # -1 dBFS
PCM_MAX = 32767
# Float level stored at full scale until something louder comes. At gain 0.2 generated piano pieces
# peak between 0.07 and 0.18, so the final normalization amplifies the stored 16 bits by 3x at most
# (rounding noise stays below -85 dBFS); louder audio rescales what is stored so far instead of clipping.
FULL_SCALE_LEVEL = 0.25
CHUNK_FRAMES = 4096  # the float scratch buffer: 32 KB
SOUNDFONT_ENV = "MIDIGEN_SOUNDFONT"
DRUM_CHANNEL = 9
DRUM_BANK = 128
MIDI_CHANNELS = 256
# FluidSynth synthesizes in blocks of 64 frames; rendering whole blocks per request keeps every
# request starting on a block boundary, so its timing does not depend on the previous request's length.
BLOCK_FRAMES = 64
MAX_DRAIN_SECONDS = 5.0  # bound on rendering away the releases a previous request left sounding
NOTE_OFF, CONTROL_CHANGE, PITCH_BEND, NOTE_ON = range(4)  # event order at equal times

WRITE_FRAMES = SAMPLE_RATE  # frames handed to the encoder per call
MP3_KBPS = 128  # 0.5 MB per 30 s
MP3_QUALITY = 7  # LAME's fast mode: about 5x faster than libsndfile's MP3 writer, inaudible at 128 kbps
_AUDIO_FORMATS = {
    ".wav": {"format": "WAV", "subtype": "PCM_16"},
    ".flac": {"format": "FLAC", "subtype": "PCM_16"},
    ".ogg": {"format": "OGG", "subtype": "VORBIS"},
}


class RenderUnavailable(RuntimeError):
    """FluidSynth or a General MIDI soundfont is missing."""


def find_soundfont(name: str | None = None) -> Path | None:
    """Return the file of the soundfont choice ``name`` (default: the ``soundfont`` setting's default), or None
    if it is not installed. ``$MIDIGEN_SOUNDFONT`` replaces the default choice's file.

    Raises
    ------
    RenderUnavailable
        If ``$MIDIGEN_SOUNDFONT`` is set but names no file.
    ValueError
        If ``name`` is no soundfont of ``soundfonts.CATALOGUE``.
    """
    default = setting("soundfont").default
    name = name or default
    if name not in soundfonts.BY_NAME:
        raise ValueError(f"soundfont must be one of {', '.join(soundfonts.BY_NAME)}, not {name!r}")
    configured = os.environ.get(SOUNDFONT_ENV)
    if configured and name == default:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise RenderUnavailable(f"no General MIDI soundfont found: {SOUNDFONT_ENV}={configured} does not exist")
        return path
    return soundfonts.BY_NAME[name].path


def installed_soundfont(name: str | None = None) -> Path:
    """``find_soundfont(name)``, raising ``RenderUnavailable`` (with the package to install) when it is missing."""
    path = find_soundfont(name)
    if path is None:
        missing = soundfonts.BY_NAME[name or setting("soundfont").default]
        raise RenderUnavailable(f"no General MIDI soundfont found: {missing.name} is not installed "
                                f"(apt install {missing.package})")
    return path


def _channels(instruments: list[pretty_midi.Instrument]) -> list[int]:
    """Give each instrument its own MIDI channel; the first drum kit gets channel 9."""
    melodic = [c for c in range(MIDI_CHANNELS) if c != DRUM_CHANNEL]
    first_drum = next((i for i, inst in enumerate(instruments) if inst.is_drum), None)
    channels, k = [], 0
    for i in range(len(instruments)):
        if i == first_drum:
            channels.append(DRUM_CHANNEL)
        else:
            channels.append(melodic[k % len(melodic)])
            k += 1
    return channels


def _events(instruments: list[pretty_midi.Instrument], channels: list[int], n_frames: int) -> list[tuple]:
    """Time-sorted ``(frame, kind, args)`` events that start before ``n_frames``."""
    events = []
    for inst, chan in zip(instruments, channels, strict=True):
        for note in inst.notes:
            on = round(note.start * SAMPLE_RATE)
            events.append((on, NOTE_ON, (chan, note.pitch, note.velocity)))
            events.append((max(round(note.end * SAMPLE_RATE), on + 1), NOTE_OFF, (chan, note.pitch)))
        for cc in inst.control_changes:
            events.append((round(cc.time * SAMPLE_RATE), CONTROL_CHANGE, (chan, cc.number, cc.value)))
        for bend in inst.pitch_bends:
            events.append((round(bend.time * SAMPLE_RATE), PITCH_BEND, (chan, bend.pitch)))
    events = [event for event in events if event[0] < n_frames]
    events.sort()
    return events


class _Pcm:
    """16-bit stereo samples filled in order from float chunks: ``per_unit`` PCM steps per float unit,
    lowered (and what is stored rescaled) when a louder chunk comes; ``peak`` is the loudest float sample."""

    def __init__(self, samples: np.ndarray):
        self.samples = samples
        self.done = 0
        self.peak = 0.0
        self.per_unit = PCM_MAX / FULL_SCALE_LEVEL

    def append(self, chunk: np.ndarray) -> None:
        """Store float ``chunk`` (scaled in place) after the frames already stored."""
        self.peak = max(self.peak, float(chunk.max()), -float(chunk.min()))
        if self.peak * self.per_unit > PCM_MAX:
            louder = PCM_MAX / self.peak
            self.scale(0, self.done, louder / self.per_unit)
            self.per_unit = louder
        chunk *= self.per_unit
        np.rint(chunk, out=chunk)
        self.samples[self.done : self.done + len(chunk)] = chunk
        self.done += len(chunk)

    def scale(self, start: int, stop: int, factor) -> None:
        """Multiply frames ``start:stop`` by ``factor`` (a number, or one value per frame), in chunks."""
        for first in range(start, stop, CHUNK_FRAMES):
            last = min(first + CHUNK_FRAMES, stop)
            part = self.samples[first:last].astype(np.float32)
            part *= factor if np.isscalar(factor) else factor[first - start : last - start]
            self.samples[first:last] = np.clip(np.rint(part, out=part), -PCM_MAX, PCM_MAX, out=part)


class Renderer:
    """A shared FluidSynth synthesizer that renders ``PrettyMIDI`` objects to stereo 16-bit PCM.

    Parameters
    ----------
    soundfont
        Path to a ``.sf2`` or ``.sf3`` file; default ``find_soundfont()``.

    Raises
    ------
    RenderUnavailable
        If pyfluidsynth/libfluidsynth or the soundfont is missing or unloadable.

    Notes
    -----
    Renders do not depend on earlier requests, except that FluidSynth ramps each new voice's
    pan gains over its first 64 frames from the values its voice slot last had: the first
    1.5 ms of a note can differ by a few thousandths of full scale.
    """

    def __init__(self, soundfont: str | os.PathLike | None = None):
        path = Path(soundfont) if soundfont is not None else find_soundfont()
        if path is None:
            raise RenderUnavailable(
                f"no General MIDI soundfont found: set {SOUNDFONT_ENV} or apt install fluid-soundfont-gm"
            )
        if not path.is_file():
            raise RenderUnavailable(f"no General MIDI soundfont found: {path} does not exist")
        self.soundfont = path
        self.sample_rate = SAMPLE_RATE
        self._synth, self._sfid = new_synth(path)
        self._scratch = np.empty((CHUNK_FRAMES, 2), dtype=np.float32)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the synthesizer; later ``render`` calls raise ``RuntimeError``."""
        with self._lock:
            if self._synth is not None:
                self._synth.delete()
                self._synth = None

    def render(self, midi: pretty_midi.PrettyMIDI, max_seconds: float | None = None) -> np.ndarray:
        """Synthesize ``midi`` to stereo audio.

        Parameters
        ----------
        midi
            The piece. Each instrument gets its own channel with its program; drums use bank 128.
        max_seconds
            Cap on the output length (the work done is bounded too); a capped piece is faded out.

        Returns
        -------
        numpy.ndarray
            int16 samples, shape ``(n, 2)`` at ``SAMPLE_RATE``, ``n`` covering the piece plus
            ``TAIL_SECONDS``, peak-normalized to -1 dBFS (all zeros if nothing sounds).
        """
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        n_frames = math.ceil((midi.get_end_time() + TAIL_SECONDS) * SAMPLE_RATE)
        capped = max_seconds is not None and max_seconds * SAMPLE_RATE < n_frames
        if capped:
            n_frames = math.ceil(max_seconds * SAMPLE_RATE)
        instruments = midi.instruments
        channels = _channels(instruments)
        events = _events(instruments, channels, n_frames)
        pcm = _Pcm(np.empty((math.ceil(n_frames / BLOCK_FRAMES) * BLOCK_FRAMES, 2), dtype=np.int16))

        with self._lock:
            synth = self._synth
            if synth is None:
                raise RuntimeError("the renderer is closed")
            self._reset()
            for inst, chan in zip(instruments, channels, strict=True):
                bank = DRUM_BANK if inst.is_drum else 0
                if synth.program_select(chan, self._sfid, bank, inst.program) == -1:
                    synth.program_select(chan, self._sfid, bank, 0)
            actions = (synth.noteoff, synth.cc, synth.pitch_bend, synth.noteon)
            for frame, kind, args in events:
                self._synthesize_until(pcm, frame)
                actions[kind](*args)
            self._synthesize_until(pcm, len(pcm.samples))

        if capped:
            fade = min(n_frames, round(FADE_SECONDS * SAMPLE_RATE))
            pcm.scale(n_frames - fade, n_frames, np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None])
        audio = pcm.samples[:n_frames]
        peak = max(int(audio.max(initial=0)), -int(audio.min(initial=0)))  # in PCM steps, after the fade
        if peak > 0:  # silence (nothing that rounds to a PCM step) is not amplified
            pcm.scale(0, n_frames, TARGET_PEAK * PCM_MAX / peak)
        return audio

    @contextmanager
    def borrowed(self) -> Iterator[tuple]:
        """The synthesizer and its soundfont's id for other work (``ranges`` measures with it), held under the
        renderer's lock and reset before and after."""
        with self._lock:
            if self._synth is None:
                raise RuntimeError("the renderer is closed")
            self._reset()
            try:
                yield self._synth, self._sfid
            finally:
                self._reset()

    def _synthesize_until(self, pcm: _Pcm, stop: int) -> None:
        """Let FluidSynth write the frames from ``pcm.done`` up to ``stop``, a scratch buffer at a time."""
        while pcm.done < stop:
            count = min(stop - pcm.done, CHUNK_FRAMES)
            chunk = self._scratch[:count]
            self._synthesize(chunk, count)
            pcm.append(chunk)

    def _reset(self) -> None:
        """Return the synth to its initial state (``reset_synth``)."""
        reset_synth(self._synth, self._scratch)

    def _synthesize(self, buffer: np.ndarray, count: int) -> None:
        write_float(self._synth, buffer, count)


def new_synth(path: Path):
    """A FluidSynth synthesizer at ``SAMPLE_RATE`` with ``path`` loaded: ``(synth, soundfont id)``.

    Reverb and chorus are off: their modulated delay lines keep state that a reset does not clear, which would
    make a render depend on the requests before it.

    Raises
    ------
    RenderUnavailable
        Without pyfluidsynth/libfluidsynth, or when FluidSynth cannot load ``path``.
    """
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise RenderUnavailable(
            f"FluidSynth is not installed: {exc} (pip install pyfluidsynth; apt install libfluidsynth3)"
        ) from exc
    synth = fluidsynth.Synth(gain=0.2, samplerate=float(SAMPLE_RATE), channels=MIDI_CHANNELS,
                             **{"synth.reverb.active": 0, "synth.chorus.active": 0})
    sfid = synth.sfload(str(path))
    if sfid == -1:
        synth.delete()
        raise RenderUnavailable(f"no General MIDI soundfont found: FluidSynth could not load {path}")
    return synth, sfid


def reset_synth(synth, scratch: np.ndarray) -> None:
    """Return ``synth`` to its initial state: no voices, default controllers and programs.

    Notes left sounding are released and rendered away into ``scratch`` (float32, ``(CHUNK_FRAMES, 2)``)
    rather than killed: in FluidSynth a note that starts right after a voice on the same key was killed
    begins with a loud transient.
    """
    synth.system_reset()  # releases every note, resets controllers and programs
    for _ in range(math.ceil(MAX_DRAIN_SECONDS * SAMPLE_RATE / CHUNK_FRAMES)):
        if synth.get_active_voice_count() == 0:
            return
        write_float(synth, scratch, CHUNK_FRAMES)
    for chan in range(MIDI_CHANNELS):  # a voice that never dies away
        synth.all_sounds_off(chan)


_write_float = None


def write_float(synth, buffer: np.ndarray, count: int) -> None:
    """Let FluidSynth write the first ``count`` frames of ``buffer`` (interleaved stereo float32)."""
    global _write_float
    if _write_float is None:
        import fluidsynth

        c_int, c_void_p = ctypes.c_int, ctypes.c_void_p
        _write_float = fluidsynth.cfunc(
            "fluid_synth_write_float", c_int, ("synth", c_void_p, 1), ("len", c_int, 1), ("lout", c_void_p, 1),
            ("loff", c_int, 1), ("lincr", c_int, 1), ("rout", c_void_p, 1), ("roff", c_int, 1), ("rincr", c_int, 1))
    pointer = buffer.ctypes.data
    _write_float(synth.synth, count, pointer, 0, 2, pointer, 1, 2)


_renderers: dict[Path, Renderer] = {}  # one per soundfont file
_renderer_lock = threading.Lock()


def get_renderer(soundfont: str | None = None) -> Renderer:
    """Return the process-wide ``Renderer`` of the soundfont choice ``soundfont`` (default: the setting's
    default), creating it on first use.

    Raises
    ------
    RenderUnavailable
        On every call while FluidSynth or that soundfont is missing.
    """
    path = installed_soundfont(soundfont)
    with _renderer_lock:
        if path not in _renderers:
            _renderers[path] = Renderer(path)
        return _renderers[path]


def audio_available() -> tuple[bool, str]:
    """Return ``(True, description)`` if audio rendering works, else ``(False, reason)``."""
    try:
        renderer = get_renderer()
    except RenderUnavailable as exc:
        return False, str(exc)
    return True, f"FluidSynth with soundfont {renderer.soundfont.name}"


def write_audio(samples: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``(n, channels)`` int16 samples (as ``Renderer.render`` returns them) to ``path``; the suffix
    picks the format.

    ``.mp3`` (128 kbps CBR, the browser-friendly default), ``.wav`` (16-bit PCM), ``.flac``, ``.ogg``.
    """
    path = Path(path)
    if samples.dtype != np.int16:
        raise TypeError(f"write_audio takes int16 samples, got {samples.dtype}")
    if path.suffix.lower() == ".mp3":
        return _write_mp3(samples, path)
    options = _AUDIO_FORMATS.get(path.suffix.lower())
    if options is None:
        formats = ", ".join([".mp3", *_AUDIO_FORMATS])
        raise ValueError(f"unsupported audio format {path.suffix!r}; use one of {formats}")
    with sf.SoundFile(path, "w", SAMPLE_RATE, samples.shape[1], **options) as out:
        for start in range(0, len(samples), WRITE_FRAMES):  # libvorbis overflows its stack on long writes
            out.write(samples[start : start + WRITE_FRAMES])
    return path


def mp3_encoder(channels: int = 2):
    """A LAME encoder (lameenc) for ``SAMPLE_RATE`` int16 samples, ``MP3_KBPS`` CBR."""
    import lameenc

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_KBPS)
    encoder.set_in_sample_rate(SAMPLE_RATE)
    encoder.set_channels(channels)
    encoder.set_quality(MP3_QUALITY)
    return encoder


def _write_mp3(samples: np.ndarray, path: Path) -> Path:
    """Encode with LAME at ``MP3_KBPS`` CBR."""
    encoder = mp3_encoder(samples.shape[1])
    path.write_bytes(bytes(encoder.encode(np.ascontiguousarray(samples, dtype="<i2").tobytes()) + encoder.flush()))
    return path


def render_file(midi_path: str | os.PathLike, audio_path: str | os.PathLike, max_seconds: float | None = None,
                soundfont: str | None = None) -> Path:
    """Render the MIDI file ``midi_path`` to ``audio_path`` (format from its suffix) through the soundfont choice
    ``soundfont`` (default: the setting's default) and return that path."""
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    return write_audio(get_renderer(soundfont).render(midi, max_seconds=max_seconds), audio_path)
