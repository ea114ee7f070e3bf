"""Continue, Back and Forward as plain functions of the history."""

from __future__ import annotations

from midigen import history


def step(name: str, takes: int = 2) -> dict:
    return {"seed": None, "outputs": {"summary": name}, "names": [f"{name}-{i}.mid" for i in range(takes)],
            "takes": [f"{name}-{i}".encode() for i in range(takes)], "roll": b""}


def summaries(state: dict) -> list[str]:
    return [s["outputs"]["summary"] for s in state["steps"]]


def test_nothing_to_continue_before_the_first_result():
    assert history.shown(history.empty()) is None
    assert history.take_to_continue(history.empty(), 0) is None


def test_continue_grows_the_chosen_take_of_the_step_shown():
    state = history.record(history.record(history.empty(), step("a")), step("b"))
    assert history.take_to_continue(state, 0) == b"b-0"
    assert history.take_to_continue(state, 1) == b"b-1"
    assert history.take_to_continue(state, 7) == b"b-1"  # a stale choice picks the last take
    back = history.move(state, -1)
    assert history.take_to_continue(back, 1) == b"a-1"


def test_back_and_forward_move_through_the_steps():
    state = history.record(history.record(history.empty(), step("a")), step("b"))
    assert history.move(state, 1) is None
    back = history.move(state, -1)
    assert history.shown(back)["outputs"]["summary"] == "a"
    assert history.move(back, -1) is None
    assert history.shown(history.move(back, 1))["outputs"]["summary"] == "b"


def test_a_new_result_after_going_back_replaces_the_steps_ahead():
    state = history.record(history.record(history.empty(), step("a")), step("b"))
    state = history.record(history.move(state, -1), step("c"))
    assert summaries(state) == ["a", "c"] and history.shown(state)["outputs"]["summary"] == "c"


def test_history_keeps_the_latest_steps():
    state = history.empty()
    for index in range(history.MAX_STEPS + 5):
        state = history.record(state, step(str(index)))
    assert len(state["steps"]) == history.MAX_STEPS
    assert summaries(state)[0] == "5" and state["at"] == history.MAX_STEPS - 1


def test_replace_shown_changes_only_that_step():
    state = history.move(history.record(history.record(history.empty(), step("a")), step("b")), -1)
    changed = history.replace_shown(state, step("a2"))
    assert summaries(changed) == ["a2", "b"] and summaries(state) == ["a", "b"]
