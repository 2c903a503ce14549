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
