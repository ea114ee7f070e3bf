"""The page's history of steps, for Continue, Back and Forward: plain functions of a small dict.

The history is ``{"steps": [...], "at": index of the step shown}``. A step is
``{"seed": {"name", "data"} or None, "outputs": {output name: value}, "names": [file names],
"takes": [MIDI bytes per variation]}``: its files can always be made again from its bytes, however
long ago the server swept them. A new result after going Back replaces the steps that were ahead, as a
browser's history does.
"""

from __future__ import annotations

MAX_STEPS = 20


def empty() -> dict:
    return {"steps": [], "at": -1}


def record(history: dict, step: dict) -> dict:
    """``history`` with ``step`` shown after the one shown now (at most ``MAX_STEPS`` kept)."""
    steps = [*history["steps"][: history["at"] + 1], step][-MAX_STEPS:]
    return {"steps": steps, "at": len(steps) - 1}


def shown(history: dict) -> dict | None:
    """The step on the page (None before the first result)."""
    return history["steps"][history["at"]] if history["steps"] else None


def take_to_continue(history: dict, take: int) -> bytes | None:
    """MIDI bytes of variation ``take`` of the step shown, which Continue grows (None before the first result)."""
    step = shown(history)
    if step is None or not step["takes"]:
        return None
    return step["takes"][min(max(take, 0), len(step["takes"]) - 1)]


def move(history: dict, by: int) -> dict | None:
    """``history`` showing the step ``by`` steps back (-1) or forward (+1); None when there is none."""
    at = history["at"] + by
    if not 0 <= at < len(history["steps"]):
        return None
    return {**history, "at": at}


def replace_shown(history: dict, step: dict) -> dict:
    """``history`` with the step shown replaced (its files made again)."""
    steps = list(history["steps"])
    steps[history["at"]] = step
    return {**history, "steps": steps}
