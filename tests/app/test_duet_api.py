"""The duet's answer through the running app: the ``/duet`` endpoint of gradio_client (a notes list or a MIDI file in,
the answer as JSON and as a file out) and the plain route the page uses (``POST midigen/duet/answer``), with their
refusals in one clear sentence."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import mido
import pytest
from app_testkit import assert_clear_message, write_seed
from gradio_client import handle_file
from gradio_client.exceptions import AppError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHRASE = [{"pitch": p, "velocity": 80, "start": 0.5 * i, "end": 0.5 * i + 0.45} for i, p in enumerate((60, 64, 67, 72))]


def duet(client, **values):
    return client.predict(**{"phrase_file": None, "notes": None, **values}, api_name="/duet")


def test_a_notes_list_is_answered_as_json_and_as_a_file(app_client):
    answer, path = duet(app_client, notes=PHRASE, bars=1, random_seed=4)
    assert answer["notes"] and answer["random_seed"] == 4 and answer["bpm"] == 120
    assert base64.b64decode(answer["midi"]) == Path(path).read_bytes()
    heard = [m.note for m in mido.MidiFile(path) if m.type == "note_on" and m.velocity]
    assert heard == [n["pitch"] for n in sorted(answer["notes"], key=lambda n: (n["start"], n["pitch"]))]


def test_a_midi_file_is_answered(app_client, tmp_path):
    answer, _ = duet(app_client, phrase_file=handle_file(str(write_seed(tmp_path / "scale.mid"))), random_seed=2)
    assert answer["notes"]


@pytest.mark.parametrize(("values", "expected"), [
    ({}, "Please give the phrase as either a MIDI file or a notes list."),
    ({"notes": [{"pitch": 999, "velocity": 80, "start": 0, "end": 1}]},
     "notes[0].pitch must be a whole number from 0 to 127"),
    ({"notes": PHRASE, "bars": 20}, "bars must be a whole number from 1 to 8"),
])
def test_a_bad_phrase_is_refused_in_one_sentence(app_client, values, expected):
    with pytest.raises(AppError) as refused:
        duet(app_client, **values)
    assert str(refused.value) == expected
    assert_clear_message(str(refused.value))


def test_the_plain_route_answers_and_refuses_without_a_stack_trace(midigen_app):
    address = midigen_app.url + "midigen/duet/answer"
    answered = httpx.post(address, json={"notes": PHRASE, "key": "C major"}, timeout=30)
    assert answered.status_code == 200 and answered.json()["notes"]
    refused = httpx.post(address, content=b'{"notes": [{"pitch": 60}]}', timeout=30)
    assert refused.status_code == 400
    assert refused.json() == {"error": "Notes[0] must be an object with exactly pitch, velocity, start, end."}
    assert_clear_message(refused.json()["error"])
