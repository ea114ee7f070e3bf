"""Styles: the catalogue, a collection exported from music21's corpus, the fixed split, and Auto's choice."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from helpers import performance_midi, pop_midi, run_cli

from midigen import corpus, styles
from midigen.generate import GenerationRequest
from midigen.splice import Seed
from midigen.style_choice import StyleBook
from midigen.tokenizer import Note, Score
from midigen.train import Piece, split_by_file


@pytest.fixture(scope="module")
def book() -> StyleBook:
    return StyleBook("cpu")


def test_styles_command_lists_each_style_with_its_description():
    done = run_cli("styles")
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["game-piano", "chorale", "folk", "renaissance"]
    for line, style in zip(lines, styles.STYLES, strict=True):
        assert line.split(maxsplit=1)[1] == style.description


def test_an_unknown_style_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="style must be auto or one of game-piano, chorale, folk, renaissance"):
        GenerationRequest(style="jazz")


def test_a_collection_s_validation_folder_is_its_split():
    pieces = [Piece(name, np.zeros(3, dtype=np.int64), 1) for name in
              ("train/a.mid", "train/b.mid", "validation/c.mid", "train/d.mid", "validation/e.mid")]
    train, valid = split_by_file(pieces, 0.5, random_seed=7)
    assert [p.name for p in valid] == ["validation/c.mid", "validation/e.mid"]
    assert [p.name for p in train] == ["train/a.mid", "train/b.mid", "train/d.mid"]


def test_the_split_depends_on_the_name_alone():
    names = [f"tune-{i}" for i in range(2000)]
    held_out = [name for name in names if corpus.is_validation(name, 0.1)]
    assert 150 < len(held_out) < 250
    random.Random(3).shuffle(names)
    assert sorted(name for name in names if corpus.is_validation(name, 0.1)) == sorted(held_out)


def test_corpus_exports_a_collection_as_midi_with_its_split(tmp_path):
    pytest.importorskip("music21")
    report = corpus.export("chorale", tmp_path, limit=3, workers=1, progress=False)
    files = sorted(tmp_path.rglob("*.mid"))
    assert report.train + report.validation == len(files) == 3 and report.failed == 0
    for path in files:
        assert path.parent.name == ("validation" if corpus.is_validation(path.stem, 0.1) else "train")
        assert path.read_bytes()[:4] == b"MThd"


def test_every_style_ships_its_weights(book):
    assert book.names == [s.name for s in styles.STYLES]


def test_a_book_of_one_model_writes_only_its_style(shipped_generator):
    book = StyleBook.single(shipped_generator)
    assert book.names == ["game-piano"]
    (piece,) = book.generate(GenerationRequest(notes=20, seconds=None, random_seed=1))
    assert piece.style == "game-piano"
    with pytest.raises(ValueError, match="The chorale style is not installed on this server"):
        book.generate(GenerationRequest(notes=20, seconds=None, style="chorale"))


def test_each_style_writes_with_its_instrument_unless_one_is_asked(book):
    for style in styles.STYLES:
        (piece,) = book.generate(GenerationRequest(notes=30, seconds=None, random_seed=2, style=style.name))
        assert piece.style == style.name and piece.new_music.program == style.program
        if style.bpm:
            assert piece.continuation.bpm == style.bpm
    (piece,) = book.generate(GenerationRequest(notes=30, seconds=None, random_seed=2, style="folk", program=0,
                                               bpm=90))
    assert piece.new_music.program == 0 and piece.continuation.bpm == 90


def chorale_seed() -> Score:
    """Four voices moving together in half and quarter notes, I-IV-V-I cadences in G major, one loudness."""
    chords = [(43, 59, 62, 67), (48, 60, 64, 67), (50, 57, 62, 66), (43, 59, 62, 67), (47, 59, 62, 67),
              (48, 57, 64, 69), (50, 57, 62, 66), (43, 55, 62, 71)]
    notes, step = [], 0
    for _ in range(3):
        for index, chord in enumerate(chords):
            length = 24 if index % 4 == 3 else 12
            notes += [Note(pitch, step, length, 80) for pitch in chord]
            step += length
    return Score(notes, 72.0)


def jig_seed() -> Score:
    """One quick line in 6/8: a D-major fiddle tune's eighth notes, with nothing held."""
    line = [62, 66, 69, 66, 69, 74, 73, 69, 66, 64, 66, 67, 69, 71, 69, 67, 66, 64, 62, 64, 66, 62, 64, 66]
    return Score([Note(pitch, 6 * i, 6, 80) for i, pitch in enumerate(line * 2)], 112.0)


