"""The only way untrusted MIDI enters midigen: bounded, validated loading and seed trimming.

Uploads are checked in cheap stages before mido and pretty_midi see them: the size, the header,
the chunk layout, and one scan over the events that counts them, notes the channels they use and
measures the piece from its tempo map. Anything mido or pretty_midi still raise becomes one
:class:`MidiError`. :func:`read_midi` also returns the checked file's bytes, which an output keeps
as they are, but repaired as tolerant readers read them: data bytes above 127 clipped to 127 (as
mido's ``clip`` does) and an empty track given its end, so that every file midigen writes is valid.
Every later reading of MIDI bytes goes through :func:`read_mido` or :func:`parse_midi`.
"""

import copy
import io
import itertools
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import mido
import pretty_midi
from mido.messages import SPEC_BY_STATUS

__all__ = ["CheckedMidi", "MidiError", "MidiLimits", "Trimmed", "load_midi", "parse_midi", "read_midi", "read_mido",
           "trim_to_last"]

_DAMAGED = "This MIDI file is damaged and could not be read."
_TRUNCATED = "This MIDI file is damaged: a track ends in the middle of an event."
_EXTENSIONS = (".mid", ".midi")
_DEFAULT_TEMPO = 500_000  # microseconds per beat (120 BPM) until the first tempo event
# Data bytes after the status byte of each channel message; other statuses are not allowed in files.
_CHANNEL_DATA_BYTES = {status: spec["length"] - 1 for status, spec in SPEC_BY_STATUS.items() if status < 0xF0}
_META, _SYSEX, _SYSEX_ESCAPE, _META_TEMPO = 0xFF, 0xF0, 0xF7, 0x51
_DATA_MAX = 0x7F
_END_OF_TRACK = b"\x00\xff\x2f\x00"


class MidiError(ValueError):
    """An upload was rejected; ``str(error)`` is one short sentence to show the user."""


@dataclass(frozen=True)
class MidiLimits:
    """Bounds on what an upload may contain (all inclusive)."""

    max_bytes: int = 1 << 20
    max_tracks: int = 64
    max_events: int = 200_000
    max_notes: int = 100_000
    ticks_per_beat_range: tuple[int, int] = (1, 32767)
    bpm_range: tuple[float, float] = (1.0, 1000.0)
    max_seconds: float = 3600.0
    # pretty_midi allocates one float per tick of the timeline (and refuses more than 10 million).
    max_ticks: int = 10_000_000


@dataclass(frozen=True)
class CheckedMidi:
    """An upload that passed the checks.

    ``data`` is the file as uploaded, less any chunks other than the header and the tracks (the track
    chunks are the uploaded bytes, with ``clipped`` data bytes above 127 set to 127 and an empty track
    given its end); ``midi`` is what pretty_midi reads in it; ``channels`` are the MIDI channels (0-15)
    its channel events use.
    """

    data: bytes
    midi: pretty_midi.PrettyMIDI
    channels: frozenset[int]
    clipped: int = 0

    @property
    def notices(self) -> list[str]:
        """What the user is told about the repairs in ``data``."""
        if not self.clipped:
            return []
        return [f"The seed had {_count(self.clipped, 'out-of-range data byte')}; midigen reads and keeps "
                f"{'it' if self.clipped == 1 else 'them'} as 127, as most MIDI readers do."]


def read_midi(
    data: bytes | str | os.PathLike, limits: MidiLimits = MidiLimits(), name: str | None = None
) -> CheckedMidi:
    """Validate and parse an uploaded MIDI file (bytes or a path); raise MidiError if it is unusable."""
    is_path = not isinstance(data, bytes | bytearray | memoryview)
    if is_path and name is None:
        name = os.fspath(data)
    if name is not None:
        _check_extension(name)
    data = _read_file(data, limits.max_bytes) if is_path else bytes(data)
    if len(data) > limits.max_bytes:
        raise MidiError(_too_large(len(data), limits.max_bytes))
    fmt, division, tracks = _split_chunks(data, limits)
    scan = _check_events(tracks, division, limits)
    tracks = [_repaired(track, over) for track, over in zip(tracks, scan.over_range, strict=True)]
    data = b"".join([_header(fmt, len(tracks), division), *(_chunk(b"MTrk", t) for t in tracks)])
    midi = parse_midi(data)
    _check_notes(midi)
    return CheckedMidi(data, midi, frozenset(scan.channels), sum(map(len, scan.over_range)))


