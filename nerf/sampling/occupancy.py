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

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from nerf.cameras import Cameras
from nerf.sampling.stratified import ray_aabb_intersect

MAX_CANDIDATES_PER_CHUNK = 1 << 23  # padded (ray, step) pairs tested at once while marching


@dataclass
class PackedSamples:
    """Packed ray samples (see nerf/conventions.py)."""

    t_starts: Tensor  # [S]
    t_ends: Tensor  # [S]
    ray_indices: Tensor  # [S] int64, sorted
    n_rays: int

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
    ) -> None:
        """One EMA update: all cells while warming up, else a quarter uniformly + a quarter occupied."""
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
        sigma_fn: Callable[[Tensor, Tensor], Tensor] | None = None,  # (t_starts, t_ends, ray_ids) -> sigmas
        early_stop_eps: float = 1e-4,
        stratified: bool = False,
        generator: torch.Generator | None = None,
    ) -> PackedSamples:
        """Packed samples along each ray inside occupied cells."""
        n = origins.shape[0]
        t0, t1, hit = ray_aabb_intersect(origins, directions, self.occupied_box)
        t0 = t0.clamp_min(0.0 if near is None else near)
        if far is not None:
            t1 = t1.clamp_max(far)
        hit = hit & (t1 > t0)
        t0 = torch.where(hit, t0, torch.zeros_like(t0))
        t1 = torch.where(hit, t1, torch.zeros_like(t1))
        offset = torch.rand(n, device=origins.device, generator=generator) * step if stratified else None
        counts = _step_counts(t0, t1, step, cone_angle)
        parts: list[tuple[Tensor, Tensor, Tensor]] = []
        order = torch.arange(n, device=origins.device)
        start = 0
        while start < n:
            end = start + 1
            kmax = int(counts[start])
            # grow the chunk while the padded candidate array stays bounded
            while end < n and max(kmax, int(counts[end])) * (end + 1 - start) <= MAX_CANDIDATES_PER_CHUNK:
                kmax = max(kmax, int(counts[end]))
                end += 1
            rays = order[start:end]
            parts.append(self._march_chunk(
                rays, origins, directions, t0, t1, kmax, step, cone_angle,
                None if offset is None else offset[rays], sigma_fn, early_stop_eps,
            ))
            start = end
        t_starts = torch.cat([p[0] for p in parts]) if parts else origins.new_zeros(0)
        t_ends = torch.cat([p[1] for p in parts]) if parts else origins.new_zeros(0)
        ray_ids = torch.cat([p[2] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
        return PackedSamples(t_starts, t_ends, ray_ids.to(origins.device), n)

    def _march_chunk(self, rays, origins, directions, t0, t1, kmax, step, cone_angle, offset, sigma_fn, eps):
        dev = origins.device
        if kmax == 0:
            empty = origins.new_zeros(0)
            return empty, empty, torch.zeros(0, dtype=torch.long, device=dev)
        starts, dts = _step_positions(t0[rays], kmax, step, cone_angle, offset)  # [n, K]
        ends = starts + dts
        valid = starts < t1[rays, None]
        ends = torch.minimum(ends, t1[rays, None])
        mid = 0.5 * (starts + ends)
        pts = origins[rays, None, :] + directions[rays, None, :] * mid[..., None]
        occupied = valid.clone()
        occupied[valid] = self.is_occupied(pts[valid])
        if sigma_fn is not None and bool(occupied.any()):
            ray_ids = rays[:, None].expand_as(occupied)[occupied]
            sig = torch.zeros_like(starts)
            sig[occupied] = sigma_fn(starts[occupied], ends[occupied], ray_ids).float()
            tau = sig * (ends - starts)
            trans = torch.exp(-(torch.cumsum(tau, dim=1) - tau))  # exclusive
            occupied &= trans >= eps
        ray_ids = rays[:, None].expand_as(occupied)[occupied]
        return starts[occupied], ends[occupied], ray_ids


def _step_counts(t0: Tensor, t1: Tensor, step: float, cone_angle: float) -> Tensor:  # [N] int64
    """Number of marching steps from t0 to t1 for each ray."""
    if cone_angle <= 0:
        return torch.ceil((t1 - t0) / step).clamp_min(0).long()
    t_switch = step / cone_angle
    n_uniform = torch.ceil((torch.minimum(t1, torch.full_like(t1, t_switch)) - t0).clamp_min(0) / step)
    t_geo = t0 + n_uniform * step
    n_geo = torch.ceil(torch.log((t1 / t_geo.clamp_min(1e-9)).clamp_min(1.0)) / math.log1p(cone_angle))
    return (n_uniform + n_geo).clamp_min(0).long()


def _step_positions(t0: Tensor, kmax: int, step: float, cone_angle: float, offset: Tensor | None):
    """Padded step starts and sizes [n, K] from t0 (uniform, then geometric with the cone angle)."""
    i = torch.arange(kmax, device=t0.device, dtype=t0.dtype)[None, :]
    base = t0 if offset is None else t0 + offset
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
