"""The page's history of steps, for Continue and Back: plain functions of a list.

A step is ``{"seed": seed file or None, "outputs": {output name: value}}``, the newest last; the
outputs hold at least ``"midi_files"``, the MIDI files the step offered (the first is continued).
"""

from __future__ import annotations

MAX_STEPS = 20


def remember(history: list[dict], seed, outputs: dict) -> list[dict]:
    """``history`` with a new latest step (at most ``MAX_STEPS`` kept)."""
    return [*history, {"seed": seed, "outputs": dict(outputs)}][-MAX_STEPS:]


def piece_to_continue(history: list[dict]) -> str | None:
    """The MIDI file Continue grows: the latest step's first file (None before the first result)."""
    if not history or not history[-1]["outputs"].get("midi_files"):
        return None
    return history[-1]["outputs"]["midi_files"][0]


def back(history: list[dict]) -> list[dict] | None:
    """``history`` without its latest step, whose new latest step is shown again (None without one)."""
    return history[:-1] if len(history) >= 2 else None
