"""Piano-roll data for the page: each variation's notes in seconds, seed and new music told apart.

The page draws it (``app.py``, ``web/piano_roll.js``) and moves a playhead with the audio; the
``/generate`` API returns the same data as ``piano_roll``::

    {"lanes": [{"notes": [[pitch, start, end, new], ...], "boundary": s, "end": s}, ...],
     "low": lowest pitch, "high": highest pitch, "end": s, "start": s}

``new`` is 1 for notes of the new music, 0 for the seed's; ``boundary`` is where the new music starts.
Times are those of the audio, which may start shortly before the new music: at ``start`` seconds
into the MIDI file (``studio``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pretty_midi

PITCH_MARGIN = 2

Notes = Sequence[pretty_midi.Note]


def lane(seed_notes: Notes, new: Notes) -> dict:
    """One variation: the seed's pitched notes (``seed_notes``) and the new music's."""
    notes = sorted([[int(n.pitch), round(float(n.start), 3), round(float(n.end), 3), int(is_new)]
                    for part, is_new in ((seed_notes, False), (new, True)) for n in part], key=lambda n: (n[1], n[0]))
    boundary = min((n.start for n in new), default=max((n.end for n in seed_notes), default=0.0))
    return {"notes": notes, "boundary": round(float(boundary), 3), "end": max((n[2] for n in notes), default=0.0)}


def of_midi(midi: pretty_midi.PrettyMIDI) -> dict:
    """The lane of an output whose last instrument is the new music (the drums of the seed are not drawn)."""
    *seed_instruments, new = midi.instruments
    return lane([n for instrument in seed_instruments if not instrument.is_drum for n in instrument.notes], new.notes)


def roll(lanes: list[dict], start: float = 0.0) -> dict:
    """The whole roll: lanes on one time axis and one pitch range; the audio starts ``start`` s into the MIDI."""
    pitches = [n[0] for one in lanes for n in one["notes"]] or [60]
    return {"lanes": lanes, "low": min(pitches) - PITCH_MARGIN, "high": max(pitches) + PITCH_MARGIN,
            "end": max((one["end"] for one in lanes), default=0.0), "start": round(float(start), 3)}
