"""The renderer's inference path (no gradient, an OccupancyField) against the one-pass path.

The inference path evaluates colour only for samples of weight above COLOR_WEIGHT_THRESHOLD and
gives the others their ray's mean evaluated colour; the one-pass path evaluates every kept sample.
So with the same early stop the two keep the same samples, have the same opacity per ray and
differ in colour by at most the weight of the skipped samples (colours are in [0, 1]). The
inference path stops rays at the larger transmittance `inference_early_stop_eps`: against the
one-pass path at the configured stop a pixel moves by at most that much more.
"""

import dataclasses

import pytest
import torch

from nerf.config import SamplerConfig
from nerf.fields import build_field
from nerf.fields.protocol import OccupancyField
from nerf.jobs.run import load_trained_run
from nerf.render.composite import composite
from nerf.render.renderer import Renderer


class OnePass(torch.nn.Module):
    """The field behind only the RadianceField calls: the renderer takes its one-pass path."""

    sampling = "occupancy"

    def __init__(self, field):
        super().__init__()
        self.inner = field

    def forward(self, positions, directions):
        return self.inner(positions, directions)

    def query_density(self, positions):
        return self.inner.query_density(positions)

    def parameter_groups(self, weight_decay):
        return self.inner.parameter_groups(weight_decay)

    def kernel_backends(self, device):
        return self.inner.kernel_backends(device)


def test_split_calls_compose_to_the_field():
    """density_and_geometry + encode_directions + color give exactly field(positions, directions)."""
    from nerf.config import ModelConfig

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = build_field(ModelConfig(hash_levels=4, hash_log2_size=12), aabb)
    assert isinstance(field, OccupancyField)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, generator=g) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=-1)
    sigmas, rgbs = field(x, d)
    sig2, geometry = field.density_and_geometry(x)
    assert torch.equal(sig2, sigmas)
    assert torch.equal(field.color(geometry, field.encode_directions(d)), rgbs)


def _rays(run, n_views=2):
    cams = run.scene.cameras
    out = [cams.image_rays(i) for i in range(n_views)]
    return torch.cat([o.reshape(-1, 3) for o, _ in out]), torch.cat([d.reshape(-1, 3) for _, d in out])


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_inference_path_matches_one_pass_within_the_skipped_weight(tiny_run, backend):
    run = load_trained_run(tiny_run)
    cfg = dataclasses.replace(run.renderer.cfg, march_backend=backend, composite_backend=backend)
    field = run.renderer.field
    assert isinstance(field, OccupancyField)
    split = Renderer(field, run.renderer.aabb, cfg, run.renderer.near, run.renderer.far, grid=run.renderer.grid)
    stop = split.inference_early_stop_eps
    assert stop > cfg.early_stop_eps  # the run's configured stop (1e-4) is the smaller one

    def one_pass_renderer(early_stop_eps):
        return Renderer(OnePass(field), run.renderer.aabb, dataclasses.replace(cfg, early_stop_eps=early_stop_eps),
                        run.renderer.near, run.renderer.far, grid=run.renderer.grid)

    origins, directions = _rays(run)
    background = torch.tensor([1.0, 1.0, 1.0])
    colour_calls = []
    real_color = field.color

    def counting_color(geometry, direction_features, *rest):
        colour_calls.append(len(geometry))
        return real_color(geometry, direction_features, *rest)

    field.color = counting_color
    try:
        with torch.no_grad():
            a = split.render_rays(origins, directions, background)
            split_calls = sum(colour_calls)
            b = one_pass_renderer(stop).render_rays(origins, directions, background)
            full = one_pass_renderer(cfg.early_stop_eps).render_rays(origins, directions, background)
    finally:
        del field.color
    assert a.n_samples == b.n_samples > 0  # the same kept samples
    assert split_calls < a.n_samples  # colour skipped for some of them
    # each ray's skipped weight (samples of weight <= the threshold) bounds the difference
    skipped = _skipped_weight(split, origins, directions)
    assert float(skipped.max()) < 0.2
    assert torch.all((a.rgb - b.rgb).abs().amax(dim=-1) <= skipped + 1e-5)
    assert torch.allclose(a.opacity, b.opacity, atol=1e-5)  # skipped samples keep their weight
    assert float(b.opacity.max()) > 0.5  # the run sees something
    # the earlier stop (this barely trained run has few opaque rays: test_inference_stop_... below)
    assert full.n_samples >= a.n_samples
    assert torch.all((a.opacity - full.opacity).abs() <= stop + 1e-5)
    assert torch.all((a.rgb - full.rgb).abs().amax(dim=-1) <= skipped + stop + 1e-5)


