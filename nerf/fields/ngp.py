"""instant-ngp radiance field: hash grid -> density MLP -> (SH directions + features) -> colour MLP.

Positions arrive in the scene's normalised frame and are mapped to [0, 1]^3 over the field's
`aabb`. The finest hash resolution is given over the unit box [-1, 1]^3 and grows with the box
(instant-ngp scales it by aabb_scale the same way), so detail per world unit does not depend on
how far the box extends for background. Density uses instant-ngp's truncated exponential:
sigma = exp(h) with the gradient's exponent clamped at 15. Positions outside the box get zero
density.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerf.config import ModelConfig
from nerf.encodings import HashGrid, SphericalHarmonics

TRUNC_EXP_CLAMP = 15.0  # exponent clamp in the backward of the truncated exponential


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=TRUNC_EXP_CLAMP))


def trunc_exp(x: Tensor) -> Tensor:
    """exp(x) whose backward clamps the exponent (instant-ngp's density activation)."""
    return _TruncExp.apply(x)


def mlp(in_dim: int, hidden: int, out_dim: int, n_hidden: int) -> nn.Sequential:
    """ReLU MLP without biases (tiny-cuda-nn's FullyFusedMLP layout)."""
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden] * n_hidden
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b, bias=False), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-1], out_dim, bias=False))
    return nn.Sequential(*layers)


class NGPField(nn.Module):
    """Hash-grid radiance field over an axis-aligned box (a nerf.fields.protocol.RadianceField)."""

    sampling = "occupancy"

    def __init__(self, aabb: Tensor, cfg: ModelConfig):  # aabb [2, 3]
        super().__init__()
        self.register_buffer("aabb", aabb.detach().clone().float())
        extent = float((aabb[1] - aabb[0]).max()) / 2.0  # half-size, unit box = 1
        max_res = int(round(cfg.hash_max_resolution * max(extent, 1.0)))
        self.encoding = HashGrid(
            n_levels=cfg.hash_levels,
            n_features=cfg.hash_features,
            log2_table_size=cfg.hash_log2_size,
            base_resolution=cfg.hash_base_resolution,
            max_resolution=max_res,
            backend=cfg.hash_backend,
        )
        self.dir_encoding = SphericalHarmonics(cfg.sh_degree)
        self.geo_features = cfg.geo_features
        self.density_mlp = mlp(self.encoding.out_dim, cfg.hidden_dim, 1 + cfg.geo_features, 1)
        self.color_mlp = mlp(1 + cfg.geo_features + self.dir_encoding.out_dim, cfg.hidden_dim, 3, 2)

    def _unit(self, positions: Tensor) -> tuple[Tensor, Tensor]:  # [S, 3] -> [S, 3], [S] bool
        x = (positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((x >= 0) & (x <= 1)).all(dim=-1)
        return x.clamp(0.0, 1.0), inside

    def density_and_geometry(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Density [S] and the density MLP's output [S, 1 + F] (the colour MLP's geometry input)."""
        x, inside = self._unit(positions)
        h = self.density_mlp(self.encoding(x)).float()  # [S, 1 + F]
        sigmas = trunc_exp(h[:, 0]) * inside
        return sigmas, h

    def query_density(self, positions: Tensor) -> Tensor:  # [S, 3] -> [S]
        """Volume density at world positions."""
        return self.density_and_geometry(positions)[0]

    def encode_directions(self, directions: Tensor) -> Tensor:  # [N, 3] unit -> [N, sh_degree^2]
        """The view-direction encoding (spherical harmonics), once per ray on the inference path."""
        return self.dir_encoding(directions)

    def color(
        self,
        geometry: Tensor,  # [S, 1 + F] from density_and_geometry
        direction_features: Tensor,  # [S, sh_degree^2] from encode_directions
    ) -> Tensor:  # [S, 3] in [0, 1]
        """View-dependent colour from the geometry features and the encoded direction."""
        inputs = torch.cat([geometry, direction_features.to(geometry.dtype)], dim=-1)
        return torch.sigmoid(self.color_mlp(inputs).float())

    def forward(
        self,
        positions: Tensor,  # [S, 3]
        directions: Tensor,  # [S, 3] unit
    ) -> tuple[Tensor, Tensor]:  # sigmas [S], rgbs [S, 3]
        """Density and view-dependent colour at world positions."""
        sigmas, h = self.density_and_geometry(positions)
        return sigmas, self.color(h, self.encode_directions(directions))

    def kernel_backends(self, device: torch.device) -> list[str]:
        """The hash grid's kernel on `device`."""
        return [f"hash grid {self.encoding.resolve_backend(device)}"]

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimiser groups: the hash table without weight decay, MLPs with it."""
        return [
            {"params": list(self.encoding.parameters()), "weight_decay": 0.0},
            {
                "params": list(self.density_mlp.parameters()) + list(self.color_mlp.parameters()),
                "weight_decay": weight_decay,
            },
        ]


def ngp_step_size(march_steps: int) -> float:
    """Marching step: the unit box [-1, 1]^3 diagonal (2 sqrt 3) over `march_steps`."""
    return 2.0 * math.sqrt(3.0) / march_steps
