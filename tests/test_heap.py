"""The C heap's free memory goes back to the operating system, at most once per interval."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from midigen import heap

FRAGMENTED = """
import ctypes, sys
from midigen import heap
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_kb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])
blocks = [libc.malloc(4000) for _ in range(50_000)]  # 200 MB, below the mmap threshold: inside the heap
for block in blocks:
    ctypes.memset(block, 1, 4000)
for index, block in enumerate(blocks):
    if index % 64:  # one block in 64 kept: the heap cannot shrink from its top
        libc.free(block)
before = rss_kb()
assert heap.release_free_memory(interval_s=0)
print(before, rss_kb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._trim is None, reason="needs glibc")
def test_freed_memory_inside_a_fragmented_heap_goes_back():
    done = subprocess.run([sys.executable, "-c", FRAGMENTED], capture_output=True, text=True, check=True)
    before_kb, after_kb = map(int, done.stdout.split())
    assert before_kb - after_kb > 150_000, (before_kb, after_kb)


@pytest.mark.skipif(heap._trim is None, reason="needs glibc")
def test_at_most_once_per_interval():
    heap.release_free_memory(interval_s=0)
    assert not heap.release_free_memory(interval_s=3600)
    assert heap.release_free_memory(interval_s=0)


@pytest.mark.skipif(heap._mallopt is None, reason="needs glibc")
def test_the_arenas_can_be_capped():
    assert heap.limit_arenas(8 * (os.cpu_count() or 1))  # glibc's own default cap: nothing changes for the tests
