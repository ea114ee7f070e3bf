"""midigen.render against the real FluidSynth and soundfont (no mocks)."""

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from midigen import cli, render, soundfonts
from midigen.render import (
    PCM_MAX,
    SAMPLE_RATE,
    SOUNDFONT_ENV,
    TAIL_SECONDS,
    TARGET_PEAK,
    Renderer,
    RenderUnavailable,
    audio_available,
    find_soundfont,
    get_renderer,
    render_file,
    write_audio,
)
from midigen.settings import setting

BUNDLED_SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
DEFAULT_SOUNDFONT = setting("soundfont").default
INSTALLED = [name for _, name in setting("soundfont").choices]


class FloatRenderer:
    """The shared renderer with its 16-bit output read as floats in [-1, 1], so levels read naturally."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self.sample_rate, self.soundfont = renderer.sample_rate, renderer.soundfont

    def render(self, midi, **options) -> np.ndarray:
        audio = self.renderer.render(midi, **options)
        assert audio.dtype == np.int16 and audio.ndim == 2 and audio.shape[1] == 2
        return audio / PCM_MAX


@pytest.fixture(scope="module")
def renderer() -> FloatRenderer:
    try:
        return FloatRenderer(get_renderer())
    except RenderUnavailable as exc:
        pytest.skip(str(exc))


def piece(program=0, pitches=(60, 64, 67, 72, 76), start=0.0, step=0.25, length=0.5, velocity=90, drum=False):
    """One instrument playing ``pitches`` one after another."""
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=drum)
    for i, pitch in enumerate(pitches):
        onset = start + i * step
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=onset, end=onset + length))
    midi.instruments.append(inst)
    return midi


def band() -> pretty_midi.PrettyMIDI:
    """Strings with a pitch bend and a held sustain pedal, a bass and drums: a busy, different state."""
    midi = piece(program=48, pitches=(48, 55, 60, 64), step=0.0, length=3.0, velocity=120)
    strings = midi.instruments[0]
    strings.pitch_bends += [pretty_midi.PitchBend(pitch=1500, time=0.5), pretty_midi.PitchBend(pitch=-3000, time=1.0)]
    strings.control_changes.append(pretty_midi.ControlChange(number=64, value=127, time=0.0))
    midi.instruments += piece(program=33, pitches=(31, 38, 43), step=0.5).instruments
    midi.instruments += piece(pitches=(36, 38, 42, 46, 49), step=0.2, length=0.1, drum=True).instruments
    return midi


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def assert_same_render(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to FluidSynth's per-voice pan ramp, which starts from the voice slot's previous value.

    That ramp spans the first 64-frame block of a note, so differences stay tiny (measured < 0.006)
    and the signal-to-difference ratio stays far above 50 dB.
    """
    assert actual.shape == expected.shape
    diff = (actual - expected).astype(np.float64)
    assert np.abs(diff).max() < 0.02
    assert np.sum(diff**2) <= 1e-5 * np.sum(expected.astype(np.float64) ** 2)


def test_output_format_length_and_level(renderer):
    midi = piece()
    audio = renderer.render(midi)
    expected_frames = (midi.get_end_time() + TAIL_SECONDS) * SAMPLE_RATE  # as long as the MIDI, plus the tail
    assert abs(len(audio) - expected_frames) <= 1
    assert rms(audio) > 0.05
    assert np.abs(audio).max() == pytest.approx(TARGET_PEAK, abs=1e-4)
    assert np.abs(audio).max() <= 1.0
    onset = round(0.25 * SAMPLE_RATE)  # the second note lifts the level right after its onset
    assert rms(audio[onset : onset + 4410]) > rms(audio[onset - 4410 : onset])
    assert rms(audio[-2205:]) < 0.01 * rms(audio)  # the release has died away by the end of the tail


def test_empty_midi_renders_silence(renderer):
    empty = pretty_midi.PrettyMIDI()
    audio = renderer.render(empty)
    assert audio.shape == (round(TAIL_SECONDS * SAMPLE_RATE), 2)
    assert not audio.any()
    empty.instruments.append(pretty_midi.Instrument(program=0))
    assert not renderer.render(empty).any()


