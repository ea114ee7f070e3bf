"""Validation NLL, musical statistics of generated pieces next to real ones, and how well continuations
follow their seeds."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
from tqdm import tqdm

from .controls import DENSITY_LEVELS, key_index
from .endless import EndlessStream, play
from .generate import GenerationRequest, Generator, shift_to_zero
from .prepare import midi_files
from .stats import (
    MEASURES,
    Character,
    correlation,
    distances,
    estimate_key,
    floor_to_ceiling,
    is_drone,
    key_distances,
    ngram_share,
    notes_per_beat,
    overlap,
    piece_statistics,
    pitch_class_profile,
    repeated_bars,
    score_profile,
    summarize,
    window_statistics,
    windows,
)
from .tokenizer import Score


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


def negative_log_likelihood(generator: Generator, scores) -> dict:
    """NLL in nats per token and per note of whole pieces under the model (CPU, torch), with the controls
    unknown; for a model that reads controls, also with each window's own controls (``controlled``)."""
    from .model import MidiGRU
    from .train import Piece, validation_loss

    model = MidiGRU.from_checkpoint(generator.checkpoint)
    tok = generator.tokenizer
    pieces = [Piece(name, np.asarray(tok.score_to_tokens(score), dtype=np.int64), len(score.notes))
              for name, score in scores]
    result = {**validation_loss(model, pieces, "cpu"), "pieces": len(scores)}
    if model.control is not None:
        window = generator.checkpoint.info.get("training", {}).get("sequence_length", 256)
        result["controlled"] = validation_loss(model, pieces, "cpu", tok, window)
    return result


def generated_scores(generator: Generator, pieces: int, notes: int, temperature: float, top_p: float,
                     random_seed: int):
    request = GenerationRequest(temperature=temperature, top_p=top_p, notes=notes, seconds=None,
                                random_seed=random_seed, variations=pieces)
    return [g.continuation for g in generator.generate(request)]


def compare(generator: Generator, real, generated) -> list[tuple[str, float, float, float, float, float]]:
    """Rows of (statistic, real mean, real std, generated mean, generated std, overlap of the per-piece
    distributions: ``stats.overlap``)."""
    spb = generator.tokenizer.config.steps_per_beat
    real_rows = [piece_statistics(s, spb) for _, s in real]
    gen_rows = [piece_statistics(s, spb) for s in generated]
    real_summary, gen_summary = summarize(real_rows), summarize(gen_rows)
    rows = [(k, *real_summary[k], *gen_summary[k], overlap([r[k] for r in real_rows], [r[k] for r in gen_rows]))
            for k in real_summary]
    distance = 0.5 * np.abs(pitch_class_profile([s for _, s in real]) - pitch_class_profile(generated)).sum()
    rows.append(("pitch_profile_distance", 0.0, 0.0, float(distance), 0.0, math.nan))
    return rows


def format_table(rows) -> str:
    lines = [f"{'statistic':<24}{'real':>18}{'generated':>18}{'overlap':>9}"]
    for name, real_mean, real_std, gen_mean, gen_std, shared in rows:
        lines.append(f"{name:<24}{real_mean:>10.3f} ±{real_std:<6.3f}{gen_mean:>10.3f} ±{gen_std:<6.3f}"
                     + ("" if math.isnan(shared) else f"{shared:>9.2f}"))
    shares = [row[5] for row in rows if not math.isnan(row[5])]
    lines += ["", f"mean overlap of the per-piece distributions (1 = the same): {np.mean(shares):.3f}"]
    return "\n".join(lines)


# -- continuations: does the new music keep its seed's key, register, density and loudness? -------

SEED_LENGTHS = (40, 150, 500)
CONTINUATION_NOTES = 150


