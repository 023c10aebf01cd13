"""The process's C allocator, set up once at start: freed tensor buffers stay in the heap for the next tensor.

glibc serves every block above its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh `mmap`
and returns it with `munmap` when freed; it also trims the heap top above 128 KiB free. A tensor the size of
a tile's activations (tens of MB) is therefore faulted in page by page on every allocation: on the built-in
model's main job that kernel work was 40 % of the CPU time (issue 21). With large blocks from the heap and a
high trim threshold, a freed buffer is reused by the next one of its size. The price is a heap that keeps
its high-water mark while the process lives; `release_free_memory` gives it back (the server calls it when
its queue runs empty, and at its idle unload; engine.tiled_model at the ends of every tiled VAE pass, whose
freed tiles otherwise held the 16 MP job's peak 28 % above glibc's defaults). The CLI, the server and the
window call `tune_allocator` first thing; other C libraries (musl, macOS, Windows) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache

# mallopt parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# Blocks up to 64 MiB come from the heap: a built-in model tile's activations (about 30 MiB each) and most of a
# VAE tile's. Larger ones stay mapped: kept in the heap they fragmented it, and the tiny FLUX's 4 MP job peaked
# at 1.40x its RSS before (1528 MiB against 1095; 1 GiB thresholds); with 64 MiB / 128 MiB, 1.24x (1353 MiB)
# and still half the system time. Their page faults are small next to the work done on that much memory.
MMAP_THRESHOLD = 64 << 20
# Not set: torch's huge pages (THP_MEM_ALLOC_ENABLE=1). They cut the faults of 640 MiB touched once from 202,940
# to 49,648 but raised its system time from 1.2-2.0 s to 2.8-3.4 s here (the kernel's madvise defrag compacts
# memory to find 2 MiB pages; issue 21's second round).
# Free memory kept at the heap's top before it is given back: enough for the next tile to find its buffers.
TRIM_THRESHOLD = 128 << 20
# One arena: threads other than the main one (the server's worker, torch's) otherwise get arenas of at most
# 64 MiB, and larger blocks there are mapped and unmapped whatever the threshold says.
ARENA_MAX = 1

OPT_OUT = "UPREZ_MALLOC"  # "system" leaves glibc's defaults (to measure against, or if a platform misbehaves)


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has mallopt as a stub)
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


@cache
def tune_allocator() -> bool:
    """Keep freed large blocks in the heap for reuse (glibc only; once per process). True if the settings took.

    A setting made through glibc's own environment variable (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
    MALLOC_ARENA_MAX) wins over ours; `UPREZ_MALLOC=system` leaves all of glibc's defaults.
    """
    libc = _glibc()
    if libc is None or os.environ.get(OPT_OUT) == "system":
        return False
    settings = [(M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
                (M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
                (M_ARENA_MAX, ARENA_MAX, "MALLOC_ARENA_MAX")]
    return all(libc.mallopt(param, value) == 1 for param, value, variable in settings if variable not in os.environ)


def release_free_memory() -> None:
    """Give the heap's free pages back to the kernel (between jobs: the RSS falls to what is in use)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
