"""midigen.tokenizer: vocabulary layout, MIDI <-> tokens round trips, the tolerant decoder, tempo."""

from __future__ import annotations

import io
import math
import warnings

import pretty_midi
import pytest
from helpers import SHOWCASE, beats_of, make_midi, quantized_velocity, scale_piece
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midigen.rules import grammar, grammar_violations
from midigen.tokenizer import (
    BOS,
    EOS,
    PAD,
    Note,
    Score,
    Tokenizer,
    TokenizerConfig,
    Vocabulary,
    piece_tempo,
    roundtrip_accuracy,
)

KINDS = ("TEMPO", "VELOCITY", "SHIFT", "PITCH", "DURATION")
SMALL = TokenizerConfig(steps_per_beat=4, max_shift=16, max_duration=32, pitch_min=48, pitch_max=72,
                        velocity_levels=4, tempo_bins=8, tempo_min=60.0, tempo_max=180.0)


def value_range(config: TokenizerConfig, kind: str) -> tuple[int, int]:
    """(first, last) value of each kind, from the documented layout."""
    return {
        "TEMPO": (0, config.tempo_bins - 1),
        "VELOCITY": (0, config.velocity_levels - 1),
        "SHIFT": (1, config.max_shift),
        "PITCH": (config.pitch_min, config.pitch_max),
        "DURATION": (1, config.max_duration),
    }[kind]


def expected_layout(config: TokenizerConfig) -> dict[str, tuple[int, int]]:
    """(first index, last index) of each kind: PAD BOS EOS, then the kinds in order, back to back."""
    index, layout = 3, {}
    for kind in KINDS:
        first, last = value_range(config, kind)
        layout[kind] = (index, index + last - first)
        index += last - first + 1
    return layout


# -- vocabulary ------------------------------------------------------------------


def test_special_tokens_are_pad_bos_eos():
    vocab = Vocabulary(TokenizerConfig())
    assert [vocab.decode(i)[0] for i in (0, 1, 2)] == ["PAD", "BOS", "EOS"]  # the documented layout
    assert [vocab.token_name(i) for i in (PAD, BOS, EOS)] == ["PAD", "BOS", "EOS"]


@pytest.mark.parametrize("config", [TokenizerConfig(), SMALL], ids=["default", "small"])
@pytest.mark.parametrize("kind", KINDS)
def test_boundary_indices_both_ways(config, kind):
    vocab = Vocabulary(config)
    (first_index, last_index), (first, last) = expected_layout(config)[kind], value_range(config, kind)
    assert vocab.encode(kind, first) == first_index
    assert vocab.encode(kind, last) == last_index
    assert vocab.decode(first_index) == (kind, first)
    assert vocab.decode(last_index) == (kind, last)
    assert vocab.token_name(last_index) == f"{kind}_{last}"
    assert vocab.kind_ranges()[kind] == range(first_index, last_index + 1)
    for outside in (first - 1, last + 1):
        with pytest.raises(ValueError):
            vocab.encode(kind, outside)


@pytest.mark.parametrize("config", [TokenizerConfig(), SMALL], ids=["default", "small"])
def test_vocabulary_size_and_unknown_indices(config):
    vocab = Vocabulary(config)
    size = expected_layout(config)["DURATION"][1] + 1
    assert len(vocab) == size
    # every index decodes to a kind and encodes back to itself
    for index in range(3, size):
        assert vocab.encode(*vocab.decode(index)) == index
    for outside in (-1, size, size + 1000, 2**70):
        with pytest.raises(ValueError):
            vocab.decode(outside)


# -- config -----------------------------------------------------------------------


def test_config_dict_round_trip():
    for config in (TokenizerConfig(), SMALL):
        data = config.to_dict()
        assert TokenizerConfig.from_dict(data) == config
        assert TokenizerConfig.from_dict(dict(data)).to_dict() == data
    for name, value in [("steps_per_beat", 24), ("max_shift", 47), ("pitch_max", 107), ("tempo_max", 241.0)]:
        data = {**TokenizerConfig().to_dict(), name: value}
        assert TokenizerConfig.from_dict(data) != TokenizerConfig()


@pytest.mark.parametrize("changes", [
    {"steps_per_beat": 0}, {"max_shift": 0}, {"max_duration": -1}, {"pitch_min": -1}, {"pitch_max": 128},
    {"pitch_min": 60, "pitch_max": 70}, {"velocity_levels": 0}, {"velocity_levels": 128}, {"tempo_bins": 0},
    {"tempo_min": 0.0}, {"tempo_min": 200.0, "tempo_max": 100.0},
])
def test_config_rejects_invalid_values(changes):
    with pytest.raises(ValueError):
        TokenizerConfig(**changes)