def test_state_is_reset_between_renders(renderer):
    late = piece(start=0.5)
    renderer.render(late)
    first, second = renderer.render(late), renderer.render(late)
    np.testing.assert_array_equal(first, second)

    renderer.render(band(), max_seconds=1.0)  # cut off with notes and the sustain pedal still down
    after_other = renderer.render(late)
    assert not after_other[: round(0.5 * SAMPLE_RATE)].any()  # nothing of the previous piece bleeds in
    assert_same_render(after_other, first)

    early = piece()  # starts at once, on a key the cut-off piece was still holding
    reference = renderer.render(early)
    renderer.render(band(), max_seconds=1.0)
    assert_same_render(renderer.render(early), reference)


def test_louder_than_expected_audio_is_rescaled_not_clipped(renderer, monkeypatch):
    """Stored 16-bit samples are rescaled when a chunk is louder than everything before it: forcing
    that at almost every chunk gives the same audio, up to rounding (and the voices' pan ramps)."""
    midi = band()
    renderer.render(midi)  # voice slots used once: on a new synthesizer the first pan ramps start from zero
    reference = renderer.render(midi)
    monkeypatch.setattr(render, "FULL_SCALE_LEVEL", 1e-4)
    rescaled = renderer.render(midi)
    assert np.abs(rescaled).max() == pytest.approx(TARGET_PEAK, abs=1e-4)
    assert_same_render(rescaled, reference)
    assert (np.abs(rescaled) >= TARGET_PEAK - 1e-4).sum() < 10  # a peak, not a clipped plateau


def test_drums_and_several_instruments_sound(renderer):
    drums = renderer.render(piece(pitches=(36, 38, 42), drum=True))
    assert rms(drums) > 0.02
    audio = renderer.render(band())
    assert rms(audio) > 0.05 and np.abs(audio).max() == pytest.approx(TARGET_PEAK, abs=1e-4)


def test_concurrent_renders_are_independent(renderer):
    pieces = [piece(start=0.3), piece(program=40, pitches=(67, 71, 74)), band()]
    expected = [renderer.render(midi) for midi in pieces]
    jobs = [i % len(pieces) for i in range(9)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: renderer.render(pieces[i]), jobs))
    for i, audio in zip(jobs, results, strict=True):
        assert_same_render(audio, expected[i])


def test_max_seconds_caps_the_length(renderer):
    midi = piece(pitches=tuple(range(48, 72)))  # about 7 s
    full = renderer.render(midi)
    capped = renderer.render(midi, max_seconds=1.0)
    assert len(capped) == SAMPLE_RATE
    assert np.abs(capped[-10:]).max() < 0.01  # faded out, not cut with a click
    assert np.abs(capped).max() == pytest.approx(TARGET_PEAK, abs=1e-4)
    assert_same_render(renderer.render(midi, max_seconds=60.0), full)
    with pytest.raises(ValueError, match="max_seconds"):
        renderer.render(midi, max_seconds=0)


def test_mp3_is_decodable_right_length_and_small(renderer, tmp_path):
    audio = renderer.render(piece(pitches=tuple(range(48, 84)), step=0.2, length=0.6))  # about 8 s
    seconds = len(audio) / SAMPLE_RATE
    path = write_audio(np.round(audio * PCM_MAX).astype(np.int16), tmp_path / "out.mp3")
    decoded, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE and decoded.shape[1] == 2
    assert abs(len(decoded) / rate - seconds) < 0.1
    assert path.stat().st_size / seconds <= 1_000_000 / 30  # at most 1 MB per 30 s
    assert rms(decoded) == pytest.approx(rms(audio), rel=0.1)


def test_wav_round_trip_and_unknown_format(renderer, tmp_path):
    audio = renderer.renderer.render(piece())
    path = write_audio(audio, tmp_path / "out.wav")
    assert sf.info(path).subtype == "PCM_16"
    decoded, rate = sf.read(path, dtype="int16")
    assert rate == SAMPLE_RATE
    np.testing.assert_array_equal(decoded, audio)
    with pytest.raises(ValueError, match="unsupported audio format"):
        write_audio(audio, tmp_path / "out.aiff")
    with pytest.raises(TypeError, match="int16"):
        write_audio(audio / PCM_MAX, tmp_path / "out.wav")


def test_long_ogg_and_flac(tmp_path):
    silence = np.zeros((100 * SAMPLE_RATE, 2), dtype=np.int16)  # libvorbis crashes when given this in one call
    for suffix in (".ogg", ".flac"):
        info = sf.info(write_audio(silence, tmp_path / f"long{suffix}"))
        assert info.samplerate == SAMPLE_RATE and info.duration == pytest.approx(100, abs=0.01)


