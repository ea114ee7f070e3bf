"""Musical statistics of a score, to compare generated pieces with real ones."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .tokenizer import Score

NGRAM = 8


def piece_statistics(score: Score, steps_per_beat: int) -> dict[str, float]:
    """Pitch, rhythm, texture and dynamics figures of one piece (NaN-free for >= 2 notes)."""
    notes = score.notes
    if len(notes) < 2:
        raise ValueError("statistics need at least two notes")
    pitches = np.array([n.pitch for n in notes])
    starts = np.array([n.start for n in notes])
    durations = np.array([n.duration for n in notes]) / steps_per_beat
    velocities = np.array([n.velocity for n in notes])
    onsets = np.unique(starts)
    iois = np.diff(onsets) / steps_per_beat
    end = max(n.start + n.duration for n in notes)
    length_beats = max((end - starts[0]) / steps_per_beat, 1.0 / steps_per_beat)
    pitch_classes = np.bincount(pitches % 12, minlength=12) / len(pitches)
    used = pitch_classes[pitch_classes > 0]
    sounding = np.zeros(end - starts[0] + 1, dtype=np.int32)
    for n in notes:
        sounding[n.start - starts[0] : n.start - starts[0] + n.duration] += 1
    return {
        "pitch_mean": float(pitches.mean()),
        "pitch_std": float(pitches.std()),
        "pitch_range": float(np.percentile(pitches, 95) - np.percentile(pitches, 5)),
        "pitch_class_entropy": float(-(used * np.log2(used)).sum()),
        "notes_per_beat": len(notes) / length_beats,
        "chord_size": len(notes) / len(onsets),
        "polyphony": float(sounding[sounding > 0].mean()),
        "silence_share": float((sounding == 0).mean()),
        "duration_median": float(np.median(durations)),
        "duration_kinds": float(len(np.unique(durations))),
        "ioi_median": float(np.median(iois)) if len(iois) else 0.0,
        "ioi_kinds": float(len(np.unique(iois))),
        "velocity_mean": float(velocities.mean()),
        "velocity_std": float(velocities.std()),
        "distinct_8gram_share": ngram_share(score),
    }


def pitch_class_profile(scores: list[Score]) -> np.ndarray:
    """Mean key-independent pitch-class profile: each piece's shares sorted from most to least used."""
    profiles = []
    for score in scores:
        counts = Counter(n.pitch % 12 for n in score.notes)
        total = sum(counts.values()) or 1
        profiles.append(sorted((counts[i] / total for i in range(12)), reverse=True))
    return np.mean(profiles, axis=0)


def overlap(a, b, points: int = 1024) -> float:
    """Overlapping area of the distributions of two samples (1 = the same, 0 = apart), each a Gaussian kernel density
    estimate with the same bandwidth: the wider of the two samples' Scott bandwidths, so that a sample of one value
    repeated is read with the other's spread, not as a needle beside it (at least a thousandth of the values' scale:
    two constant samples are narrow peaks); NaN if either has fewer than two values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    floor = 1e-3 * max(1.0, float(np.abs(np.concatenate([a, b])).max()))
    width = max(max(float(x.std(ddof=1)) * len(x) ** -0.2 for x in (a, b)), floor)
    grid = np.linspace(min(a.min(), b.min()) - 4 * width, max(a.max(), b.max()) + 4 * width, points)

    def density(x: np.ndarray) -> np.ndarray:
        kernels = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / width) ** 2)
        return kernels.sum(axis=1) / (len(x) * width * math.sqrt(2 * math.pi))

    return float(np.trapezoid(np.minimum(density(a), density(b)), grid))


def summarize(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """(mean, std) of every statistic over pieces."""
    keys = rows[0].keys()
    return {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys}


# -- key, register, density and loudness: what a continuation should keep from its seed ----------

# Krumhansl-Kessler key profiles (probe-tone ratings), from the tonic up.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MEASURES = ("key", "register", "density", "loudness")


def duration_profile(pitches, durations) -> np.ndarray:
    """Pitch-class profile weighted by duration, summing to 1 (zeros for no notes)."""
    profile = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, weights=np.asarray(durations, dtype=np.float64),
                          minlength=12)
    total = profile.sum()
    return profile / total if total > 0 else profile


def score_profile(score: Score) -> np.ndarray:
    return duration_profile([n.pitch for n in score.notes], [n.duration for n in score.notes])


def key_correlations(profile: np.ndarray) -> np.ndarray:
    """Correlation of ``profile`` with the 24 keys: C major..B major, then C minor..B minor."""
    templates = [np.roll(MAJOR_PROFILE, tonic) for tonic in range(12)] + [np.roll(MINOR_PROFILE, tonic)
                                                                          for tonic in range(12)]
    return np.array([correlation(profile, t) for t in templates])


def estimate_key(profile: np.ndarray) -> int:
    """Krumhansl-Schmuckler key estimate: 0-11 major on C..B, 12-23 minor on C..B."""
    return int(np.argmax(key_correlations(profile)))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is flat."""
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def notes_per_beat(starts, steps_per_beat: int) -> float:
    """Notes divided by the beats from the first onset to the last (at least one beat)."""
    starts = np.asarray(starts)
    if len(starts) == 0:
        return 0.0
    return len(starts) / max((starts.max() - starts.min()) / steps_per_beat, 1.0)


