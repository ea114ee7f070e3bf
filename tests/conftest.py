"""Shared fixtures: the tokenizer, tiny random checkpoints, the shipped model, a folder of fixture MIDI.

The helpers they use, and that tests import, are in ``helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import SHIPPED_WEIGHTS, SHOWCASE, random_checkpoint, scale_piece, write_midi

from midigen import checkpoint
from midigen.tokenizer import Tokenizer

# The machine is shared with other work: one intra-op thread keeps torch from thrashing.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="session")
def random_model():
    """A 2-layer random GRU (hidden 32) and its checkpoint, saved and loaded back through midigen.checkpoint."""
    return random_checkpoint()


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory, random_model) -> Path:
    base = tmp_path_factory.mktemp("weights") / "random"
    checkpoint.save(random_model[1], base)
    return base


@pytest.fixture(scope="session")
def shipped_generator():
    from midigen.generate import Generator

    return Generator(SHIPPED_WEIGHTS, "cpu")


@pytest.fixture(scope="session")
def fixture_midi_dir(tmp_path_factory) -> Path:
    """A folder of on-grid fixture MIDIs (varied resolutions and tempi, a drum track, a nested folder)."""
    folder = tmp_path_factory.mktemp("fixtures")
    write_midi(folder / "showcase.mid", SHOWCASE, resolution=480, tempo=96)
    write_midi(folder / "two_hands.MID", scale_piece(1), resolution=96, tempo=140,
               extra_tracks=[[(36 + (i % 3) * 7, 24 * i, 24, 70) for i in range(16)]],
               drums=[(38, 12 * i, 2, 100) for i in range(32)])
    write_midi(folder / "sub" / "arpeggio.midi", scale_piece(2), resolution=384, tempo=72)
    return folder
