"""Crop boxes: an oriented box (nerfstudio's OrientedBox) and a field that is empty outside it.

A box is a centre, a rotation and full side lengths: a point p is inside when every component
of R^T (p - centre) lies within half the side length (nerfstudio's `OrientedBox.within`). A
camera_path.json's "crop" gives `crop_center`, `crop_scale` (the side lengths) and `crop_rot`
(roll, pitch, yaw in radians: R = Rz(yaw) Ry(pitch) Rx(roll)); rendering with it drops all
density outside the box and shows `crop_bg_color` behind, as `ns-render` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.spatial.transform import Rotation
from torch import Tensor, nn

from nerf.fields.protocol import OccupancyField
from nerf.render.renderer import Renderer


@dataclass(frozen=True)
class OrientedBox:
    center: Tensor  # [3] float64
    rotation: Tensor  # [3, 3] float64, box axes as columns
    size: Tensor  # [3] float64 full side lengths

    @staticmethod
    def from_rpy(center, rpy, size) -> "OrientedBox":
        """A box from its centre, (roll, pitch, yaw) in radians and side lengths."""
        rot = Rotation.from_euler("xyz", [float(a) for a in rpy]).as_matrix()  # Rz Ry Rx
        return OrientedBox(torch.as_tensor(center, dtype=torch.float64),
                           torch.as_tensor(rot, dtype=torch.float64), torch.as_tensor(size, dtype=torch.float64))

    def contains(self, points: Tensor) -> Tensor:  # [N, 3] -> [N] bool
        local = (points - self.center.to(points)) @ self.rotation.to(points)
        return (local.abs() <= self.size.to(points) / 2).all(dim=-1)

    def transformed(self, transform: Tensor) -> "OrientedBox":
        """The box moved by a similarity `transform [4, 4]` = [[s R, t], [0, 1]]."""
        m = torch.as_tensor(transform, dtype=torch.float64)
        scale = float(torch.linalg.det(m[:3, :3]).abs() ** (1.0 / 3.0))
        return OrientedBox(m[:3, :3] @ self.center + m[:3, 3], m[:3, :3] / scale @ self.rotation,
                           self.size * scale)


class CroppedField(nn.Module):
    """A radiance field with zero density outside `box` (the RadianceField calls, delegated)."""

    def __init__(self, field: nn.Module, box: OrientedBox):
        super().__init__()
        self.inner = field
        self.box = box
        self.sampling = getattr(field, "sampling", None)  # a hierarchical pair's members have none
        if hasattr(field, "coarse"):  # hierarchical pairs: the renderer calls both networks
            self.coarse = CroppedField(field.coarse, box)
            self.fine = CroppedField(field.fine, box)

    def forward(self, positions: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:  # [S, 3] x2
        sigmas, rgbs = self.inner(positions, directions)
        return torch.where(self.box.contains(positions), sigmas, torch.zeros_like(sigmas)), rgbs

    def query_density(self, positions: Tensor) -> Tensor:  # [S, 3] -> [S]
        sigmas = self.inner.query_density(positions)
        return torch.where(self.box.contains(positions), sigmas, torch.zeros_like(sigmas))

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        return self.inner.parameter_groups(weight_decay)

    def kernel_backends(self, device: torch.device) -> list[str]:
        return self.inner.kernel_backends(device)


class CroppedOccupancyField(CroppedField):
    """A CroppedField of an OccupancyField, keeping its split calls (the renderer's fast
    inference path): density is zeroed outside `box`, geometry features and colour unchanged."""

    def density_and_geometry(self, positions: Tensor) -> tuple[Tensor, Tensor]:  # [S, 3] -> [S], [S, G]
        sigmas, geometry = self.inner.density_and_geometry(positions)
        return torch.where(self.box.contains(positions), sigmas, torch.zeros_like(sigmas)), geometry

    def encode_directions(self, directions: Tensor) -> Tensor:  # [N, 3] -> [N, D]
        return self.inner.encode_directions(directions)

    def color(self, geometry: Tensor, direction_features: Tensor) -> Tensor:  # [S, G], [S, D] -> [S, 3]
        return self.inner.color(geometry, direction_features)


def cropped_renderer(renderer: Renderer, box: OrientedBox) -> Renderer:
    """A renderer of the same trained field and occupancy grid that sees nothing outside `box`."""
    kind = CroppedOccupancyField if isinstance(renderer.field, OccupancyField) else CroppedField
    out = Renderer(kind(renderer.field, box), renderer.aabb, renderer.cfg, renderer.near,
                   renderer.far, grid=renderer.grid)
    return out.to(renderer.aabb.device).eval()