def continuation_scores(generator: Generator, real, seed_lengths=SEED_LENGTHS, notes: int = CONTINUATION_NOTES,
                        seeds_per_piece: int = 3, random_seed: int = 0, **request) -> dict[int, dict]:
    """For each seed length N: the first N notes of every piece long enough are continued by ``notes``
    generated notes (``seeds_per_piece`` random seeds, continuation only, default settings unless
    ``request`` says otherwise), and the four distances to the seed (``stats.distances``) are set between
    the piece's real next ``notes`` notes (ceiling, scored 1) and another piece's (floor, scored 0).

    Returns, per N: pieces, the share of continuations in the seed's estimated key, and per measure
    the score and the mean distances of generated, ceiling and floor.
    """
    spb = generator.tokenizer.config.steps_per_beat
    results = {}
    for length in seed_lengths:
        cases = [(name, score) for name, score in real if len(score.notes) >= length + notes]
        if len(cases) < 2:
            continue
        seeds = [Character.of(prefix(score, 0, length), spb) for _, score in cases]
        nexts = [Character.of(prefix(score, length, length + notes), spb) for _, score in cases]
        found = {"generated": [], "ceiling": [], "floor": []}
        same_key, real_same_key, drones, real_drones = [], [], [], []
        for i, (_, score) in enumerate(cases):
            seed_score = prefix(score, 0, length)
            asked = GenerationRequest(notes=notes, seconds=None, variations=seeds_per_piece,
                                      random_seed=random_seed + i, continuation_only=True, **request)
            for result in generator.continue_score(asked, seed_score):
                if result.continuation.notes:
                    made = Character.of(result.continuation, spb)
                    found["generated"].append(distances(seeds[i], made))
                    same_key.append(estimate_key(made.profile) == estimate_key(seeds[i].profile))
                    drones.append(is_drone(made.profile))
            found["ceiling"].append(distances(seeds[i], nexts[i]))
            real_same_key.append(estimate_key(nexts[i].profile) == estimate_key(seeds[i].profile))
            real_drones.append(is_drone(nexts[i].profile))
            found["floor"].extend(distances(seeds[i], nexts[j]) for j in range(len(cases)) if j != i)
        means = {kind: {m: float(np.mean([d[m] for d in rows])) for m in MEASURES} for kind, rows in found.items()}
        scores = {m: floor_to_ceiling([d[m] for d in found["generated"]], [d[m] for d in found["ceiling"]],
                                      [d[m] for d in found["floor"]]) for m in MEASURES}
        results[length] = {"pieces": len(cases), "continuations": len(found["generated"]),
                           "in_seed_key": float(np.mean(same_key)),
                           "real_in_seed_key": float(np.mean(real_same_key)), "drones": float(np.mean(drones)),
                           "real_drones": float(np.mean(real_drones)), "scores": scores, **means}
    return results


def prefix(score: Score, first: int, stop: int) -> Score:
    """Notes ``first`` to ``stop`` of a score (in (onset, pitch) order), moved to start at step 0."""
    return shift_to_zero(Score(score.notes[first:stop], score.bpm))


def format_continuations(results: dict[int, dict]) -> str:
    lines = [f"{'seed length':<22}" + "".join(f"{m:>10}" for m in MEASURES) + f"{'in key':>10}{'(real)':>8}"
             + f"{'drones':>8}{'(real)':>8}"]
    for length, r in results.items():
        label = f"{length} notes ({r['pieces']} pieces)"
        lines.append(f"{label:<22}" + "".join(f"{r['scores'][m]:>10.2f}" for m in MEASURES)
                     + f"{r['in_seed_key']:>10.2f}{r['real_in_seed_key']:>8.2f}"
                     + f"{r['drones']:>8.2f}{r['real_drones']:>8.2f}")
    return "\n".join(lines)


def long_form(pieces: list[Score], steps_per_beat: int, window: int = 200) -> dict[str, float]:
    """Key distance (1 - correlation of profiles) between the first and last ``window`` notes, the share of
    distinct 8-note n-grams (recurring ideas), and the share of bars repeating the bar before (loops), averaged
    over pieces of at least ``2 * window`` notes."""
    usable = [s for s in pieces if len(s.notes) >= 2 * window]
    if not usable:
        return {"pieces": 0}
    gaps = [1.0 - correlation(score_profile(Score(s.notes[:window])), score_profile(Score(s.notes[-window:])))
            for s in usable]
    return {"pieces": len(usable), "first_last_key_distance": float(np.mean(gaps)),
            "distinct_8gram_share": float(np.mean([ngram_share(s) for s in usable])),
            "repeated_bar_share": float(np.mean([repeated_bars(s, steps_per_beat) for s in usable]))}


