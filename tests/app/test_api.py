"""The ``/generate`` API of the running app, through gradio_client (and raw HTTP where the
client refuses to send a value): real model, real FluidSynth, real MP3 files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import httpx
import pytest
from app_testkit import (
    MAX_RANDOM_SEED,
    MAX_SECONDS,
    MAX_VARIATIONS,
    TAIL_SECONDS,
    assert_clear_message,
    audio_facts,
    check_audio_matches_midi,
    clear_message_problem,
    find_note,
    is_png,
    midi_facts,
    raw_generate,
    same_note,
    summary_counts,
)
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from seed_pieces import band, contents, missing

pytestmark = pytest.mark.timeout(180)

AUDIO, MIDI, ROLL, SUMMARY, SEED = slice(0, MAX_VARIATIONS), MAX_VARIATIONS, 5, 6, 7
DEFAULTS = dict(temperature=1.0, top_p=0.95, seconds=8, bpm=0, program=0, random_seed=1234, randomize=False,
                variations=1, keep_seed=True)
ORDER = ("temperature", "top_p", "seconds", "bpm", "program", "random_seed", "randomize", "variations", "keep_seed")


def generate(client, seed=None, **settings):
    values = {**DEFAULTS, **settings}
    upload = handle_file(str(seed)) if seed is not None else None
    return client.predict(upload, *(values[name] for name in ORDER), api_name="/generate")


def check_result(result, variations: int) -> None:
    """Shape and files of a successful result: players, MIDI files, piano roll, summary, seed."""
    assert len(result) == 8, result
    audio, midi = result[AUDIO], result[MIDI]
    assert all(audio[:variations]), audio
    assert all(a is None for a in audio[variations:]), audio
    assert len(midi) == variations, midi
    for audio_path, midi_path in zip(audio[:variations], midi, strict=True):
        facts = midi_facts(midi_path)
        assert facts.notes, f"{midi_path} has no notes"
        check_audio_matches_midi(audio_path, midi_path)
    assert is_png(result[ROLL]), result[ROLL]
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
    assert result[AUDIO][3] is None
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


def test_piano_roll_is_a_png(from_scratch):
    with Image.open(from_scratch[ROLL]) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= 200 and height >= 50, (width, height)


def test_audio_payload_is_at_most_1_mb_per_30_s(app_client):
    result = generate(app_client, seconds=30, variations=1, random_seed=31)
    check_result(result, variations=1)
    audio = audio_facts(result[AUDIO][0])
    assert audio.seconds >= 25, audio
    assert audio.size <= 1_000_000 * audio.seconds / 30, f"{audio.size} bytes for {audio.seconds:.1f} s"


def test_outputs_are_written_once_inside_gradios_cache(midigen_app):
    """The server writes each output once, into a per-request folder inside GRADIO_TEMP_DIR, and serves
    that file itself (no second copy in Gradio's cache)."""
    result = raw_generate(midigen_app.url, [None, 1.0, 0.95, 3, 0, 0, 8, False, 1, True])
    assert result.kind == "complete", result
    paths = [v["path"] for v in result.data[:MAX_VARIATIONS] if v] + [v["path"] for v in result.data[MIDI]]
    paths.append(result.data[ROLL]["path"])
    outputs = (midigen_app.temp_dir / "gradio" / "midigen").resolve()
    folders = {Path(path).resolve().parent for path in paths}
    assert len(folders) == 1, folders
    (folder,) = folders
    assert folder.parent == outputs and folder.name.startswith("request-"), folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(p).name for p in paths)


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
    result = raw_generate(midigen_app.url, [seed, 1.0, 0.95, 3, 0, 0, 1, False, 1, True])
    assert result.kind in ("error", "http"), result
    assert "root:" not in str(result.data) and "gradio" not in str(result.message or "").lower()
    check_healthy()