# -- MIDI -> tokens -> MIDI ---------------------------------------------------------


def decoded(tokenizer: Tokenizer, midi: pretty_midi.PrettyMIDI) -> list[tuple[int, int, int, int]]:
    """The encode -> decode round trip of ``midi``, read back on the 12-step grid."""
    return beats_of(tokenizer.decode(tokenizer.encode(midi)))


def expected(notes, max_duration: int = 96) -> list[tuple[int, int, int, int]]:
    """The quantized form of fixture notes (on the grid, pitches in range, unique keys)."""
    return sorted((p, s, min(d, max_duration), quantized_velocity(v)) for p, s, d, v in notes)


@pytest.mark.parametrize("resolution", [96, 384, 480])
@pytest.mark.parametrize("tempo", [72.0, 133.0])
def test_midi_round_trip_equals_quantized_original(tokenizer, resolution, tempo):
    midi = make_midi(SHOWCASE, resolution=resolution, tempo=tempo)
    assert decoded(tokenizer, midi) == expected(SHOWCASE)


def test_decoded_tempo_is_the_nearest_bin(tokenizer):
    c = tokenizer.config
    half_bin = 0.5 * math.log(c.tempo_max / c.tempo_min) / (c.tempo_bins - 1)
    for bpm in (41.0, 72.0, 96.0, 133.0, 199.0):
        out = tokenizer.decode(tokenizer.encode(make_midi(SHOWCASE[:3], tempo=bpm)))
        (decoded_bpm,) = out.get_tempo_changes()[1]
        assert abs(math.log(decoded_bpm / bpm)) <= half_bin + 1e-6
    # an explicit bpm overrides the token's
    out = tokenizer.decode(tokenizer.encode(make_midi(SHOWCASE[:3], tempo=72.0)), bpm=150.0)
    assert out.get_tempo_changes()[1][0] == pytest.approx(150.0)


def test_midi_to_score_is_exact_on_grid_at_several_resolutions(tokenizer):
    for resolution in (96, 384, 480, 960):
        score = tokenizer.midi_to_score(make_midi(SHOWCASE, resolution=resolution, tempo=133.0))
        assert sorted(note_key(n) for n in score.notes) == sorted((p, s, d, v) for p, s, d, v in SHOWCASE)
        assert score.bpm == pytest.approx(133.0, abs=0.05)
        assert [(n.start, n.pitch) for n in score.notes] == sorted((n.start, n.pitch) for n in score.notes)


def note_key(note: Note) -> tuple[int, int, int, int]:
    return (note.pitch, note.start, note.duration, note.velocity)


def test_multi_track_merge_and_drums_ignored(tokenizer):
    left = [(36, 0, 24, 70), (43, 24, 24, 70)]
    right = [(60, 0, 6, 100), (64, 6, 6, 100), (67, 12, 12, 100)]
    drums = [(36, 0, 3, 127), (38, 12, 3, 127), (42, 6, 3, 127)]
    midi = make_midi(right, extra_tracks=[left], drums=drums)
    assert any(i.is_drum for i in midi.instruments)
    assert decoded(tokenizer, midi) == expected(left + right)
    # a file with only drums has no notes
    only_drums = make_midi([], drums=drums)
    assert tokenizer.midi_to_score(only_drums).notes == []
    assert tokenizer.count_notes(tokenizer.encode(only_drums)) == 0


def test_duplicate_pitch_and_onset_keeps_the_longest(tokenizer):
    melody = [(60, 0, 6, 90), (64, 12, 24, 90)]
    doubling = [(60, 0, 18, 40), (64, 12, 3, 40), (67, 12, 3, 40)]
    score = tokenizer.midi_to_score(make_midi(melody, extra_tracks=[doubling]))
    assert [note_key(n) for n in score.notes] == [(60, 0, 18, 40), (64, 12, 24, 90), (67, 12, 3, 40)]
    assert decoded(tokenizer, make_midi(melody, extra_tracks=[doubling])) == expected(
        [(60, 0, 18, 40), (64, 12, 24, 90), (67, 12, 3, 40)])


