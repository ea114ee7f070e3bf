"""One-minute windows of long music and what each says: key, clarity, drones, loops, variety, density, loudness."""

import math

import numpy as np
import pytest

from midigen.controls import key_index
from midigen.evaluate import first_to_last, mean_of, share_in_key, window_rows
from midigen.stats import key_distances, window_statistics, windows
from midigen.tokenizer import Note, Score

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
BPM = 120  # a minute is 120 beats, 1440 grid steps


def scale_minute(tonic: int, minute: int, velocity: int = 80, step: int = 6) -> list[Note]:
    """A minute of eighth notes running up and down the major scale on ``tonic``, each bar a step higher."""
    first = minute * 1440
    return [Note(60 + tonic + MAJOR_SCALE[(i // 16 + i) % 7] + 12 * ((i // 16 + i) // 7 % 2), first + i * step, step,
                 velocity) for i in range(1440 // step)]


def drone_minute(minute: int) -> list[Note]:
    """A minute of C and G hammered, with a passing D and E now and then."""
    first = minute * 1440
    return [Note((60, 67, 62, 67, 60, 67, 64, 67)[i % 8] if i % 8 in (2, 6) and i % 32 == 2 else (60, 67)[i % 2],
                 first + 6 * i, 6) for i in range(240)]


def test_windows_are_whole_minutes_at_the_score_tempo():
    score = Score(scale_minute(0, 0) + scale_minute(7, 1) + scale_minute(2, 2)[:10], BPM)
    cut = windows(score, 12)
    assert [len(w.notes) for w in cut] == [240, 240]  # the last, unfinished minute is left out
    assert windows(Score(score.notes, BPM * 2), 12)[0].notes == score.notes[:480]  # twice as fast: two per minute
    assert windows(Score([], BPM), 12) == []


def test_a_scale_is_clear_in_its_key_and_a_fifth_hammered_drones():
    scale = window_statistics(Score(scale_minute(2, 0), BPM), 12)
    assert scale["key"] == key_index("D major") and scale["key_clarity"] > 0.7
    assert scale["top_two"] < 0.4 and scale["repeated_bars"] == 0.0
    assert scale["notes_per_beat"] == pytest.approx(240 / (1434 / 12)) and scale["velocity"] == 80
    assert scale["top_duration"] == 1.0  # every note an eighth
    drone = window_statistics(Score(drone_minute(0), BPM), 12)
    assert drone["top_two"] > 0.8 and drone["repeated_bars"] > 0.4 and drone["distinct_8grams"] < 0.2


def test_window_rows_mark_drones_and_key_steps():
    rows = window_rows(Score(scale_minute(0, 0) + scale_minute(0, 1) + drone_minute(2) + scale_minute(6, 3), BPM), 12)
    assert [row["drone"] for row in rows] == [0.0, 0.0, 1.0, 0.0]
    assert math.isnan(rows[0]["key_step"]) and rows[1]["key_step"] == pytest.approx(0.0, abs=1e-12)
    assert rows[3]["key_step"] > 0.5
    assert mean_of(rows, "key_step") == pytest.approx(np.mean([r["key_step"] for r in rows[1:]]))
    assert share_in_key(rows, "C major") == 0.75 and math.isnan(share_in_key([], "C major"))


def test_key_distances_between_windows():
    same = windows(Score(scale_minute(0, 0) + scale_minute(0, 1), BPM), 12)
    far = windows(Score(scale_minute(0, 0) + scale_minute(6, 1) + scale_minute(6, 2), BPM), 12)
    assert key_distances(same) == ([pytest.approx(0.0, abs=1e-12)], pytest.approx(0.0, abs=1e-12))
    steps, first_last = key_distances(far)
    assert steps[0] > 0.5 and steps[1] == pytest.approx(0.0, abs=1e-12) and first_last == steps[0]
    assert math.isnan(key_distances(same[:1])[1])
    assert first_to_last([Score(scale_minute(0, 0), BPM), Score(far[0].notes + far[1].notes, BPM)], 12) == steps[0]
