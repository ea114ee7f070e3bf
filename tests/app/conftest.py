"""Fixtures for the tests of the running web app: the real ``app.py`` in a subprocess (``app_server``),
started once per session and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from app_server import AppDidNotStart, AppServer, running_app
from app_testkit import call_generate, write_bad_uploads, write_seed


@pytest.fixture(scope="session")
def midigen_app(tmp_path_factory) -> Iterator[AppServer]:
    """The real app, started once: yields an ``AppServer`` (url, process, temp_dir, log)."""
    try:
        with running_app(tmp_path_factory.mktemp("midigen-app")) as server:
            yield server
    except AppDidNotStart as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def app_client(midigen_app, tmp_path_factory):
    """A gradio_client ``Client`` for the app, downloading into a temporary folder."""
    from gradio_client import Client

    client = Client(midigen_app.url, verbose=False, ssl_verify=False,  # plain HTTP: no CA bundle per download
                    download_files=str(tmp_path_factory.mktemp("downloads")))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def seed_files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad seed files by name: ``scale`` (8 notes, 120 BPM) plus ``write_bad_uploads``."""
    folder = tmp_path_factory.mktemp("seeds")
    files = write_bad_uploads(folder / "bad")
    files["scale"] = write_seed(folder / "scale.mid")
    return files


@pytest.fixture
def check_healthy(midigen_app, app_client):
    """Call to assert the app still composes (a short request succeeds)."""

    def check() -> None:
        midigen_app.assert_alive()
        result = call_generate(app_client, seconds=2, random_seed=3)
        assert result["audio_1"] and Path(result["audio_1"]).stat().st_size > 0, result
        assert len(result["midi_files"]) == 1, result

    return check