def test_render_file(renderer, tmp_path):
    midi = piece()
    midi.write(str(tmp_path / "in.mid"))
    out = render_file(tmp_path / "in.mid", tmp_path / "out.wav")
    assert out == tmp_path / "out.wav"
    info = sf.info(out)
    assert info.samplerate == 32000 and info.channels == 2  # docs/how-it-works.md: stereo at 32 kHz
    assert info.duration == pytest.approx(midi.get_end_time() + TAIL_SECONDS, abs=0.01)


def test_agrees_with_pretty_midi_fluidsynth(renderer):
    midi = piece(pitches=(48, 55, 60, 64, 67, 72, 67, 64), step=0.3, length=0.4)
    ours = renderer.render(midi).mean(axis=1)
    reference = midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=str(renderer.soundfont))
    assert abs(len(ours) - len(reference)) <= 64
    assert rms(ours) > 0.05 and rms(reference) > 0.01
    frames = min(len(ours), len(reference)) // 2205  # 50 ms envelopes
    envelopes = [np.sqrt(np.mean(x[: frames * 2205].reshape(frames, 2205) ** 2, axis=1)) for x in (ours, reference)]
    assert np.corrcoef(*envelopes)[0, 1] > 0.9


def test_soundfont_lookup_order(monkeypatch, tmp_path):
    monkeypatch.delenv(SOUNDFONT_ENV, raising=False)
    default = soundfonts.BY_NAME[DEFAULT_SOUNDFONT]
    assert find_soundfont() == find_soundfont(DEFAULT_SOUNDFONT) == default.path
    assert find_soundfont("timgm6mb") in soundfonts.BY_NAME["timgm6mb"].files
    other = next(name for name in soundfonts.BY_NAME if name != DEFAULT_SOUNDFONT)
    before = find_soundfont(other)
    monkeypatch.setenv(SOUNDFONT_ENV, str(BUNDLED_SOUNDFONT))  # replaces the default choice's file only
    assert find_soundfont() == find_soundfont(DEFAULT_SOUNDFONT) == BUNDLED_SOUNDFONT
    assert find_soundfont(other) == before
    absent = replace(soundfonts.BY_NAME["timgm6mb"], files=(tmp_path / "absent.sf2", tmp_path / "nor.sf2"))
    monkeypatch.setitem(soundfonts.BY_NAME, "timgm6mb", absent)
    assert find_soundfont("timgm6mb") is None
    with pytest.raises(RenderUnavailable, match=r"timgm6mb is not installed \(apt install timgm6mb-soundfont\)"):
        get_renderer("timgm6mb")
    with pytest.raises(ValueError, match="soundfont must be one of fluidr3, .*not 'organ'"):
        find_soundfont("organ")


def test_missing_configured_soundfont_is_unavailable(monkeypatch, tmp_path):
    missing = tmp_path / "nope.sf2"
    monkeypatch.setenv(SOUNDFONT_ENV, str(missing))
    with pytest.raises(RenderUnavailable, match=rf"no General MIDI soundfont found: {SOUNDFONT_ENV}=.*nope\.sf2"):
        find_soundfont()
    with pytest.raises(RenderUnavailable, match="no General MIDI soundfont found"):
        Renderer()
    monkeypatch.setattr(render, "_renderers", {})  # as if no renderer had been made yet
    for _ in range(2):
        with pytest.raises(RenderUnavailable):
            get_renderer()
    ok, message = audio_available()
    assert not ok and "nope.sf2" in message and "\n" not in message


def test_missing_fluidsynth_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    with pytest.raises(RenderUnavailable, match="^FluidSynth is not installed: "):
        Renderer()


def test_shared_renderer_and_explicit_soundfont(renderer):
    assert get_renderer() is renderer.renderer
    ok, message = audio_available()
    assert ok and renderer.soundfont.name in message
    small = Renderer(BUNDLED_SOUNDFONT)
    try:
        audio = small.render(piece())
        assert math.isclose(np.abs(audio).max() / PCM_MAX, TARGET_PEAK, abs_tol=1e-4)
    finally:
        small.close()
    with pytest.raises(RuntimeError, match="closed"):
        small.render(piece())


