"""Packed ray samples, and the transmittance pruning of a packed sample set (PyTorch).

Samples are packed as nerf/conventions.py says: flat [S] tensors sorted by ray, t ascending
within a ray. `prune_by_transmittance` is the early stop of marching applied to samples that
are already packed (the Triton marching backend's candidates): it keeps the samples whose
transmittance in front of them is >= early_stop_eps, evaluating densities block by block so
that a ray stops costing evaluations at its first opaque surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from nerf.sampling.steps import MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK


@dataclass
class PackedSamples:
    """Packed ray samples (see nerf/conventions.py)."""

    t_starts: Tensor  # [S]
    t_ends: Tensor  # [S]
    ray_indices: Tensor  # [S] int64, sorted
    n_rays: int
    payload: Tensor | None = None  # [S, D] what sigma_fn returned beside the densities, if anything

    def __len__(self) -> int:
        return self.t_starts.shape[0]

    def positions(self, origins: Tensor, directions: Tensor) -> Tensor:  # [S, 3]
        t_mid = 0.5 * (self.t_starts + self.t_ends)
        return origins[self.ray_indices] + directions[self.ray_indices] * t_mid[:, None]


def empty_samples(n_rays: int, like: Tensor) -> PackedSamples:
    """No samples for `n_rays` rays, float tensors of `like`'s dtype and device."""
    empty = like.new_zeros(0)
    return PackedSamples(empty, empty, torch.zeros(0, dtype=torch.long, device=like.device), n_rays)


def prune_by_transmittance(
    t_starts: Tensor,  # [S]
    t_ends: Tensor,  # [S]
    ray_indices: Tensor,  # [S] int64, sorted
    n_rays: int,
    sigma_fn: Callable,  # (t_starts, t_ends, ray_ids) -> sigmas [P] or (sigmas, payload [P, D])
    early_stop_eps: float,
) -> PackedSamples:
    """Keep the packed samples whose transmittance in front of them is >= early_stop_eps.

    T_i = exp(-sum_{j<i} sigma_j (t_end_j - t_start_j)) over the earlier samples of the same ray.
    Densities come from `sigma_fn`, `MARCH_BLOCK` samples per live ray at a time, so a ray stops
    costing evaluations at its first opaque surface.

    Args:
        t_starts, t_ends: [S] sample intervals, packed ray by ray, t ascending.
        ray_indices: [S] int64 sorted ray of each sample.
        n_rays: number of rays N.
        sigma_fn: densities of a subset of the samples (called without gradient); when it
            returns (sigmas, payload) the kept samples' payload rows are returned too.
        early_stop_eps: transmittance threshold.

    Returns:
        PackedSamples of the kept samples, in the input order, with payload [S', D] or None.
    """
    dev = t_starts.device
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, dim=0) - counts
    active = torch.nonzero(counts > 0).squeeze(-1)
    tau_acc = torch.zeros(n_rays, device=dev)
    kept: list[Tensor] = []
    payloads: list[Tensor] = []
    k = 0
    while len(active):
        block = max(1, min(MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK // len(active)))
        local = k + torch.arange(block, device=dev)[None, :]
        valid = local < counts[active, None]  # [A, B]
        index = (first[active, None] + local)[valid]
        starts, ends = t_starts[index], t_ends[index]
        out = sigma_fn(starts, ends, ray_indices[index])
        sig, extra = out if isinstance(out, tuple) else (out, None)
        tau = torch.zeros(valid.shape, device=dev)
        tau[valid] = sig.float() * (ends - starts)
        exclusive = tau_acc[active, None] + torch.cumsum(tau, dim=1) - tau
        survive = (torch.exp(-exclusive) >= early_stop_eps)[valid]
        kept.append(index[survive])
        if extra is not None:
            payloads.append(extra[survive])
        tau_acc[active] += tau.sum(dim=1)
        k += block
        active = active[(counts[active] > k) & (torch.exp(-tau_acc[active]) >= early_stop_eps)]
    if not kept:
        return empty_samples(n_rays, t_starts)
    index, order = torch.sort(torch.cat(kept))  # packed order is ray order, then t order
    payload = torch.cat(payloads)[order] if len(payloads) == len(kept) else None
    return PackedSamples(t_starts[index], t_ends[index], ray_indices[index], n_rays, payload)
