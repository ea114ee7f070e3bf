"""midigen.live: streams of real audio (FluidSynth, LAME) and the HTTP route that sends them."""

import io
import itertools

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
from starlette.applications import Starlette
from starlette.testclient import TestClient

from midigen.generate import GenerationRequest
from midigen.live import CHUNK_SECONDS, FIRST_CHUNK_SECONDS, EndlessLive, LiveHub, PieceStream, read_frames
from midigen.render import SAMPLE_RATE, TAIL_SECONDS, RenderUnavailable, get_renderer
from midigen.settings import UserError
from midigen.studio import NewMusicMeter, new_music_level


@pytest.fixture(scope="module", autouse=True)
def audio():
    try:
        get_renderer()
    except RenderUnavailable as error:
        pytest.skip(str(error))


def scale(seconds: float = 5.0) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(90, 60 + i % 12, i * 0.25, i * 0.25 + 0.5) for i in range(int(seconds * 4))]
    midi.instruments.append(piano)
    return midi


def drain(stream) -> list[tuple[dict, bytes]]:
    frames = []
    while True:
        data, last = stream.next_frame()
        frames.extend(read_frames(data))
        if last:
            stream.close()
            return frames


def decoded_seconds(audio_bytes: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(audio_bytes))
    assert rate == SAMPLE_RATE
    return len(samples) / rate


def test_a_piece_streams_in_short_chunks_that_join_into_the_whole_piece():
    midi = scale(5.0)
    frames = drain(PieceStream(midi))
    headers = [header for header, _ in frames]
    assert headers[0]["end"] == FIRST_CHUNK_SECONDS  # the first chunk is short, so it sounds at once
    assert all(b["start"] == a["end"] for a, b in itertools.pairwise(headers))
    assert all(h["end"] - h["start"] <= CHUNK_SECONDS + 1e-9 for h in headers)
    assert [h["last"] for h in headers] == [False] * (len(headers) - 1) + [True]
    assert headers[-1]["end"] == pytest.approx(midi.get_end_time() + TAIL_SECONDS, abs=1e-3)
    whole = b"".join(audio for _, audio in frames)
    assert decoded_seconds(whole) == pytest.approx(midi.get_end_time() + TAIL_SECONDS, abs=0.1)
    samples, _ = sf.read(io.BytesIO(whole))
    assert np.abs(samples[: int(4 * SAMPLE_RATE)]).max() > 0.1


def test_a_piece_is_recorded_whole_whether_anyone_listens_or_not():
    """The recording is the take's file: the same MP3 the listener got, and the level of its new music as a
    normalized render measures it (the stream's level is fixed, the file's normalized)."""
    midi = scale(5.0)
    stream = PieceStream(midi, meter=NewMusicMeter(midi))
    audio, level = stream.recording()  # nobody has read it yet
    assert decoded_seconds(audio) == pytest.approx(midi.get_end_time() + TAIL_SECONDS, abs=0.1)
    assert b"".join(chunk for _, chunk in drain(stream)) == audio  # a listener coming later hears the same
    assert level == pytest.approx(new_music_level(midi, get_renderer().render(midi)), abs=1.0)
    assert level > -30


@pytest.fixture(scope="module")
def endless_factory(shipped_generator):
    from midigen.endless import EndlessStream

    def make(max_seconds: float, **request) -> EndlessLive:
        endless = EndlessStream(shipped_generator, GenerationRequest(seconds=1, random_seed=4, **request))
        return EndlessLive(endless, 0, max_seconds)

    return make


def test_endless_frames_carry_the_notes_they_sound_and_end_at_the_limit(endless_factory):
    live = endless_factory(20.0)
    frames = drain(live)
    headers = [header for header, _ in frames]
    assert all(b["start"] == a["end"] for a, b in itertools.pairwise(headers))
    assert headers[-1]["last"] and headers[-1]["end"] == 20.0 and "limit" in headers[-1]["message"]
    notes = [note for header in headers for note in header["notes"]]
    assert len(notes) > 20
    for header in headers:  # each frame brings the notes that start in the audio it carries
        assert all(header["start"] - 1e-6 <= start < header["end"] for _, start, _, _ in header["notes"])
    audio = b"".join(a for _, a in frames)
    assert decoded_seconds(audio) == pytest.approx(20.0 + TAIL_SECONDS, abs=0.2)


def test_endless_is_steered_from_the_next_bars(endless_factory):
    live = endless_factory(120.0, key="C major")
    for _ in range(6):
        live.next_frame()
    live.steer(key="F# major")
    changed_at = live.sent
    later = []
    while live.sent < changed_at + 40:
        data, _ = live.next_frame()
        later += [note for header, _ in read_frames(data) for note in header["notes"] if note[1] > changed_at + 8]
    live.close()
    classes = np.bincount([pitch % 12 for pitch, *_ in later], minlength=12)
    f_sharp_major = [6, 8, 10, 11, 1, 3, 5]
    assert classes[f_sharp_major].sum() > 0.8 * classes.sum()
    with pytest.raises(ValueError):
        live.steer(density="loud")


def test_hub_limits_streams_and_forgets_them():
    hub = LiveHub(max_streams=1)
    first = hub.open(PieceStream(scale(1.0)))
    assert hub.url(first).startswith("midigen/live/") and len(first) >= 16
    with pytest.raises(UserError):
        hub.open(PieceStream(scale(1.0)))
    assert hub.close(first) is not None and hub.get(first) is None
    second = hub.open(PieceStream(scale(1.0)))
    hub.unread_s = 0.0
    hub.sweep()  # never read: forgotten, its synthesizer back in the pool
    assert hub.get(second) is None and hub.open_count() == 0


def test_the_route_sends_the_whole_stream_once():
    hub = LiveHub()
    client = TestClient(Starlette(routes=[hub.route()]))
    stream_id = hub.open(PieceStream(scale(2.0)))
    response = client.get("/" + hub.url(stream_id))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    frames = read_frames(response.content)
    assert frames[-1][0]["last"]
    assert decoded_seconds(b"".join(a for _, a in frames)) == pytest.approx(2.0 + 0.25 + TAIL_SECONDS, abs=0.1)
    assert client.get("/" + hub.url(stream_id)).status_code == 404  # played: gone
    assert hub.open_count() == 0 and hub.get(stream_id) is None
    assert client.get("/midigen/live/not-a-stream").status_code == 404