def game_piano_seed() -> Score:
    """Piano with dynamics: a syncopated bass, off-beat chords and a singing melody over it, pedalled long."""
    rng = np.random.default_rng(0)
    notes = []
    for bar in range(8):
        root = [45, 41, 48, 43][bar % 4]
        base = bar * 48
        notes += [Note(root, base, 18, 96), Note(root + 12, base + 18, 30, 88)]
        notes += [Note(p, base + 12, 30, 84) for p in (root + 19, root + 24, root + 28)]
        for i in range(5):
            notes.append(Note(int(72 + rng.integers(-5, 8)), base + i * 9, 18, int(100 + rng.integers(-10, 12))))
    return Score(sorted(notes, key=lambda n: (n.start, n.pitch)), 132.0)


@pytest.mark.parametrize(("seed", "expected"), [(chorale_seed, "chorale"), (jig_seed, "folk"),
                                                (game_piano_seed, "game-piano")])
def test_auto_picks_the_style_a_seed_sounds_like(book, seed, expected):
    assert book.pick(seed()) == expected


def test_auto_from_scratch_is_game_piano_and_with_a_seed_names_its_choice(book, tokenizer):
    (piece,) = book.generate(GenerationRequest(notes=20, seconds=None, random_seed=4))
    assert piece.style == "game-piano"
    seed = Seed.from_midi(tokenizer.score_to_midi(chorale_seed()))
    (piece,) = book.generate(GenerationRequest(notes=40, seconds=None, random_seed=4), seed)
    assert piece.style == "chorale"


def test_auto_sends_piano_performances_and_pop_arrangements_to_game_piano(book):
    for midi in (performance_midi(2), performance_midi(9, minor=True, random_seed=3), pop_midi(5, minor=True)):
        assert book.pick(book.tokenizer.midi_to_score(Seed.from_midi(midi).primed)) == "game-piano"


def test_auto_scores_a_seed_once_and_picks_the_same_style_when_it_comes_again(book, monkeypatch):
    scored = []
    score_seed = book.seed_nll
    monkeypatch.setattr(book, "seed_nll", lambda name, seed_score: scored.append(name) or score_seed(name, seed_score))
    seed = Score([replace(note, pitch=note.pitch + 2) for note in jig_seed().notes], 112.0)  # in E: no test's seed
    first = book.pick(seed)
    assert sorted(scored) == sorted(book.names)
    assert book.pick(Score(list(seed.notes), seed.bpm)) == first == "folk"
    assert len(scored) == len(book.names)
    book.pick(Score([replace(note, velocity=60) for note in seed.notes], seed.bpm))  # played softer: a new seed
    assert len(scored) == 2 * len(book.names)


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in styles.STYLES])
def test_each_style_asks_as_much_higher_as_its_model_writes_lower(book, name, monkeypatch):
    """``Style.register_offset`` is measured: with steering off, 200 pieces of 200 notes from scratch lie that far
    below the register asked of the model, on average (each piece's mean pitch; the standard error is under 0.6)."""
    from midigen import phrases
    from midigen.stats import Character

    generator = book.generator(name)
    monkeypatch.setattr(phrases, "GAIN", 0.0)  # the first correction stays: the offset itself
    monkeypatch.setattr(generator, "style", replace(generator.style, register_offset=0.0))
    below = []
    for random_seed in range(200):
        request = GenerationRequest(seconds=None, notes=200, random_seed=random_seed)
        asked = generator.character(request, random_seed + 1).mean_pitch  # row 0 samples with random_seed + 1
        made = generator.generate(request)[0].continuation
        below.append(asked - Character.of(made, generator.tokenizer.config.steps_per_beat).mean_pitch)
    assert abs(np.mean(below) - styles.BY_NAME[name].register_offset) < 0.5, np.mean(below)
