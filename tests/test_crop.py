"""Crop boxes (nerf/export/crop.py): nerfstudio's OrientedBox test and a field empty outside it."""

import math

import torch
from torch import nn

from nerf.export.crop import CroppedField, OrientedBox


class Fog(nn.Module):
    """Density 2 and colour 0.5 everywhere."""

    sampling = "occupancy"

    def forward(self, positions, directions):
        return torch.full((len(positions),), 2.0), torch.full((len(positions), 3), 0.5)

    def query_density(self, positions):
        return torch.full((len(positions),), 2.0)


class Pair(nn.Module):
    """A hierarchical pair: the renderer calls `coarse` and `fine` itself."""

    sampling = "hierarchical"

    def __init__(self):
        super().__init__()
        self.coarse, self.fine = Fog(), Fog()

    def forward(self, positions, directions):
        return self.fine(positions, directions)

    def query_density(self, positions):
        return self.fine.query_density(positions)


def test_oriented_box_contains_points_of_its_rotated_frame():
    box = OrientedBox.from_rpy([1.0, 0.0, 0.0], [math.pi / 2, 0.0, 0.0], [2.0, 1.0, 4.0])  # roll 90 deg
    # roll about x turns the box's y side (1) onto world z and its z side (4) onto world y
    inside = torch.tensor([[1.9, 1.9, 0.45], [0.1, -1.9, -0.45]], dtype=torch.float64)
    outside = torch.tensor([[1.0, 0.0, 0.55], [1.0, 2.1, 0.0], [2.1, 0.0, 0.0]], dtype=torch.float64)
    assert box.contains(inside).all() and not box.contains(outside).any()


def test_cropped_field_is_empty_outside_the_box():
    box = OrientedBox.from_rpy([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    points = torch.tensor([[0.1, 0.2, -0.3], [0.6, 0.0, 0.0], [0.0, 0.0, -0.51]])
    dirs = torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3)
    for field in (CroppedField(Fog(), box), CroppedField(Pair(), box).coarse, CroppedField(Pair(), box).fine):
        sigmas, rgbs = field(points, dirs)
        assert sigmas.tolist() == [2.0, 0.0, 0.0] and rgbs.shape == (3, 3)
        assert field.query_density(points).tolist() == [2.0, 0.0, 0.0]
    assert CroppedField(Pair(), box).sampling == "hierarchical"


def test_cropped_renderers_of_both_field_kinds_see_nothing_outside_the_box():
    """A real hash-grid field keeps the fast inference path; a real coarse + fine pair wraps both
    networks (their members carry no `sampling`); rays through empty crop space stay background."""
    from nerf.config import ModelConfig, SamplerConfig
    from nerf.export.crop import CroppedOccupancyField, cropped_renderer
    from nerf.fields import build_field
    from nerf.fields.protocol import OccupancyField
    from nerf.render.renderer import Renderer

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    far_box = OrientedBox.from_rpy([50.0, 50.0, 50.0], [0.0, 0.0, 0.0], [0.1, 0.1, 0.1])
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.2, 0.1, -3.0]])
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    for kind in ("ngp", "vanilla"):
        cfg = ModelConfig(model=kind, hash_levels=4, hash_log2_size=12, vanilla_width=16, vanilla_depth=6)
        renderer = Renderer(build_field(cfg, aabb), aabb, SamplerConfig(grid_resolution=8, march_steps=32,
                                                                       n_coarse=8, n_fine=8), near=0.1, far=6.0)
        cropped = cropped_renderer(renderer, far_box)
        assert isinstance(cropped.field, CroppedOccupancyField) == (kind == "ngp")
        assert isinstance(cropped.field, OccupancyField) == (kind == "ngp")
        with torch.no_grad():
            out = cropped.render_rays(origins, directions, torch.tensor([0.3, 0.6, 0.9]))
        assert float(out.opacity.max()) == 0.0, kind
        torch.testing.assert_close(out.rgb, torch.tensor([[0.3, 0.6, 0.9]] * 2))
