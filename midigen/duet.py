"""Duet: a phrase played by a person, and midigen's answer to it.

The phrase comes as a list of notes (``{"pitch", "velocity", "start", "end"}``, seconds) or as a MIDI file; a list
is checked strictly here, a file by the upload loader (``midi_io.read_midi``, smaller limits), one short sentence
per failure. ``Duet.answer`` continues the phrase for 1-8 bars with the endless writer (``endless.EndlessStream``:
the phrase's key, register and density, unless the request names a key or density) and returns the new notes from
the answer's first note on, as note data and as a MIDI file. ``duet_midi`` writes a whole duet (the phrases and the
answers, in the time they were played) as one file of two tracks.

``Duet.routes`` serves it over plain HTTP, outside Gradio's queue, so that an answer comes in milliseconds:
``POST /midigen/duet/answer`` (JSON in, JSON out, HTTP 400 with a message for a bad request), ``POST
/midigen/duet/midi`` (a duet's notes in, its MIDI file out) and ``GET /midigen/duet/samples/...`` (the keyboard's
sound, ``samples``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from dataclasses import dataclass, replace

import pretty_midi

from .controls import KEY_NAMES
from .endless import EndlessStream
from .generate import GenerationRequest, Generator
from .midi_io import MidiLimits, read_midi, trim_to_last
from .phrases import BAR_BEATS
from .samples import SampleCache
from .settings import UserError, clean_choice, clean_number, setting
from .splice import Seed, midi_bytes
from .stats import duration_profile, estimate_key
from .style_choice import StyleBook
from .styles import AUTO

LOG = logging.getLogger("midigen.duet")
MAX_NOTES = 1000  # notes in a phrase, and in each part of a duet
MAX_SECONDS = 600.0  # a phrase's length, and a duet's
DUET_LIMITS = MidiLimits(max_bytes=256 * 1024, max_notes=MAX_NOTES, max_seconds=MAX_SECONDS)
PHRASE_NOTES = 256  # the answer continues the last notes of a long phrase...
PHRASE_SECONDS = 30.0  # ...and its last seconds
MAX_BARS = 8
DEFAULT_BARS = 2
ANSWER_KEY_BIAS = 2.5  # ``key_bias`` weight of an answer: two bars have no time to find their key again
DEFAULT_BPM = 120.0  # a notes list has no tempo: it is read on this grid unless the request names one
NOTE_FIELDS = ("pitch", "velocity", "start", "end")
WARM_UP_PHRASE = [{"pitch": pitch, "velocity": 80, "start": 0.5 * i, "end": 0.5 * i + 0.4}
                  for i, pitch in enumerate((60, 64, 67, 72))]
ROUTE = "/midigen/duet"


@dataclass(frozen=True)
class AnswerSettings:
    """How to answer: length in bars, and the Compose tab's settings that apply (``settings``)."""

    bars: int = DEFAULT_BARS
    temperature: float = setting("temperature").default
    top_p: float = setting("top_p").default
    key: str = "auto"
    density: str = "auto"
    program: int | None = None  # None: the generator's style's instrument
    bpm: float | None = None  # None: the file's tempo, or DEFAULT_BPM for a notes list
    random_seed: int | None = None  # None: a new one each time
    style: str = AUTO  # a style's name, or "auto": the default style (``Duet.generator``)
    soundfont: str = setting("soundfont").default  # what the answer sounds with: it stays in the instrument's range

    @classmethod
    def from_values(cls, values: dict) -> AnswerSettings:
        """Settings from raw values (JSON, API): missing ones take their default; bad ones raise ``UserError``."""
        bars = values.get("bars", DEFAULT_BARS)
        if isinstance(bars, bool) or not isinstance(bars, int | float) or not 1 <= bars <= MAX_BARS \
                or bars != int(bars):
            raise UserError(f"bars must be a whole number from 1 to {MAX_BARS}")
        numbers = {name: clean_number(setting(name), values[name]) for name in ("temperature", "top_p", "program",
                                                                                 "bpm", "random_seed")
                   if values.get(name) is not None}
        choices = {name: clean_choice(setting(name), values[name]) for name in ("key", "density", "style",
                                                                                    "soundfont") if name in values}
        return cls(bars=int(bars), **numbers, **choices)

    def request(self) -> GenerationRequest:
        return GenerationRequest(temperature=self.temperature, top_p=self.top_p, seconds=1.0, bpm=self.bpm,
                                 program=self.program, random_seed=self.random_seed, key=self.key,
                                 density=self.density, style=self.style, soundfont=self.soundfont)


@dataclass(frozen=True)
class Answer:
    """midigen's answer: ``notes`` as ``{"pitch", "velocity", "start", "end"}`` (seconds from its first note) and
    the same music as a MIDI file, at ``bpm``."""

    notes: list[dict]
    midi: bytes
    bpm: float
    random_seed: int

    def as_json(self) -> dict:
        return {"notes": self.notes, "midi": base64.b64encode(self.midi).decode(), "bpm": self.bpm,
                "random_seed": self.random_seed}


