"""instant-ngp radiance field: hash grid -> density MLP -> (SH directions + features) -> colour MLP.

Positions arrive in the scene's normalised frame and are mapped to [0, 1]^3 over the field's
`aabb`. The finest hash resolution is given over the unit box [-1, 1]^3 and grows with the box
(instant-ngp scales it by aabb_scale the same way), so detail per world unit does not depend on
how far the box extends for background. Density uses instant-ngp's truncated exponential:
sigma = exp(h) with the gradient's exponent clamped at 15. Positions outside the box get zero
density.

With `contraction = inf` (unbounded captures) positions are contracted first
(`nerf.fields.contraction`): the hash grid covers the contracted cube [-2, 2]^3, i.e. all of space,
the content box [-1, 1]^3 at the same finest resolution per unit as without contraction, and the
field's `aabb` no longer bounds it (the renderer's occupancy grid still bounds where rays sample).

With `appearance_dim` E > 0 each training image has an embedding [E] (NeRF-W's appearance code:
exposure, white balance) appended to the colour MLP's input; density never sees it. Training rays
pass their image's index; every other render (held-out views, videos, meshes) uses the mean of
the training images' embeddings, the held-out protocol reported in docs/DESIGN.md.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerf.config import ModelConfig
from nerf.encodings import HashGrid, SphericalHarmonics
from nerf.fields.contraction import CONTRACTED_HALF_EXTENT, contract

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

    def __init__(self, aabb: Tensor, cfg: ModelConfig, n_images: int = 0):  # aabb [2, 3]
        super().__init__()
        if cfg.appearance_dim > 0 and n_images < 1:
            raise ValueError("NGPField: appearance_dim > 0 needs the number of training images")
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.contracted = cfg.contraction == "inf"
        # half-size of what the hash grid spans, in units of the unit box
        extent = CONTRACTED_HALF_EXTENT if self.contracted else float((aabb[1] - aabb[0]).max()) / 2.0
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
        self.color_mlp = mlp(
            1 + cfg.geo_features + self.dir_encoding.out_dim + cfg.appearance_dim, cfg.hidden_dim, 3, 2
        )
        # zeros: every image starts at the mean appearance, which held-out views use
        self.appearance = nn.Embedding(n_images, cfg.appearance_dim) if cfg.appearance_dim > 0 else None
        if self.appearance is not None:
            nn.init.zeros_(self.appearance.weight)
        # [E] code renders without image ids use instead of the mean (the held-out fit of
        # nerf.jobs.appearance_bench); None = the mean of the training codes
        self.code_override: Tensor | None = None

    def _unit(self, positions: Tensor) -> tuple[Tensor, Tensor | None]:  # [S, 3] -> [S, 3], [S] bool
        """The hash grid's coordinates in [0, 1]^3, and which positions it covers (None: all)."""
        if self.contracted:
            return (contract(positions) + CONTRACTED_HALF_EXTENT) / (2.0 * CONTRACTED_HALF_EXTENT), None
        x = (positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((x >= 0) & (x <= 1)).all(dim=-1)
        return x.clamp(0.0, 1.0), inside

    def density_and_geometry(
        self,
        positions: Tensor,  # [S, 3]
        features: Tensor | None = None,  # [S, L*F] from density_and_features at these positions
    ) -> tuple[Tensor, Tensor]:
        """Density [S] and the density MLP's output [S, 1 + F] (the colour MLP's geometry input)."""
        x, inside = self._unit(positions)
        h = self.density_mlp(self.encoding(x, features)).float()  # [S, 1 + F]
        return _density(h, inside), h

    def query_density(self, positions: Tensor) -> Tensor:  # [S, 3] -> [S]
        """Volume density at world positions."""
        return self.density_and_geometry(positions)[0]

    def density_and_features(self, positions: Tensor) -> tuple[Tensor, Tensor | None]:  # [S, 3] -> [S], [S, L*F]
        """Density without gradient, and the hash features behind it for a gradient pass over the
        same positions before the parameters change (`forward(..., features=)`, which then
        encodes nothing again); None where the grid's backend cannot take them back."""
        with torch.no_grad():
            x, inside = self._unit(positions)
            features = self.encoding(x)
            sigmas = _density(self.density_mlp(features).float(), inside)
        return sigmas, (features if self.encoding.takes_features(positions.device) else None)

    def encode_directions(self, directions: Tensor) -> Tensor:  # [N, 3] unit -> [N, sh_degree^2]
        """The view-direction encoding (spherical harmonics), once per ray on the inference path."""
        return self.dir_encoding(directions)

    def color(
        self,
        geometry: Tensor,  # [S, 1 + F] from density_and_geometry
        direction_features: Tensor,  # [S, sh_degree^2] from encode_directions
        image_ids: Tensor | None = None,  # [S] int64 training-image indices; None = mean appearance
    ) -> Tensor:  # [S, 3] in [0, 1]
        """View-dependent colour from the geometry features, the encoded direction and (with
        appearance embeddings) the image's appearance."""
        parts = [geometry, direction_features.to(geometry.dtype)]
        if self.appearance is not None:
            if image_ids is None:
                shared = self.appearance.weight.mean(dim=0) if self.code_override is None else self.code_override
                code = shared.expand(len(geometry), -1)
            else:
                code = self.appearance(image_ids)
            parts.append(code.to(geometry.dtype))
        return torch.sigmoid(self.color_mlp(torch.cat(parts, dim=-1)).float())

    def forward(
        self,
        positions: Tensor,  # [S, 3]
        directions: Tensor,  # [S, 3] unit
        image_ids: Tensor | None = None,  # [S] int64 training-image indices (appearance)
        features: Tensor | None = None,  # [S, L*F] from density_and_features at these positions
    ) -> tuple[Tensor, Tensor]:  # sigmas [S], rgbs [S, 3]
        """Density and view-dependent colour at world positions."""
        sigmas, h = self.density_and_geometry(positions, features)
        return sigmas, self.color(h, self.encode_directions(directions), image_ids)

    def kernel_backends(self, device: torch.device) -> list[str]:
        """The hash grid's kernel on `device`."""
        return [f"hash grid {self.encoding.resolve_backend(device)}"]

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimiser groups: the hash table and appearance codes without weight decay, MLPs with it."""
        plain = list(self.encoding.parameters())
        if self.appearance is not None:
            plain += list(self.appearance.parameters())
        return [
            {"params": plain, "weight_decay": 0.0},
            {
                "params": list(self.density_mlp.parameters()) + list(self.color_mlp.parameters()),
                "weight_decay": weight_decay,
            },
        ]


def _density(h: Tensor, inside: Tensor | None) -> Tensor:  # [S, 1 + F], [S] bool or None -> [S]
    """Density from the density MLP's output: zero outside the box the grid covers."""
    sigmas = trunc_exp(h[:, 0])
    return sigmas if inside is None else sigmas * inside


def ngp_step_size(march_steps: int) -> float:
    """Marching step: the unit box [-1, 1]^3 diagonal (2 sqrt 3) over `march_steps`."""
    return 2.0 * math.sqrt(3.0) / march_steps
