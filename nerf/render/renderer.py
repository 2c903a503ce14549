"""Rays -> samples -> field -> composite, for both field kinds, and chunked full images.

The hash-grid field samples through the occupancy grid (nerf/sampling/occupancy.py); the
original NeRF samples stratified + importance (nerf/render/vanilla.py). Both return a
`RayResult` whose rgb is what the loss sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerf.cameras import Cameras
from nerf.config import SamplerConfig
from nerf.fields.ngp import ngp_step_size
from nerf.fields.protocol import SAMPLING_KINDS, FeatureReuseField, OccupancyField, RadianceField
from nerf.render.composite import composite
from nerf.render.vanilla import render_rays_vanilla
from nerf.sampling.march import march
from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.stratified import ray_aabb_intersect


# The inference path evaluates colour only for samples whose compositing weight exceeds this; the
# others take their ray's mean evaluated colour (docs/DESIGN.md: on fox 1e-4 -> 3e-3 renders 17%
# faster for -0.02 dB). It also stops marching a ray once its transmittance falls below this (or
# below early_stop_eps, if larger): every sample behind has a smaller weight (docs/DESIGN.md).
COLOR_WEIGHT_THRESHOLD = 3e-3


@dataclass
class RayResult:
    rgb: Tensor  # [N, 3]
    opacity: Tensor  # [N]
    depth: Tensor  # [N] expected ray distance, normalised by opacity where opacity > 0
    n_samples: int  # samples evaluated with gradient
    coarse_rgb: Tensor | None = None  # [N, 3] vanilla coarse network, for its loss


class Renderer(nn.Module):
    """Renders rays of a radiance field; owns the occupancy grid of a hash-grid field."""

    def __init__(
        self,
        field: RadianceField,
        aabb: Tensor,  # [2, 3]
        cfg: SamplerConfig,
        near: float | None = None,
        far: float | None = None,
        grid: OccupancyGrid | None = None,
    ):
        super().__init__()
        self.field = field
        self.cfg = cfg
        self.near, self.far = near, far
        self.register_buffer("aabb", aabb.detach().clone().float())
        if field.sampling not in SAMPLING_KINDS:
            raise ValueError(f"Renderer: field sampling {field.sampling!r}; expected one of {SAMPLING_KINDS}")
        self.is_vanilla = field.sampling == "hierarchical"
        self.grid = grid
        if grid is None and not self.is_vanilla:
            center = (aabb[0] + aabb[1]) / 2
            self.grid = OccupancyGrid(center + (aabb - center) * cfg.grid_scale, cfg.grid_resolution)
        self.step = ngp_step_size(cfg.march_steps)
        self.color_threshold = COLOR_WEIGHT_THRESHOLD

    @property
    def inference_early_stop_eps(self) -> float:
        """The transmittance at which the inference path stops a ray: samples behind it would
        each weigh less than the colour threshold, and all of them together at most this."""
        return max(self.cfg.early_stop_eps, self.color_threshold)

    def render_rays(
        self,
        origins: Tensor,  # [N, 3]
        directions: Tensor,  # [N, 3] unit
        background: Tensor | None = None,  # [N, 3] or [3]
        train: bool = False,
        generator: torch.Generator | None = None,
        field_forward: nn.Module | None = None,
        image_ids: Tensor | None = None,  # [N] int64 training-image index of each ray
    ) -> RayResult:
        """Colour, opacity and depth of each ray.

        `field_forward` replaces the hash-grid field for the pass that carries gradients (the
        trainer passes its DistributedDataParallel wrapper so gradients are all-reduced).
        `image_ids` select the field's appearance embeddings for training rays; without them
        (every render but training) a field with embeddings uses their mean.
        """
        if self.is_vanilla:
            return self._render_vanilla(origins, directions, background, train, generator)
        if not torch.is_grad_enabled() and isinstance(self.field, OccupancyField):
            return self._render_inference(origins, directions, background)
        field = self.field
        fused = not torch.is_grad_enabled()  # a field without the split calls: both in one pass
        # the gradient pass takes back the features the marcher's density queries computed
        reuse = not fused and isinstance(field, FeatureReuseField)

        def sigma_fn(t_starts, t_ends, ray_ids):
            t_mid = 0.5 * (t_starts + t_ends)
            positions = origins[ray_ids] + directions[ray_ids] * t_mid[:, None]
            if fused:
                sig, rgb = field(positions, directions[ray_ids])
                return sig, torch.cat([sig[:, None], rgb], dim=-1)
            if reuse:
                sig, features = field.density_and_features(positions)
                return sig if features is None else (sig, features)
            return field.query_density(positions)

        samples = self._march(origins, directions, sigma_fn, train, generator)
        if fused and samples.payload is not None:
            sigmas, rgbs = samples.payload[:, 0], samples.payload[:, 1:]
        else:
            positions = samples.positions(origins, directions)
            extra = () if image_ids is None else (image_ids[samples.ray_indices],)
            reused = {} if samples.payload is None else {"features": samples.payload}
            sigmas, rgbs = (field_forward or field)(positions, directions[samples.ray_indices], *extra, **reused)
        out = composite(
            samples.t_starts, samples.t_ends, samples.ray_indices, sigmas, rgbs,
            samples.n_rays, background, backend=self.cfg.composite_backend,
        )
        return RayResult(out.rgb, out.opacity, _normalised_depth(out.depth, out.opacity), len(samples))

    def _march(self, origins, directions, sigma_fn, train=False, generator=None, early_stop_eps=None):
        return march(
            self.grid, origins, directions, self.step, self.cfg.cone_angle, self.near, self.far,
            sigma_fn=sigma_fn, stratified=train, generator=generator, backend=self.cfg.march_backend,
            early_stop_eps=self.cfg.early_stop_eps if early_stop_eps is None else early_stop_eps,
        )

    def _render_inference(self, origins: Tensor, directions: Tensor, background: Tensor | None) -> RayResult:
        """The no-gradient path of an `OccupancyField`: densities and geometry features while
        marching (stopping at `inference_early_stop_eps`, so a pixel also moves by at most that
        much against the configured stop), weights composited from the densities, then colour only
        for samples of weight above COLOR_WEIGHT_THRESHOLD and each ray's heaviest sample, from
        each ray's direction encoded once. A skipped sample takes its ray's weighted mean evaluated
        colour and depth (the evaluated sums are scaled to the ray's whole opacity), so a pixel
        moves by at most the skipped weight and in practice far less (docs/DESIGN.md)."""
        field = self.field

        def sigma_fn(t_starts, t_ends, ray_ids):
            t_mid = 0.5 * (t_starts + t_ends)
            sig, geometry = field.density_and_geometry(origins[ray_ids] + directions[ray_ids] * t_mid[:, None])
            return sig, torch.cat([sig[:, None], geometry], dim=-1)

        samples = self._march(origins, directions, sigma_fn, early_stop_eps=self.inference_early_stop_eps)
        n = samples.n_rays
        if len(samples) == 0:
            opacity = origins.new_zeros(n)
            rgb = origins.new_zeros(n, 3) if background is None else background.expand(n, 3).to(origins.dtype)
            return RayResult(rgb.clone(), opacity, opacity.clone(), 0)
        sigmas, geometry = samples.payload[:, 0], samples.payload[:, 1:]
        weights = composite(
            samples.t_starts, samples.t_ends, samples.ray_indices, sigmas, sigmas.new_zeros(len(samples), 3),
            n, None, backend=self.cfg.composite_backend,
        ).weights
        # each ray's heaviest sample too, so no ray that holds anything loses its colour (a field
        # early in training spreads its opacity over many light samples)
        heaviest = weights.new_zeros(n).scatter_reduce_(0, samples.ray_indices, weights, "amax")
        keep = (weights > self.color_threshold) | ((weights == heaviest[samples.ray_indices]) & (weights > 0))
        index = torch.nonzero(keep).squeeze(1)
        rays = samples.ray_indices.index_select(0, index)
        w = weights.index_select(0, index)
        rgbs = field.color(geometry.index_select(0, index), field.encode_directions(directions).index_select(0, rays))
        mid = 0.5 * (samples.t_starts.index_select(0, index) + samples.t_ends.index_select(0, index))
        rgb = w.new_zeros(n, 3).index_add_(0, rays, w[:, None] * rgbs)
        opacity = w.new_zeros(n).index_add_(0, rays, w)
        depth = w.new_zeros(n).index_add_(0, rays, w * mid)
        # skipped samples take their ray's mean evaluated colour and depth: each ray's evaluated
        # sums are scaled up to its whole opacity (a ray with none evaluated stays empty)
        total = weights.new_zeros(n).index_add_(0, samples.ray_indices, weights)
        scale = torch.where(opacity > 0, total / opacity.clamp_min(1e-12), torch.zeros_like(total))
        rgb, opacity, depth = rgb * scale[:, None], opacity * scale, depth * scale
        if background is not None:
            rgb = rgb + (1.0 - opacity)[:, None] * background
        return RayResult(rgb, opacity, _normalised_depth(depth, opacity), len(samples))

    def _render_vanilla(self, origins, directions, background, train, generator) -> RayResult:
        near, far = self._near_far(origins, directions)
        out = render_rays_vanilla(
            self.field, origins, directions, near, far, self.cfg.n_coarse, self.cfg.n_fine,
            background=background, perturb=train, generator=generator,
        )
        fine = out.fine
        return RayResult(
            fine.rgb, fine.opacity, _normalised_depth(fine.depth, fine.opacity), out.n_samples,
            coarse_rgb=out.coarse.rgb,
        )

    def _near_far(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        t0, t1, hit = ray_aabb_intersect(origins, directions, self.aabb)
        t0 = t0.clamp_min(0.0 if self.near is None else self.near)
        if self.far is not None:
            t1 = t1.clamp_max(self.far)
        t1 = torch.where(hit & (t1 > t0), t1, t0 + 1e-4)
        return t0, t1

    @torch.no_grad()
    def render_image(
        self,
        cameras: Cameras,
        index: int,
        background: Tensor | None = None,  # [3]
        chunk: int = 65536,
    ) -> dict[str, Tensor]:
        """Full image of camera `index`: rgb [H, W, 3], depth [H, W], opacity [H, W].

        Rays are generated chunk by chunk and results written into preallocated maps, so the
        working memory is that of one chunk; the image itself costs 20 bytes per pixel (a 4K frame of
        the demo run renders in 1.29 GB of process memory, of which 0.54 GB is the run itself)."""
        h, w = int(cameras.height[index]), int(cameras.width[index])
        dev = cameras.device
        rgb = torch.empty(h * w, 3, device=dev)
        depth = torch.empty(h * w, device=dev)
        opacity = torch.empty(h * w, device=dev)
        for start in range(0, h * w, chunk):
            pixels = torch.arange(start, min(start + chunk, h * w), device=dev)
            camera_ids = torch.full_like(pixels, index)
            o, d = cameras.pixel_rays(camera_ids, pixels % w, pixels // w)
            res = self.render_rays(o, d, background)
            rgb[start:start + len(pixels)] = res.rgb
            depth[start:start + len(pixels)] = res.depth
            opacity[start:start + len(pixels)] = res.opacity
        return {
            "rgb": rgb.reshape(h, w, 3).clamp_(0, 1),
            "depth": depth.reshape(h, w),
            "opacity": opacity.reshape(h, w),
        }


def _normalised_depth(depth: Tensor, opacity: Tensor) -> Tensor:
    """Expected ray distance given a hit: sum(w t) / sum(w), 0 where nothing was hit."""
    return torch.where(opacity > 1e-6, depth / opacity.clamp_min(1e-6), torch.zeros_like(depth))