@dataclass(frozen=True)
class Character:
    """What a listener hears as a passage's identity: key profile, register, density and loudness."""

    profile: np.ndarray
    mean_pitch: float
    notes_per_beat: float
    mean_velocity: float

    @classmethod
    def of(cls, score: Score, steps_per_beat: int) -> Character:
        if not score.notes:
            raise ValueError("a passage needs at least one note")
        return cls(score_profile(score), float(np.mean([n.pitch for n in score.notes])),
                   notes_per_beat([n.start for n in score.notes], steps_per_beat),
                   float(np.mean([n.velocity for n in score.notes])))


def distances(a: Character, b: Character) -> dict[str, float]:
    """The four distances between two passages (0 = same)."""
    return {
        "key": 1.0 - correlation(a.profile, b.profile),
        "register": abs(a.mean_pitch - b.mean_pitch),
        "density": abs(math.log(max(a.notes_per_beat, 1e-6) / max(b.notes_per_beat, 1e-6))),
        "loudness": abs(a.mean_velocity - b.mean_velocity),
    }


def floor_to_ceiling(generated: list[float], ceiling: list[float], floor: list[float]) -> float:
    """Share of the way from the floor's mean distance (0) to the ceiling's (1) that the generated mean covers.

    Above 1: closer than the real continuation; below 0: further than another piece. NaN when the floor
    is no further than the ceiling (the measure cannot tell them apart).
    """
    g, c, f = float(np.mean(generated)), float(np.mean(ceiling)), float(np.mean(floor))
    return (f - g) / (f - c) if f > c else math.nan


def ngram_share(score: Score, n: int = NGRAM) -> float:
    """Share of distinct n-grams of (pitch, duration) among all of them (1 = nothing recurs)."""
    sequence = [(note.pitch, note.duration) for note in score.notes]
    ngrams = [tuple(sequence[i : i + n]) for i in range(len(sequence) - n + 1)]
    return len(set(ngrams)) / len(ngrams) if ngrams else 1.0


def repeated_bars(score: Score, steps_per_beat: int, beats_per_bar: int = 4) -> float:
    """Share of bars with notes that repeat the bar before note for note (pitch, place in the bar, duration):
    about 0 for music that develops, near 1 for a loop."""
    bar = steps_per_beat * beats_per_bar
    bars: dict[int, list[tuple[int, int, int]]] = {}
    for note in score.notes:
        bars.setdefault(note.start // bar, []).append((note.pitch, note.start % bar, note.duration))
    if len(bars) < 2:
        return 0.0
    return sum(bars.get(b - 1) == notes for b, notes in bars.items()) / len(bars)


# -- long streams: one-minute windows -----------------------------------------------------------

WINDOW_SECONDS = 60.0
DRONE_SHARE = 0.8  # two pitch classes sounding longer than this share of a passage: it drones


def is_drone(profile: np.ndarray) -> bool:
    """Whether two pitch classes sound for more than 80 % of a passage's time: a drone, or a tonic and its fifth
    hammered, which a listener hears as stuck (no real continuation of the held-out pieces is one)."""
    return bool(np.sort(profile)[-2:].sum() > DRONE_SHARE)


def windows(score: Score, steps_per_beat: int, seconds: float = WINDOW_SECONDS) -> list[Score]:
    """The score cut into windows of ``seconds`` (at its tempo) from step 0, each with the notes starting in it:
    only whole windows (not the part after the last that the music fills), and only those with two notes or more."""
    steps = seconds * score.bpm / 60.0 * steps_per_beat
    found: dict[int, list] = {}
    for note in score.notes:
        found.setdefault(int(note.start // steps), []).append(note)
    whole = int(max((n.start + n.duration for n in score.notes), default=0) // steps)
    return [Score(found[w], score.bpm) for w in sorted(found) if w < whole and len(found[w]) >= 2]


def window_statistics(window: Score, steps_per_beat: int) -> dict[str, float]:
    """What a listener hears of one window: its key (0-23) and how clearly (the best Krumhansl-Schmuckler
    correlation), the share of the two most sounding pitch classes (a drone above ``DRONE_SHARE``), bars repeating
    the bar before, distinct 8-note n-grams, notes per beat, mean velocity and the share of the commonest duration."""
    profile = score_profile(window)
    correlations = key_correlations(profile)
    durations = np.unique([n.duration for n in window.notes], return_counts=True)[1]
    return {"key": float(np.argmax(correlations)), "key_clarity": float(correlations.max()),
            "top_two": float(np.sort(profile)[-2:].sum()), "repeated_bars": repeated_bars(window, steps_per_beat),
            "distinct_8grams": ngram_share(window),
            "notes_per_beat": notes_per_beat([n.start for n in window.notes], steps_per_beat),
            "velocity": float(np.mean([n.velocity for n in window.notes])),
            "top_duration": float(durations.max() / len(window.notes))}


def key_distances(windows: list[Score]) -> tuple[list[float], float]:
    """Key distance (1 - correlation of duration-weighted pitch-class profiles) between each window and the next,
    and between the first and the last (NaN for fewer than two windows)."""
    profiles = [score_profile(w) for w in windows]
    steps = [1.0 - correlation(a, b) for a, b in zip(profiles, profiles[1:], strict=False)]
    return steps, 1.0 - correlation(profiles[0], profiles[-1]) if len(profiles) >= 2 else math.nan
