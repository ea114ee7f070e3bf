"""The ``/generate`` API of the running app, through gradio_client (and raw HTTP where the
client refuses to send a value): real model, real FluidSynth, real MP3 files."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pretty_midi
import pytest
from app_testkit import (
    MAX_RANDOM_SEED,
    MAX_SECONDS,
    TAIL_SECONDS,
    api_values,
    assert_clear_message,
    audio_facts,
    check_audio_matches_midi,
    find_note,
    midi_facts,
    named,
    raw_generate,
    same_note,
    summary_counts,
)
from app_testkit import call_generate as generate
from gradio_client.exceptions import AppError
from seed_pieces import band, contents, missing

from app import OUTPUT_NAMES
from midigen.settings import setting

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MAX_VARIATIONS = setting("variations").high
AUDIO = [f"audio_{i}" for i in range(1, MAX_VARIATIONS + 1)]
MIDI, ROLL, SUMMARY, SEED = "midi_files", "piano_roll", "summary", "random_seed"


def check_result(result: dict, variations: int) -> None:
    """Shape and files of a successful result: players, MIDI files, piano roll, summary, seed."""
    assert list(result) == list(OUTPUT_NAMES), result
    audio, midi = [result[name] for name in AUDIO], result[MIDI]
    assert all(audio[:variations]), audio
    assert all(a is None for a in audio[variations:]), audio
    assert len(midi) == variations, midi
    for audio_path, midi_path in zip(audio[:variations], midi, strict=True):
        facts = midi_facts(midi_path)
        assert facts.notes, f"{midi_path} has no notes"
        check_audio_matches_midi(audio_path, midi_path)
    assert len(result[ROLL]["lanes"]) == variations, result[ROLL]
    assert "new notes" in result[SUMMARY], result[SUMMARY]
    assert isinstance(result[SEED], int) and 0 <= result[SEED] <= MAX_RANDOM_SEED, result[SEED]


# -- successful generations ------------------------------------------------------------------
@pytest.fixture(scope="module")
def from_scratch(app_client):
    return generate(app_client, seconds=10, variations=2, random_seed=42)


@pytest.fixture(scope="module")
def seeded(app_client, seed_files):
    keep = generate(app_client, seed_files["scale"], seconds=8, random_seed=7, keep_seed=True)
    drop = generate(app_client, seed_files["scale"], seconds=8, random_seed=7, keep_seed=False)
    return keep, drop


def test_from_scratch_gives_playable_audio_and_midi(from_scratch):
    check_result(from_scratch, variations=2)
    assert from_scratch[SEED] == 42
    new, seed_notes = summary_counts(from_scratch[SUMMARY])
    assert seed_notes == 0 and new == len(midi_facts(from_scratch[MIDI][0]).notes)


def test_from_scratch_length_is_about_what_was_asked(from_scratch):
    for midi_path in from_scratch[MIDI]:
        end = midi_facts(midi_path).end_time
        assert 5 <= end <= 10 + 4, end  # about 10 s of music (the last notes may run over)


def test_seeded_result_is_playable(seeded):
    keep, drop = seeded
    check_result(keep, variations=1)
    check_result(drop, variations=1)


def test_keep_seed_output_begins_with_the_seed(seeded, seed_files):
    keep, _ = seeded
    seed = midi_facts(seed_files["scale"])
    out = midi_facts(keep[MIDI][0])
    assert out.tempo == pytest.approx(seed.tempo, abs=0.5)
    assert same_note(out.notes[0], seed.notes[0]), (out.notes[:3], seed.notes[:3])
    missing = [n for n in seed.notes if not find_note(out.notes, n)]
    assert not missing, f"seed notes missing from the output: {missing}"
    new_notes = [n for n in out.notes if not find_note(seed.notes, n)]
    last_seed_onset = max(start for _, start, _ in seed.notes)
    assert new_notes and min(start for _, start, _ in new_notes) >= last_seed_onset - 1e-3
    new, seed_count = summary_counts(keep[SUMMARY])
    assert (new, seed_count) == (len(new_notes), len(seed.notes))


def test_keep_seed_false_leaves_the_seed_out(seeded, seed_files):
    keep, drop = seeded
    seed = midi_facts(seed_files["scale"])
    kept, dropped = midi_facts(keep[MIDI][0]).notes, midi_facts(drop[MIDI][0]).notes
    continuation = [n for n in kept if not find_note(seed.notes, n)]
    assert len(dropped) == len(continuation) == len(kept) - len(seed.notes)
    assert dropped[0][1] == pytest.approx(0.0, abs=1e-6)  # the continuation is moved to the start
    offset = continuation[0][1]
    shifted = [(p, s - offset, e - offset) for p, s, e in continuation]
    assert all(same_note(a, b) for a, b in zip(shifted, dropped, strict=True)), (shifted[:4], dropped[:4])
    assert not all(same_note(a, b) for a, b in zip(dropped, seed.notes, strict=False))


def test_three_variations(app_client):
    result = generate(app_client, seconds=6, variations=3, random_seed=99)
    check_result(result, variations=3)
    assert result["audio_4"] is None
    contents = {Path(p).read_bytes() for p in result[MIDI]}
    assert len(contents) > 1, "all variations are identical"


def test_same_random_seed_gives_identical_midi(app_client):
    first = generate(app_client, seconds=6, variations=2, random_seed=2024, randomize=False)
    second = generate(app_client, seconds=6, variations=2, random_seed=2024, randomize=False)
    assert [Path(p).read_bytes() for p in first[MIDI]] == [Path(p).read_bytes() for p in second[MIDI]]
    assert first[SEED] == second[SEED] == 2024


def test_randomize_returns_the_seed_it_used(app_client):
    first = generate(app_client, seconds=5, randomize=True, random_seed=5)
    second = generate(app_client, seconds=5, randomize=True, random_seed=5)
    used = first[SEED]
    assert isinstance(used, int) and 0 <= used <= MAX_RANDOM_SEED
    assert f"Random seed {used}" in first[SUMMARY]
    assert second[SEED] != used, "two randomized requests drew the same seed"
    again = generate(app_client, seconds=5, randomize=False, random_seed=used)
    assert Path(again[MIDI][0]).read_bytes() == Path(first[MIDI][0]).read_bytes()


def test_piano_roll_holds_each_variations_notes(from_scratch):
    roll = from_scratch[ROLL]
    for lane, midi_path in zip(roll["lanes"], from_scratch[MIDI], strict=True):
        drawn = sorted((p, s, e) for p, s, e, new in lane["notes"])
        assert drawn and all(new == 1 for *_, new in lane["notes"])  # from scratch: everything is new
        assert all(same_note(a, b) for a, b in zip(drawn, sorted(midi_facts(midi_path).notes), strict=True))
    assert roll["low"] <= min(n[0] for lane in roll["lanes"] for n in lane["notes"])


def test_piano_roll_marks_the_seed_and_where_the_new_music_starts(seeded, seed_files):
    keep, drop = seeded
    seed = midi_facts(seed_files["scale"])
    (lane,) = keep[ROLL]["lanes"]
    old = [(p, s, e) for p, s, e, new in lane["notes"] if not new]
    assert len(old) == len(seed.notes) and all(find_note(seed.notes, note) for note in old)
    assert lane["boundary"] >= max(start for _, start, _ in seed.notes)
    assert all(s >= lane["boundary"] - 1e-3 for _, s, _, new in lane["notes"] if new)
    assert all(new for *_, new in drop[ROLL]["lanes"][0]["notes"])


def test_audio_payload_is_at_most_1_mb_per_30_s(app_client):
    result = generate(app_client, seconds=30, variations=1, random_seed=31)
    check_result(result, variations=1)
    audio = audio_facts(result["audio_1"])
    assert audio.seconds >= 25, audio
    assert audio.size <= 1_000_000 * audio.seconds / 30, f"{audio.size} bytes for {audio.seconds:.1f} s"


def test_outputs_are_written_once_inside_gradios_cache(midigen_app):
    """The server writes each output once, into a per-request folder inside GRADIO_TEMP_DIR, and serves
    that file itself (no second copy in Gradio's cache)."""
    result = raw_generate(midigen_app.url, api_values(seconds=3, random_seed=8))
    assert result.kind == "complete", result
    outputs = named(result.data)
    paths = [outputs[name]["path"] for name in AUDIO if outputs[name]] + [v["path"] for v in outputs[MIDI]]
    outputs = (midigen_app.temp_dir / "gradio" / "midigen").resolve()
    folders = {Path(path).resolve().parent for path in paths}
    assert len(folders) == 1, folders
    (folder,) = folders
    assert folder.parent == outputs and folder.name.startswith("request-"), folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(p).name for p in paths)


