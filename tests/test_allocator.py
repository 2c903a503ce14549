"""In-process malloc tuning: freed large blocks are reused instead of faulted in again."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK_MIB = 64  # above glibc's largest dynamic mmap threshold (32 MiB): mmapped by default
ROUNDS = 6

PROBE = f"""
import resource, sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
if sys.argv[1] == "tuned":
    from nerf.allocator import tune_malloc
    assert tune_malloc()
np.ones({BLOCK_MIB} << 18, dtype=np.float32)  # first use: faults expected either way
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    block = np.ones({BLOCK_MIB} << 18, dtype=np.float32)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def minor_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tuned_malloc_reuses_freed_blocks():
    # With transparent huge pages a fault maps 2 MiB, without them 4 KiB: compare the two runs.
    default, tuned = minor_faults("default"), minor_faults("tuned")
    assert default >= ROUNDS, f"glibc's default should fault the block in again every round ({default} faults)"
    assert 20 * tuned < default, f"tuned malloc faulted {tuned} times, the default {default} times"


def test_tune_malloc_is_idempotent():
    from nerf.allocator import tune_malloc

    assert tune_malloc() == tune_malloc()
