"""Keep a long-running server's C heap from creeping up.

Rendering, encoding and Gradio's threads allocate and free tens of megabytes per request in C, each thread in
one of glibc's arenas (up to 8 per core, each growing to 64 MB). Under load the server's RSS crept up by
about 115 MB an hour, in new and growing arenas, while Python's own heap stayed flat (``tracemalloc``).
``limit_arenas`` caps the arenas (call it before the threads start); ``release_free_memory`` hands freed
pages back (``malloc_trim``) at most once per ``interval_s``. Off glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

TRIM_INTERVAL_S = 60.0
ARENAS = 2  # glibc's arenas: one per core here; more only grow the heap
_M_ARENA_MAX = -8  # mallopt's parameter number, from malloc.h

_lock = threading.Lock()
_last_trim = 0.0


def _glibc(name: str):
    """glibc's function ``name``, or None where the C library has none."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


_trim, _mallopt = _glibc("malloc_trim"), _glibc("mallopt")


def limit_arenas(count: int = ARENAS) -> bool:
    """Let threads share at most ``count`` heap arenas from now on; whether that could be set."""
    return _mallopt is not None and _mallopt(_M_ARENA_MAX, count) == 1


def release_free_memory(interval_s: float = TRIM_INTERVAL_S) -> bool:
    """Hand the heap's free pages back to the OS, unless that was done less than ``interval_s`` ago; whether it
    was done now."""
    global _last_trim
    if _trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last_trim < interval_s:
            return False
        _last_trim = now
    _trim(0)
    return True