def test_notes_beyond_max_duration_are_clamped(tokenizer):
    notes = [(60, 0, 97, 80), (64, 0, 300, 80), (67, 0, 96, 80), (72, 12, 1, 80)]
    score = tokenizer.midi_to_score(make_midi(notes))
    assert [n.duration for n in score.notes] == [96, 96, 96, 1]
    assert decoded(tokenizer, make_midi(notes)) == expected(notes)


def test_out_of_range_pitches_are_folded_by_octaves(tokenizer):
    c = tokenizer.config
    notes = [(0, 0, 6, 80), (9, 6, 6, 80), (20, 12, 6, 80), (109, 18, 6, 80), (120, 24, 6, 80), (127, 30, 6, 80)]
    score = tokenizer.midi_to_score(make_midi(notes))
    assert len(score.notes) == len(notes)
    for original, note in zip(notes, score.notes, strict=True):
        assert c.pitch_min <= note.pitch <= c.pitch_max
        assert (note.pitch - original[0]) % 12 == 0
    assert [n.pitch for n in score.notes] == [24, 21, 32, 97, 108, 103]
    # folding onto a pitch already sounding at that onset merges the two (the longer wins)
    merged = tokenizer.midi_to_score(make_midi([(12, 0, 6, 80), (24, 0, 30, 80)]))
    assert [note_key(n) for n in merged.notes] == [(24, 0, 30, 80)]


def test_long_rests_are_split_into_several_shifts(tokenizer):
    v, c = tokenizer.vocab, tokenizer.config
    gap = 2 * c.max_shift + 34
    notes = [(60, 0, 6, 80), (62, gap, 6, 80), (64, gap + c.max_shift, 6, 80)]
    tokens = tokenizer.encode(make_midi(notes, tempo=120.0))
    level = min(80 * c.velocity_levels // 128, c.velocity_levels - 1)
    assert tokens == [
        BOS, v.encode("TEMPO", tokenizer.tempo_bin(120.0)),
        v.encode("VELOCITY", level), v.encode("PITCH", 60), v.encode("DURATION", 6),
        v.encode("SHIFT", c.max_shift), v.encode("SHIFT", c.max_shift), v.encode("SHIFT", 34),
        v.encode("PITCH", 62), v.encode("DURATION", 6),
        v.encode("SHIFT", c.max_shift), v.encode("PITCH", 64), v.encode("DURATION", 6),
        EOS,
    ]
    assert decoded(tokenizer, make_midi(notes)) == expected(notes)


def test_chords_are_written_low_to_high_with_velocity_only_on_change(tokenizer):
    v = tokenizer.vocab
    notes = [(67, 0, 12, 100), (60, 0, 12, 100), (64, 0, 12, 20), (72, 12, 6, 20)]
    tokens = tokenizer.encode(make_midi(notes), add_eos=False)
    loud, soft = tokenizer.velocity_level(100), tokenizer.velocity_level(20)
    assert tokens[2:] == [
        v.encode("VELOCITY", loud), v.encode("PITCH", 60), v.encode("DURATION", 12),
        v.encode("VELOCITY", soft), v.encode("PITCH", 64), v.encode("DURATION", 12),
        v.encode("VELOCITY", loud), v.encode("PITCH", 67), v.encode("DURATION", 12),
        v.encode("SHIFT", 12), v.encode("VELOCITY", soft), v.encode("PITCH", 72), v.encode("DURATION", 6),
    ]
    assert tokens[-1] != EOS


def test_score_to_midi_keeps_overlapping_presses_of_one_key(tokenizer):
    score = Score([Note(60, 0, 24), Note(64, 0, 24), Note(60, 12, 6)], 120.0)
    buffer = io.BytesIO()
    tokenizer.score_to_midi(score).write(buffer)  # the file a user gets
    back = tokenizer.midi_to_score(pretty_midi.PrettyMIDI(io.BytesIO(buffer.getvalue())))
    assert [(n.pitch, n.start, n.duration) for n in back.notes] in (
        [(60, 0, 24), (64, 0, 24), (60, 12, 6)],  # both presses kept
        [(60, 0, 12), (64, 0, 24), (60, 12, 6)],  # the re-strike ends the first press
    )


def test_off_grid_notes_are_rounded_to_the_nearest_step(tokenizer):
    midi = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=120.0)
    piano = pretty_midi.Instrument(0)
    step = 0.5 / 12  # seconds per step at 120 BPM
    piano.notes.append(pretty_midi.Note(80, 60, 3.3 * step, 9.1 * step))  # 3.3 -> 3, length 5.8 -> 6
    piano.notes.append(pretty_midi.Note(80, 62, 10.8 * step, 11.0 * step))  # too short: one step
    midi.instruments.append(piano)
    assert [note_key(n) for n in tokenizer.midi_to_score(midi).notes] == [(60, 3, 6, 80), (62, 11, 1, 80)]


