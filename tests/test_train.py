"""midigen.train: a tiny model really trains, resumes, and the data helpers behave."""

from __future__ import annotations

import gc
import json
import math
import random
import tracemalloc

import numpy as np
import pytest
import torch
from helpers import run_cli, write_scales
from hypothesis import given, settings
from hypothesis import strategies as st

from midigen import checkpoint
from midigen.controls import CONTROL_SIZE, TokenNotes
from midigen.model import MidiGRU
from midigen.prepare import midi_files
from midigen.tokenizer import Note, Score, Tokenizer
from midigen.train import (
    STRETCH_WINDOWS,
    Piece,
    TrainConfig,
    piece_windows,
    schedule_epoch,
    split_by_file,
    state_paths,
    stream_batches,
    train,
    transpose,
    window_count,
)

TINY_MODEL = {"hidden_size": 32, "num_layers": 1, "embedding_size": 16, "dropout": 0.0}
TOKENIZER = Tokenizer()
PITCHES = TOKENIZER.vocab.kind_ranges()["PITCH"]


def tiny_config(epochs: int, **changes) -> TrainConfig:
    return TrainConfig(**{"epochs": epochs, "batch_size": 8, "sequence_length": 32, "learning_rate": 1e-2,
                          "validation_share": 0.2, "transpose": 2, "seed": 3, **changes})


@pytest.fixture(scope="module")
def scales(tmp_path_factory):
    return write_scales(tmp_path_factory.mktemp("scales"), 6)


