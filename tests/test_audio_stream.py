"""midigen.audio_stream against the real FluidSynth and LAME: chunked audio is the same music as one render."""

import io

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from midigen.audio_stream import KNEE, Mp3Stream, SynthPool, SynthStream, pool_for, to_pcm
from midigen.render import PCM_MAX, SAMPLE_RATE, RenderUnavailable, find_soundfont, get_renderer
from midigen.settings import setting


@pytest.fixture(scope="module")
def pool() -> SynthPool:
    pool = SynthPool()
    try:
        pool.release(pool.acquire())
    except RenderUnavailable as error:
        pytest.skip(str(error))
    return pool


def chords(seconds: float = 6.0) -> pretty_midi.PrettyMIDI:
    """Long and short notes that ring across every chunk boundary, and a pedal."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i in range(int(seconds / 0.4)):
        start = i * 0.4
        piano.notes.append(pretty_midi.Note(90, 48 + (i * 5) % 24, start, start + 1.7))
        piano.notes.append(pretty_midi.Note(70, 72 + (i * 7) % 12, start + 0.1, start + 0.3))
    piano.control_changes.append(pretty_midi.ControlChange(64, 127, 2.0))
    piano.control_changes.append(pretty_midi.ControlChange(64, 0, 3.5))
    midi.instruments.append(piano)
    return midi


def streamed(stream: SynthStream, end: float, chunk: float) -> np.ndarray:
    parts, time = [], 0.0
    while time < end:
        time = min(time + chunk, end)
        parts.append(stream.render(time))
    return np.concatenate(parts)


def test_chunks_join_into_one_render(pool):
    midi = chords()
    whole = get_renderer().render(midi).astype(np.float64)  # normalized: compare shapes, not levels
    stream = SynthStream(pool)
    stream.schedule_midi(midi)
    audio = streamed(stream, len(whole) / SAMPLE_RATE, chunk=0.37).astype(np.float64)
    stream.close()
    assert abs(len(audio) - len(whole)) < 64  # whole 64-frame blocks
    n = min(len(audio), len(whole))
    assert np.corrcoef(audio[:n, 0], whole[:n, 0])[0, 1] > 0.999
    assert np.corrcoef(audio[:n, 1], whole[:n, 1])[0, 1] > 0.999


def test_notes_scheduled_as_they_come_sound_as_scheduled(pool):
    midi = chords(4.0)
    notes = [(n.pitch, n.start, n.end, n.velocity) for n in midi.instruments[0].notes]
    at_once, bit_by_bit = SynthStream(pool), SynthStream(pool)
    at_once.schedule_notes(notes)
    whole = streamed(at_once, 6.0, chunk=6.0)
    parts = []
    for second in range(6):  # each note handed over just before its onset is rendered
        bit_by_bit.schedule_notes([n for n in notes if second <= n[1] < second + 1])
        parts.append(bit_by_bit.render(second + 1))
    at_once.close()
    bit_by_bit.close()
    difference = (np.concatenate(parts) - whole.astype(np.float64)) / PCM_MAX
    assert np.abs(whole).max() > 0.1 * PCM_MAX
    assert np.abs(difference).max() < 0.02  # FluidSynth's pan ramp of a new voice depends on its slot's past
    assert np.sum(difference**2) <= 1e-5 * np.sum((whole / PCM_MAX) ** 2)


def test_a_key_struck_again_releases_the_note_before(pool):
    stream = SynthStream(pool)
    stream.schedule_notes([(60, 0.0, 3.0, 100)])
    stream.render(0.5)
    stream.schedule_notes([(60, 0.5, 0.7, 100)])  # pressed again, short: the key is up after 0.7 s
    tail = stream.render(3.0)[int(1.5 * SAMPLE_RATE):]
    stream.close()
    assert np.abs(tail).max() < 0.01 * PCM_MAX  # nothing is left of the first, 3-second note


def test_a_returned_synthesizer_starts_silent(pool):
    stream = SynthStream(pool)
    stream.schedule_notes([(48, 0.0, 10.0, 127)])
    stream.render(0.3)
    used = stream.synth
    stream.close()
    again = SynthStream(pool)
    assert again.synth is used  # the last one given back is the next one handed out
    assert not again.render(0.5).any()
    again.close()


def test_peaks_are_limited_softly():
    quiet = np.array([[0.01, -0.01]], dtype=np.float32)
    loud = np.array([[1.0, -1.0]], dtype=np.float32)
    assert to_pcm(quiet.copy())[0, 0] == round(0.01 * 7.5 * PCM_MAX)
    assert KNEE * PCM_MAX < to_pcm(loud.copy())[0, 0] <= PCM_MAX
    assert to_pcm(loud.copy())[0, 1] == -to_pcm(loud.copy())[0, 0]


def test_mp3_chunks_decode_as_one_file(pool):
    stream, mp3 = SynthStream(pool), Mp3Stream()
    stream.schedule_midi(chords(3.0))
    data = b"".join(mp3.encode(stream.render(t / 4)) for t in range(1, 17)) + mp3.flush()
    stream.close()
    audio, rate = sf.read(io.BytesIO(data))
    assert rate == SAMPLE_RATE
    assert abs(len(audio) / rate - 4.0) < 0.1
    assert np.abs(audio[: int(2.5 * rate)]).max() > 0.05


def test_each_soundfont_streams_from_its_own_pool_as_loud_as_the_default(pool):
    levels = {}
    for _, name in setting("soundfont").choices:
        assert pool_for(name) is pool_for(name) and pool_for(name).soundfont == find_soundfont(name)
        stream = SynthStream(pool_for(name))
        assert stream.pool is pool_for(name)
        stream.schedule_midi(chords())
        levels[name] = np.sqrt(np.mean((streamed(stream, 7.0, chunk=0.5) / PCM_MAX) ** 2))
        stream.close()
    assert SynthStream().pool is pool_for() is pool_for(setting("soundfont").default)
    default = levels.pop(setting("soundfont").default)
    assert default > 0.05
    for name, level in levels.items():  # at the same gain, TimGM6mb and MuseScore General are a quarter quieter
        assert 0.85 < level / default < 1.18, name