@pytest.mark.parametrize("resolution", [96, 384, 480])
def test_roundtrip_accuracy_is_total_on_grid(tokenizer, resolution):
    for notes in (SHOWCASE, scale_piece(3)):
        midi = make_midi(notes, resolution=resolution, tempo=88.0, extra_tracks=[[(30, 0, 48, 60)]],
                         drums=[(42, 0, 3, 100)])
        matched, total = roundtrip_accuracy(tokenizer, midi)
        assert total == len(notes) + 1
        assert matched == total


def test_roundtrip_accuracy_counts_lost_notes(tokenizer):
    # a note longer than max_duration cannot survive: the measure must say so
    notes = [(60, 0, 12, 80), (64, 0, 300, 80), (67, 12, 12, 80)]
    assert roundtrip_accuracy(tokenizer, make_midi(notes)) == (2, 3)


def test_encoder_output_follows_the_sampling_grammar(tokenizer):
    may_follow = grammar(tokenizer, allow_eos=True)
    for notes in (SHOWCASE, scale_piece(0), scale_piece(1)):
        assert grammar_violations(tokenizer.encode(make_midi(notes)), may_follow) == 0


# -- property: score -> tokens -> score ----------------------------------------------

note_strategy = st.builds(
    Note,
    pitch=st.integers(21, 108),
    start=st.integers(0, 400),
    duration=st.integers(1, 96),
    velocity=st.integers(1, 127),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notes=st.lists(note_strategy, max_size=40, unique_by=lambda n: (n.pitch, n.start)),
       bpm=st.floats(40.0, 240.0))
def test_score_token_round_trip_property(tokenizer, notes, bpm):
    tokens = tokenizer.score_to_tokens(Score(notes, bpm))
    back = tokenizer.tokens_to_score(tokens)
    def released(note):  # a re-pressed key ends the earlier note, as on a piano
        later = [m.start for m in notes if m.pitch == note.pitch and m.start > note.start]
        return min([note.duration] + [start - note.start for start in later])

    want = sorted((n.start, n.pitch, released(n), quantized_velocity(n.velocity)) for n in notes)
    assert [(n.start, n.pitch, n.duration, n.velocity) for n in back.notes] == want
    assert back.bpm == pytest.approx(tokenizer.bin_tempo(tokenizer.tempo_bin(bpm)))
    assert tokenizer.count_notes(tokens) == len(notes)
    assert grammar_violations(tokens, grammar(tokenizer, allow_eos=True)) == (0 if notes else 1)


@settings(max_examples=100, deadline=None)
@given(notes=st.lists(note_strategy, max_size=30))
def test_score_round_trip_deduplicates_keeping_the_longest(tokenizer, notes):
    longest: dict[tuple[int, int], int] = {}
    for n in notes:
        longest[(n.pitch, n.start)] = max(longest.get((n.pitch, n.start), 0), n.duration)
    released = {}  # then a re-pressed key ends the earlier note
    for (p, s), d in longest.items():
        later = [s2 for (p2, s2) in longest if p2 == p and s2 > s]
        released[(p, s)] = min([d] + [s2 - s for s2 in later])
    back = tokenizer.tokens_to_score(tokenizer.score_to_tokens(Score(notes)))
    assert [(n.pitch, n.start, n.duration) for n in back.notes] == sorted(
        ((p, s, d) for (p, s), d in released.items()), key=lambda t: (t[1], t[0]))


# -- the tolerant decoder --------------------------------------------------------------

VOCAB_SIZE = len(Tokenizer().vocab)
any_tokens = st.lists(
    st.one_of(st.integers(0, VOCAB_SIZE - 1), st.integers(-(2**70), 2**70), st.integers(-5, VOCAB_SIZE + 5)),
    max_size=120,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=any_tokens)
