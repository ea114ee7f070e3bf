"""The duet's answer (``midigen.duet``) and the keyboard's samples (``midigen.samples``), with the shipped model and
FluidSynth: notes list or MIDI file in, an answer in the phrase's key out; bad phrases refused in one sentence; the
HTTP routes the page uses."""

from __future__ import annotations

import base64
import io
import math

import mido
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
from helpers import midi_bytes
from starlette.applications import Starlette
from starlette.testclient import TestClient

from midigen import samples
from midigen.controls import KEY_NAMES
from midigen.duet import MAX_BARS, MAX_NOTES, AnswerSettings, Duet, duet_midi, phrase_from_midi, phrase_from_notes
from midigen.render import SAMPLE_RATE, audio_available
from midigen.settings import UserError
from midigen.stats import duration_profile, estimate_key

C_E_G_C = [{"pitch": pitch, "velocity": 80, "start": 0.5 * i, "end": 0.5 * i + 0.45}
           for i, pitch in enumerate((60, 64, 67, 72))]


@pytest.fixture(scope="module")
def duet(shipped_generator) -> Duet:
    return Duet(shipped_generator)


def key_of(notes: list[dict]) -> str:
    """The Krumhansl-Schmuckler key of ``notes`` (duration-weighted)."""
    profile = duration_profile([n["pitch"] for n in notes], [n["end"] - n["start"] for n in notes])
    return KEY_NAMES[estimate_key(profile)]


def test_a_notes_list_is_answered_with_notes_and_the_same_music_as_midi(duet):
    answer = duet.answer(phrase_from_notes(C_E_G_C), AnswerSettings(bars=2, random_seed=1))
    bar = 4 * 60 / answer.bpm
    assert answer.bpm == 120 and answer.random_seed == 1
    assert answer.notes and answer.notes[0]["start"] == 0
    assert all(0 <= n["start"] < n["end"] <= 2 * bar + 1e-6 and 0 <= n["pitch"] <= 127 and 1 <= n["velocity"] <= 127
               for n in answer.notes)
    played = mido.MidiFile(file=io.BytesIO(base64.b64decode(answer.as_json()["midi"])))
    assert sum(m.type == "note_on" and m.velocity > 0 for m in played) == len(answer.notes)


def test_the_answer_lasts_the_bars_asked(duet):
    for bars in (1, 4):
        answer = duet.answer(phrase_from_notes(C_E_G_C), AnswerSettings(bars=bars, random_seed=2))
        bar = 4 * 60 / answer.bpm
        assert (bars - 1) * bar < max(n["start"] for n in answer.notes) < bars * bar


def test_a_midi_file_is_answered_at_its_tempo(duet):
    phrase = midi_bytes([(60, 0, 12), (64, 12, 12), (67, 24, 12), (72, 36, 12)], tempo=90.0)
    answer = duet.answer(phrase_from_midi(phrase), AnswerSettings(random_seed=3))
    assert answer.bpm == pytest.approx(90.0)
    assert answer.notes


@pytest.mark.parametrize("random_seed", [1, 2, 3, 4])
def test_c_e_g_c_is_answered_in_c_major_or_a_minor(duet, random_seed):
    answer = duet.answer(phrase_from_notes(C_E_G_C), AnswerSettings(random_seed=random_seed))
    assert key_of(answer.notes) in ("C major", "A minor"), answer.notes


def test_a_named_key_is_answered_in_that_key(duet):
    answer = duet.answer(phrase_from_notes(C_E_G_C), AnswerSettings(bars=4, key="D major", random_seed=5))
    assert key_of(answer.notes) in ("D major", "B minor"), answer.notes


def test_the_same_random_seed_gives_the_same_answer(duet):
    first, again = (duet.answer(phrase_from_notes(C_E_G_C), AnswerSettings(random_seed=7)) for _ in range(2))
    assert first.notes == again.notes


def note(**changes) -> dict:
    return {"pitch": 60, "velocity": 80, "start": 0.0, "end": 0.5, **changes}


@pytest.mark.parametrize(("notes", "message"), [
    ([], "notes must be a non-empty list of notes"),
    ("C E G", "notes must be a non-empty list of notes"),
    ([note()] * (MAX_NOTES + 1), f"notes has {MAX_NOTES + 1} notes; at most {MAX_NOTES} are allowed"),
    ([note(), [60, 80, 0, 1]], "notes[1] must be an object with exactly pitch, velocity, start, end"),
    ([{"pitch": 60, "start": 0}], "notes[0] must be an object with exactly pitch, velocity, start, end"),
    ([note(pitch=128)], "notes[0].pitch must be a whole number from 0 to 127"),
    ([note(pitch=60.5)], "notes[0].pitch must be a whole number from 0 to 127"),
    ([note(pitch=True)], "notes[0].pitch must be a whole number from 0 to 127"),
    ([note(velocity=0)], "notes[0].velocity must be a whole number from 1 to 127"),
    ([note(start=math.nan)], "notes[0].start must be a number of seconds from 0 to 600"),
    ([note(end=math.inf)], "notes[0].end must be a number of seconds from 0 to 600"),
    ([note(start=-1.0)], "notes[0].start must be a number of seconds from 0 to 600"),
    ([note(start="0")], "notes[0].start must be a number of seconds from 0 to 600"),
    ([note(), note(start=1.0, end=1.0)], "notes[1] must end after it starts"),
])
def test_bad_notes_are_refused_in_one_sentence(notes, message):
    with pytest.raises(UserError) as refused:
        phrase_from_notes(notes)
    assert str(refused.value) == message


