"""Piano-roll data for the page: each variation's notes in seconds, seed and new music told apart.

The page draws it (``app.py``, ``ROLL_JS``) and moves a playhead with the audio; the ``/generate`` API
returns the same data as ``piano_roll``::

    {"lanes": [{"notes": [[pitch, start, end, new], ...], "boundary": s, "end": s}, ...],
     "low": lowest pitch, "high": highest pitch, "end": s}

``new`` is 1 for notes of the new music, 0 for the seed's; ``boundary`` is where the new music starts.
Drum notes are left out (they have no pitch to draw).
"""

from __future__ import annotations

import pretty_midi

PITCH_MARGIN = 2


def lane(midi: pretty_midi.PrettyMIDI, boundary: float) -> dict:
    """One variation: its pitched notes, those starting at ``boundary`` seconds or later marked new."""
    notes = sorted((n.pitch, round(n.start, 3), round(n.end, 3), int(n.start >= boundary - 1e-6))
                   for instrument in midi.instruments if not instrument.is_drum for n in instrument.notes)
    end = max((n[2] for n in notes), default=0.0)
    return {"notes": [list(n) for n in sorted(notes, key=lambda n: (n[1], n[0]))], "boundary": round(boundary, 3),
            "end": end}


def roll(lanes: list[dict]) -> dict:
    """The whole roll: lanes on one time axis and one pitch range."""
    pitches = [n[0] for one in lanes for n in one["notes"]] or [60]
    return {"lanes": lanes, "low": min(pitches) - PITCH_MARGIN, "high": max(pitches) + PITCH_MARGIN,
            "end": max((one["end"] for one in lanes), default=0.0)}