@pytest.fixture(scope="module")
def trained(scales, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    meta = train(scales, out, tiny_config(4), TINY_MODEL, device="cpu")
    return out, meta


def test_training_lowers_validation_loss(trained):
    out, meta = trained
    history = meta["training"]["history"]
    assert [h["epoch"] for h in history][0] == 1
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid_loss"] < math.log(len(TOKENIZER.vocab))  # better than a uniform guess


def test_training_writes_best_checkpoint_and_state(trained):
    out, meta = trained
    for path in (*checkpoint.paths(out), *state_paths(out)):
        assert path.is_file(), path
    loaded = checkpoint.load(out)
    assert loaded.info == meta
    assert loaded.model_config.hidden_size == 32 and loaded.model_config.num_layers == 1
    assert loaded.model_config.vocab_size == len(TOKENIZER.vocab)
    assert {k: v.shape for k, v in loaded.tensors.items()} == {
        k: tuple(v.shape) for k, v in MidiGRU(loaded.model_config).state_dict().items()}
    state = json.loads(state_paths(out)[1].read_text())
    assert state["epoch"] == 4 and len(state["history"]) == 4
    # the checkpoint is the best epoch, and its validation figure is that epoch's
    best = min(h["valid_loss"] for h in state["history"])
    assert state["best"] == pytest.approx(best, abs=1e-4)
    assert meta["validation"]["nll_per_token"] == pytest.approx(best, abs=1e-4)
    assert math.isfinite(meta["validation"]["nll_per_note"])


def test_training_describes_its_data(trained):
    _, meta = trained
    data = meta["training"]["data"]
    assert data["files"] == 6
    assert data["train_files"] == 5 and len(data["validation_files"]) == 1
    assert data["validation_files"][0].startswith("scale")
    assert data["train_notes"] == 5 * 64
    assert meta["training"]["sequence_length"] == 32 and meta["training"]["epochs"] == 4
    # the character of each training piece: what pieces from scratch keep
    characters = meta["controls"]["pieces"]
    assert len(characters) == 5 and all(len(c) == 14 for c in characters)
    assert all(sum(c[:12]) == pytest.approx(1, abs=1e-3) and 21 <= c[12] <= 108 and 1 <= c[13] <= 127
               for c in characters)
    # how loud the training pieces play each velocity level: the scales' 80s (level 5) and 100s (level 6)
    assert meta["controls"]["loudness"] == [0, 0, 0, 0, 0, 80, 100, 0]


def test_resume_continues_from_the_saved_epoch(scales, tmp_path):
    out = tmp_path / "resumed"
    train(scales, out, tiny_config(2), TINY_MODEL, device="cpu")
    before = json.loads(state_paths(out)[1].read_text())
    assert before["epoch"] == 2 and len(before["history"]) == 2
    train(scales, out, tiny_config(3), TINY_MODEL, device="cpu", resume=True)
    after = json.loads(state_paths(out)[1].read_text())
    assert after["epoch"] == 3
    assert [h["epoch"] for h in after["history"]] == [1, 2, 3]
    assert after["history"][:2] == before["history"]
    assert after["best"] <= before["best"]
    # resuming a finished run trains nothing more
    train(scales, out, tiny_config(3), TINY_MODEL, device="cpu", resume=True)
    assert json.loads(state_paths(out)[1].read_text())["history"] == after["history"]


def test_without_resume_training_starts_over(scales, tmp_path):
    out = tmp_path / "again"
    train(scales, out, tiny_config(1), TINY_MODEL, device="cpu")
    train(scales, out, tiny_config(1), TINY_MODEL, device="cpu")
    assert len(json.loads(state_paths(out)[1].read_text())["history"]) == 1


# -- data helpers ----------------------------------------------------------------------


def piece_tokens() -> np.ndarray:
    notes = [Note(p, i * 3, 3, 20 + i) for i, p in enumerate([21, 22, 30, 60, 99, 104, 108, 107])]
    return np.asarray(TOKENIZER.score_to_tokens(Score(notes + [Note(64, 0, 12, 100)], 90.0)), dtype=np.int64)


@settings(max_examples=50, deadline=None)
@given(semitones=st.integers(-12, 12))
def test_transpose_moves_only_pitches_and_folds_them(semitones):
    tokens = piece_tokens()
    moved = transpose(tokens, semitones, TOKENIZER)
    is_pitch = (tokens >= PITCHES.start) & (tokens < PITCHES.stop)
    np.testing.assert_array_equal(moved[~is_pitch], tokens[~is_pitch])
    assert ((moved[is_pitch] >= PITCHES.start) & (moved[is_pitch] < PITCHES.stop)).all()
    c = TOKENIZER.config
    for old, new in zip(tokens[is_pitch], moved[is_pitch], strict=True):
        target = old - PITCHES.start + c.pitch_min + semitones
        got = new - PITCHES.start + c.pitch_min
        assert (got - target) % 12 == 0
        if c.pitch_min <= target <= c.pitch_max:
            assert got == target
    if semitones == 0:
        np.testing.assert_array_equal(moved, tokens)


@pytest.mark.parametrize("semitones", [-24, 24])
def test_transpose_by_more_than_an_octave_stays_in_range(semitones):
    moved = transpose(piece_tokens(), semitones, TOKENIZER)
    is_pitch = (piece_tokens() >= PITCHES.start) & (piece_tokens() < PITCHES.stop)
    assert ((moved[is_pitch] >= PITCHES.start) & (moved[is_pitch] < PITCHES.stop)).all()


def test_transpose_does_not_modify_its_input():
    tokens = piece_tokens()
    copy = tokens.copy()
    transpose(tokens, 5, TOKENIZER)
    np.testing.assert_array_equal(tokens, copy)


def pieces(count: int) -> list[Piece]:
    return [Piece(f"dir/file{i:02d}.mid", np.arange(3 + i), 1 + i) for i in range(count)]


@pytest.mark.parametrize("count", [1, 2, 7, 30])
@pytest.mark.parametrize("share", [0.1, 0.5])
def test_split_by_file_is_deterministic_and_disjoint(count, share):
    all_pieces = pieces(count)
    train_set, valid_set = split_by_file(all_pieces, share, random_seed=4)
    names = lambda ps: [p.name for p in ps]  # noqa: E731
    again = split_by_file(list(reversed(all_pieces)), share, random_seed=4)  # input order does not matter
    assert (names(train_set), names(valid_set)) == (names(again[0]), names(again[1]))
    assert not set(names(train_set)) & set(names(valid_set))
    assert sorted(names(train_set) + names(valid_set)) == names(all_pieces)
    assert len(valid_set) == (0 if count == 1 else max(1, round(count * share)))
    if count >= 7:
        other = split_by_file(all_pieces, share, random_seed=5)
        assert names(other[1]) != names(valid_set) or names(other[0]) != names(train_set)


def long_piece(notes: int) -> np.ndarray:
    score = Score([Note(48 + i % 24, 6 * i, 6, 40 + i % 80) for i in range(notes)])
    return np.asarray(TOKENIZER.score_to_tokens(score), dtype=np.int64)


def test_stream_batches_read_every_piece_whole_in_order():
    all_pieces = [Piece(f"p{i}", long_piece(20 + 15 * i), 20 + 15 * i) for i in range(5)]
    config = TrainConfig(sequence_length=16, batch_size=3, transpose=0, control_dropout=0.0)
    batches = list(stream_batches(all_pieces, config, TOKENIZER, random.Random(1)))
    inputs, targets, controls, first = (torch.stack(part, dim=1) for part in zip(*batches, strict=True))
    assert inputs.shape[0] == 3 and controls.shape[-1] == CONTROL_SIZE
    length = inputs.shape[2]
    assert 12 <= length <= 20
    found = []
    for row in range(3):  # a row is a stream: its windows rebuild whole pieces in order, each from a fresh state
        for step in range(inputs.shape[1]):
            real = targets[row, step] != 0
            if not real.any():
                continue
            if first[row, step]:
                found.append(inputs[row, step, :1].tolist())
            found[-1].extend(targets[row, step][real].tolist())
            assert torch.equal(inputs[row, step, 1:][real[1:]], targets[row, step, :-1][real[1:]])
    expected = sorted(p.tokens.tolist() for p in all_pieces)
    assert sorted(found) == expected
    # the control of a window describes the notes it predicts
    row, step = 0, 0
    notes = TokenNotes.of(targets[row, step].numpy(), TOKENIZER)
    window = [t for t in targets[row, step].tolist() if t]
    assert controls[row, step, 13] == pytest.approx((np.mean(notes.pitch) - 60) / 12, abs=1e-5) or len(window) == 0


def test_hidden_control_parts_are_zero():
    all_pieces = [Piece("a", long_piece(40), 40)]
    config = TrainConfig(sequence_length=16, batch_size=1, transpose=0, control_dropout=1.0)
    for _, _, controls, _ in stream_batches(all_pieces, config, TOKENIZER, random.Random(0)):
        assert not controls.any()


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no .mid or .midi files"):
        train(tmp_path, tmp_path / "out", tiny_config(1), TINY_MODEL, device="cpu")
    (tmp_path / "notes.txt").write_text("not midi")
    with pytest.raises(ValueError, match="no .mid or .midi files"):
        midi_files(tmp_path)


def test_folder_without_usable_midi_is_a_clear_error(tmp_path):
    (tmp_path / "broken.mid").write_bytes(b"MThd garbage")
    (tmp_path / "drums.mid").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable MIDI files"):
        train(tmp_path, tmp_path / "out", tiny_config(1), TINY_MODEL, device="cpu")


def test_train_cli(scales, tmp_path):
    out = tmp_path / "cli" / "model"
    result = run_cli("train", "--data", str(scales), "--out", str(out), "--epochs", "2", "--batch-size", "8",
                     "--sequence-length", "32", "--hidden-size", "16", "--num-layers", "1", "--embedding-size", "8",
                     "--dropout", "0", "--transpose", "1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "validation NLL" in result.stdout
    assert "epoch 2" in result.stdout + result.stderr
    loaded = checkpoint.load(out)
    assert loaded.model_config.hidden_size == 16 and loaded.model_config.embedding_size == 8
    assert len(json.loads(state_paths(out)[1].read_text())["history"]) == 2
    assert "Traceback" not in result.stderr



def test_windows_of_a_piece_or_of_a_part_describe_the_whole_piece():
    # one loudness change at the start, so windows built from a later stretch must look back for their level
    score = Score([Note(48 + i % 24, 6 * i, 6 + i % 5, 20) for i in range(200)])
    tokens = np.asarray(TOKENIZER.score_to_tokens(score), dtype=np.int64)
    moved, length = transpose(tokens, 3, TOKENIZER), 16
    count = window_count(len(tokens), length)
    assert count > 2 * STRETCH_WINDOWS  # windows from three stretches
    notes = TokenNotes.of(moved, TOKENIZER)
    for numbers in (None, range(5, 9), range(STRETCH_WINDOWS - 2, count), range(count - 1, count)):
        windows = list(piece_windows(tokens, length, TOKENIZER, semitones=3, numbers=numbers))
        numbers = numbers or range(count)
        assert [w.first for w in windows] == [True] + [False] * (len(numbers) - 1)
        for number, window in zip(numbers, windows, strict=True):
            start = number * length
            real = moved[start : start + length + 1]
            np.testing.assert_array_equal(window.inputs[: len(real) - 1], real[:-1])
            np.testing.assert_array_equal(window.targets[: len(real) - 1], real[1:])
            assert not window.targets[len(real) - 1 :].any()
            expected = notes.controls(start + 1, start + length + 1, TOKENIZER.config.steps_per_beat).vector()
            np.testing.assert_allclose(window.control, expected, rtol=1e-6)
    assert expected[17] < -1  # quiet notes: the level set at the start, not the default


@pytest.mark.parametrize(("batch_size", "count"), [(1, 1), (3, 5), (8, 3), (4, 17)])
def test_the_schedule_counts_the_batches_and_covers_every_window_once(batch_size, count):
    all_pieces = [Piece(f"p{i}", long_piece(10 + 37 * i), 10 + 37 * i) for i in range(count)]
    config = TrainConfig(sequence_length=16, batch_size=batch_size, transpose=3)
    lengths = [len(p.tokens) for p in all_pieces]
    schedule = schedule_epoch(lengths, config, random.Random(7))
    assert schedule == schedule_epoch(lengths, config, random.Random(7))  # seeded, from the lengths alone
    assert len(schedule.streams) == min(batch_size, count)
    read = sorted((p.piece, n) for stream in schedule.streams for p in stream for n in p.numbers)
    assert read == [(i, n) for i, size in enumerate(lengths) for n in range(window_count(size, schedule.length))]
    batches = stream_batches(all_pieces, config, TOKENIZER, random.Random(7))
    assert len(batches) == schedule.steps == len(list(batches)) == len(list(batches))
    assert all(b[0].shape == (len(schedule.streams), schedule.length) for b in batches)


def epoch_peak(copies: int) -> int:
    """Peak traced memory of one epoch's batches over ``copies`` times the same 12 pieces (made beforehand)."""
    tokens = [long_piece(300 + 40 * i) for i in range(12)]
    collection = [Piece(f"copy{c}/p{i}", t, 300 + 40 * i) for c in range(copies) for i, t in enumerate(tokens)]
    config = TrainConfig(sequence_length=32, batch_size=4, transpose=2, control_dropout=0.25)
    gc.collect()  # both runs start with CPython's free lists empty
    tracemalloc.start()
    try:
        for _ in stream_batches(collection, config, TOKENIZER, random.Random(0)):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_an_epoch_does_not_grow_with_the_collection():
    """Eight times the pieces cost a little schedule per piece, not the windows of every token (which
    took about 28 bytes per token when an epoch's windows were all built up front)."""
    small, large = epoch_peak(1), epoch_peak(8)
    added_tokens = 7 * sum(len(long_piece(300 + 40 * i)) for i in range(12))
    assert (large - small) / added_tokens < 2, f"{small:,} bytes for 12 pieces, {large:,} for 96"