def test_uploads_leave_no_stray_files(midigen_app, app_client, seed_files):
    """Each upload is one file in Gradio's cache; nothing else is left at the top of its temp folder."""
    gradio_dir = midigen_app.temp_dir / "gradio"
    loose = {p.name for p in gradio_dir.iterdir() if p.is_file()}
    for random_seed in range(3):
        generate(app_client, seed_files["scale"], seconds=2, random_seed=random_seed)
    assert {p.name for p in gradio_dir.iterdir() if p.is_file()} == loose


def test_short_slow_request_still_has_notes(app_client):
    empty = []
    for random_seed in range(10):
        result = generate(app_client, seconds=3, bpm=40, random_seed=random_seed)
        new, _ = summary_counts(result[SUMMARY])
        if new == 0 or not midi_facts(result[MIDI][0]).notes:
            empty.append((random_seed, result[SUMMARY]))
    assert not empty, f"{len(empty)}/10 requests for 3 s at 40 BPM gave no notes: {empty[:3]}"


# -- bad uploads -----------------------------------------------------------------------------
BAD_UPLOADS = {
    "not-midi": r"not a MIDI file",
    "truncated": r"damaged|truncated|incomplete",
    "text-file": r"\.mid",
    "drums-only": r"drums",
    "years-long": r"years",
    "empty": r"empty",
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload_gives_a_clear_error(app_client, seed_files, check_healthy, name):
    with pytest.raises(AppError) as caught:
        generate(app_client, seed_files[name], seconds=3)
    message = str(caught.value)
    assert_clear_message(message)
    assert re.search(BAD_UPLOADS[name], message, re.IGNORECASE), message
    check_healthy()


def test_oversized_upload_is_refused(midigen_app, check_healthy):
    payload = b"MThd" + bytes(2 * 2**20)
    response = httpx.post(midigen_app.url + "gradio_api/upload", files={"files": ("big.mid", payload, "audio/midi")},
                          timeout=60)
    assert response.status_code == 413, response.text[:200]
    assert "maximum allowed size" in response.text
    check_healthy()


@pytest.mark.parametrize("path", ["/etc/passwd", "app.py", "../../../../etc/passwd"])
def test_seed_path_outside_the_uploads_is_refused(midigen_app, check_healthy, path):
    if path == "app.py":
        path = str(Path(__file__).resolve().parents[2] / "app.py")
    seed = {"path": path, "orig_name": "x.mid", "meta": {"_type": "gradio.FileData"}}
    result = raw_generate(midigen_app.url, api_values(seed, seconds=3, random_seed=1))
    assert result.kind in ("error", "http"), result
    assert "root:" not in str(result.data) and "gradio" not in str(result.message or "").lower()
    check_healthy()


# -- API abuse -------------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Refused:
    message: str  # the whole message the user reads


@dataclass(frozen=True)
class Clamped:
    to: object  # the request behaves exactly as if this value had been sent


def number(name):
    return Refused(f"{name} must be a number")


def finite(name):
    return Refused(f"{name} must be a finite number")


def whole(name):
    return Refused(f"{name} must be a whole number")


ABUSE = [
    ("temperature", "abc", number("temperature")), ("temperature", None, number("temperature")),
    ("temperature", True, number("temperature")), ("temperature", -5, Clamped(0.05)),
    ("temperature", 1e9, Clamped(2.0)),
    ("temperature", NAN, finite("temperature")), ("temperature", INF, finite("temperature")),
    ("top_p", "abc", number("top_p")), ("top_p", None, number("top_p")), ("top_p", -5, Clamped(0.05)),
    ("top_p", NAN, finite("top_p")),
    ("seconds", "abc", number("seconds")), ("seconds", None, number("seconds")), ("seconds", -5, Clamped(1)),
    ("seconds", 1e9, Clamped(60)), ("seconds", NAN, finite("seconds")), ("seconds", -INF, finite("seconds")),
    ("bpm", "abc", number("bpm")), ("bpm", -5, Clamped(40)), ("bpm", 10, Clamped(40)), ("bpm", 1e9, Clamped(240)),
    ("bpm", NAN, finite("bpm")), ("bpm", INF, finite("bpm")), ("bpm", None, Clamped(0)),
    ("program", "abc", number("program")), ("program", None, Clamped(-1)), ("program", -5, Clamped(0)),
    ("program", 999, Clamped(127)), ("program", 5.5, whole("program")),
    ("random_seed", "abc", number("random_seed")), ("random_seed", None, number("random_seed")),
    ("random_seed", -5, Clamped(0)), ("random_seed", 1e18, Clamped(MAX_RANDOM_SEED)),
    ("random_seed", NAN, finite("random_seed")), ("random_seed", 1.5, whole("random_seed")),
    ("variations", "abc", number("variations")), ("variations", None, number("variations")),
    ("variations", -5, Clamped(1)), ("variations", 99, Clamped(MAX_VARIATIONS)),
    ("variations", 2.5, whole("variations")), ("variations", NAN, finite("variations")),
    ("randomize", "abc", Refused("randomize must be true or false")),
    ("keep_seed", 5, Refused("keep_seed must be true or false")),
    ("key", "H minor", Refused("key must be auto, free, or one of the 24 major and minor keys ('D minor', "
                               "'Eb major')")),
    ("key", 7, Refused("key must be auto, free, or one of the 24 major and minor keys ('D minor', 'Eb major')")),
    ("key", "eb MAJOR", Clamped("Eb major")),
    ("density", "loud", Refused("density must be auto, sparse, light, medium, busy, dense")),
    ("density", "BUSY", Clamped("busy")),
    ("style", "jazz", Refused("style must be auto, game-piano, chorale, folk, renaissance")),
    ("style", "Chorale", Clamped("chorale")),
    ("keep_seed_until", -5, Clamped(0)), ("keep_seed_until", "abc", number("keep_seed_until")),
]


def _abuse_id(case) -> str:
    name, value, _ = case
    return f"{name}={value!r}"


def send(midigen_app, app_client, **settings) -> tuple[dict | None, str | None]:
    """(outputs, None) or (None, the error message); NaN and infinities go through the plain HTTP API,
    since gradio_client cannot send them (strict JSON)."""
    if any(isinstance(v, float) and not math.isfinite(v) for v in settings.values()):
        raw = raw_generate(midigen_app.url, api_values(**settings))
        if raw.kind != "complete":
            return None, raw.message
        outputs = named(raw.data)
        outputs[MIDI] = [f["path"] for f in outputs[MIDI]]
        return outputs, None
    try:
        return generate(app_client, **settings), None
    except AppError as error:
        return None, str(error)


@pytest.mark.parametrize("case", ABUSE, ids=_abuse_id)
def test_bad_setting_is_refused_clearly_or_clamped(midigen_app, app_client, case):
    name, value, expected = case
    base = {"seconds": 4, "random_seed": 1}
    outputs, message = send(midigen_app, app_client, **{**base, name: value})
    if isinstance(expected, Refused):
        assert outputs is None, f"{name}={value!r} was accepted"
        assert_clear_message(message)
        assert message == expected.message
        return
    assert message is None, f"{name}={value!r} was refused: {message}"
    same, _ = send(midigen_app, app_client, **{**base, name: expected.to})
    assert [Path(p).read_bytes() for p in outputs[MIDI]] == [Path(p).read_bytes() for p in same[MIDI]], (
        f"{name}={value!r} did not behave like {name}={expected.to!r}")
    assert outputs[SUMMARY].split(" Composed in")[0] == same[SUMMARY].split(" Composed in")[0]


def test_tiny_bpm_is_clamped_to_40(app_client):
    result = generate(app_client, seconds=10, bpm=10, random_seed=1)
    assert "at 40 BPM" in result[SUMMARY], result[SUMMARY]
    assert midi_facts(result[MIDI][0]).tempo == pytest.approx(40, abs=0.01)


def test_longest_request_is_capped_at_60_seconds(app_client):
    """The longest allowed request; anything longer is refused by the slider (checked above)."""
    result = generate(app_client, seconds=60, variations=1, random_seed=3)
    facts = midi_facts(result[MIDI][0])
    longest_note = 8 * 60 / facts.tempo  # the tokenizer's longest duration: 8 beats at the piece's tempo
    assert 50 <= max(start for _, start, _ in facts.notes) < MAX_SECONDS
    assert facts.end_time <= MAX_SECONDS + longest_note, facts.end_time
    assert audio_facts(result["audio_1"]).seconds <= MAX_SECONDS + longest_note + TAIL_SECONDS + 1


def test_server_survives_the_abuse(midigen_app, app_client, check_healthy):
    for name, value, expected in ABUSE:  # every refused value, one after the other, then a normal request
        if isinstance(expected, Refused):
            outputs, _ = send(midigen_app, app_client, **{"seconds": 2, "random_seed": 1, name: value})
            assert outputs is None, f"{name}={value!r} was accepted"
    check_healthy()
    midigen_app.assert_alive()


def test_the_download_keeps_a_band_seed_exactly(app_client, tmp_path):
    """Ten tracks with programs, pedal, pitch bends, drums and tempo changes: all of it comes back, then the
    new music on a track of its own; the players start shortly before the new music."""
    seed = tmp_path / "band.mid"
    seed.write_bytes(band())
    result = generate(app_client, seed, seconds=4, random_seed=11, program=40)
    output = Path(result[MIDI][0]).read_bytes()
    before, after = contents(seed.read_bytes()), contents(output)
    assert not missing(before.notes, after.notes), "seed notes changed or missing"
    assert not missing(before.controls, after.controls) and not missing(before.bends, after.bends)
    assert after.tempi == before.tempi and after.time_signatures == before.time_signatures
    assert any(number == 64 for _, number, _, _ in before.controls) and any(note[1] for note in before.notes)
    last_onset = max(start for _, drum, _, _, start, _ in before.notes if not drum)
    added = missing(after.notes, before.notes)
    assert added and all(program == 40 and not drum and start >= last_onset - 1e-6
                         for program, drum, _, _, start, _ in added)
    assert summary_counts(result[SUMMARY]) == (len(added), len(before.notes))
    assert "before the new music" in result[SUMMARY]
    audio = audio_facts(result["audio_1"])
    assert audio.rms > 0 and audio.seconds < midi_facts(output).end_time - 5


def test_keep_seed_until_regenerates_the_rest(app_client, seed_files):
    seed = midi_facts(seed_files["scale"])
    result = generate(app_client, seed_files["scale"], seconds=4, random_seed=12, program=40, keep_seed_until=2.0)
    before = [note for note in seed.notes if note[1] < 2.0]
    out = pretty_midi.PrettyMIDI(result[MIDI][0])
    *seed_tracks, new_track = out.instruments
    kept = sorted((n.pitch, n.start, n.end) for i in seed_tracks for n in i.notes)
    assert len(kept) == len(before) and all(same_note(a, b) for a, b in zip(kept, before, strict=True))
    assert new_track.program == 40 and new_track.notes
    assert min(n.start for n in new_track.notes) >= before[-1][1] - 1e-3
    assert summary_counts(result[SUMMARY]) == (len(new_track.notes), len(before))


def test_each_style_is_named_in_the_summary_and_plays_its_instrument(app_client, seed_files):
    for style, program in (("chorale", 19), ("folk", 40), ("renaissance", 52)):
        result = generate(app_client, seconds=5, style=style)
        assert f"style {style}." in result[SUMMARY]
        assert pretty_midi.PrettyMIDI(result[MIDI][0]).instruments[-1].program == program
    seeded_result = generate(app_client, seed_files["scale"], seconds=5)
    assert "(Auto's choice for this seed)" in seeded_result[SUMMARY]
