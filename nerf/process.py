"""What every job does first, before its first large allocation and before torch's and numba's
thread pools start: glibc's malloc tuned (`nerf.allocator`) and denormal floats flushed to zero
(`nerf.denormals`). Both act once per process; later calls change nothing."""

from __future__ import annotations

from nerf.allocator import tune_malloc
from nerf.denormals import flush_denormals


def prepare_process() -> None:
    """Tune malloc and flush denormals (see the module docstring); call it first thing."""
    tune_malloc()
    flush_denormals()
