"""Give the C heap's free memory back to the operating system, so a long-running server's memory stays flat.

Rendering, encoding and Gradio's threads allocate and free tens of megabytes per request in C. glibc keeps
what is freed inside its arenas, fragmented, so the server's RSS crept up by about 115 MB an hour under load
although Python's own heap did not grow (``tracemalloc``). ``malloc_trim(0)`` returns those free pages;
``release_free_memory`` calls it at most once per ``interval_s``. Off glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

TRIM_INTERVAL_S = 60.0

_lock = threading.Lock()
_last_trim = 0.0


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_trim = _malloc_trim()


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