def key_control(generator: Generator, keys, seconds: float = 30.0, random_seed: int = 0, **request) -> float:
    """Share of pieces of ``seconds`` from scratch, one per key asked for, estimated in that key."""
    hits = []
    for i, key in enumerate(keys):
        asked = GenerationRequest(seconds=seconds, key=key, random_seed=random_seed + i, **request)
        (result,) = generator.generate(asked)
        notes = result.continuation
        hits.append(bool(notes.notes) and estimate_key(score_profile(notes)) == key_index(key))
    return float(np.mean(hits))


def density_control(generator: Generator, pieces: int = 4, seconds: float = 30.0, random_seed: int = 0,
                    **request) -> dict[str, float]:
    """Mean notes per beat of ``pieces`` pieces of ``seconds`` from scratch at each density level."""
    spb = generator.tokenizer.config.steps_per_beat
    found = {}
    for level in DENSITY_LEVELS:
        asked = GenerationRequest(seconds=seconds, density=level, random_seed=random_seed, variations=pieces,
                                  **request)
        found[level] = float(np.mean([notes_per_beat([n.start for n in r.continuation.notes], spb)
                                      for r in generator.generate(asked)]))
    return found


# -- endless streams: does an hour stay music? -----------------------------------------------------

ENDLESS_NAMED_KEY = "E major"
ENDLESS_CHANGE = ({"key": "E major", "density": "sparse"}, {"key": "Bb major", "density": "dense"})  # before, after
WINDOW_FIGURES = ("key_clarity", "key_step", "drone", "repeated_bars", "distinct_8grams", "notes_per_beat",
                  "velocity", "top_duration")


def window_rows(score: Score, steps_per_beat: int) -> list[dict[str, float]]:
    """``window_statistics`` of each one-minute window, with whether it drones and its key distance from the window
    before (NaN for the first)."""
    cut = windows(score, steps_per_beat)
    if not cut:
        return []
    steps, _ = key_distances(cut)
    return [{**window_statistics(w, steps_per_beat), "drone": float(is_drone(score_profile(w))), "key_step": step}
            for w, step in zip(cut, [math.nan, *steps], strict=True)]


def stream_score(generator: Generator, minutes: float, changes=(), **request) -> Score:
    """The first ``minutes`` of an endless stream from scratch (``request``: ``GenerationRequest``'s fields),
    steered by ``changes`` (``endless.play``), from step 0."""
    stream = EndlessStream(generator, GenerationRequest(**request))
    play(stream, minutes, list(changes))
    return stream.new_music(until=minutes * 60.0)