def load_midi(
    data: bytes | str | os.PathLike, limits: MidiLimits = MidiLimits(), name: str | None = None
) -> pretty_midi.PrettyMIDI:
    """What pretty_midi reads in an upload that passes :func:`read_midi`'s checks."""
    return read_midi(data, limits, name).midi


def _check_extension(name: str | os.PathLike) -> None:
    if not os.fspath(name).lower().endswith(_EXTENSIONS):
        raise MidiError("Please upload a MIDI file: its name must end in .mid or .midi.")


def _too_large(size: int, max_bytes: int) -> str:
    return f"This file is too large ({_size(size)}); MIDI seeds may be at most {_size(max_bytes)}."


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{count / 2**10:.0f} KB"


def _read_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` from ``path``, checking the size before reading."""
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise MidiError(_too_large(size, max_bytes))
        with open(path, "rb") as file:
            return file.read(max_bytes + 1)
    except OSError as exc:
        raise MidiError("The uploaded file could not be read.") from exc


def _header(fmt: int, ntracks: int, division: int) -> bytes:
    return _chunk(b"MThd", struct.pack(">HHH", fmt, ntracks, division))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", len(body)) + body


def _split_chunks(data: bytes, limits: MidiLimits) -> tuple[int, int, list[bytes]]:
    """Check the header and walk the chunks; return (format, ticks per beat, track chunk bodies)."""
    if not data:
        raise MidiError("This file is empty.")
    if not data.startswith(b"MThd"):
        raise MidiError("This file is not a MIDI file (it does not start with 'MThd').")
    if len(data) < 14:
        raise MidiError("This MIDI file is damaged: its header is incomplete.")
    length, fmt, ntracks, division = struct.unpack_from(">IHHH", data, 4)
    if length != 6:
        raise MidiError("This MIDI file is damaged: its header has the wrong length.")
    _check_header(fmt, ntracks, division, limits)
    tracks, pos = [], 14
    while len(tracks) < ntracks:
        if pos == len(data):
            raise MidiError(
                f"This MIDI file is incomplete: its header lists {_count(ntracks, 'track')} but it has {len(tracks)}."
            )
        if pos + 8 > len(data):
            raise MidiError("This MIDI file is damaged: it ends in the middle of a chunk header.")
        kind, length = struct.unpack_from(">4sI", data, pos)
        if not all(0x20 <= byte < 0x7F for byte in kind):
            raise MidiError("This MIDI file is damaged: a track does not start where expected.")
        pos += 8 + length
        if pos > len(data):
            raise MidiError("This MIDI file is damaged: a track is shorter than its header says (truncated?).")
        if kind == b"MTrk":  # Other chunk types are allowed by the standard and skipped.
            tracks.append(data[pos - length : pos])
    return fmt, division, tracks


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _check_header(fmt: int, ntracks: int, division: int, limits: MidiLimits) -> None:
    if fmt == 2:
        raise MidiError("MIDI type 2 files are not supported; please upload a type 0 or type 1 file.")
    if fmt > 2:
        raise MidiError(f"This MIDI file has an unknown format ({fmt}); only types 0 and 1 are supported.")
    if ntracks == 0:
        raise MidiError("This MIDI file contains no tracks.")
    if ntracks > limits.max_tracks:
        raise MidiError(f"This MIDI file has too many tracks ({ntracks}); at most {limits.max_tracks} are allowed.")
    if division & 0x8000:
        raise MidiError("This MIDI file uses SMPTE time code; please export it with ticks per beat (PPQ) timing.")
    low, high = limits.ticks_per_beat_range
    if not low <= division <= high:
        raise MidiError(f"This MIDI file has an invalid time resolution ({division} ticks per beat).")


@dataclass
class _Scan:
    """Running totals of the event scan over all tracks."""

    limits: MidiLimits
    events: int = 0
    notes: int = 0
    end_tick: int = 0
    channels: set[int] = field(default_factory=set)
    over_range: list[list[int]] = field(default_factory=list)  # per track: where its data bytes exceed 127

    def count(self, is_note: bool) -> None:
        self.events += 1
        if self.events > self.limits.max_events:
            raise MidiError(f"This MIDI file has too many events (over {self.limits.max_events:,}).")
        self.notes += is_note
        if self.notes > self.limits.max_notes:
            raise MidiError(f"This MIDI file has too many notes (over {self.limits.max_notes:,}).")

    def note_over_range(self, track: bytes, start: int, end: int) -> None:
        """Note where ``track[start:end]``, data bytes of one event, exceeds 127 (in the track scanned last)."""
        self.over_range[-1].extend(pos for pos in range(start, min(end, len(track))) if track[pos] > _DATA_MAX)


def _check_events(tracks: list[bytes], division: int, limits: MidiLimits) -> _Scan:
    """Scan every event without building objects: counts, tempos and the length of the piece.
    Returns the scan: the channels used, the data bytes to clip."""
    scan = _Scan(limits)
    tempo_map = []
    for index, track in enumerate(tracks):
        tempos = _scan_track(track, scan)
        for _, tempo in tempos:
            _check_tempo(tempo, limits)
        if index == 0:  # Like pretty_midi, time is measured with the first track's tempo map.
            tempo_map = tempos
    seconds = _seconds(scan.end_tick, tempo_map, division)
    if seconds > limits.max_seconds:
        raise MidiError(
            f"This MIDI file claims to last {_duration(seconds)}; seeds must be shorter than "
            f"{_duration(limits.max_seconds)}."
        )
    if scan.end_tick > limits.max_ticks:
        raise MidiError(f"This MIDI file's timeline is too long ({scan.end_tick:,} ticks) to be loaded.")
    return scan


def _scan_track(track: bytes, scan: _Scan) -> list[tuple[int, int]]:
    """Walk one track's events as mido will read them; return its (tick, tempo) events."""
    tempos, pos, tick, running = [], 0, 0, None
    scan.over_range.append([])
    try:
        while pos < len(track):
            delta, pos = _read_vlq(track, pos)
            tick += delta
            status = track[pos]
            if status == _META:
                kind = track[pos + 1]
                length, pos = _read_vlq(track, pos + 2)
                if kind == _META_TEMPO:
                    tempos.append((tick, _tempo(track[pos : pos + length])))
                pos += length
                scan.count(False)
            elif status in (_SYSEX, _SYSEX_ESCAPE):
                running = None
                length, pos = _read_vlq(track, pos + 1)
                scan.note_over_range(track, *_sysex_data(track, pos, length))
                pos += length
                scan.count(False)
            else:
                if status >= 0x80:
                    running, pos = status, pos + 1
                    scan.channels.add(status & 0x0F)  # an invalid status is refused just below
                elif running is None:
                    raise MidiError("This MIDI file is damaged: an event has no status byte (bad running status).")
                if running not in _CHANNEL_DATA_BYTES:
                    raise MidiError("This MIDI file is damaged: it contains an invalid status byte.")
                is_note = (running & 0xF0) == 0x90 and track[pos + 1] > 0
                size = _CHANNEL_DATA_BYTES[running]
                if track[pos] > _DATA_MAX or track[pos + size - 1] > _DATA_MAX:
                    scan.note_over_range(track, pos, pos + size)
                pos += size
                scan.count(is_note)
    except IndexError as exc:
        raise MidiError(_TRUNCATED) from exc
    if pos > len(track):
        raise MidiError(_TRUNCATED)
    scan.end_tick = max(scan.end_tick, tick)
    return tempos


def _sysex_data(track: bytes, pos: int, length: int) -> tuple[int, int]:
    """Where the data of the sysex payload at ``pos`` lies: mido drops a leading 0xF0 and a final 0xF7."""
    start, end = pos, min(pos + length, len(track))
    if start < end and track[start] == _SYSEX:
        start += 1
    if start < end and track[end - 1] == _SYSEX_ESCAPE:
        end -= 1
    return start, end


def _repaired(track: bytes, over_range: list[int]) -> bytes:
    """``track`` with the data bytes at ``over_range`` clipped to 127, and its end if it is empty (which
    pretty_midi cannot read); every other byte as it was."""
    if not track:
        return _END_OF_TRACK
    if not over_range:
        return track
    out = bytearray(track)
    for pos in over_range:
        out[pos] = _DATA_MAX
    return bytes(out)


def _read_vlq(data: bytes, pos: int) -> tuple[int, int]:
    """Read a variable-length quantity (at most 4 bytes) at ``pos``; return (value, next position)."""
    value = 0
    for end in range(pos, pos + 4):
        byte = data[end]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, end + 1
    raise MidiError("This MIDI file is damaged: it contains an invalid time or length value.")


def _tempo(data: bytes) -> int:
    if len(data) != 3:
        raise MidiError("This MIDI file is damaged: it contains an invalid tempo event.")
    return int.from_bytes(data, "big")


def _check_tempo(tempo: int, limits: MidiLimits) -> None:
    if tempo == 0:
        raise MidiError("This MIDI file sets a tempo of zero, which is invalid.")
    low, high = limits.bpm_range
    if not low <= 60_000_000 / tempo <= high:
        raise MidiError(
            f"This MIDI file sets a tempo of {60_000_000 / tempo:,.0f} BPM; tempos must be between {low:g} and "
            f"{high:g} BPM."
        )


def _seconds(end_tick: int, tempo_map: list[tuple[int, int]], division: int) -> float:
    """Length in seconds of ``end_tick`` ticks under a (tick, microseconds per beat) tempo map."""
    micros, last_tick, tempo = 0, 0, _DEFAULT_TEMPO
    for tick, new_tempo in tempo_map:
        micros += (tick - last_tick) * tempo
        last_tick, tempo = tick, new_tempo
    micros += (end_tick - last_tick) * tempo
    return micros / 1e6 / division


def _duration(seconds: float) -> str:
    """A rough human-readable duration: '31 years', '60 minutes'."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.0f} seconds"


def read_mido(data: bytes) -> mido.MidiFile:
    """What mido reads in MIDI bytes, tolerantly: data bytes above 127 are read as 127 (mido's ``clip``)."""
    return mido.MidiFile(file=io.BytesIO(data), clip=True)


def parse_midi(data: bytes) -> pretty_midi.PrettyMIDI:
    """Parse checked bytes (or a file midigen wrote) with mido and pretty_midi; any failure becomes MidiError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            midi_file = read_mido(data)
            for track in midi_file.tracks:
                if not track:  # pretty_midi cannot handle an empty track.
                    track.append(mido.MetaMessage("end_of_track"))
            return pretty_midi.PrettyMIDI(mido_object=midi_file)
    except Exception as exc:  # The boundary: mido and pretty_midi raise many kinds of errors.
        raise MidiError(_DAMAGED) from exc


def _check_notes(midi: pretty_midi.PrettyMIDI) -> None:
    played = [instrument for instrument in midi.instruments if instrument.notes]
    if not played:
        raise MidiError("This MIDI file contains no notes.")
    if all(instrument.is_drum for instrument in played):
        raise MidiError("This MIDI file only contains drums (channel 10); please upload one with melodic notes.")


class Trimmed(NamedTuple):
    """What :func:`trim_to_last` kept: ``midi`` (moved to start at 0), whether anything was cut, and
    ``start``, the time in the original (seconds) that became 0."""

    midi: pretty_midi.PrettyMIDI
    trimmed: bool
    start: float


def trim_to_last(midi: pretty_midi.PrettyMIDI, max_notes: int, max_seconds: float) -> Trimmed:
    """Keep at most the last ``max_notes`` notes and ``max_seconds`` seconds, shifted to start at 0.

    ``midi`` is returned as is (``trimmed`` False, ``start`` 0) when it already fits. The tempo map,
    controls and meta events of the kept part are kept (shifted), so the beats stay where they were.
    A single note longer than ``max_seconds`` is shortened.
    """
    if max_notes < 1 or max_seconds <= 0:
        raise ValueError("max_notes and max_seconds must be positive")
    notes = sorted(
        (note for instrument in midi.instruments for note in instrument.notes),
        key=lambda note: (note.start, note.pitch, note.end),
    )
    if not notes:
        return Trimmed(midi, False, 0.0)
    ends = list(itertools.accumulate((note.end for note in reversed(notes)), max))[::-1]
    first = _first_kept(notes, ends, max_notes, max_seconds)
    start = notes[first].start
    stop = min(ends[first], start + max_seconds)
    if first == 0 and stop == ends[0]:
        return Trimmed(midi, False, 0.0)
    keep = {id(note) for note in notes[first:]}
    shell = copy.copy(midi)  # Copy only the kept notes, not the whole piece.
    shell.instruments = [copy.copy(instrument) for instrument in midi.instruments]
    for instrument in shell.instruments:
        instrument.notes = [note for note in instrument.notes if id(note) in keep]
    trimmed = copy.deepcopy(shell)
    for instrument in trimmed.instruments:
        for note in instrument.notes:
            note.end = min(note.end, stop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trimmed.adjust_times([start, stop], [0.0, stop - start])
    return Trimmed(trimmed, True, start)


def _first_kept(notes: list[pretty_midi.Note], ends: list[float], max_notes: int, max_seconds: float) -> int:
    """Index of the first note kept: among the last ``max_notes``, the first whose onset lies within
    ``max_seconds`` of the end of the notes from it on (else the last note)."""
    for index in range(max(len(notes) - max_notes, 0), len(notes)):
        if notes[index].start >= ends[index] - max_seconds:
            return index
    return len(notes) - 1
