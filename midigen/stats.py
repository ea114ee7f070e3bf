"""Musical statistics of a score, to compare generated pieces with real ones."""

from __future__ import annotations

from collections import Counter

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
    sequence = [(n.pitch, n.duration) for n in notes]
    ngrams = [tuple(sequence[i : i + NGRAM]) for i in range(len(sequence) - NGRAM + 1)]
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
        "distinct_8gram_share": len(set(ngrams)) / len(ngrams) if ngrams else 1.0,
    }


def pitch_class_profile(scores: list[Score]) -> np.ndarray:
    """Mean key-independent pitch-class profile: each piece's shares sorted from most to least used."""
    profiles = []
    for score in scores:
        counts = Counter(n.pitch % 12 for n in score.notes)
        total = sum(counts.values()) or 1
        profiles.append(sorted((counts[i] / total for i in range(12)), reverse=True))
    return np.mean(profiles, axis=0)


def summarize(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """(mean, std) of every statistic over pieces."""
    keys = rows[0].keys()
    return {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys}
