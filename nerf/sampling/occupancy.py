"""Occupancy grid with cascades, and ray marching through it (pure-PyTorch reference).

The grid follows instant-ngp / nerfacc. Cascade k covers the cube of half-size
`base_half * 2^k` around the box centre; every cascade has `resolution^3` cells. Each cell keeps a
running optical thickness `occ = max(ema * occ, sigma(x) * step)` at jittered points, and is
occupied when `occ > min(threshold, mean occ)`. Cells that no training camera sees are marked
invisible (occ = -1) and stay empty.

Marching: t starts where the ray enters the box of occupied cells. The step is `step` while
`t * cone_angle < step`, then grows geometrically (dt = t * cone_angle). Samples are intervals
[t, t + dt] whose midpoint lies in an occupied cell. When `sigma_fn` is given, densities are
evaluated without gradient and samples after transmittance falls below `early_stop_eps` are
dropped (nerfacc's pruning), so training back-propagates only through samples that matter.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from nerf.cameras import Cameras
from nerf.sampling.stratified import ray_aabb_intersect

MAX_CANDIDATES_PER_CHUNK = 1 << 22  # (ray, step) pairs tested at once while marching
MARCH_BLOCK = 32  # steps all active rays advance together between early-stop checks
MARCH_BACKENDS = ("torch", "triton", "auto")  # see `march_backend`


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


class OccupancyGrid(nn.Module):
    """Multi-cascade occupancy grid over an axis-aligned box."""

    def __init__(self, aabb: Tensor, resolution: int = 128, cascades: int | None = None):  # aabb [2, 3]
        super().__init__()
        aabb = aabb.detach().float()
        self.resolution = resolution
        half = float((aabb[1] - aabb[0]).max()) / 2.0
        self.cascades = cascades or max(1, 1 + math.ceil(math.log2(max(half, 1.0)) - 1e-9))
        self.base_half = half / 2 ** (self.cascades - 1)
        self.register_buffer("aabb", aabb.clone())
        self.register_buffer("center", (aabb[0] + aabb[1]) / 2)
        n = resolution**3
        self.register_buffer("occs", torch.zeros(self.cascades, n))
        self.register_buffer("binaries", torch.ones(self.cascades, n, dtype=torch.bool))
        self.register_buffer("occupied_box", aabb.clone())  # [2, 3] bounds of occupied cells

    # --- cell geometry -----------------------------------------------------------------------

    def _cell_centers(self, level: int, cell_ids: Tensor, jitter: Tensor | None = None) -> Tensor:
        r = self.resolution
        ijk = torch.stack([cell_ids // (r * r), (cell_ids // r) % r, cell_ids % r], dim=-1).float()
        offset = 0.5 if jitter is None else jitter
        u = (ijk + offset) / r * 2.0 - 1.0  # [-1, 1]
        return self.center + u * (self.base_half * 2**level)

    def cell_of(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Finest cascade containing each point, its flat cell id and whether it is in the grid."""
        rel = points - self.center
        max_abs = rel.abs().max(dim=-1).values
        level = torch.ceil(torch.log2((max_abs / self.base_half).clamp_min(1e-12))).clamp(0, self.cascades - 1)
        scale = self.base_half * torch.pow(2.0, level)
        inside = max_abs <= scale
        u = (rel / scale[:, None] + 1.0) * 0.5 * self.resolution
        ijk = u.long().clamp(0, self.resolution - 1)
        r = self.resolution
        cell = ijk[:, 0] * r * r + ijk[:, 1] * r + ijk[:, 2]
        return level.long(), cell, inside

    def is_occupied(self, points: Tensor) -> Tensor:  # [P, 3] -> [P] bool
        level, cell, inside = self.cell_of(points)
        return self.binaries[level, cell] & inside

    # --- updates -----------------------------------------------------------------------------

    @torch.no_grad()
    def mark_invisible_cells(self, cameras: Cameras, chunk: int = 1 << 16) -> None:
        """Cells whose centre projects into no camera get occ = -1 (never occupied)."""
        cams = cameras.to(self.occs.device)
        for level in range(self.cascades):
            ids = torch.arange(self.resolution**3, device=self.occs.device)
            for part in ids.split(chunk):
                pts = self._cell_centers(level, part)
                seen = torch.zeros(len(part), dtype=torch.bool, device=pts.device)
                for c in range(len(cams)):
                    ci = torch.full((len(part),), c, dtype=torch.long, device=pts.device)
                    xy, z = cams.project(pts, ci)
                    in_frame = (xy[:, 0] >= 0) & (xy[:, 1] >= 0)
                    in_frame &= (xy[:, 0] < cams.width[c]) & (xy[:, 1] < cams.height[c])
                    seen |= (z > 0) & in_frame
                self.occs[level, part[~seen]] = -1.0
        self._refresh_binaries(threshold=0.01)

    @torch.no_grad()
    def update(
        self,
        occ_eval_fn: Callable[[Tensor], Tensor],  # positions [P, 3] -> optical thickness [P]
        warmup: bool,
        ema: float = 0.95,
        threshold: float = 0.01,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 18,
        reduce_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """One EMA update: all cells while warming up, else a quarter uniformly + a quarter occupied.

        `reduce_fn` combines the updated running densities across processes (the trainer passes
        an all-reduce max) before occupancy is decided, so every rank skips the same space.
        """
        n = self.resolution**3
        dev = self.occs.device
        for level in range(self.cascades):
            if warmup:
                ids = torch.arange(n, device=dev)
            else:
                uniform = torch.randint(0, n, (n // 4,), device=dev, generator=generator)
                occupied = torch.nonzero(self.binaries[level]).squeeze(-1)
                if len(occupied) > n // 4:
                    pick = torch.randint(0, len(occupied), (n // 4,), device=dev, generator=generator)
                    occupied = occupied[pick]
                ids = torch.cat([uniform, occupied])
            ids = ids[self.occs[level, ids] >= 0]  # invisible cells are never updated
            jitter = torch.rand(len(ids), 3, device=dev, generator=generator)
            occ = torch.cat([
                occ_eval_fn(self._cell_centers(level, i, j)).float()
                for i, j in zip(ids.split(chunk), jitter.split(chunk))
            ]) if len(ids) else torch.zeros(0, device=dev)
            current = self.occs[level]
            current[ids] = torch.maximum(current[ids] * ema, occ)
        if reduce_fn is not None:
            reduce_fn(self.occs)
        self._refresh_binaries(threshold)

    def _refresh_binaries(self, threshold: float) -> None:
        valid = self.occs >= 0
        mean = self.occs[valid].mean() if bool(valid.any()) else torch.zeros((), device=self.occs.device)
        thre = torch.clamp(mean, max=threshold)
        self.binaries = self.occs > thre
        self._refresh_occupied_box()

    def _refresh_occupied_box(self) -> None:
        lo, hi = [], []
        for level in range(self.cascades):
            ids = torch.nonzero(self.binaries[level]).squeeze(-1)
            if len(ids):
                size = self.base_half * 2**level / self.resolution  # half a cell
                pts = self._cell_centers(level, ids)
                lo.append(pts.min(dim=0).values - size)
                hi.append(pts.max(dim=0).values + size)
        if lo:
            box = torch.stack([torch.stack(lo).min(dim=0).values, torch.stack(hi).max(dim=0).values])
            self.occupied_box = torch.maximum(torch.minimum(box, self.aabb[1]), self.aabb[0])
        else:
            self.occupied_box = self.aabb.clone()

    # --- marching ----------------------------------------------------------------------------

    @torch.no_grad()
    def march(
        self,
        origins: Tensor,  # [N, 3]
        directions: Tensor,  # [N, 3] unit
        step: float,
        cone_angle: float = 0.0,
        near: float | None = None,
        far: float | None = None,
        sigma_fn: Callable | None = None,  # (t_starts, t_ends, ray_ids) -> sigmas [P] or (sigmas, payload [P, D])
        early_stop_eps: float = 1e-4,
        stratified: bool = False,
        generator: torch.Generator | None = None,
        backend: str = "torch",
    ) -> PackedSamples:
        """Packed samples along each ray inside occupied cells.

        Rays advance together `MARCH_BLOCK` steps at a time; with `sigma_fn`, a ray retires as
        soon as its transmittance falls below `early_stop_eps`, so densities are evaluated only
        up to the first opaque surface (instant-ngp's compaction loop). When `sigma_fn` also
        returns a payload (e.g. colours at inference), the kept samples' rows come back in
        `PackedSamples.payload`, so nothing is evaluated twice.

        `backend` "triton" finds the occupied candidates with the kernels of
        `nerf.sampling.march_triton` (same samples; the early stop then runs on them); "auto"
        picks it for CUDA tensors when triton imports; "torch" (default) is this method's loop.
        """
        n, dev = origins.shape[0], origins.device
        t0, t1, hit = ray_aabb_intersect(origins, directions, self.occupied_box)
        t0 = t0.clamp_min(0.0 if near is None else near)
        if far is not None:
            t1 = t1.clamp_max(far)
        hit = hit & (t1 > t0)
        t0 = torch.where(hit, t0, torch.zeros_like(t0))
        t1 = torch.where(hit, t1, torch.zeros_like(t1))
        if stratified:
            t0 = t0 + torch.rand(n, device=dev, generator=generator) * step
        if march_backend(backend, dev) == "triton":
            from nerf.sampling.march_triton import march_packed  # imports triton, an optional dependency

            return march_packed(self, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps)
        counts = _step_counts(t0, t1, step, cone_angle)
        active = torch.nonzero(counts > 0).squeeze(-1)
        tau_acc = torch.zeros(n, device=dev)
        parts: list[tuple[Tensor, ...]] = []
        k = 0
        while len(active):
            block = max(1, min(MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK // len(active)))
            starts, dts = _step_positions(t0[active], block, step, cone_angle, first=k)  # [n, B]
            ends = torch.minimum(starts + dts, t1[active, None])
            keep = starts < t1[active, None]
            mid = 0.5 * (starts + ends)
            pts = origins[active, None, :] + directions[active, None, :] * mid[..., None]
            keep[keep.clone()] = self.is_occupied(pts[keep])
            payload = None
            if sigma_fn is not None and bool(keep.any()):
                ray_ids = active[:, None].expand_as(keep)[keep]
                out = sigma_fn(starts[keep], ends[keep], ray_ids)
                sig, extra = out if isinstance(out, tuple) else (out, None)
                tau = torch.zeros_like(starts)
                tau[keep] = sig.float() * (ends - starts)[keep]
                excl = tau_acc[active, None] + torch.cumsum(tau, dim=1) - tau
                survive = torch.exp(-excl) >= early_stop_eps
                if extra is not None:
                    payload = extra[survive[keep]]
                keep &= survive
                tau_acc[active] += tau.sum(dim=1)
            parts.append((starts[keep], ends[keep], active[:, None].expand_as(keep)[keep], payload))
            k += block
            alive = counts[active] > k
            if sigma_fn is not None:
                alive &= torch.exp(-tau_acc[active]) >= early_stop_eps
            active = active[alive]
        if not parts:
            empty = origins.new_zeros(0)
            return PackedSamples(empty, empty, torch.zeros(0, dtype=torch.long, device=dev), n)
        t_starts, t_ends, ray_ids = (torch.cat([p[i] for p in parts]) for i in range(3))
        order = torch.argsort(ray_ids, stable=True)  # blocks arrive in t order within each ray
        payloads = [p[3] for p in parts if p[3] is not None]
        payload = None
        if payloads:  # blocks that kept nothing returned no payload: they contribute no rows
            payload = torch.cat(payloads)[order]
            assert len(payload) == len(order), "payload rows must match the kept samples"
        return PackedSamples(t_starts[order], t_ends[order], ray_ids[order], n, payload)


def march_backend(backend: str, device: torch.device) -> str:
    """The marching backend for tensors on `device`: "auto" resolved, an unusable one refused.

    Args:
        backend: "torch", "triton" (CUDA, or the CPU under TRITON_INTERPRET=1) or "auto" (triton
            for CUDA tensors when it imports, else torch).
        device: where the rays live.

    Returns:
        "torch" or "triton".
    """
    if backend not in MARCH_BACKENDS:
        raise ValueError(f"OccupancyGrid.march: unknown backend {backend!r}; choose one of {list(MARCH_BACKENDS)}")
    interpreted = device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
    usable = (device.type == "cuda" or interpreted) and importlib.util.find_spec("triton") is not None
    if backend == "auto":
        return "triton" if usable and device.type == "cuda" else "torch"
    if backend == "triton" and not usable:
        raise ValueError(
            f"OccupancyGrid.march: backend 'triton' cannot run on {device} here (needs the triton package "
            "and a CUDA device, or TRITON_INTERPRET=1 for CPU tensors)"
        )
    return backend


def _step_counts(t0: Tensor, t1: Tensor, step: float, cone_angle: float) -> Tensor:  # [N] int64
    """Number of marching steps from t0 to t1 for each ray."""
    if cone_angle <= 0:
        return torch.ceil((t1 - t0) / step).clamp_min(0).long()
    t_switch = step / cone_angle
    n_uniform = torch.ceil((torch.minimum(t1, torch.full_like(t1, t_switch)) - t0).clamp_min(0) / step)
    t_geo = t0 + n_uniform * step
    n_geo = torch.ceil(torch.log((t1 / t_geo.clamp_min(1e-9)).clamp_min(1.0)) / math.log1p(cone_angle))
    return (n_uniform + n_geo).clamp_min(0).long()


def _step_positions(t0: Tensor, kmax: int, step: float, cone_angle: float, first: int = 0):
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