def endless_statistics(generator: Generator, real, minutes: float = 60.0, streams: int = 3, random_seed: int = 0,
                       **sampling) -> dict:
    """One-minute windows of ``streams`` endless streams from scratch (key auto, random seeds from ``random_seed``)
    and one in ``ENDLESS_NAMED_KEY``, beside those of the real pieces: per figure of ``WINDOW_FIGURES``, the mean over
    real windows, over all generated windows, and over the first and last 10 minutes; the key distance from first
    to last window; the named-key stream's share of windows in its key. Then a stream that changes key and density
    (``ENDLESS_CHANGE``) half-way through, at minute M: its share of windows in the new key from minute M+1 on, and
    its notes per beat in the 5 windows before M and in the window after."""
    spb = generator.tokenizer.config.steps_per_beat
    scores = [stream_score(generator, minutes, random_seed=random_seed + i, **sampling) for i in range(streams)]
    scores.append(stream_score(generator, minutes, random_seed=random_seed + streams, key=ENDLESS_NAMED_KEY,
                               **sampling))
    generated = [window_rows(score, spb) for score in scores]
    real_rows = [row for _, score in real for row in window_rows(score, spb)]
    every = [row for rows in generated for row in rows]
    first, last = [r for rows in generated for r in rows[:10]], [r for rows in generated for r in rows[-10:]]
    before, after = ENDLESS_CHANGE
    middle = int(minutes // 2)
    changed = window_rows(stream_score(generator, minutes, [(middle, after)], random_seed=random_seed + streams + 1,
                                       **before, **sampling), spb)
    return {"real_windows": len(real_rows), "windows": len(every),
            "figures": {figure: tuple(mean_of(rows, figure) for rows in (real_rows, every, first, last))
                        for figure in WINDOW_FIGURES},
            "first_last_key_distance": (first_to_last([score for _, score in real], spb),
                                        first_to_last(scores, spb)),
            "named_key_share": share_in_key(generated[-1], ENDLESS_NAMED_KEY),
            "change": {"minute": middle, "new_key_share": share_in_key(changed[middle + 1 :], after["key"]),
                       "notes_per_beat_before": mean_of(changed[max(middle - 5, 0) : middle], "notes_per_beat"),
                       "notes_per_beat_after": mean_of(changed[middle : middle + 1], "notes_per_beat")}}


def mean_of(rows: list[dict[str, float]], figure: str) -> float:
    """Mean of one figure over window rows, NaNs left out (NaN for none)."""
    values = [row[figure] for row in rows if not math.isnan(row[figure])]
    return float(np.mean(values)) if values else math.nan


def share_in_key(rows: list[dict[str, float]], key: str) -> float:
    """Share of window rows estimated in ``key`` (NaN for none)."""
    return float(np.mean([row["key"] == key_index(key) for row in rows])) if rows else math.nan


def first_to_last(scores: list[Score], steps_per_beat: int) -> float:
    """Mean key distance between the first and last one-minute window of the scores that have two or more."""
    gaps = [key_distances(cut)[1] for cut in (windows(s, steps_per_beat) for s in scores) if len(cut) >= 2]
    return float(np.mean(gaps)) if gaps else math.nan


def format_endless(result: dict) -> str:
    lines = [f"{'per one-minute window':<24}{'real':>8}{'streams':>9}{'first 10':>10}{'last 10':>9}"]
    for figure, values in result["figures"].items():
        lines.append(f"{figure:<24}" + "".join(f"{v:>{w}.3f}" for v, w in zip(values, (8, 9, 10, 9), strict=True)))
    real, generated = result["first_last_key_distance"]
    change = result["change"]
    lines += [f"{'first-last key distance':<24}{real:>8.3f}{generated:>9.3f}",
              f"named key ({ENDLESS_NAMED_KEY}): {result['named_key_share']:.0%} of windows in it",
              f"change at minute {change['minute']} to {ENDLESS_CHANGE[1]['key']}, {ENDLESS_CHANGE[1]['density']}: "
              f"{change['new_key_share']:.0%} of windows from minute {change['minute'] + 1} on in the new key; "
              f"notes per beat {change['notes_per_beat_before']:.2f} in the 5 minutes before, "
              f"{change['notes_per_beat_after']:.2f} in the minute after"]
    return "\n".join(lines)


# -- styles: does each style sound like its own collection, and does Auto pick it? ----------------------

def auto_pick_shares(book, real_by_style: dict[str, list[Score]], seed_notes: int = 40) -> dict[str, float]:
    """Per style, the share of seeds (the first ``seed_notes`` notes of each of its real pieces) for which Auto
    (``StyleBook.pick``) chooses that style."""
    shares = {}
    for style, pieces in real_by_style.items():
        seed_scores = [Score(piece.notes[:seed_notes], piece.bpm) for piece in pieces
                       if len(piece.notes) >= seed_notes]
        shares[style] = (float(np.mean([book.pick(seed_score) == style for seed_score in seed_scores]))
                         if seed_scores else math.nan)
    return shares


def style_closeness(book, real_by_style: dict[str, list[Score]], pieces: int = 16, notes: int = 500,
                    random_seed: int = 0) -> dict[str, tuple[int, int]]:
    """Per style, (statistics, of those in the table) on which the style's pieces from scratch are closer to its
    own real pieces than to any other style's; closeness is the difference of the means over pieces."""
    means = {}
    for style, real in real_by_style.items():
        spb = book.generator(style).tokenizer.config.steps_per_beat
        means[style] = {k: v[0] for k, v in summarize([piece_statistics(s, spb) for s in real]).items()}
    result = {}
    for style in real_by_style:
        generator = book.generator(style)
        spb = generator.tokenizer.config.steps_per_beat
        made = generated_scores(generator, pieces, notes, 0.95, 0.95, random_seed)
        ours = {k: v[0] for k, v in summarize([piece_statistics(s, spb) for s in made]).items()}
        wins = sum(abs(ours[k] - means[style][k]) < min(abs(ours[k] - means[other][k]) for other in means
                                                        if other != style) for k in ours)
        result[style] = (wins, len(ours))
    return result
