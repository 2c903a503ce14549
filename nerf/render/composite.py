"""The public compositing op: input checks, backend choice, and its result type.

`composite` turns packed samples (densities and colours along rays) into per-ray colour,
opacity and expected depth; the equation lives in `nerf.render.reference`, the specification.
Backends share one signature:

    "torch"   nerf.render.reference        vectorised PyTorch, autograd; the CPU path
    "triton"  nerf.render.triton_kernels   fused forward/backward kernels; CUDA, or the CPU
                                           under TRITON_INTERPRET=1 (slow; for tests)
    "numba"   nerf.render.numba_kernels    fused forward/backward CPU kernels, parallel over
                                           rays, compiled at first use (needs numba)

"auto" picks Triton for CUDA tensors when it is available, numba for float32 CPU tensors when
numba imports, PyTorch otherwise. Backends are imported on first use, so importing this module
needs neither Triton, numba nor a GPU.
"""

import importlib
from typing import NamedTuple

import torch
from torch import Tensor

from nerf import backends

BACKENDS = ("torch", "triton", "numba")
MODULES = {
    "torch": "nerf.render.reference",
    "triton": "nerf.render.triton_kernels",
    "numba": "nerf.render.numba_kernels",
}


class RenderOutput(NamedTuple):
    """Per-ray composited quantities plus the per-sample weights."""

    rgb: Tensor  # [N, 3]
    opacity: Tensor  # [N] sum of weights
    depth: Tensor  # [N] expected depth sum_i w_i t_mid_i, NOT normalised by opacity
    weights: Tensor  # [S]


def available_backends() -> list[str]:
    """Backends that can run in this process (`nerf.backends.available`).

    Returns:
        ["torch"], plus "triton" when triton imports and either CUDA is available or
        TRITON_INTERPRET=1 is set, plus "numba" when numba imports (CPU tensors).
    """
    return backends.available(BACKENDS)


def _check_inputs(
    t_starts: Tensor,  # [S]
    t_ends: Tensor,  # [S]
    ray_indices: Tensor,  # [S] int64, sorted
    sigmas: Tensor,  # [S]
    rgbs: Tensor,  # [S, 3]
    n_rays: int,
    background: Tensor | None,  # [N, 3] or [3]
) -> None:
    """Raise ValueError naming the first argument that breaks the contract of `composite`."""
    if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 0:
        raise ValueError(f"composite: n_rays must be a non-negative int, got {n_rays!r}")
    if sigmas.dim() != 1:
        raise ValueError(f"composite: sigmas must be [S], got shape {tuple(sigmas.shape)}")
    n_samples = sigmas.shape[0]
    expected = {
        "t_starts": (t_starts, (n_samples,)),
        "t_ends": (t_ends, (n_samples,)),
        "ray_indices": (ray_indices, (n_samples,)),
        "rgbs": (rgbs, (n_samples, 3)),
    }
    if background is not None:
        bg_shape = (3,) if background.dim() == 1 else (n_rays, 3)
        expected["background"] = (background, bg_shape)
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"composite: {name} must have shape {list(shape)} (S={n_samples} from sigmas, N={n_rays}), "
                f"got {list(tensor.shape)}"
            )
        if tensor.device != sigmas.device:
            raise ValueError(f"composite: {name} is on {tensor.device} but sigmas is on {sigmas.device}")
    if ray_indices.dtype != torch.int64:
        raise ValueError(f"composite: ray_indices must be int64, got {ray_indices.dtype}")
    if not sigmas.is_floating_point():
        raise ValueError(f"composite: sigmas must be floating point, got {sigmas.dtype}")
    for name in ("t_starts", "t_ends", "rgbs", "background"):
        if name in expected and expected[name][0].dtype != sigmas.dtype:
            raise ValueError(f"composite: {name} has dtype {expected[name][0].dtype} but sigmas has {sigmas.dtype}")
    # Value checks need a host sync on a GPU, so they run only for CPU tensors.
    if ray_indices.device.type == "cpu" and n_samples > 0:
        if bool((ray_indices[1:] < ray_indices[:-1]).any()):
            raise ValueError("composite: ray_indices must be sorted ascending (samples packed ray by ray)")
        if int(ray_indices[0]) < 0 or int(ray_indices[-1]) >= n_rays:
            raise ValueError(
                f"composite: ray_indices must lie in [0, n_rays={n_rays}), "
                f"got range [{int(ray_indices[0])}, {int(ray_indices[-1])}]"
            )


def pick_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Resolve "auto" (Triton for CUDA tensors when usable; numba for float32 CPU tensors when
    usable; else torch) and refuse a backend that cannot run on `device` here
    (`nerf.backends.BackendError`, a ValueError). `dtype` is that of sigmas: "auto" picks numba
    only for float32 (other dtypes run on the reference)."""
    auto = ("triton", "numba") if dtype == torch.float32 else ("triton",)
    return backends.resolve(backend, BACKENDS, device, "composite", auto=auto)


def composite(
    t_starts: Tensor,  # [S]
    t_ends: Tensor,  # [S]
    ray_indices: Tensor,  # [S] int64, sorted
    sigmas: Tensor,  # [S]
    rgbs: Tensor,  # [S, 3]
    n_rays: int,
    background: Tensor | None = None,  # [N, 3] or [3]
    backend: str = "auto",
    *,
    early_stop_eps: float = 0.0,
) -> RenderOutput:  # rgb [N, 3], opacity [N], depth [N], weights [S]
    """Composite packed samples along their rays.

    w_i = T_i (1 - exp(-sigma_i delta_i)) with T_i = exp(-sum_{j<i} sigma_j delta_j) over the
    same ray, delta = t_end - t_start; rgb = sum w_i c_i + (1 - opacity) background,
    opacity = sum w_i, depth = sum w_i (t_start + t_end) / 2 (expected depth, not normalised
    by opacity). Rays without samples give opacity 0, rgb = background, depth 0.

    Args:
        t_starts: [S] sample interval starts along the ray.
        t_ends: [S] sample interval ends.
        ray_indices: [S] int64 ray of each sample, sorted ascending, in [0, n_rays).
        sigmas: [S] non-negative densities (float16/32/64; all float inputs share its dtype).
        rgbs: [S, 3] colours.
        n_rays: number of rays N.
        background: [N, 3] or [3] colour behind each ray; None means black.
        backend: "auto", "torch", "triton" or "numba" (see the module docstring).
        early_stop_eps: samples whose transmittance is below this get weight 0, and the Triton
            and numba kernels stop marching the ray there; 0 (default) keeps the exact equation.

    Returns:
        RenderOutput(rgb [N, 3], opacity [N], depth [N], weights [S]) in the dtype of sigmas.

    Raises:
        ValueError: a shape, dtype, device or ray_indices value breaks the contract above, or
            the backend is unknown or unavailable.
    """
    _check_inputs(t_starts, t_ends, ray_indices, sigmas, rgbs, n_rays, background)
    if early_stop_eps < 0.0:
        raise ValueError(f"composite: early_stop_eps must be >= 0, got {early_stop_eps}")
    chosen = pick_backend(backend, sigmas.device, sigmas.dtype)
    impl = importlib.import_module(MODULES[chosen]).composite
    return impl(t_starts, t_ends, ray_indices, sigmas, rgbs, n_rays, background, early_stop_eps=early_stop_eps)