def _skipped_weight(renderer: Renderer, origins, directions):  # -> [N]
    """Per ray, the compositing weight of the samples the inference path gives no colour call."""
    field = renderer.field
    with torch.no_grad():
        def sigma_fn(t0, t1, ids):
            return field.query_density(origins[ids] + directions[ids] * (0.5 * (t0 + t1))[:, None])

        s = renderer._march(origins, directions, sigma_fn, early_stop_eps=renderer.inference_early_stop_eps)
        sigmas = sigma_fn(s.t_starts, s.t_ends, s.ray_indices)
        w = composite(s.t_starts, s.t_ends, s.ray_indices, sigmas, sigmas.new_zeros(len(s), 3), s.n_rays).weights
    heaviest = w.new_zeros(s.n_rays).scatter_reduce_(0, s.ray_indices, w, "amax")[s.ray_indices]
    low = torch.where((w <= renderer.color_threshold) & (w < heaviest), w, torch.zeros_like(w))
    return w.new_zeros(s.n_rays).index_add_(0, s.ray_indices, low)


class Slab(torch.nn.Module):
    """An OccupancyField of density `sigma` in the slab |z| < 0.5, colour from position and direction."""

    sampling = "occupancy"

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def density_and_geometry(self, positions):
        inside = (positions[:, 2].abs() < 0.5).float()
        return self.sigma * inside, torch.cat([inside[:, None], positions], dim=-1)

    def encode_directions(self, directions):
        return directions

    def color(self, geometry, direction_features):
        return torch.sigmoid(geometry[:, 1:] + direction_features)

    def forward(self, positions, directions):
        sigmas, geometry = self.density_and_geometry(positions)
        return sigmas, self.color(geometry, directions)

    def query_density(self, positions):
        return self.density_and_geometry(positions)[0]

    def parameter_groups(self, weight_decay):
        return []

    def kernel_backends(self, device):
        return []


def test_inference_stop_drops_only_what_lies_behind_the_colour_threshold():
    """Rays through an opaque slab: the inference path stops at the colour threshold, earlier than
    the configured 1e-4, and the pixels move by at most that plus the weight of the samples whose
    colour it skips."""
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    cfg = SamplerConfig(grid_resolution=16, march_steps=256, early_stop_eps=1e-4)
    field = Slab(sigma=8.0)
    assert isinstance(field, OccupancyField)
    fast = Renderer(field, aabb, cfg)
    slow = Renderer(OnePass(field), aabb, cfg, grid=fast.grid)
    g = torch.Generator().manual_seed(0)
    origins = torch.cat([torch.rand(64, 2, generator=g) - 0.5, torch.full((64, 1), 2.0)], dim=-1)
    directions = torch.nn.functional.normalize(
        torch.cat([0.3 * (torch.rand(64, 2, generator=g) - 0.5), -torch.ones(64, 1)], dim=-1), dim=-1)
    background = torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        a = fast.render_rays(origins, directions, background)
        b = slow.render_rays(origins, directions, background)
    assert fast.inference_early_stop_eps == fast.color_threshold > cfg.early_stop_eps
    assert a.n_samples < 0.8 * b.n_samples  # the stop came earlier on every ray
    assert float(b.opacity.min()) > 1 - 1e-3  # the slab is opaque
    assert torch.all(b.opacity - a.opacity <= fast.color_threshold)
    skipped = _skipped_weight(fast, origins, directions)
    assert torch.all((a.rgb - b.rgb).abs().amax(dim=-1) <= skipped + fast.color_threshold + 1e-6)


def test_inference_path_on_rays_that_miss_everything():
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    from nerf.config import ModelConfig

    field = build_field(ModelConfig(hash_levels=4, hash_log2_size=12), aabb)
    renderer = Renderer(field, aabb, SamplerConfig(grid_resolution=16, march_steps=64))
    origins = torch.tensor([[5.0, 5.0, 5.0], [0.0, 0.0, 5.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # both pass outside the box
    with torch.no_grad():
        out = renderer.render_rays(origins, directions, torch.tensor([0.2, 0.4, 0.6]))
    assert out.n_samples == 0
    torch.testing.assert_close(out.rgb, torch.tensor([[0.2, 0.4, 0.6]] * 2))
    assert torch.equal(out.opacity, torch.zeros(2)) and torch.equal(out.depth, torch.zeros(2))

