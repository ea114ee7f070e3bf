"""Piano-roll pictures: seed and continuation in two colours, one lane per variation."""

from __future__ import annotations

import numpy as np

from .tokenizer import Score

BACKGROUND = (250, 250, 247)
C_LINE = (226, 226, 220)
SEED_COLOUR = (96, 125, 160)
NEW_COLOUR = (232, 121, 46)
SEPARATOR = (170, 170, 170)
WIDTH = 640
MIN_ROW_HEIGHT = 2
MIN_LANE_HEIGHT = 240  # keeps the picture readable when a phone shrinks it
LANE_GAP = 6


def draw(lanes: list[tuple[Score, Score]], steps_per_beat: int, width: int = WIDTH) -> np.ndarray:
    """An RGB image (H, W, 3) with one lane per (seed, continuation) pair, on one time axis."""
    scores = [s for pair in lanes for s in pair if s.notes]
    if not scores:
        return np.full((MIN_LANE_HEIGHT, width, 3), BACKGROUND, dtype=np.uint8)
    low = min(n.pitch for s in scores for n in s.notes) - 2
    high = max(n.pitch for s in scores for n in s.notes) + 2
    end = max(n.start + n.duration for s in scores for n in s.notes)
    row_height = max(MIN_ROW_HEIGHT, -(-MIN_LANE_HEIGHT // (high - low + 1)))
    lane_height = (high - low + 1) * row_height
    image = np.full((len(lanes) * (lane_height + LANE_GAP) - LANE_GAP, width, 3), BACKGROUND, dtype=np.uint8)
    scale = (width - 1) / max(end, steps_per_beat)
    for index, (seed, continuation) in enumerate(lanes):
        top = index * (lane_height + LANE_GAP)
        lane = image[top : top + lane_height]
        for pitch in range(low, high + 1):
            if pitch % 12 == 0:
                row = (high - pitch) * row_height + row_height - 1
                lane[row] = C_LINE
        for score, colour in ((seed, SEED_COLOUR), (continuation, NEW_COLOUR)):
            for note in score.notes:
                row = (high - note.pitch) * row_height
                left = int(note.start * scale)
                right = max(left + 1, int((note.start + note.duration) * scale))
                lane[row : row + row_height - 1, left:right] = colour
        if seed.notes and continuation.notes:
            boundary = int(continuation.notes[0].start * scale)
            lane[:, boundary : boundary + 1] = SEPARATOR
        if index:
            image[top - LANE_GAP // 2] = SEPARATOR
    return image
