"""midigen.midi_io against a hostile corpus assembled byte by byte, plus property-based tests."""

import io
import random
import re
import struct

import pretty_midi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mido.midifiles.meta import encode_variable_int

from midigen.midi_io import MidiError, MidiLimits, load_midi, read_midi, trim_to_last

# -- byte-level builders ---------------------------------------------------


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (any length: hostile files may use more than 4 bytes)."""
    return bytes(encode_variable_int(value))


def chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    return kind + struct.pack(">I", len(body) if length is None else length) + body


def header(fmt: int = 1, ntracks: int = 1, division: int = 480, length: int = 6) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", fmt, ntracks, division), length)


def event(delta: int, *data: int) -> bytes:
    return vlq(delta) + bytes(data)


def meta(delta: int, kind: int, payload: bytes = b"") -> bytes:
    return vlq(delta) + bytes([0xFF, kind]) + vlq(len(payload)) + payload


def tempo(delta: int, micros: int) -> bytes:
    return meta(delta, 0x51, micros.to_bytes(3, "big"))


END = meta(0, 0x2F)


def track(*events: bytes) -> bytes:
    return chunk(b"MTrk", b"".join(events) + END)


def notes(pitches, channel: int = 0, step: int = 240, length: int = 240, velocity: int = 100) -> bytes:
    """Note-on/note-off pairs, one every ``step`` ticks (``length`` <= ``step``)."""
    out = []
    for index, pitch in enumerate(pitches):
        out.append(event(0 if index == 0 else step - length, 0x90 | channel, pitch, velocity))
        out.append(event(length, 0x80 | channel, pitch, 64))
    return b"".join(out)


def smf(*tracks: bytes, fmt: int = 1, division: int = 480) -> bytes:
    return header(fmt, len(tracks), division) + b"".join(tracks)


SCALE = [60, 62, 64, 65, 67, 69, 71, 72]
VALID = smf(track(notes(SCALE)), fmt=0)
VALID_MULTI = smf(
    track(tempo(0, 500_000), tempo(1920, 1_000_000)),
    track(event(0, 0xC0, 0), notes(SCALE)),
    track(event(0, 0xC1, 40), notes([48, 50, 52], channel=1, step=480)),
)
TINY = MidiLimits(max_bytes=4096, max_tracks=4, max_events=50, max_notes=10, max_seconds=60, max_ticks=100_000)


def hostile_corpus():
    """(id, data, name, limits, expected words in the message)."""
    rng = random.Random(1234)
    truncated = VALID[: len(VALID) - 7]
    body = notes(SCALE) + END
    wav = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 44100, 88200, 2, 16)
    soundfont = b"RIFF" + struct.pack("<I", 4) + b"sfbkLIST" + bytes(64)
    cases = [
        ("empty", b"", None, None, "empty"),
        ("truncated-header", VALID[:10], None, None, "header is incomplete"),
        ("only-magic", b"MThd", None, None, "header is incomplete"),
        ("header-length-wrong", header(length=7) + b"\x00" + track(notes(SCALE)), None, None, "header"),
        ("truncated-track", truncated, None, None, "shorter than its header"),
        ("chunk-length-too-long", header(0) + chunk(b"MTrk", body, len(body) + 100), None, None, "shorter"),
        ("chunk-length-too-short", header(0) + chunk(b"MTrk", body, len(body) - 2), None, None, "middle of an event"),
        (
            "first-chunk-too-short",
            header(1, 2) + chunk(b"MTrk", body, len(body) - 4) + track(notes(SCALE)),
            None,
            None,
            "damaged",
        ),
        ("random-bytes", rng.randbytes(512), None, None, "not a MIDI file"),
        ("renamed-wav", wav + rng.randbytes(256), "song.mid", None, "not a MIDI file"),
        ("renamed-soundfont", soundfont, "piano.mid", None, "not a MIDI file"),
        ("text-extension", VALID, "song.txt", None, ".mid"),
        ("no-extension", VALID, "song", None, ".mid"),
        ("type-2", smf(track(notes(SCALE)), fmt=2), None, None, "type 2"),
        ("unknown-format", smf(track(notes(SCALE)), fmt=7), None, None, "unknown format"),
        ("zero-tracks", header(1, 0), None, None, "no tracks"),
        ("missing-tracks", header(1, 3) + track(notes(SCALE)), None, None, "lists 3 tracks but it has 1"),
        ("no-notes", smf(track(tempo(0, 500_000), meta(0, 0x03, b"Piano"))), None, None, "no notes"),
        ("drums-only", smf(track(notes([36, 38, 42], channel=9))), None, None, "drums"),
        ("tempo-zero", smf(track(tempo(0, 0), notes(SCALE)), fmt=0), None, None, "tempo of zero"),
        ("tempo-zero-late-track", smf(track(notes(SCALE)), track(tempo(0, 0))), None, None, "tempo of zero"),
        ("tempo-absurdly-fast", smf(track(tempo(0, 10), notes(SCALE)), fmt=0), None, None, "BPM"),
        ("tempo-bad-length", smf(track(meta(0, 0x51, b"\x07\xa1"), notes(SCALE)), fmt=0), None, None, "tempo"),
        ("ticks-per-beat-zero", smf(track(notes(SCALE)), division=0), None, None, "resolution"),
        ("smpte-division", smf(track(notes(SCALE)), division=0xE728), None, None, "SMPTE"),
        ("years-of-music", smf(track(notes(SCALE), event(0x0FFFFFFF, 0x90, 60, 0)), division=1), None, None, "years"),
        (
            "years-via-slow-tempo",
            smf(track(tempo(0, 0xFFFFFF), *[event(0x0FFFFFFF, 0x80, 60, 0)] * 8, notes(SCALE)), division=1),
            None,
            None,
            "years",
        ),
        (
            "too-many-ticks",
            smf(track(tempo(0, 60_000), notes(SCALE), event(0x0FFFFFFF, 0x80, 60, 0)), division=32767),
            None,
            None,
            "timeline",
        ),
        (
            "delta-over-4-bytes",
            smf(track(event(0, 0x90, 60, 100), vlq(1 << 35) + bytes([0x80, 60, 0]))),
            None,
            None,
            "invalid time",
        ),
        ("running-status-at-start", smf(track(event(0, 60, 100), notes(SCALE))), None, None, "no status byte"),
        (
            "running-status-after-sysex",
            smf(track(event(0, 0xF0, 2, 1, 0xF7), event(0, 60, 100), notes(SCALE))),
            None,
            None,
            "no status byte",
        ),
        ("undefined-status", smf(track(event(0, 0xF4), notes(SCALE))), None, None, "status byte"),
        ("system-realtime-in-file", smf(track(event(0, 0xF8), notes(SCALE))), None, None, "status byte"),
        (
            "meta-absurd-length",
            smf(track(notes(SCALE), vlq(0) + b"\xff\x01" + vlq(0x0FFFFFFF) + b"short")),
            None,
            None,
            "middle of an event",
        ),
        ("meta-length-over-4-bytes", smf(track(vlq(0) + b"\xff\x01" + vlq(1 << 40))), None, None, "invalid"),
        ("sysex-absurd-length", smf(track(vlq(0) + b"\xf0" + vlq(0x0FFFFFFF) + b"\x01\xf7")), None, None, "event"),
        ("bad-key-signature", smf(track(meta(0, 0x59, bytes([20, 5])), notes(SCALE))), None, None, "damaged"),
        ("time-signature-zero", smf(track(meta(0, 0x58, bytes([0, 2, 24, 8])), notes(SCALE))), None, None, "damaged"),
        ("short-time-signature", smf(track(meta(0, 0x58, b"\x04"), notes(SCALE))), None, None, "damaged"),
        ("thousands-of-tracks", smf(*[track(notes([60]))] * 5000), None, None, "too many tracks"),
        ("chunk-garbage-id", header(1, 2) + track(notes(SCALE)) + b"\x00\x90<d" + bytes(64), None, None, "damaged"),
        (
            "100k-note-ons",
            smf(track(event(0, 0x90, 60, 100), *[event(1, 60, 100)] * 100_000), fmt=0),
            None,
            None,
            "too many notes",
        ),
        ("200k-events", smf(track(notes([60] * 100_001, step=1, length=1)), fmt=0), None, None, "too many events"),
        ("over-byte-limit", VALID + bytes(4096), None, TINY, "too large"),
        ("over-note-limit", smf(track(notes([60] * 11, step=1, length=1))), None, TINY, "too many notes"),
        ("over-event-limit", smf(track(*[event(0, 0xB0, 7, 100)] * 60, notes(SCALE))), None, TINY, "events"),
        ("over-track-limit", smf(*[track(notes([60]))] * 5), None, TINY, "too many tracks"),
        ("over-seconds-limit", smf(track(notes(SCALE, step=480 * 30, length=480))), None, TINY, "claims to last"),
    ]
    return [pytest.param(data, name, limits, words, id=case_id) for case_id, data, name, limits, words in cases]


def assert_user_facing(message: str) -> None:
    assert 0 < len(message) < 200
    assert "Traceback" not in message
    assert not re.search(r"\b[A-Z][a-z]+(Error|Exception)\b|struct\.error", message), message
    assert message.endswith(".")


@pytest.mark.parametrize(("data", "name", "limits", "words"), hostile_corpus())
def test_hostile_file_is_rejected_clearly(data, name, limits, words):
    # how fast: benchmarks/run.py --only midi_io
    with pytest.raises(MidiError) as caught:
        load_midi(data, limits or MidiLimits(), name=name)
    assert_user_facing(str(caught.value))
    assert words.lower() in str(caught.value).lower()


def test_years_message_names_the_length():
    with pytest.raises(MidiError, match=r"claims to last [\d,]+ years; seeds must be shorter than 60 minutes\."):
        load_midi(smf(track(notes(SCALE), event(0x0FFFFFFF, 0x90, 60, 0)), division=1))


def test_path_checks_extension_and_size_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.mid"
    big.write_bytes(VALID + bytes(4096))
    monkeypatch.setattr("midigen.midi_io.open", lambda *a, **k: pytest.fail("read a too large file"), raising=False)
    with pytest.raises(MidiError, match="too large"):
        load_midi(big, TINY)
    with pytest.raises(MidiError, match=r"\.mid"):
        load_midi(tmp_path / "song.txt")
    with pytest.raises(MidiError, match=r"\.mid"):
        load_midi(tmp_path / "song.mid", name="upload.wav")


def test_missing_path_is_a_midi_error(tmp_path):
    with pytest.raises(MidiError, match="could not be read"):
        load_midi(tmp_path / "gone.mid")


# -- legal files -------------------------------------------------------------


def pitches(midi: pretty_midi.PrettyMIDI, program: int | None = None) -> list[int]:
    return [n.pitch for i in midi.instruments if program in (None, i.program) for n in i.notes]


def test_format_0_loads_notes_and_times():
    midi = load_midi(VALID)
    assert pitches(midi) == SCALE
    assert [round(n.start, 6) for n in midi.instruments[0].notes] == [i * 0.25 for i in range(8)]
    assert all(round(n.end - n.start, 6) == 0.25 for n in midi.instruments[0].notes)


def test_format_1_with_tempo_change_and_programs():
    midi = load_midi(VALID_MULTI, name="Song.MIDI")
    assert pitches(midi, 0) == SCALE and pitches(midi, 40) == [48, 50, 52]
    times, bpms = midi.get_tempo_changes()
    assert list(times) == [0.0, 2.0] and list(bpms) == [120.0, 60.0]
    starts = [round(n.start, 6) for n in midi.instruments[0].notes]
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]  # 60 BPM starts after them, at beat 4
    assert [round(n.start, 6) for n in midi.instruments[1].notes] == [0.0, 0.5, 1.0]


def test_read_midi_keeps_the_tracks_as_uploaded_and_names_their_channels():
    data = header(1, 2) + chunk(b"XFIH", b"yamaha") + track(tempo(0, 400_000), notes([36], channel=9)) + track(
        notes(SCALE, channel=3), event(0, 0xB5, 64, 127))
    checked = read_midi(data + b"trailing junk")
    assert checked.data == header(1, 2) + data[len(header(1, 2)) + len(chunk(b"XFIH", b"yamaha")):]
    assert checked.channels == {3, 5, 9}
    assert pitches(checked.midi) == pitches(load_midi(data))


def test_path_with_uppercase_extension(tmp_path):
    path = tmp_path / "SEED.MID"
    path.write_bytes(VALID_MULTI)
    assert pitches(load_midi(path), 40) == [48, 50, 52]
    assert pitches(load_midi(str(path), name="seed.mid"), 0) == SCALE


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(header(1, 1) + chunk(b"XFIH", b"yamaha") + track(notes(SCALE)), id="unknown-chunk-skipped"),
        pytest.param(VALID + b"\x00" * 13 + b"trailing junk", id="trailing-bytes-ignored"),
        pytest.param(header(1, 2) + chunk(b"MTrk", b"") + track(notes(SCALE)), id="empty-track"),
        pytest.param(
            smf(
                track(
                    event(0, 0x90, 60, 100),
                    event(240, 60, 0),
                    event(0, 62, 100),
                    event(240, 62, 0),
                    meta(0, 0x01, b"x"),
                    event(0, 64, 100),
                    event(240, 64, 0),
                )
            ),
            id="running-status",
        ),
        pytest.param(smf(track(event(0, 0x90, 60, 200), event(240, 0x80, 60, 0))), id="data-byte-over-127-clipped"),
        pytest.param(smf(track(notes([36], channel=9), notes([60]))), id="drums-and-piano"),
        pytest.param(smf(track(meta(0, 0x03, bytes(range(256))), notes([60]))), id="binary-track-name"),
    ],
)
def test_tolerated_oddities(data):
    assert pitches(load_midi(data))


def sysex(delta: int, payload: bytes) -> bytes:
    return vlq(delta) + b"\xf0" + vlq(len(payload)) + payload


def raw_data_bytes(program: int, pan: int, sysex_byte: int, velocity: int, running_velocity: int) -> bytes:
    """A file whose program, pan value, sysex byte and two velocities (one after running status) are written as
    the raw data bytes given, whatever their range."""
    return smf(track(tempo(0, 500_000)), track(
        event(0, 0xC0, program), event(0, 0xB0, 10, pan), sysex(0, bytes([0x7E, sysex_byte, 0xF7])),
        event(0, 0x90, 60, velocity), event(240, 60, 0), event(0, 62, running_velocity), event(240, 62, 0)))


def test_data_bytes_above_127_are_kept_clipped_to_127_and_counted():
    checked = read_midi(raw_data_bytes(0x80, 0xFF, 0x90, 0x9C, 0xC8))
    assert checked.data == raw_data_bytes(0x7F, 0x7F, 0x7F, 0x7F, 0x7F)  # every other byte as uploaded
    assert checked.clipped == 5
    assert checked.notices == ["The seed had 5 out-of-range data bytes; midigen reads and keeps them as 127, as most "
                               "MIDI readers do."]
    (piano,) = pretty_midi.PrettyMIDI(io.BytesIO(checked.data)).instruments  # strict readers read the kept bytes
    assert piano.program == 127 and [n.velocity for n in piano.notes] == [127, 127]
    assert [(c.number, c.value) for c in piano.control_changes] == [(10, 127)]
    assert pitches(checked.midi) == [60, 62] and checked.midi.instruments[0].program == 127


def test_a_file_in_range_is_kept_as_it_is_without_notices():
    data = raw_data_bytes(5, 64, 0x10, 100, 90)
    checked = read_midi(data)
    assert (checked.data, checked.clipped, checked.notices) == (data, 0, [])


def test_an_empty_track_is_kept_with_its_end_so_that_pretty_midi_reads_it():
    checked = read_midi(header(1, 2) + chunk(b"MTrk", b"") + track(notes(SCALE)))
    assert checked.data == header(1, 2) + track() + track(notes(SCALE))
    assert pitches(pretty_midi.PrettyMIDI(io.BytesIO(checked.data))) == SCALE
    assert checked.notices == []


def test_exactly_at_the_limits_loads():
    limits = MidiLimits(max_notes=10, max_events=21)
    assert len(pitches(load_midi(smf(track(notes([60] * 10, step=1, length=1)), fmt=0), limits))) == 10


def test_large_legal_file_under_default_limits_loads():
    count = 99_000
    data = smf(track(notes([48 + i % 24 for i in range(count)], step=2, length=1)), fmt=0)
    midi = load_midi(data)  # how fast: benchmarks/run.py --only midi_io
    assert len(midi.instruments[0].notes) == count


# -- properties ----------------------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [VALID, VALID_MULTI, smf(track(tempo(0, 400_000), notes([60, 64, 67], channel=9), notes(SCALE)))]


def load_or_midi_error(data: bytes) -> None:
    try:
        midi = load_midi(data)
    except MidiError as error:
        assert_user_facing(str(error))
    else:
        assert any(i.notes for i in midi.instruments if not i.is_drum)  # accepted files always have notes to continue


@FAST
@given(st.binary(max_size=400) | st.binary(max_size=400).map(lambda tail: VALID[:14] + tail))
def test_random_bytes_only_raise_midi_error(data):
    load_or_midi_error(data)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if action == "flip" and where < len(data):
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and where < len(data):
            data[where] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xF0, 0xF7, 0xFF, draw(st.integers(0, 255))]))
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[where : where + draw(st.integers(1, 8))]
    return bytes(data)


@settings(FAST, max_examples=300)
@given(mutated())
def test_mutated_files_load_or_raise_midi_error(data):
    load_or_midi_error(data)


@st.composite
def pieces(draw):
    """A loaded piece with random notes (some overlapping or long) and maybe a tempo change."""
    events, tick = [], 0
    for _ in range(draw(st.integers(1, 60))):
        delta = draw(st.integers(0, 960))
        pitch = draw(st.integers(21, 108))
        length = draw(st.integers(1, 4000))
        events.append((tick + delta, 0x90, pitch, 90))
        events.append((tick + delta + length, 0x80, pitch, 0))
        tick += delta
    body, now = [tempo(0, draw(st.integers(250_000, 1_500_000)))], 0
    change = draw(st.none() | st.integers(0, tick + 1))
    if change is not None:
        events.append((change, 0xFF, 0, 0))
    for at, status, pitch, velocity in sorted(events):
        body.append(tempo(at - now, 300_000) if status == 0xFF else event(at - now, status, pitch, velocity))
        now = at
    return load_midi(smf(track(*body), fmt=0))


def all_notes(midi):
    return sorted((n for i in midi.instruments for n in i.notes), key=lambda n: (n.start, n.pitch, n.end))


@settings(FAST, max_examples=120)
@given(pieces(), st.integers(1, 80), st.floats(0.5, 60))
def test_trim_to_last_properties(midi, max_notes, max_seconds):
    before = all_notes(midi)
    trimmed, was_trimmed, start = trim_to_last(midi, max_notes, max_seconds)
    after = all_notes(trimmed)
    assert all_notes(midi) == before  # The input is left alone.
    if not was_trimmed:
        assert trimmed is midi and start == 0.0
        assert len(before) <= max_notes
        assert max(n.end for n in before) - before[0].start <= max_seconds
        return
    assert 1 <= len(after) <= max_notes
    assert after[0].start == pytest.approx(0, abs=1e-9)
    assert trimmed.get_end_time() <= max_seconds + 1e-6
    kept = before[len(before) - len(after) :]
    assert [n.pitch for n in after] == [n.pitch for n in kept]  # The last notes, in order.
    offset = kept[0].start
    assert start == offset  # The time of the original that became 0.
    for old, new in zip(kept, after, strict=True):
        assert new.start == pytest.approx(old.start - offset, abs=1e-6)
        # The tempo map moves with the notes: beat positions are unchanged.
        assert trimmed.time_to_tick(new.start) == pytest.approx(
            midi.time_to_tick(old.start) - midi.time_to_tick(offset), abs=1
        )


def test_trim_keeps_tempo_and_reports():
    midi = load_midi(smf(track(tempo(0, 750_000), notes(list(range(40, 100)), step=480, length=480)), fmt=0))
    trimmed, was_trimmed, start = trim_to_last(midi, 16, 1000)
    assert was_trimmed and pitches(trimmed) == list(range(84, 100)) and start == pytest.approx(44 * 0.75)
    assert list(trimmed.get_tempo_changes()[1]) == pytest.approx([80.0])
    assert trim_to_last(midi, 60, 1000) == (midi, False, 0.0)
    shorter, was_trimmed, start = trim_to_last(midi, 60, 10.0)
    assert was_trimmed and shorter.get_end_time() <= 10.0 and pitches(shorter) == list(range(87, 100))
    assert start == pytest.approx(47 * 0.75)


def test_trim_rejects_nonsense_bounds():
    with pytest.raises(ValueError):
        trim_to_last(load_midi(VALID), 0, 10)
