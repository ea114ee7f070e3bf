"""Continue and Back as plain functions of the history."""

from __future__ import annotations

from midigen import history


def step(name: str) -> dict:
    return {"midi_files": [f"{name}-1.mid", f"{name}-2.mid"], "summary": name}


def test_nothing_to_continue_before_the_first_result():
    assert history.piece_to_continue([]) is None
    assert history.piece_to_continue(history.remember([], None, {"midi_files": []})) is None


def test_continue_grows_the_latest_first_piece():
    steps = history.remember(history.remember([], None, step("a")), "a-1.mid", step("b"))
    assert history.piece_to_continue(steps) == "b-1.mid"


def test_back_shows_the_step_before():
    steps = history.remember(history.remember([], "seed.mid", step("a")), "a-1.mid", step("b"))
    earlier = history.back(steps)
    assert [s["outputs"]["summary"] for s in earlier] == ["a"]
    assert earlier[-1]["seed"] == "seed.mid"
    assert history.back(earlier) is None
    assert history.back([]) is None


def test_history_keeps_the_latest_steps_and_copies_outputs():
    outputs = step("x")
    steps = []
    for index in range(history.MAX_STEPS + 5):
        steps = history.remember(steps, f"{index}.mid", outputs)
    assert len(steps) == history.MAX_STEPS
    assert steps[0]["seed"] == "5.mid" and steps[-1]["seed"] == f"{history.MAX_STEPS + 4}.mid"
    outputs["summary"] = "changed"
    assert steps[-1]["outputs"]["summary"] == "x"
