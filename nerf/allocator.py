"""glibc malloc tuned for the CPU hot path, in-process, so users get it without setting anything.

A training step on the CPU allocates and frees the same large temporaries (tens of MiB) every
step. With glibc's defaults each such block is an mmap of fresh pages that is unmapped on free:
every step page-faults its whole working set again (a fault per 4 KiB, zeroed by the kernel),
and freed heap tops are trimmed back to the OS as soon as they exceed 128 KiB. Setting
`GLIBC_TUNABLES` made the same steps about twice as fast, but an environment variable must be
set before the process starts, which users never do. `mallopt` changes the same knobs from
inside the process; it must run before the first large allocation to matter, so the jobs call
`tune_malloc()` first thing (through `nerf.process.prepare_process`).

    M_MMAP_MAX = 0            no block is served by mmap: large blocks come from the heap and
                              are reused after free, already faulted in
    M_TRIM_THRESHOLD = 1 GiB  freed memory at the heap top is kept up to this size
    M_TOP_PAD = 64 MiB        the heap grows in large steps (fewer brk calls)

The cost is that memory freed during a run is kept by the process for reuse (peak resident
memory is what the run needed at its largest, as before). On systems without glibc (macOS,
Windows, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's malloc.h parameter numbers
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


@functools.cache
def tune_malloc() -> bool:
    """Apply the settings above once per process; True when glibc accepted them all."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
