"""midigen.prepare: the token cache of a folder, its report, re-runs that only tokenize what changed."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from helpers import SHOWCASE, run_cli, scale_piece, write_midi, write_scales

from midigen import prepare as prepare_module
from midigen.midi_io import load_midi
from midigen.prepare import INDEX, TRAINING_LIMITS, TokenCache, prepare, training_cache
from midigen.tokenizer import TOKENIZER_VERSION, Tokenizer, TokenizerConfig

TOKENIZER = Tokenizer()


def tokens_of(path) -> list[int]:
    return TOKENIZER.encode(load_midi(path, TRAINING_LIMITS))


@pytest.fixture
def collection(tmp_path):
    """Two pieces at the top, one in a nested folder, a byte-identical copy, and unusable files."""
    folder = tmp_path / "midi"
    write_midi(folder / "a.mid", scale_piece(0))
    write_midi(folder / "b.midi", scale_piece(1), tempo=90)
    write_midi(folder / "nested" / "deeper" / "c.MID", SHOWCASE)
    (folder / "copy_of_a.mid").write_bytes((folder / "a.mid").read_bytes())
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x90")
    (folder / "empty.mid").write_bytes(b"")
    (folder / "notes.txt").write_text("not a MIDI file, not looked at")
    return folder


def test_prepare_stores_every_usable_piece_once_and_reports_the_rest(collection, tmp_path):
    report = prepare(collection, tmp_path / "cache", workers=1, progress=False)
    assert (report.files, report.tokenized, report.unchanged, report.duplicates) == (6, 5, 0, 1)
    assert sum(report.skipped.values()) == 2 and report.pieces == 3
    assert any("damaged" in reason or "incomplete" in reason for reason in report.skipped)
    assert "This file is empty." in report.skipped
    text = str(report)
    assert "1 duplicate (stored once)" in text and "2 skipped" in text and "This file is empty." in text
    cache = TokenCache(tmp_path / "cache")
    pieces = cache.pieces()
    assert [name for name, *_ in pieces] == ["a.mid", "b.midi", "nested/deeper/c.MID"]
    for name, tokens, notes, _ in pieces:
        expected = tokens_of(collection / name)
        np.testing.assert_array_equal(tokens, expected)
        assert tokens.dtype == np.int64 and notes == TOKENIZER.count_notes(expected)
    assert report.tokens == sum(len(tokens) for _, tokens, *_ in pieces) == len(cache.tokens)
    entries = {e.name: e for e in cache.entries}
    # how loud each velocity level plays: a scale's 48 notes at velocity 80 (level 5) and 16 at 100 (level 6)
    assert entries["a.mid"].loudness == [[0, 0]] * 5 + [[48 * 80, 48], [16 * 100, 16], [0, 0]]
    assert entries["copy_of_a.mid"].loudness == entries["a.mid"].loudness
    assert entries["copy_of_a.mid"].same_as == "a.mid"
    assert entries["empty.mid"].skipped == "This file is empty." and entries["empty.mid"].length == 0
    index = json.loads((tmp_path / "cache" / INDEX).read_text())
    assert index["tokenizer"] == TokenizerConfig().to_dict() and len(index["tokenizer_sha256"]) == 64
    assert {f["name"] for f in index["files"]} == {e.name for e in cache.entries}
    assert all(len(f["sha256"]) == 64 and f["size"] >= 0 for f in index["files"])


def test_workers_give_the_same_cache_as_one_process(collection, tmp_path):
    prepare(collection, tmp_path / "one", workers=1, progress=False)
    prepare(collection, tmp_path / "two", workers=2, progress=False)
    one, two = TokenCache(tmp_path / "one").pieces(), TokenCache(tmp_path / "two").pieces()
    assert [(n, t.tolist(), k, v) for n, t, k, v in one] == [(n, t.tolist(), k, v) for n, t, k, v in two]


def test_a_cache_from_before_loudness_was_recorded_records_it_on_the_next_run(collection, tmp_path):
    cache = tmp_path / "cache"
    prepare(collection, cache, workers=1, progress=False)
    index = json.loads((cache / INDEX).read_text())
    for entry in index["files"]:
        del entry["loudness"]
    (cache / INDEX).write_text(json.dumps(index))
    assert all(not loudness for *_, loudness in TokenCache(cache).pieces())
    again = prepare(collection, cache, workers=1, progress=False)
    assert again.tokenized == 3 and all(loudness for *_, loudness in TokenCache(cache).pieces())


def test_a_rerun_tokenizes_only_new_or_changed_files(collection, tmp_path):
    cache = tmp_path / "cache"
    prepare(collection, cache, workers=1, progress=False)
    index_before = (cache / INDEX).read_text()
    again = prepare(collection, cache, workers=1, progress=False)
    assert (again.tokenized, again.unchanged, again.duplicates, again.pieces) == (0, 5, 1, 3)
    assert (cache / INDEX).read_text() == index_before  # nothing changed, nothing written
    # touched but identical, changed, new, removed
    os.utime(collection / "b.midi", ns=(1, 1))
    write_midi(collection / "a.mid", scale_piece(4), tempo=150)
    write_midi(collection / "nested" / "new.mid", scale_piece(5))
    (collection / "empty.mid").unlink()
    third = prepare(collection, cache, workers=1, progress=False)
    assert third.files == 6 and third.tokenized == 2  # the new a.mid and new.mid
    # b.midi and copy_of_a.mid (known by content), c.MID and broken.mid (known by name, size and time)
    assert third.unchanged == 4 and third.duplicates == 0
    reopened = TokenCache(cache)
    stored = {name: tokens for name, tokens, *_ in reopened.pieces()}
    assert sorted(stored) == ["a.mid", "b.midi", "copy_of_a.mid", "nested/deeper/c.MID", "nested/new.mid"]
    np.testing.assert_array_equal(stored["a.mid"], tokens_of(collection / "a.mid"))
    np.testing.assert_array_equal(stored["copy_of_a.mid"], tokens_of(collection / "copy_of_a.mid"))
    np.testing.assert_array_equal(stored["b.midi"], tokens_of(collection / "b.midi"))
    assert sorted(p.name for p in cache.iterdir()) == [INDEX, "tokens-2.bin"]  # the old token file is gone


def test_another_tokenizer_config_tokenizes_everything_again(collection, tmp_path):
    cache = tmp_path / "cache"
    prepare(collection, cache, workers=1, progress=False)
    coarse = TokenizerConfig(steps_per_beat=4)
    with pytest.raises(ValueError, match="another tokenizer config"):
        training_cache(cache, tmp_path / "model", coarse, update=False)
    report = prepare(collection, cache, coarse, workers=1, progress=False)
    assert report.tokenized == 5 and report.unchanged == 0
    assert TokenCache(cache).tokenizer_config == coarse
    assert sorted(p.name for p in cache.iterdir()) == [INDEX, "tokens-2.bin"]  # a new file, the old one gone


@pytest.mark.parametrize("written_by", ["an older tokenizer", "a tokenizer without a version"])
def test_a_cache_from_another_tokenizer_version_is_refused_then_tokenized_again(collection, tmp_path, monkeypatch,
                                                                               written_by):
    cache = tmp_path / "cache"
    with monkeypatch.context() as patch:
        if written_by == "an older tokenizer":
            patch.setattr(prepare_module, "TOKENIZER_VERSION", TOKENIZER_VERSION - 1)
        prepare(collection, cache, workers=1, progress=False)
    if written_by == "a tokenizer without a version":  # as caches were written before versions existed
        index = json.loads((cache / INDEX).read_text())
        del index["tokenizer_version"]
        index["tokenizer_sha256"] = hashlib.sha256(json.dumps(index["tokenizer"], sort_keys=True).encode()).hexdigest()
        (cache / INDEX).write_text(json.dumps(index))
    with pytest.raises(ValueError, match="another version of the tokenizer; run prepare again from"):
        training_cache(cache, tmp_path / "model", TokenizerConfig(), update=False)
    report = prepare(collection, cache, workers=1, progress=False)
    assert report.tokenized == 5 and report.unchanged == 0
    assert sorted(p.name for p in cache.iterdir()) == [INDEX, "tokens-2.bin"]
    again = training_cache(cache, tmp_path / "model", TokenizerConfig(), update=False)
    assert json.loads((cache / INDEX).read_text())["tokenizer_version"] == TOKENIZER_VERSION
    for name, tokens, *_ in again.pieces():
        np.testing.assert_array_equal(tokens, tokens_of(collection / name))


def test_training_cache_prepares_a_folder_next_to_the_checkpoint(tmp_path):
    scales = write_scales(tmp_path / "scales", 3)
    cache = training_cache(scales, tmp_path / "run" / "model", TokenizerConfig(), update=True)
    assert cache.folder == tmp_path / "run" / "model.tokens"
    assert [name for name, *_ in cache.pieces()] == ["scale0.mid", "scale1.mid", "scale2.mid"]
    assert training_cache(cache.folder, tmp_path / "elsewhere", TokenizerConfig(), update=False).entries \
        == cache.entries


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_a_file_that_cannot_be_read_is_skipped(collection, tmp_path):
    (collection / "b.midi").chmod(0)
    report = prepare(collection, tmp_path / "cache", workers=1, progress=False)
    assert report.skipped["This file could not be read."] == 1 and report.pieces == 2


def test_a_damaged_cache_is_a_clear_error(collection, tmp_path):
    cache = tmp_path / "cache"
    prepare(collection, cache, workers=1, progress=False)
    (cache / INDEX).write_text("{not json")
    with pytest.raises(ValueError, match="not a readable token cache"):
        TokenCache(cache)


def test_prepare_cli_prints_a_short_report(collection, tmp_path):
    result = run_cli("prepare", "--data", str(collection), "--out", str(tmp_path / "cache"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "6 files: 5 tokenized, 0 unchanged, 1 duplicate (stored once), 2 skipped" in result.stdout
    assert "This file is empty." in result.stdout and "cache: 3 pieces" in result.stdout
    assert "tokenizing" in result.stderr  # the progress bar
    empty = tmp_path / "nothing"
    empty.mkdir()
    result = run_cli("prepare", "--data", str(empty), "--out", str(tmp_path / "cache2"))
    assert result.returncode == 1
    assert "no .mid or .midi files found" in result.stderr and "Traceback" not in result.stderr