def test_any_int_list_decodes_to_a_writable_midi(tokenizer, tokens):
    score = tokenizer.tokens_to_score(tokens)
    c = tokenizer.config
    for n in score.notes:
        assert c.pitch_min <= n.pitch <= c.pitch_max and 1 <= n.duration <= c.max_duration
    midi = tokenizer.decode(tokens)
    buffer = io.BytesIO()
    midi.write(buffer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = pretty_midi.PrettyMIDI(io.BytesIO(buffer.getvalue()))
    notes = [n for i in back.instruments for n in i.notes]
    assert len(notes) == len(score.notes)
    assert sorted((n.pitch, n.velocity) for n in notes) == sorted((n.pitch, n.velocity) for n in score.notes)


def tok(tokenizer: Tokenizer, *names: str) -> list[int]:
    """Token ids from names like 'PITCH_60'."""
    out = []
    for name in names:
        if name in ("PAD", "BOS", "EOS"):
            out.append({"PAD": PAD, "BOS": BOS, "EOS": EOS}[name])
        else:
            kind, value = name.split("_")
            out.append(tokenizer.vocab.encode(kind, int(value)))
    return out


def keys(score: Score) -> list[tuple[int, int, int]]:
    return [(n.pitch, n.start, n.duration) for n in score.notes]


def test_pitch_without_duration_gets_one_beat(tokenizer):
    beat = tokenizer.config.steps_per_beat
    tokens = tok(tokenizer, "BOS", "TEMPO_5", "PITCH_60", "SHIFT_6", "PITCH_62", "DURATION_3", "PITCH_64")
    assert keys(tokenizer.tokens_to_score(tokens)) == [(60, 0, beat), (62, 6, 3), (64, 6, beat)]
    # a pitch followed by another pitch is closed too
    tokens = tok(tokenizer, "PITCH_60", "PITCH_67", "DURATION_2")
    assert keys(tokenizer.tokens_to_score(tokens)) == [(60, 0, beat), (67, 0, 2)]


def test_duration_without_pitch_is_ignored(tokenizer):
    tokens = tok(tokenizer, "BOS", "TEMPO_5", "DURATION_7", "PITCH_60", "DURATION_5", "DURATION_9", "SHIFT_3",
                 "DURATION_1")
    assert keys(tokenizer.tokens_to_score(tokens)) == [(60, 0, 5)]


def test_decoding_stops_at_eos(tokenizer):
    tokens = tok(tokenizer, "BOS", "TEMPO_5", "PITCH_60", "DURATION_5", "EOS", "PITCH_62", "DURATION_5")
    assert keys(tokenizer.tokens_to_score(tokens)) == [(60, 0, 5)]
    # a pitch left open at EOS is still closed
    tokens = tok(tokenizer, "PITCH_60", "EOS", "PITCH_62", "DURATION_5")
    assert keys(tokenizer.tokens_to_score(tokens)) == [(60, 0, tokenizer.config.steps_per_beat)]


def test_unknown_ids_are_ignored(tokenizer):
    clean = tok(tokenizer, "BOS", "TEMPO_5", "VELOCITY_2", "PITCH_60", "DURATION_5", "SHIFT_4", "PITCH_61",
                "DURATION_2")
    noisy = [-1, clean[0], 10**30, clean[1], -(2**70), clean[2], VOCAB_SIZE, clean[3], clean[4], VOCAB_SIZE + 7,
             *clean[5:]]
    assert note_tuples_of(tokenizer.tokens_to_score(noisy)) == note_tuples_of(tokenizer.tokens_to_score(clean))
    assert len(tokenizer.tokens_to_score(noisy).notes) == 2


def note_tuples_of(score: Score):
    return [note_key(n) for n in score.notes], score.bpm


def test_first_tempo_wins_and_explicit_bpm_overrides(tokenizer):
    tokens = tok(tokenizer, "BOS", "TEMPO_3", "PITCH_60", "DURATION_5", "TEMPO_30")
    assert tokenizer.tokens_to_score(tokens).bpm == pytest.approx(tokenizer.bin_tempo(3))
    assert tokenizer.tokens_to_score(tokens, bpm=99.0).bpm == 99.0
    assert tokenizer.tokens_to_score([]).bpm == 120.0
    assert tokenizer.tokens_to_score([]).notes == []


def test_velocity_tokens_apply_to_following_notes(tokenizer):
    tokens = tok(tokenizer, "PITCH_60", "DURATION_5", "VELOCITY_0", "PITCH_62", "DURATION_5", "VELOCITY_7",
                 "PITCH_64", "DURATION_5")
    velocities = [n.velocity for n in tokenizer.tokens_to_score(tokens).notes]
    assert velocities[0] == 80  # the default before any VELOCITY token
    assert velocities[1:] == [tokenizer.level_velocity(0), tokenizer.level_velocity(7)]
    assert velocities[1] < velocities[2]


# -- tempo ---------------------------------------------------------------------------------


def test_piece_tempo_counts_beats_not_seconds(tokenizer):
    # 60 BPM for 4 beats (4 s) then 240 BPM for 6 beats (1.5 s): most beats are at 240
    notes = [(60, 12 * i, 12, 80) for i in range(10)]
    midi = make_midi(notes, tempo=60.0, tempo_changes=[(4, 240.0)])
    assert len(midi.get_tempo_changes()[1]) == 2
    assert piece_tempo(midi) == pytest.approx(240.0)
    # the reverse: 240 for 2 beats, then 60 for 8 beats
    midi = make_midi(notes, tempo=240.0, tempo_changes=[(2, 60.0)])
    assert piece_tempo(midi) == pytest.approx(60.0)
    # the grid follows ticks, not seconds: the notes stay a beat apart across the change
    score = tokenizer.midi_to_score(midi)
    assert [n.start for n in score.notes] == [12 * i for i in range(10)]
    assert score.bpm == pytest.approx(60.0)


def test_piece_tempo_without_tempo_events_is_120():
    midi = pretty_midi.PrettyMIDI()
    assert piece_tempo(midi) == pytest.approx(120.0)
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(80, 60, 0.0, 3.0))
    midi.instruments.append(piano)
    assert piece_tempo(midi) == pytest.approx(120.0)


