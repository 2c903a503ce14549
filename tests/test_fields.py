"""The field protocol: both fields implement it, and the renderer and trainer need nothing else."""

import dataclasses

import pytest
import torch
from torch import nn

from nerf.config import ModelConfig, SamplerConfig
from nerf.encodings import available_hashgrid_backends
from nerf.fields import FIELD_KINDS, SAMPLING_KINDS, RadianceField, build_field
from nerf.fields.protocol import FeatureReuseField
from nerf.render.renderer import Renderer

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
SMALL = ModelConfig(hash_levels=4, hash_log2_size=10, hash_max_resolution=32, hidden_dim=16,
                    vanilla_width=16, vanilla_depth=6)


class FoggyBall(nn.Module):
    """An analytic field of the protocol: density 5 inside the radius-0.5 ball, constant red."""

    sampling = "occupancy"

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def query_density(self, positions):  # [S, 3] -> [S]
        return 5.0 * self.scale * (positions.norm(dim=-1) < 0.5)

    def forward(self, positions, directions):
        rgb = torch.tensor([1.0, 0.0, 0.0]).expand(len(positions), 3)
        return self.query_density(positions), rgb

    def parameter_groups(self, weight_decay):
        return [{"params": [self.scale], "weight_decay": weight_decay}]

    def kernel_backends(self, device):
        return []


@pytest.mark.parametrize("kind", FIELD_KINDS)
def test_built_fields_implement_the_protocol(kind):
    field = build_field(dataclasses.replace(SMALL, model=kind), AABB)
    assert isinstance(field, RadianceField)
    assert field.sampling in SAMPLING_KINDS
    grouped = [p for g in field.parameter_groups(0.1) for p in g["params"]]
    assert sorted(map(id, grouped)) == sorted(map(id, field.parameters())), "every parameter once"
    assert all(isinstance(k, str) for k in field.kernel_backends(torch.device("cpu")))
    x = torch.rand(7, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(7, 3), dim=-1)
    sigmas, rgbs = field(x, d)
    assert sigmas.shape == (7,) and rgbs.shape == (7, 3)
    torch.testing.assert_close(field.query_density(x), sigmas)


def test_renderer_renders_any_protocol_field():
    """A field the package has never seen renders through the occupancy path: a ray through the
    ball's centre crosses 1.0 of density 5 (opacity 1 - e^-5), a ray beside it sees nothing."""
    field = FoggyBall()
    renderer = Renderer(field, AABB, SamplerConfig(grid_resolution=32, march_steps=512))
    renderer.grid.update(lambda x: field.query_density(x) * renderer.step, warmup=True, ema=0.0,
                         threshold=0.01)
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.9, 0.9, -3.0]])
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        out = renderer.render_rays(origins, directions, background=torch.zeros(3))
    expected = 1.0 - torch.exp(torch.tensor(-5.0))
    assert abs(float(out.opacity[0]) - float(expected)) < 0.02
    assert float(out.opacity[1]) == 0.0
    torch.testing.assert_close(out.rgb[0], torch.tensor([1.0, 0.0, 0.0]) * out.opacity[0])


def test_renderer_refuses_an_unknown_sampling_kind():
    field = FoggyBall()
    field.sampling = "teleport"
    with pytest.raises(ValueError, match="teleport"):
        Renderer(field, AABB, SamplerConfig())


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_gradient_pass_reuses_the_marchers_features(backend, monkeypatch):
    """A training render encodes the kept samples once (while marching) and gets the colours and
    gradients of encoding them again in the gradient pass."""
    if backend not in available_hashgrid_backends():
        pytest.skip(f"{backend} cannot run here")
    torch.manual_seed(0)
    field = build_field(dataclasses.replace(SMALL, hash_backend=backend), AABB)
    with torch.no_grad():
        field.encoding.params.uniform_(-1.0, 1.0)  # dense matter: rays stop early, rounds > 1
    renderer = Renderer(field, AABB, SamplerConfig(grid_resolution=16, march_steps=128, march_backend=backend))
    assert isinstance(field, FeatureReuseField)
    origins = torch.tensor([[0.0, 0.0, -3.0]]).repeat(64, 1) + 0.3 * torch.randn(64, 3)
    directions = torch.nn.functional.normalize(-origins + 0.2 * torch.randn(64, 3), dim=-1)
    encoded = []
    real_encode = field.encoding._encode
    monkeypatch.setattr(field.encoding, "_encode", lambda x: encoded.append(len(x)) or real_encode(x))

    def render_and_grads():
        encoded.clear()
        out = renderer.render_rays(origins, directions, torch.ones(3), train=True,
                                   generator=torch.Generator().manual_seed(3))
        grads = torch.autograd.grad((out.rgb * torch.linspace(0.5, 1.5, 192).view(64, 3)).sum(),
                                    list(field.parameters()))
        return out, grads, list(encoded)

    out, grads, calls = render_and_grads()
    assert out.n_samples > 0 and sum(calls) >= out.n_samples
    monkeypatch.setattr(field.encoding, "takes_features", lambda device: False)
    ref, ref_grads, ref_calls = render_and_grads()
    assert sum(ref_calls) == sum(calls) + out.n_samples  # the kept samples once more
    # torch's vectorised loops may round a point differently in a batch of another size (~1 ulp)
    torch.testing.assert_close(out.rgb, ref.rgb, rtol=1e-6, atol=1e-6)
    for g, g_ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-7)
    assert grads[0].abs().sum() > 0  # the hash table's