@pytest.mark.parametrize(("data", "message"), [
    (b"", "This file is empty"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01", "damaged"),
    (midi_bytes([]), "This MIDI file contains no notes."),
    (b"MThd" + b"\x00" * (300 * 1024), "too large"),
])
def test_bad_midi_is_refused_as_an_upload_is(data, message):
    with pytest.raises(UserError, match=message):
        phrase_from_midi(data)


@pytest.mark.parametrize(("values", "message"), [
    ({"bars": 0}, f"bars must be a whole number from 1 to {MAX_BARS}"),
    ({"bars": MAX_BARS + 1}, f"bars must be a whole number from 1 to {MAX_BARS}"),
    ({"bars": 1.5}, f"bars must be a whole number from 1 to {MAX_BARS}"),
    ({"bars": math.nan}, f"bars must be a whole number from 1 to {MAX_BARS}"),
    ({"bars": math.inf}, f"bars must be a whole number from 1 to {MAX_BARS}"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"key": "H major"}, "key must be"),
    ({"density": "thick"}, "density must be"),
])
def test_bad_settings_are_refused(values, message):
    with pytest.raises(UserError, match=message):
        AnswerSettings.from_values(values)


def test_the_duet_file_holds_both_parts_in_the_time_they_were_played():
    you = phrase_from_notes(C_E_G_C).file.midi.instruments[0].notes
    answer = [pretty_midi.Note(90, 62, 3.0 + 0.25 * i, 3.2 + 0.25 * i) for i in range(3)]
    played = mido.MidiFile(file=io.BytesIO(duet_midi(you, answer)))
    tracks = {track.name: track for track in played.tracks if track.name in ("You", "midigen")}
    assert set(tracks) == {"You", "midigen"}
    onsets = {name: [round(t, 3) for t in starts(played, track)] for name, track in tracks.items()}
    assert onsets == {"You": [0.0, 0.5, 1.0, 1.5], "midigen": [3.0, 3.25, 3.5]}


def starts(midi: mido.MidiFile, track: mido.MidiTrack) -> list[float]:
    """Seconds of the note-ons of ``track`` (one tempo: the file's first)."""
    tempo = next(m.tempo for t in midi.tracks for m in t if m.type == "set_tempo")
    ticks, onsets = 0, []
    for message in track:
        ticks += message.time
        if message.type == "note_on" and message.velocity:
            onsets.append(mido.tick2second(ticks, midi.ticks_per_beat, tempo))
    return onsets


@pytest.fixture(scope="module")
def client(duet):
    with TestClient(Starlette(routes=duet.routes())) as client:
        yield client


def test_the_answer_route_answers_json(client):
    response = client.post("/midigen/duet/answer", json={"notes": C_E_G_C, "bars": 2, "random_seed": 1})
    assert response.status_code == 200
    assert response.json()["notes"] and base64.b64decode(response.json()["midi"]).startswith(b"MThd")
    by_midi = client.post("/midigen/duet/answer", json={"midi": base64.b64encode(midi_bytes([(60, 0, 12)])).decode()})
    assert by_midi.status_code == 200 and by_midi.json()["notes"]


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "The request must be JSON."),
    (b"[1, 2]", "The request must be a JSON object."),
    (b"{}", "Give the phrase as either notes or midi (a base64-encoded MIDI file)."),
    (b'{"notes": [], "bars": NaN}', "Bars must be a whole number from 1 to 8."),
    (b'{"midi": "%%%"}', "Midi must be a base64-encoded MIDI file."),
    (b'{"notes": [{"pitch": 300, "velocity": 80, "start": 0, "end": 1}]}',
     "Notes[0].pitch must be a whole number from 0 to 127."),
    (b'{"midi": "TVRoZAAAAAYAAQABAeA="}', "This MIDI file is incomplete: its header lists 1 track but it has 0."),
])
def test_a_bad_request_gets_400_and_one_sentence(client, body, message):
    response = client.post("/midigen/duet/answer", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_the_midi_route_writes_the_duet(client):
    response = client.post("/midigen/duet/midi", json={"you": C_E_G_C, "midigen": [note(start=3.0, end=3.5)]})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/midi"
    names = [track.name for track in mido.MidiFile(file=io.BytesIO(response.content)).tracks]
    assert "You" in names and "midigen" in names
    assert client.post("/midigen/duet/midi", json={"you": []}).json() == {"error": "The duet has no notes yet."}


@pytest.mark.skipif(not audio_available()[0], reason="FluidSynth or the soundfont is missing")
def test_the_samples_sound_in_every_slot(client):
    response = client.get("/midigen/duet/samples/fluidr3/0.flac")
    assert response.status_code == 200
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    slot = round(samples.SLOT_SECONDS * SAMPLE_RATE)
    assert rate == SAMPLE_RATE and audio.ndim == 1 and len(audio) == slot * len(samples.sample_pitches())
    loudness = [np.sqrt(np.mean(audio[i * slot : (i + 1) * slot] ** 2)) for i in range(len(samples.sample_pitches()))]
    assert min(loudness) > 0.005, loudness
    assert client.get("/midigen/duet/samples/nosuchfont/0.flac").status_code == 404