# -- API abuse -------------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")
# (setting, value, longest acceptable message). Values the app must refuse clearly or clamp.
ABUSE = [
    ("temperature", "abc", 200), ("temperature", None, 200), ("temperature", -5, 200),
    ("temperature", 1e9, 200), ("temperature", NAN, 200), ("temperature", INF, 200), ("temperature", True, 200),
    ("top_p", "abc", 200), ("top_p", None, 200), ("top_p", -5, 200), ("top_p", NAN, 200),
    ("seconds", "abc", 200), ("seconds", None, 200), ("seconds", -5, 200), ("seconds", 1e9, 200),
    ("seconds", NAN, 200), ("seconds", -INF, 200),
    ("bpm", "abc", 200), ("bpm", -5, 200), ("bpm", 1e9, 200), ("bpm", NAN, 200), ("bpm", INF, 200),
    ("bpm", 10, 200), ("bpm", None, 200),
    ("program", "abc", 200), ("program", None, 200), ("program", -5, 200), ("program", 999, 200),
    ("program", 5.5, 200),
    ("random_seed", "abc", 200), ("random_seed", None, 200), ("random_seed", -5, 200),
    ("random_seed", 1e18, 200), ("random_seed", NAN, 200), ("random_seed", 1.5, 200),
    ("variations", "abc", 200), ("variations", None, 200), ("variations", -5, 200), ("variations", 99, 200),
    ("variations", 2.5, 200), ("variations", NAN, 200),
    ("randomize", "abc", 200), ("keep_seed", 5, 200),
]


def _abuse_id(case) -> str:
    name, value, _ = case
    return f"{name}={value!r}"


@pytest.mark.parametrize("case", ABUSE, ids=_abuse_id)
def test_bad_setting_is_refused_clearly_or_clamped(midigen_app, app_client, case):
    name, value, max_length = case
    values = {**DEFAULTS, "seconds": 4, "random_seed": 1, name: value}
    if isinstance(value, float) and not math.isfinite(value):
        # gradio_client cannot send NaN or infinities (strict JSON): use the HTTP API.
        raw = raw_generate(midigen_app.url, [None, *(values[n] for n in ORDER)])
        ok, message = raw.kind == "complete", raw.message
        midi_paths = [f["path"] for f in raw.data[MIDI]] if ok else []
        summary = raw.data[SUMMARY] if ok else ""
    else:
        try:
            result = app_client.predict(None, *(values[n] for n in ORDER), api_name="/generate")
            ok, message, midi_paths, summary = True, None, result[MIDI], result[SUMMARY]
        except AppError as error:
            ok, message = False, str(error)
    if not ok:
        problem = clear_message_problem(message, max_length)
        assert problem is None, f"{name}={value!r}: {problem}"
        return
    # Accepted: the value must have been clamped into the documented range (studio.RANGES).
    assert 1 <= len(midi_paths) <= MAX_VARIATIONS
    for path in midi_paths:
        facts = midi_facts(path)
        assert facts.end_time <= MAX_SECONDS + 5, facts.end_time
        assert 40 <= facts.tempo <= 240, facts.tempo
        assert all(0 <= program <= 127 for program in facts.programs)
    if name == "bpm" and value not in (None, 0):
        assert "at 40 BPM" in summary or "at 240 BPM" in summary, summary


def test_tiny_bpm_is_clamped_to_40(app_client):
    result = generate(app_client, seconds=10, bpm=10, random_seed=1)
    assert "at 40 BPM" in result[SUMMARY], result[SUMMARY]
    assert midi_facts(result[MIDI][0]).tempo == pytest.approx(40, abs=0.01)


def test_longest_request_is_capped_at_60_seconds(app_client):
    """The longest allowed request; anything longer is refused by the slider (checked above)."""
    result = generate(app_client, seconds=60, variations=1, random_seed=3)
    facts = midi_facts(result[MIDI][0])
    assert 50 <= facts.end_time <= MAX_SECONDS + 5, facts.end_time
    assert audio_facts(result[AUDIO][0]).seconds <= MAX_SECONDS + 5 + TAIL_SECONDS + 1


def test_server_survives_the_abuse(midigen_app, check_healthy):
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
    audio = audio_facts(result[AUDIO][0])
    assert audio.rms > 0 and audio.seconds < midi_facts(output).end_time - 5
