"""The original NeRF's two-pass rendering of rays: stratified coarse pass, importance fine pass.

For each ray with bounds [near, far]:
  1. coarse: K stratified positions (nerf/sampling/stratified.py); sample k owns the interval
     between the midpoints to its neighbours, the first opening at near and the last closing
     at far, so the intervals tile [near, far]. The coarse field is evaluated at the positions
     and composited (nerf/render/composite.py) into `coarse`.
  2. fine: the coarse weights, read as a piecewise-constant pdf over the coarse intervals, give
     M more positions by inverse-CDF sampling (nerf/sampling/pdf.py, no gradient); the union of
     the K + M positions, sorted, gets midpoint intervals in the same way, and the fine field
     evaluated there is composited into `fine`.
Both outputs are returned because NeRF's loss supervises both passes. Positions and t are in
world units along unit directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerf.render.composite import RenderOutput, composite
from nerf.sampling.pdf import merge_samples, sample_pdf
from nerf.sampling.stratified import sample_edges, stratified_samples, to_packed


@dataclass
class VanillaOutput:
    coarse: RenderOutput  # rgb [N, 3], opacity [N], depth [N], weights [N * K]
    fine: RenderOutput  # rgb [N, 3], opacity [N], depth [N], weights [N * (K + M)]
    n_samples: int  # field evaluations of both passes: N * (2K + M)


@dataclass
class VanillaImage:
    rgb: Tensor  # [H, W, 3] fine pass
    opacity: Tensor  # [H, W]
    depth: Tensor  # [H, W] expected distance, not normalised by opacity (see composite)


def _render_pass(
    field: nn.Module,
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3]
    t: Tensor,  # [N, K] sorted
    t_edges: Tensor,  # [N, K + 1] the intervals owned by t
    background: Tensor | None,  # [N, 3] or [3]
) -> RenderOutput:
    """Evaluate `field` at the positions t of each ray and composite over their intervals."""
    t_starts, t_ends, ray_indices = to_packed(t_edges)
    dirs = directions[ray_indices]
    positions = origins[ray_indices] + dirs * t.reshape(-1, 1)
    sigmas, rgbs = field(positions, dirs)
    return composite(t_starts, t_ends, ray_indices, sigmas, rgbs, origins.shape[0], background)


def render_rays_vanilla(
    model: nn.Module,
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3] unit
    near: Tensor | float,  # [N] or scalar
    far: Tensor | float,  # [N] or scalar
    n_coarse: int = 64,
    n_fine: int = 128,
    background: Tensor | None = None,  # [N, 3] or [3]
    perturb: bool = True,
    generator: torch.Generator | None = None,
    lindisp: bool = False,
) -> VanillaOutput:
    """Render rays with NeRF's coarse + fine hierarchical sampling (see module docstring).

    Args:
        model: a `VanillaNeRF` (anything with `coarse` and `fine` fields).
        origins: [N, 3] ray origins.
        directions: [N, 3] unit ray directions.
        near: [N] or scalar start distance of each ray.
        far: [N] or scalar end distance of each ray (>= near).
        n_coarse: K, stratified samples per ray.
        n_fine: M, importance samples per ray (0 re-renders the coarse positions with `fine`).
        background: [N, 3] or [3] colour behind the rays; None means black.
        perturb: jitter the stratified positions and the importance quantiles (training);
            False gives deterministic samples (evaluation).
        generator: random generator on origins' device, for reproducible samples.
        lindisp: coarse positions linear in disparity (LLFF forward-facing scenes; near > 0).

    Returns:
        VanillaOutput(coarse, fine, n_samples): two RenderOutputs and the number of field
        evaluations N * (2K + M).
    """
    if origins.dim() != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(
            f"render_rays_vanilla: origins and directions must both be [N, 3], "
            f"got {tuple(origins.shape)} and {tuple(directions.shape)}"
        )
    n_rays = origins.shape[0]
    near = _per_ray(near, n_rays, origins, "near")
    far = _per_ray(far, n_rays, origins, "far")

    t_coarse = stratified_samples(near, far, n_coarse, perturb, generator, lindisp)
    coarse_edges = sample_edges(t_coarse, near, far)
    coarse = _render_pass(model.coarse, origins, directions, t_coarse, coarse_edges, background)

    weights = coarse.weights.reshape(n_rays, n_coarse)
    t_fine = sample_pdf(coarse_edges, weights, n_fine, deterministic=not perturb, generator=generator)
    t_all = merge_samples(t_coarse, t_fine)
    fine = _render_pass(model.fine, origins, directions, t_all, sample_edges(t_all, near, far), background)
    return VanillaOutput(coarse=coarse, fine=fine, n_samples=n_rays * (2 * n_coarse + n_fine))


@torch.no_grad()
def render_image_vanilla(
    model: nn.Module,
    origins: Tensor,  # [H, W, 3]
    directions: Tensor,  # [H, W, 3] unit
    near: Tensor | float,  # [H, W] or scalar
    far: Tensor | float,  # [H, W] or scalar
    chunk: int = 4096,
    n_coarse: int = 64,
    n_fine: int = 128,
    background: Tensor | None = None,  # [H, W, 3] or [3]
    perturb: bool = False,
    generator: torch.Generator | None = None,
    lindisp: bool = False,
) -> VanillaImage:
    """Render a full image in chunks of rays, without gradient, keeping the fine pass.

    The model's train/eval mode is left as it is; call `model.eval()` first so that no density
    noise is added.

    Args:
        model: a `VanillaNeRF`.
        origins: [H, W, 3] ray origins.
        directions: [H, W, 3] unit ray directions.
        near: [H, W] or scalar start distances.
        far: [H, W] or scalar end distances.
        chunk: rays rendered at once (bounds peak memory).
        n_coarse, n_fine, perturb, generator, lindisp: as in `render_rays_vanilla`.
        background: [H, W, 3] or [3] colour behind the rays; None means black.

    Returns:
        VanillaImage(rgb [H, W, 3], opacity [H, W], depth [H, W]).
    """
    if origins.dim() != 3 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(
            f"render_image_vanilla: origins and directions must both be [H, W, 3], "
            f"got {tuple(origins.shape)} and {tuple(directions.shape)}"
        )
    if chunk < 1:
        raise ValueError(f"render_image_vanilla: chunk must be >= 1, got {chunk}")
    h, w = origins.shape[:2]
    o, d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    near = _per_ray(_flat_bound(near, (h, w), "near"), h * w, o, "near")
    far = _per_ray(_flat_bound(far, (h, w), "far"), h * w, o, "far")
    bg_per_ray = background is not None and background.dim() == 3
    bg = background.reshape(-1, 3) if bg_per_ray else background
    rgb, opacity, depth = [], [], []
    for start in range(0, h * w, chunk):
        sl = slice(start, start + chunk)
        out = render_rays_vanilla(
            model, o[sl], d[sl], near[sl], far[sl], n_coarse, n_fine,
            background=bg[sl] if bg_per_ray else bg, perturb=perturb, generator=generator, lindisp=lindisp,
        ).fine
        rgb.append(out.rgb)
        opacity.append(out.opacity)
        depth.append(out.depth)
    return VanillaImage(
        rgb=torch.cat(rgb).reshape(h, w, 3),
        opacity=torch.cat(opacity).reshape(h, w),
        depth=torch.cat(depth).reshape(h, w),
    )


def _per_ray(value: Tensor | float, n_rays: int, like: Tensor, name: str) -> Tensor:  # [N]
    """Broadcast a scalar or [N] bound to one value per ray, with `like`'s dtype and device."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.dim() == 0:
        return value.expand(n_rays)
    if value.shape != (n_rays,):
        raise ValueError(f"render_rays_vanilla: {name} must be a scalar or [{n_rays}], got {tuple(value.shape)}")
    return value


def _flat_bound(value: Tensor | float, size: tuple[int, int], name: str) -> Tensor:  # [] or [H * W]
    """A scalar bound as it is, an [H, W] bound flattened to one value per ray."""
    value = torch.as_tensor(value)
    if value.dim() == 0:
        return value
    if value.shape != size:
        raise ValueError(f"render_image_vanilla: {name} must be a scalar or {list(size)}, got {tuple(value.shape)}")
    return value.reshape(-1)