def test_the_sustain_pedal_reaches_fluidsynth(renderer):
    """A key held for 0.1 s rings on while the pedal is down and stops soon after the key without it."""
    dry = piece(pitches=(60,), length=0.1, velocity=100)
    pedalled = piece(pitches=(60,), length=0.1, velocity=100)
    pedalled.instruments[0].control_changes += [pretty_midi.ControlChange(64, 127, 0.0),
                                                pretty_midi.ControlChange(64, 0, 1.5)]
    pedalled.instruments[0].notes.append(pretty_midi.Note(1, 100, 1.9, 2.0))  # same length, an inaudible end
    dry.instruments[0].notes.append(pretty_midi.Note(1, 100, 1.9, 2.0))

    def ringing(audio):  # level 0.6-1.2 s (key up, pedal down) against the attack
        return rms(audio[round(0.6 * SAMPLE_RATE) : round(1.2 * SAMPLE_RATE)]) / rms(audio[: round(0.1 * SAMPLE_RATE)])

    assert ringing(renderer.render(pedalled)) > 20 * ringing(renderer.render(dry))
    assert ringing(renderer.render(pedalled)) > 0.05


def test_each_track_sounds_with_its_program_and_drums_with_the_drum_kit(renderer):
    def spectrum(midi):
        audio = renderer.render(midi).mean(axis=1)[: SAMPLE_RATE // 2]
        magnitude = np.abs(np.fft.rfft(audio))
        return magnitude / np.linalg.norm(magnitude)

    piano, violin = piece(pitches=(48,), length=0.5), piece(program=40, pitches=(48,), length=0.5)
    kit = piece(pitches=(48,), length=0.5, drum=True)  # a tom on the drum channel, not a piano C3
    assert float(spectrum(piano) @ spectrum(violin)) < 0.8
    assert float(spectrum(piano) @ spectrum(kit)) < 0.8
    both = piece(pitches=(48,), length=0.5)
    both.instruments += violin.instruments
    mixed = spectrum(both)
    assert float(mixed @ spectrum(violin)) > 0.5 and float(mixed @ spectrum(piano)) > 0.5


def soundfont_renderer(name: str) -> FloatRenderer:
    try:
        return FloatRenderer(get_renderer(name))
    except RenderUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", INSTALLED)
def test_each_soundfont_renders_with_the_right_level_and_length(name):
    renderer = soundfont_renderer(name)
    midi = piece()
    audio = renderer.render(midi)
    assert abs(len(audio) - (midi.get_end_time() + TAIL_SECONDS) * SAMPLE_RATE) <= 1
    assert np.abs(audio).max() == pytest.approx(TARGET_PEAK, abs=1e-4)
    assert rms(audio) > 0.05 and rms(audio[-2205:]) < 0.01 * rms(audio)
    assert len(renderer.render(midi, max_seconds=1.0)) == SAMPLE_RATE
    assert rms(renderer.render(band())) > 0.05  # strings, bass and drums sound too


def test_the_same_midi_sounds_different_through_two_soundfonts():
    midi = piece()
    fluid, tim = (soundfont_renderer(name).render(midi).mean(axis=1) for name in ("fluidr3", "timgm6mb"))
    assert fluid.shape == tim.shape

    def spectrum(audio):
        magnitude = np.abs(np.fft.rfft(audio[:SAMPLE_RATE]))
        return magnitude / np.linalg.norm(magnitude)

    assert float(spectrum(fluid) @ spectrum(tim)) < 0.9  # measured 0.74; a piece against itself gives 1
    assert abs(np.corrcoef(fluid, tim)[0, 1]) < 0.5


def test_one_renderer_per_soundfont():
    fluid, tim = soundfont_renderer("fluidr3").renderer, soundfont_renderer("timgm6mb").renderer
    assert fluid is not tim and get_renderer("timgm6mb") is tim and get_renderer("fluidr3") is fluid
    assert (fluid.soundfont, tim.soundfont) == (find_soundfont("fluidr3"), find_soundfont("timgm6mb"))


def test_the_render_command_takes_a_soundfont(renderer, tmp_path):
    piece().write(str(tmp_path / "in.mid"))
    for name in ("timgm6mb", DEFAULT_SOUNDFONT):
        assert cli.main(["render", str(tmp_path / "in.mid"), str(tmp_path / f"{name}.wav"), "--soundfont", name]) == 0
    tim, default = (sf.read(tmp_path / f"{name}.wav")[0] for name in ("timgm6mb", DEFAULT_SOUNDFONT))
    np.testing.assert_array_equal(default, sf.read(render_file(tmp_path / "in.mid", tmp_path / "plain.wav"))[0])
    assert tim.shape == default.shape and not np.allclose(tim, default, atol=0.05)
    assert cli.main(["render", str(tmp_path / "in.mid"), str(tmp_path / "x.wav"), "--soundfont", "organ"]) == 1
