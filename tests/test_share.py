"""Share links: the settings and random seed go out as a query, and come back cleaned."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from midigen.generate import GenerationRequest
from midigen.settings import UserError, clean_settings, defaults
from midigen.share import EXAMPLE, settings_from_query, share_query


def round_trip(values: dict, random_seed: int, example=None) -> tuple[dict, dict]:
    query = dict(parse_qsl(share_query(values, random_seed, example)))
    return query, settings_from_query(query)


def test_a_link_reproduces_the_request_with_the_seed_used():
    values = {**defaults(), "temperature": 1.3, "seconds": 12, "bpm": 90, "variations": 3, "keep_seed": False}
    query, restored = round_trip(values, 4242, "ode-to-joy")
    assert query[EXAMPLE] == "ode-to-joy"
    request = GenerationRequest.from_settings(clean_settings(restored))
    same = clean_settings({**values, "random_seed": 4242, "randomize": False})
    assert request == GenerationRequest.from_settings(same)
    assert request.random_seed == 4242


def test_automatic_bpm_and_no_example():
    query, restored = round_trip(defaults(), 7)
    assert EXAMPLE not in query and query["bpm"] == "0"
    assert restored["bpm"] is None and restored["randomize"] is False


def test_hostile_links_are_clamped_or_refused():
    assert settings_from_query({"seconds": "100000", "variations": "-3"}) == {"seconds": 60.0, "variations": 1}
    assert settings_from_query({"unknown": "1", "seed_file": "/etc/passwd"}) == {}
    with pytest.raises(UserError, match="temperature must be a number"):
        settings_from_query({"temperature": "<script>"})