def test_notes_must_be_valid():
    for bad in ({"pitch": 128}, {"pitch": -1}, {"velocity": 0}, {"velocity": 128}, {"start": -1}, {"duration": 0}):
        with pytest.raises(ValueError):
            Note(**{"pitch": 60, "start": 0, "duration": 1, "velocity": 80, **bad})


# -- the sustain pedal: notes last as long as they sound ---------------------------------------


def sounding(tokenizer, notes, pedal, **kwargs) -> list[tuple[int, int, int]]:
    score = tokenizer.midi_to_score(make_midi(notes, pedal=pedal, **kwargs))
    return [(n.pitch, n.start, n.duration) for n in score.notes]


def test_pedal_holds_a_released_note_until_it_lifts(tokenizer):
    # released at step 6 with the pedal down from 3 to 30: sounds until 30
    assert sounding(tokenizer, [(60, 0, 6)], [(3, 127), (30, 0)]) == [(60, 0, 30)]


def test_a_key_struck_again_ends_the_note_the_pedal_holds(tokenizer):
    notes = [(60, 0, 6), (64, 0, 6), (60, 12, 6)]
    assert sounding(tokenizer, notes, [(3, 100), (40, 10)]) == [(60, 0, 12), (64, 0, 40), (60, 12, 28)]


def test_notes_outside_the_pedal_keep_their_length(tokenizer):
    notes = [(60, 0, 6), (62, 12, 30), (64, 48, 6)]
    # 60 ends before the pedal goes down, 62 is still held when it lifts, 64 starts after
    assert sounding(tokenizer, notes, [(10, 127), (24, 0)]) == [(60, 0, 6), (62, 12, 30), (64, 48, 6)]


def test_pedal_values_below_64_are_up_and_repeated_downs_are_one_press(tokenizer):
    notes = [(60, 0, 6), (62, 12, 6)]
    pedal = [(3, 64), (5, 90), (8, 63), (10, 127), (30, 0)]  # down at 3, up at 8, down at 10, up at 30
    assert sounding(tokenizer, notes, pedal) == [(60, 0, 8), (62, 12, 18)]


def test_pedal_is_one_for_the_whole_piano_and_long_notes_are_clamped(tokenizer):
    left_hand = [(36, 0, 6)]
    result = sounding(tokenizer, [(60, 0, 6)], [(3, 127), (200, 0)], extra_tracks=[left_hand])
    assert result == [(36, 0, tokenizer.config.max_duration), (60, 0, tokenizer.config.max_duration)]


def test_a_pedal_never_lifted_holds_to_the_end(tokenizer):
    assert sounding(tokenizer, [(60, 0, 6), (62, 24, 12)], [(3, 127)]) == [(60, 0, 36), (62, 24, 12)]


def test_roundtrip_accuracy_counts_sounding_lengths(tokenizer):
    notes = [(60, 0, 6), (64, 12, 6), (67, 24, 6)]
    midi = make_midi(notes, pedal=[(3, 127), (40, 0)])
    assert roundtrip_accuracy(tokenizer, midi) == (3, 3)
    decoded = tokenizer.decode(tokenizer.encode(midi))
    assert [round((n.end - n.start) * 2 * 12) for n in decoded.instruments[0].notes] == [40, 28, 16]
