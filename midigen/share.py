"""Links that reopen the page with the same settings, random seed and example seed.

A link's query holds every setting by its API name (``settings.SETTINGS``), the random seed that was
used (with ``randomize=false``, so the same piece comes back) and, when the seed was one of the
built-in examples, ``example=<name>``. An uploaded file is never put in a link.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from .settings import NAMES, SETTINGS, clean_settings

EXAMPLE = "example"


def share_query(values: Mapping, random_seed: int, example: str | None = None) -> str:
    """The query string of a link to ``values`` composed with ``random_seed`` (and an example seed)."""
    cleaned = clean_settings({**values, "random_seed": random_seed, "randomize": False})
    query = {spec.name: spec.show(spec.automatic if cleaned[spec.name] is None else cleaned[spec.name])
             for spec in SETTINGS}
    if example:
        query[EXAMPLE] = example
    return urlencode(query)


def settings_from_query(query: Mapping[str, str]) -> dict:
    """The settings a link names, cleaned like any request (clamped; ``UserError`` for non-numbers).
    Only the settings present in the link are returned; the rest keep what the page shows."""
    given = {name: query[name] for name in NAMES if name in query}
    cleaned = clean_settings(given)
    return {name: cleaned[name] for name in given}
