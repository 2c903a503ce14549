"""The precision of the inference path's MLPs (`SamplerConfig.render_precision`).

Renders without gradients (test views, videos, the viewer, the mesh job's depth maps) may run the
field's MLPs in bfloat16 under `torch.autocast`; the hash grid, densities, compositing and colours
stay float32 (the fields cast each MLP's output back). bfloat16 pays only where the CPU multiplies
it natively (Intel AMX or AVX512-BF16, which oneDNN uses for torch's matmuls): there the MLPs of
a fox view ran 1.6-3.5x faster (docs/DESIGN.md). Elsewhere it would be emulated and slower, so
"auto" picks it only on such a CPU; CUDA stays float32 (unmeasured there). Training never uses
this: it has its own mixed precision on CUDA (`TrainConfig.amp`).
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16)."""
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so asked defensively
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The MLP dtype of the inference path for `precision` on `device` ("auto" resolved)."""
    if precision not in PRECISIONS:
        raise ValueError(f"render_precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def mlp_precision(dtype: torch.dtype, device: torch.device):
    """A context in which the field's MLPs run in `dtype` (float32: nothing changes)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
