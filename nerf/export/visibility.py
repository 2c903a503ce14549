"""Space the training cameras saw empty, from depth maps rendered by the trained field.

A lattice point is *seen empty* when some training camera looks at it and the surface that
camera renders at that pixel lies farther along the ray, by more than a margin. A radiance
field is free to put any density behind its visible surfaces (the photos never constrain it),
so below-level pockets inside solids are not evidence of empty space; the mesh exporter fills
low-density pockets that no camera saw empty (see `nerf.export.mesh`).

Only pixels whose opacity exceeds OPAQUE count as surface; background pixels see empty space
all along their ray. Errors are not symmetric: a wrong "seen empty" leaves a pocket unfilled (an
inner wall, as without the fill), a wrong "not seen" fills free space in front of a visible
surface (a bump). So each point is judged by its own pixel, with no conservative pooling: tried
and dropped, min-pooling the free distances over 3 x 3 pixels (a pixel is ~3 lattice voxels on
lego 200 x 200) moved lego's visible surface outwards in its narrow concavities (median
depth error against the field's renders 0.021 vs 0.007 without the fill), while the demo
temple gained only in the Chamfer (0.35% vs 0.49% of the diagonal).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm import tqdm

from nerf.cameras import Cameras

OPAQUE = 0.5  # a pixel renders a surface when its opacity exceeds this
FAR = float("inf")  # the free distance of a background pixel
MAX_SIDE = 400  # depth maps are rendered at most this many pixels wide or high


def free_distances(
    depth: Tensor,  # [V, H, W] expected ray distance given a hit (the renderer's depth)
    opacity: Tensor,  # [V, H, W] accumulated opacity
) -> Tensor:  # [V, H, W]
    """Ray distance up to which each pixel saw empty space: its rendered surface distance, FAR
    where it renders background (opacity <= OPAQUE)."""
    if depth.shape != opacity.shape or depth.dim() != 3:
        raise ValueError(f"free_distances: depth {tuple(depth.shape)} and opacity "
                         f"{tuple(opacity.shape)} must both be [V, H, W]")
    return torch.where(opacity > OPAQUE, depth, torch.full_like(depth, FAR))


@torch.no_grad()
def seen_empty(
    points: Tensor,  # [P, 3] in the cameras' frame
    cameras: Cameras,  # V cameras, the ones the maps were rendered from
    free: Tensor,  # [V, H, W] from free_distances, H x W the cameras' image size
    margin: float,  # a point must lie this far in front of the surface (same units)
    chunk: int = 1 << 20,
) -> Tensor:  # [P] bool
    """Whether some camera saw each point empty: the point projects inside its image, in front
    of the camera, and nearer along the ray than the pixel's free distance minus `margin`."""
    n_views, height, width = free.shape
    if len(cameras) != n_views:
        raise ValueError(f"seen_empty: {len(cameras)} cameras for {n_views} free-distance maps")
    if int(cameras.width.max()) > width or int(cameras.height.max()) > height:
        raise ValueError(f"seen_empty: {height} x {width} maps are smaller than the cameras' images")
    out = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk]
        seen = torch.zeros(len(p), dtype=torch.bool, device=p.device)
        for v in range(n_views):
            xy, z = cameras.project(p, torch.full((len(p),), v, dtype=torch.long, device=p.device))
            col, row = xy[:, 0].floor().long(), xy[:, 1].floor().long()
            w, h = int(cameras.width[v]), int(cameras.height[v])
            inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
            limit = free[v, row.clamp(0, h - 1), col.clamp(0, w - 1)]
            distance = (p - cameras.c2w[v, :3, 3]).norm(dim=-1)
            seen |= inside & (distance < limit - margin)
        out[start : start + chunk] = seen
    return out


@torch.no_grad()
def render_free_distances(
    renderer,  # nerf.render.Renderer
    cameras: Cameras,  # the training cameras
    max_side: int = MAX_SIDE,
    chunk: int = 65536,
    progress: bool = False,
) -> tuple[Cameras, Tensor]:  # cameras of the maps, free distances [V, H, W]
    """Render every camera's depth and opacity (downscaled so no side exceeds `max_side`) and
    turn them into free distances. Returns the cameras the maps belong to and the maps; images
    of different sizes sit in the top-left corner of maps of the largest size (the rest is
    background, and seen_empty ignores it)."""
    side = int(max(int(cameras.width.max()), int(cameras.height.max())))
    cams = cameras.scaled(max_side / side) if side > max_side else cameras
    height, width = int(cams.height.max()), int(cams.width.max())
    depth = torch.zeros(len(cams), height, width, device=cams.device)
    opacity = torch.zeros_like(depth)
    for i in tqdm(range(len(cams)), desc="depth maps for the mesh", disable=not progress):
        out = renderer.render_image(cams, i, chunk=chunk)
        h, w = out["depth"].shape
        depth[i, :h, :w], opacity[i, :h, :w] = out["depth"], out["opacity"]
    return cams, free_distances(depth, opacity)