def clean_notes(items, part: str = "notes", max_notes: int = MAX_NOTES,
                max_seconds: float = MAX_SECONDS) -> list[pretty_midi.Note]:
    """A notes list from JSON, checked strictly: 1 to ``max_notes`` objects with a whole ``pitch`` (0-127) and
    ``velocity`` (1-127) and finite ``start`` < ``end`` seconds within ``max_seconds``; raises ``UserError``."""
    if not isinstance(items, list) or not items:
        raise UserError(f"{part} must be a non-empty list of notes")
    if len(items) > max_notes:
        raise UserError(f"{part} has {len(items)} notes; at most {max_notes} are allowed")
    return [_clean_note(item, f"{part}[{index}]", max_seconds) for index, item in enumerate(items)]


def _clean_note(item, where: str, max_seconds: float) -> pretty_midi.Note:
    if not isinstance(item, dict) or set(item) != set(NOTE_FIELDS):
        raise UserError(f"{where} must be an object with exactly {', '.join(NOTE_FIELDS)}")
    for name, low in (("pitch", 0), ("velocity", 1)):
        value = item[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 127:
            raise UserError(f"{where}.{name} must be a whole number from {low} to 127")
    for name in ("start", "end"):
        value = item[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 <= value <= max_seconds:
            raise UserError(f"{where}.{name} must be a number of seconds from 0 to {max_seconds:.0f}")
    if item["end"] <= item["start"]:
        raise UserError(f"{where} must end after it starts")
    return pretty_midi.Note(item["velocity"], item["pitch"], float(item["start"]), float(item["end"]))


def notes_midi(parts: dict[str, list[pretty_midi.Note]], bpm: float = DEFAULT_BPM,
               program: int = 0) -> pretty_midi.PrettyMIDI:
    """One track per named part, each playing ``program``, at ``bpm``."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for name, notes in parts.items():
        instrument = pretty_midi.Instrument(program, name=name)
        instrument.notes = sorted(notes, key=lambda note: (note.start, note.pitch))
        midi.instruments.append(instrument)
    return midi


def phrase_from_notes(items, bpm: float | None = None) -> Seed:
    """A phrase given as a notes list, as the seed the answer continues (its last part, if long)."""
    midi = notes_midi({"phrase": clean_notes(items)}, bpm or DEFAULT_BPM)
    return _seed(Seed.from_midi(midi).file)


def phrase_from_midi(data: bytes) -> Seed:
    """A phrase given as MIDI file bytes, checked as an upload is (smaller limits)."""
    try:
        return _seed(read_midi(data, DUET_LIMITS))
    except ValueError as error:
        raise UserError(str(error)) from None


def _seed(file) -> Seed:
    part = trim_to_last(file.midi, PHRASE_NOTES, PHRASE_SECONDS)
    return Seed(file, part.midi, part.start)


def phrase_from_json(values: dict, bpm: float | None = None) -> Seed:
    """The phrase of an answer request: ``notes`` (a list) or ``midi`` (base64 MIDI file bytes), not both."""
    if ("notes" in values) == ("midi" in values):
        raise UserError("give the phrase as either notes or midi (a base64-encoded MIDI file)")
    if "notes" in values:
        return phrase_from_notes(values["notes"], bpm)
    try:
        data = base64.b64decode(values["midi"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise UserError("midi must be a base64-encoded MIDI file") from None
    return phrase_from_midi(data)


def note_json(note: pretty_midi.Note) -> dict:
    return {"pitch": note.pitch, "velocity": note.velocity, "start": round(note.start, 4), "end": round(note.end, 4)}


def duet_midi(you: list[pretty_midi.Note], answers: list[pretty_midi.Note], bpm: float = DEFAULT_BPM) -> bytes:
    """A whole duet as one MIDI file: the person's phrases on the track "You", the answers on "midigen"."""
    return midi_bytes(notes_midi({"You": you, "midigen": answers}, bpm))


def duet_from_json(values: dict) -> bytes:
    """``duet_midi`` for ``{"you": notes, "midigen": notes}`` (either may be empty, not both)."""
    if not isinstance(values, dict):
        raise UserError("the duet must be an object with the lists you and midigen")
    parts = {name: values.get(name) or [] for name in ("you", "midigen")}
    if not parts["you"] and not parts["midigen"]:
        raise UserError("the duet has no notes yet")
    you, answers = (clean_notes(notes, name) if notes else [] for name, notes in parts.items())
    return duet_midi(you, answers)


def answer_key(phrase: Seed, asked: str) -> str:
    """The key to answer in: the one asked, or for "auto" the phrase's (Krumhansl-Schmuckler), named so that the
    writer holds it (``ANSWER_KEY_BIAS``): a phrase of a few notes tells the model too little to stay in its key."""
    if asked != "auto":
        return asked
    notes = [note for instrument in phrase.primed.instruments if not instrument.is_drum for note in instrument.notes]
    profile = duration_profile([n.pitch for n in notes], [n.end - n.start for n in notes])
    return KEY_NAMES[estimate_key(profile)]


class Duet:
    """Answers phrases with the styles' models (given one ``Generator``: its style only); serves the answers and the
    keyboard's sound (``routes``)."""

    def __init__(self, styles: StyleBook | Generator, samples: SampleCache | None = None):
        self.styles = styles if isinstance(styles, StyleBook) else StyleBook.single(styles)
        self.samples = samples or SampleCache()

    def answer(self, phrase: Seed, answer: AnswerSettings) -> Answer:
        """``answer.bars`` bars continuing ``phrase``, from the first new note on."""
        request = replace(answer.request(), key=answer_key(phrase, answer.key))
        stream = EndlessStream(self.generator(answer.style), request, phrase)
        stream.writer.key_weight = ANSWER_KEY_BIAS
        length = answer.bars * BAR_BEATS * 60.0 / stream.bpm
        notes: list[tuple[int, float, float, int]] = []
        for _ in range(4 * MAX_BARS):  # a bar per passage, and some bars may stay empty
            notes += stream.advance()
            if notes and stream.frontier >= notes[0][1] + length:
                break
        first = notes[0][1] if notes else 0.0
        kept = [pretty_midi.Note(velocity, pitch, start - first, min(end, first + length) - first)
                for pitch, start, end, velocity in notes if start < first + length]
        midi = notes_midi({"midigen": kept}, stream.bpm, stream.request.program)
        return Answer([note_json(note) for note in kept], midi_bytes(midi), stream.bpm, stream.random_seed)

    def generator(self, style: str) -> Generator:
        """The model that answers: the style named, or for "auto" the default one (a phrase of a few notes is too
        short to tell the styles apart, and weighing it under every style's model would cost each answer ~100 ms)."""
        try:
            return self.styles.generator(self.styles.default if style == AUTO else style)
        except ValueError as error:
            raise UserError(str(error)) from None

    def warm_up(self, soundfont: str | None = None) -> None:
        """Write one answer (the first costs some loading) and make ``soundfont``'s keyboard samples (None: none),
        so that the first player waits for neither."""
        self.answer(phrase_from_notes(WARM_UP_PHRASE), AnswerSettings(random_seed=0))
        if soundfont is not None:
            self.samples.get(soundfont, 0)

    def answer_json(self, values) -> dict:
        """The answer to a JSON request: the phrase (``phrase_from_json``) and ``AnswerSettings`` fields."""
        if not isinstance(values, dict):
            raise UserError("the request must be a JSON object")
        settings = AnswerSettings.from_values(values)
        return self.answer(phrase_from_json(values, settings.bpm), settings).as_json()

    def routes(self) -> list:
        """The Starlette routes: the answer, a duet's MIDI file, the keyboard's samples."""
        from starlette.routing import Route

        return [Route(f"{ROUTE}/answer", self._answer_route, methods=["POST"]),
                Route(f"{ROUTE}/midi", self._midi_route, methods=["POST"]),
                Route(f"{ROUTE}/samples/{{soundfont}}/{{program:int}}.flac", self._samples_route)]

    async def _answer_route(self, request):
        from starlette.responses import JSONResponse

        return await _answered(request, self.answer_json, JSONResponse)

    async def _midi_route(self, request):
        from starlette.responses import Response

        def midi_file(content: bytes) -> Response:
            return Response(content, media_type="audio/midi",
                            headers={"Content-Disposition": 'attachment; filename="midigen-duet.mid"'})

        return await _answered(request, duet_from_json, midi_file)

    async def _samples_route(self, request):
        import anyio
        from starlette.responses import PlainTextResponse, Response

        soundfont, program = request.path_params["soundfont"], request.path_params["program"]
        try:
            data = await anyio.to_thread.run_sync(self.samples.get, soundfont, program)
        except UserError as error:
            return PlainTextResponse(str(error), status_code=404)
        return Response(data, media_type="audio/flac", headers={"Cache-Control": "public, max-age=86400"})


def sentence(message: str) -> str:
    """``message`` as a sentence: a capital first, a full stop last."""
    message = message.rstrip(".")
    return f"{message[:1].upper()}{message[1:]}."


async def _answered(request, work, respond):
    """``respond(work(json body))`` on a worker thread; a bad request as HTTP 400 with its message, anything else
    as HTTP 500 with one sentence (logged), never a stack trace."""
    import anyio
    from starlette.responses import JSONResponse

    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "The request must be JSON."}, status_code=400)
    try:
        return respond(await anyio.to_thread.run_sync(work, body))
    except UserError as error:
        return JSONResponse({"error": sentence(str(error))}, status_code=400)
    except Exception:
        LOG.exception("the duet failed")
        return JSONResponse({"error": "Something went wrong while answering; please try again."}, status_code=500)
