"""Occupancy grid with cascades: which cells of space hold anything, for ray marching.

The grid follows instant-ngp / nerfacc. Cascade k covers the cube of half-size
`base_half * 2^k` around the box centre; every cascade has `resolution^3` cells. Each cell keeps a
running optical thickness `occ = max(ema * occ, sigma(x) * step)` at jittered points, and is
occupied when `occ > min(threshold, mean occ)`. Cells that no training camera sees are marked
invisible (occ = -1) and stay empty.

Marching through the grid is `nerf.sampling.march.march` (the step rule is
`nerf.sampling.steps`); the grid gives it the box of occupied cells (`occupied_box`), the
occupancy test (`is_occupied`, the finest cascade containing a point) and, for the Triton
kernels, the occupancy bits packed 8 cells per byte (`bitfield`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from nerf.cameras import Cameras


def pack_bitfield(binaries: Tensor) -> Tensor:  # [L, R^3] bool -> [L, ceil(R^3 / 8)] uint8
    """Pack occupancy bits 8 cells per byte, little-endian within a byte.

    Args:
        binaries: [L, R^3] bool occupancy of each cascade's cells (flat cell ids as `cell_of`).

    Returns:
        [L, ceil(R^3 / 8)] uint8: bit (c % 8) of byte c // 8 is cell c (numpy's
        `packbits(..., bitorder="little")`); an odd R pads the last byte with zeros.
    """
    if binaries.dim() != 2:
        raise ValueError(f"pack_bitfield: binaries must be [L, R^3], got shape {tuple(binaries.shape)}")
    levels, cells = binaries.shape
    bits = torch.nn.functional.pad(binaries.to(torch.uint8), (0, (-cells) % 8)).view(levels, -1, 8)
    weights = torch.tensor([1 << k for k in range(8)], dtype=torch.uint8, device=binaries.device)
    return (bits * weights).sum(dim=-1, dtype=torch.uint8)


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

    def bitfield(self) -> Tensor:  # [L, ceil(R^3 / 8)] uint8
        """The occupancy bits packed 8 cells per byte (`pack_bitfield`), as the Triton kernels read them."""
        return pack_bitfield(self.binaries)

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
            # A cell drawn twice gets the larger of its samples (an index_put with repeated indices
            # keeps an arbitrary one, which differed between two identical multi-threaded runs).
            current = self.occs[level]
            current.scatter_reduce_(0, ids, torch.maximum(current[ids] * ema, occ), reduce="amax", include_self=False)
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
