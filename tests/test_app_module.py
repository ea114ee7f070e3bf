"""``app.py`` as a module: importing it does nothing, and the page it builds exposes the declared settings."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from midigen.settings import NAMES

ROOT = Path(__file__).resolve().parent.parent
IMPORT_CHECK = """
import os, sys, threading
before = set(os.listdir(os.environ["TMPDIR"]))
import app
assert "torch" not in sys.modules, "importing app imported torch"
assert threading.active_count() == 1, threading.enumerate()
assert set(os.listdir(os.environ["TMPDIR"])) == before, "importing app wrote files"
assert not any(isinstance(v, app.Composer) for v in vars(app).values()), "importing app built a composer"
print("quiet")
"""


def test_importing_the_app_has_no_side_effects(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "MIDIGEN_WEIGHTS": str(tmp_path / "missing"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "quiet", done.stderr[-2000:]


@pytest.fixture(scope="module")
def demo(shipped_generator, tmp_path_factory):
    import app
    from midigen.studio import Studio

    studio = Studio(shipped_generator, output_root=tmp_path_factory.mktemp("outputs"))
    with ThreadPoolExecutor(1) as workers:
        yield app.build_demo(app.Composer(studio, None, workers, 300.0), examples=[])


def test_the_api_takes_the_declared_settings_by_name(demo):
    endpoint = demo.get_api_info()["named_endpoints"]["/generate"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["seed_file", *NAMES]
    assert len(endpoint["returns"]) == len(__import__("app").OUTPUT_NAMES)


def test_composer_answers_with_named_outputs(demo, shipped_generator, tmp_path):
    import app
    from midigen.studio import Studio

    with ThreadPoolExecutor(1) as workers:
        composer = app.Composer(Studio(shipped_generator, output_root=tmp_path), None, workers, 300.0)
        outputs = composer.compose(None, {"seconds": 3, "random_seed": 11, "randomize": False, "variations": 2},
                                   lambda fraction, message: None)
        assert list(outputs) == list(app.OUTPUT_NAMES)
        assert outputs["random_seed"] == 11 and len(outputs["midi_files"]) == 2
        assert outputs["audio_3"] is None and outputs["audio_4"] is None
        with pytest.raises(app.gr.Error, match="temperature must be a number"):
            composer.compose(None, {"temperature": "warm"}, lambda fraction, message: None)


def test_the_page_renders_its_first_take_once_through_the_live_stream(shipped_generator, tmp_path):
    """The page's two halves: ``start`` opens the first take's live stream, ``finish`` makes that stream's
    recording the take's file (played or not) and renders the other takes."""
    import app
    from midigen.live import read_frames
    from midigen.studio import Studio

    values = {"seconds": 4, "random_seed": 5, "randomize": False, "variations": 2}
    with ThreadPoolExecutor(1) as workers:
        composer = app.Composer(Studio(shipped_generator, output_root=tmp_path), None, workers, 300.0)
        played, recordings = [], []
        for listen in (True, False):
            key, player = composer.start(None, values, lambda fraction, message: None)
            stream = composer.live.get(player["id"])
            if listen:
                while not played or not read_frames(played[-1])[-1][0]["last"]:
                    played.append(stream.next_frame()[0])
            outputs = composer.finish(key, lambda fraction, message: None)
            recordings.append(stream.recording()[0])
            assert Path(outputs["audio_1"]).read_bytes() == recordings[-1]
            assert Path(outputs["audio_2"]).stat().st_size > 10_000 and outputs["audio_3"] is None
        assert b"".join(audio for data in played for _, audio in read_frames(data)) == recordings[0]
        with pytest.raises(app.gr.Error, match="expired"):
            composer.finish(key, lambda fraction, message: None)


def test_a_request_past_its_time_limit_stops_its_work_and_frees_its_worker(shipped_generator, tmp_path):
    import app
    from midigen.studio import Studio

    with ThreadPoolExecutor(1) as workers:
        composer = app.Composer(Studio(shipped_generator, output_root=tmp_path), None, workers, 0.3)
        with pytest.raises(app.gr.Error, match="took too long"):  # four minutes of audio take seconds to render
            composer.compose(None, {"seconds": 60, "variations": 4}, lambda fraction, message: None)
        waiting = workers.submit(lambda: None)  # runs once the worker is free
        waiting.result(timeout=60)
    rendered = list(tmp_path.glob("request-*/*.mp3"))
    assert len(rendered) < 4, rendered  # it stopped before the last take instead of rendering on for nobody


def test_where_the_app_samples_here(shipped_generator):
    import app

    assert app.gpu_sampler(shipped_generator, "cpu")[0] is None
    sample, message = app.gpu_sampler(shipped_generator, "zerogpu")  # `spaces` imports, but there is no GPU here
    assert sample is None and "sampling on the CPU" in message


def test_history_steps_make_swept_files_again(shipped_generator, tmp_path):
    """A result's files can be deleted by the sweep; Back, Forward and the keep-alive make them again."""
    import shutil

    import app
    from midigen import history
    from midigen.studio import Studio

    studio = Studio(shipped_generator, output_root=tmp_path)
    handlers = app.HistorySteps(studio)
    with ThreadPoolExecutor(1) as workers:
        composer = app.Composer(studio, None, workers, 300.0)
        state = history.empty()
        for random_seed in (21, 22):
            outputs = composer.compose(None, {"seconds": 3, "random_seed": random_seed, "randomize": False,
                                              "variations": 2}, lambda fraction, message: None)
            state = handlers.remember(state, None, None, *(outputs[name] for name in app.OUTPUT_NAMES))
    first = history.shown(history.move(state, -1))
    shutil.rmtree(Path(first["outputs"]["midi_files"][0]).parent)  # the sweep takes the first result's files

    back, seed_file, take, *shown = handlers.go(-1)(state)
    named = dict(zip(app.OUTPUT_NAMES, shown, strict=True))
    assert seed_file is None and take.visible
    assert [Path(p).read_bytes() for p in named["midi_files"]] == first["takes"]
    assert all(Path(named[f"audio_{i}"]).stat().st_size > 0 for i in (1, 2))
    assert named["piano_roll"] == first["outputs"]["piano_roll"]
    assert history.shown(back)["outputs"] == named

    seed_path, keep_seed = handlers.continue_from(back, 1)
    assert Path(seed_path).read_bytes() == first["takes"][1] and keep_seed is True
    assert Path(handlers.offer_first(back, 1)[0]).read_bytes() == first["takes"][1]

    shutil.rmtree(Path(named["midi_files"][0]).parent)
    fresh, *outputs = handlers.keep_fresh(back)
    assert Path(dict(zip(app.OUTPUT_NAMES, outputs, strict=True))["midi_files"][0]).exists()
    assert all(isinstance(value, type(app.gr.skip())) for value in handlers.keep_fresh(fresh))
