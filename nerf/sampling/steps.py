"""The step layout of ray marching, shared by the PyTorch reference and the Triton kernels.

From t0 the step is `step` while `t * cone_angle < step`, then grows geometrically
(dt = t * cone_angle). In closed form, with n_uniform = ceil(max(step / cone_angle - t0, 0) / step)
and t_geo = t0 + n_uniform * step:

    t_i  = t0 + i * step                                 for i < n_uniform
    t_i  = t_geo * (1 + cone_angle)^(i - n_uniform)      after
    dt_i = step (uniform part) or t_i * cone_angle

cone_angle <= 0 keeps every step `step`. Also the block sizes of the marching loops.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_CANDIDATES_PER_CHUNK = 1 << 22  # (ray, step) pairs tested at once while marching
MARCH_BLOCK = 32  # steps all active rays advance together between early-stop checks


def step_counts(
    t0: Tensor,  # [N]
    t1: Tensor,  # [N]
    step: float,
    cone_angle: float,
) -> Tensor:  # [N] int64
    """Number of marching steps from t0 to t1 for each ray."""
    if cone_angle <= 0:
        return torch.ceil((t1 - t0) / step).clamp_min(0).long()
    t_switch = step / cone_angle
    n_uniform = torch.ceil((torch.minimum(t1, torch.full_like(t1, t_switch)) - t0).clamp_min(0) / step)
    t_geo = t0 + n_uniform * step
    n_geo = torch.ceil(torch.log((t1 / t_geo.clamp_min(1e-9)).clamp_min(1.0)) / math.log1p(cone_angle))
    return (n_uniform + n_geo).clamp_min(0).long()


def step_positions(
    t0: Tensor,  # [n]
    kmax: int,
    step: float,
    cone_angle: float,
    first: int = 0,
) -> tuple[Tensor, Tensor]:  # starts [n, K], sizes [n, K]
    """Step starts and sizes [n, K] of steps first .. first+K-1 from t0 (uniform, then geometric)."""
    i = torch.arange(first, first + kmax, device=t0.device, dtype=t0.dtype)[None, :]
    base = t0
    if cone_angle <= 0:
        starts = base[:, None] + i * step
        return starts, torch.full_like(starts, step)
    t_switch = step / cone_angle
    n_uniform = torch.ceil((t_switch - base).clamp_min(0) / step)[:, None]
    t_geo = (base[:, None] + n_uniform * step)
    uniform = base[:, None] + i * step
    geometric = t_geo * torch.pow(1.0 + cone_angle, (i - n_uniform).clamp_min(0))
    starts = torch.where(i < n_uniform, uniform, geometric)
    dts = torch.where(i < n_uniform, torch.full_like(starts, step), starts * cone_angle)
    return starts, dts
