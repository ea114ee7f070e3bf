"""Piano-roll pictures: seed and new notes in two colours, one lane per variation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pretty_midi

BACKGROUND = (250, 250, 247)
C_LINE = (226, 226, 220)
SEED_COLOUR = (96, 125, 160)
NEW_COLOUR = (232, 121, 46)
SEPARATOR = (170, 170, 170)
WIDTH = 640
MIN_ROW_HEIGHT = 2
MIN_LANE_HEIGHT = 240  # keeps the picture readable when a phone shrinks it
LANE_GAP = 6
MIN_SECONDS = 1.0  # the shortest time axis

Notes = Sequence[pretty_midi.Note]


def draw(lanes: list[tuple[Notes, Notes]], width: int = WIDTH) -> np.ndarray:
    """An RGB image (H, W, 3) with one lane per (seed notes, new notes) pair, on one time axis in seconds."""
    notes = [n for pair in lanes for part in pair for n in part]
    if not notes:
        return np.full((MIN_LANE_HEIGHT, width, 3), BACKGROUND, dtype=np.uint8)
    low = min(n.pitch for n in notes) - 2
    high = max(n.pitch for n in notes) + 2
    end = max(n.end for n in notes)
    row_height = max(MIN_ROW_HEIGHT, -(-MIN_LANE_HEIGHT // (high - low + 1)))
    lane_height = (high - low + 1) * row_height
    image = np.full((len(lanes) * (lane_height + LANE_GAP) - LANE_GAP, width, 3), BACKGROUND, dtype=np.uint8)
    scale = (width - 1) / max(end, MIN_SECONDS)
    for index, (seed, new) in enumerate(lanes):
        top = index * (lane_height + LANE_GAP)
        lane = image[top : top + lane_height]
        for pitch in range(low, high + 1):
            if pitch % 12 == 0:
                row = (high - pitch) * row_height + row_height - 1
                lane[row] = C_LINE
        for part, colour in ((seed, SEED_COLOUR), (new, NEW_COLOUR)):
            for note in part:
                row = (high - note.pitch) * row_height
                left = int(note.start * scale)
                right = max(left + 1, int(note.end * scale))
                lane[row : row + row_height - 1, left:right] = colour
        if seed and new:
            boundary = int(min(n.start for n in new) * scale)
            lane[:, boundary : boundary + 1] = SEPARATOR
        if index:
            image[top - LANE_GAP // 2] = SEPARATOR
    return image
