"""The field protocol: both fields implement it, and the renderer and trainer need nothing else."""

import dataclasses

import pytest
import torch
from torch import nn

from nerf.config import ModelConfig, SamplerConfig
from nerf.fields import FIELD_KINDS, SAMPLING_KINDS, RadianceField, build_field
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
