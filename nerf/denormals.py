"""Denormal floats flushed to zero on the CPU, in-process, so users get it without setting anything.

Adam keeps two moment estimates per hash-table entry. An entry that gets no gradient in a step
(most of the table: only the cells some sample touched get one) has them decay geometrically,
x0.9 and x0.99 per step, until they fall below float32's normal range (1.2e-38) and become
denormal. x86 cores handle arithmetic on denormal operands or results in microcode, tens of
times slower. After a 10-minute lego_200 run 29% of the table's first moments were denormal, and
the fused Adam step took 20 ms of an 85 ms training step instead of about 1 ms.

Flush-to-zero (FTZ) and denormals-are-zero (DAZ) make those values exact zeros: Adam's update of
such an entry is below 1e-20 of the learning rate either way. The mode is a per-thread CPU
register (MXCSR) that a new thread copies from the thread creating it, so it must be set before
torch's and numba's thread pools start: the jobs call `flush_denormals()` first thing, beside
`nerf.allocator.tune_malloc` (`nerf.process.prepare_process`). CPUs or builds without the mode
(torch reports it) change nothing.
"""

from __future__ import annotations

import functools

import torch

# more elements than one of torch's parallel chunks (32768), so the check reaches a worker thread
_CHECK_ELEMENTS = 1 << 17


@functools.cache
def flush_denormals() -> bool:
    """Set FTZ and DAZ once per process; True when every thread that ran the check flushes
    (False: the CPU lacks the mode, or torch's workers started before this call)."""
    if not torch.set_flush_denormal(True):
        return False
    return denormals_flushed()


def denormals_flushed() -> bool:
    """Whether a multi-threaded torch op returns zeros for denormal inputs (FTZ/DAZ in effect
    on the calling thread and on torch's workers that share the op)."""
    # the bit pattern of 5.9e-39, written as integers: a float conversion would already flush it
    tiny = torch.full((_CHECK_ELEMENTS,), 0x00400000, dtype=torch.int32).view(torch.float32)
    return bool(((tiny * 0.5) == 0).all())
