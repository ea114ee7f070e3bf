"""Validation NLL and musical statistics of generated pieces next to real ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pretty_midi
from tqdm import tqdm

from .generate import GenerationRequest, Generator
from .prepare import midi_files
from .stats import piece_statistics, pitch_class_profile, summarize
from .train import Piece, validation_loss


def real_scores(generator: Generator, folder: str | Path, only: set[str] | None = None):
    """(relative name, score) of readable files under ``folder`` with at least two notes."""
    folder = Path(folder)
    scores = []
    for path in midi_files(folder):
        name = str(path.relative_to(folder))
        if only is not None and name not in only:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score = generator.tokenizer.midi_to_score(pretty_midi.PrettyMIDI(str(path)))
        except Exception as error:  # MIDI parsers raise many error types
            tqdm.write(f"skipping {path}: {error}")
            continue
        if len(score.notes) >= 2:
            scores.append((name, score))
    return scores


def negative_log_likelihood(generator: Generator, scores) -> dict[str, float]:
    """NLL in nats per token and per note of whole pieces under the model (CPU, torch)."""
    from .model import MidiGRU

    tokenize = generator.tokenizer.score_to_tokens
    pieces = [Piece(name, np.asarray(tokenize(score), dtype=np.int64), len(score.notes)) for name, score in scores]
    nll = validation_loss(MidiGRU.from_checkpoint(generator.checkpoint), pieces, "cpu")
    return {"nll_per_token": nll["nll_per_token"], "nll_per_note": nll["nll_per_note"], "pieces": len(scores)}


def generated_scores(generator: Generator, pieces: int, notes: int, temperature: float, top_p: float, seed: int):
    request = GenerationRequest(temperature=temperature, top_p=top_p, notes=notes, seconds=None,
                                random_seed=seed, variations=pieces)
    return [g.continuation for g in generator.generate(request)]


def compare(generator: Generator, real, generated) -> list[tuple[str, float, float, float, float]]:
    """Rows of (statistic, real mean, real std, generated mean, generated std)."""
    spb = generator.tokenizer.config.steps_per_beat
    real_summary = summarize([piece_statistics(s, spb) for _, s in real])
    gen_summary = summarize([piece_statistics(s, spb) for s in generated])
    rows = [(k, *real_summary[k], *gen_summary[k]) for k in real_summary]
    distance = 0.5 * np.abs(pitch_class_profile([s for _, s in real]) - pitch_class_profile(generated)).sum()
    rows.append(("pitch_profile_distance", 0.0, 0.0, float(distance), 0.0))
    return rows


def format_table(rows) -> str:
    lines = [f"{'statistic':<24}{'real':>18}{'generated':>18}"]
    for name, real_mean, real_std, gen_mean, gen_std in rows:
        lines.append(f"{name:<24}{real_mean:>10.3f} ±{real_std:<6.3f}{gen_mean:>10.3f} ±{gen_std:<6.3f}")
    return "\n".join(lines)
