"""The styles midigen writes in: one model each, with the instrument and tempo it plays at unless asked.

A light catalogue (no torch), read by the settings, the command line and the style book
(``midigen.style_choice``), which loads the models and picks one for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS_FOLDER = Path(__file__).resolve().parent.parent / "weights"
AUTO = "auto"


@dataclass(frozen=True)
class Style:
    """One style: its model's weights, and what new music plays with unless the user says otherwise."""

    name: str
    label: str  # on the page
    description: str
    weights_name: str  # checkpoint path in ``weights/``, without suffix
    program: int  # General MIDI instrument
    bpm: float | None  # tempo from scratch; None: the model's own choice
    # the writer's texture (``phrases.texture_bias``), measured with ``midigen evaluate`` against the collection:
    duration_lift: float = 0.0  # logit per log grid step of a note's length: longer notes
    chord_lift: float = 0.0  # logit off each time step: more notes per chord
    # semitones asked above the register wanted, at first (``phrases.Steering``): how much lower than asked the
    # model writes, measured from scratch with steering off (200 pieces of 200 notes; ``tests/test_styles.py``)
    register_offset: float = 0.0

    @property
    def weights(self) -> Path:
        return WEIGHTS_FOLDER / self.weights_name


STYLES: tuple[Style, ...] = (
    Style("game-piano", "Game piano",
          "Solo piano from video-game soundtracks: lively, pop-like harmony, wide register.",
          "midigen-ff-piano", 0, None, duration_lift=0.2, chord_lift=0.35, register_offset=0.0),
    Style("chorale", "Chorale (Bach)",
          "Four-part hymns harmonized in the manner of J. S. Bach: steady quarter notes, cadences.",
          "midigen-chorale", 19, 72.0, register_offset=-0.5),
    Style("folk", "Folk (fiddle tunes)",
          "Irish and Scottish fiddle tunes: one quick melodic line, jigs, reels and airs.",
          "midigen-folk", 40, 112.0, register_offset=1.1),
    Style("renaissance", "Renaissance (Palestrina)",
          "Palestrina's vocal polyphony: slow, flowing independent voices, modal harmony.",
          "midigen-renaissance", 52, 128.0, register_offset=-1.1),
)
BY_NAME = {style.name: style for style in STYLES}
DEFAULT = STYLES[0]  # from scratch, Auto writes in this style


def style(name: str) -> Style:
    """The style called ``name``; ValueError naming the choices otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"style must be {AUTO} or one of {', '.join(BY_NAME)}, not {name!r}")
    return BY_NAME[name]


def listing() -> str:
    """What ``midigen styles`` prints: a style a line, its name and its description."""
    width = max(len(name) for name in BY_NAME)
    return "\n".join(f"{s.name:<{width}}  {s.description}" for s in STYLES)
