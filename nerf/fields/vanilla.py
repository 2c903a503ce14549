"""The original NeRF radiance field: positional encoding + an 8 x 256 ReLU MLP (coarse and fine).

Layout (Mildenhall et al. 2020, fig. 7), for a position x and a unit view direction d:

    gamma(x) -> 8 Linear+ReLU layers of width 256, gamma(x) concatenated to the output of
    layer 4 (0-based, i.e. it feeds the 6th layer) -> sigma head: Linear(256, 1)
                                                   -> feature:    Linear(256, 256), no activation
    [feature, gamma(d)] -> Linear(256 + |gamma(d)|, 128) + ReLU -> Linear(128, 3) -> sigmoid = rgb

gamma is `FrequencyEncoding` (sin/cos at octave frequencies, input included). Positions arrive
in the scene's normalised frame and are mapped affinely from the field's `aabb` to [-1, 1]^3
before encoding, so the encoding's frequencies mean the same thing in every scene; points
outside the box map outside [-1, 1] and are encoded as they are (NeRF has no box). Directions
are unit vectors and are encoded unscaled.

Density activation: ReLU on the raw output, as NeRF; "softplus" is offered because it never
stops the gradient of a sample whose raw density is negative. During training (module in train
mode) Gaussian noise of std `density_noise_std` may be added to the raw density first, NeRF's
regulariser against floaters on forward-facing scenes (it used std 1 for LLFF, 0 for Blender).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerf.encodings.frequency import FrequencyEncoding
from nerf.errors import ConfigError

DENSITY_ACTIVATIONS = ("relu", "softplus")


class VanillaField(nn.Module):
    """One NeRF MLP: positions -> density, (positions, directions) -> (density, colour)."""

    def __init__(
        self,
        aabb: Tensor,  # [2, 3] min row, max row
        pos_frequencies: int = 10,
        dir_frequencies: int = 4,
        width: int = 256,
        depth: int = 8,
        skip_layers: Sequence[int] = (4,),
        density_activation: str = "relu",
        density_noise_std: float = 0.0,
    ):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ConfigError(f"VanillaField: aabb must be [2, 3] with max > min, got {aabb.tolist()}")
        if depth < 1 or width < 1:
            raise ConfigError(f"VanillaField: width and depth must be >= 1, got width={width}, depth={depth}")
        if any(not 0 <= i < depth - 1 for i in skip_layers):
            raise ConfigError(
                f"VanillaField: skip_layers {tuple(skip_layers)} must lie in [0, {depth - 2}] for depth={depth}"
            )
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ConfigError(
                f"VanillaField: density_activation {density_activation!r} is not one of {DENSITY_ACTIVATIONS}"
            )
        self.register_buffer("aabb", aabb.clone())
        self.skip_layers = tuple(int(i) for i in skip_layers)
        self.density_activation = density_activation
        self.density_noise_std = float(density_noise_std)

        self.pos_encoding = FrequencyEncoding(3, pos_frequencies, include_input=True)
        self.dir_encoding = FrequencyEncoding(3, dir_frequencies, include_input=True)
        pos_dim, dir_dim = self.pos_encoding.out_dim, self.dir_encoding.out_dim
        in_dims = [pos_dim] + [width + (pos_dim if i in self.skip_layers else 0) for i in range(depth - 1)]
        self.trunk = nn.ModuleList(nn.Linear(d, width) for d in in_dims)
        self.sigma_head = nn.Linear(width, 1)
        self.feature_head = nn.Linear(width, width)
        self.color_hidden = nn.Linear(width + dir_dim, max(width // 2, 1))
        self.color_head = nn.Linear(self.color_hidden.out_features, 3)

    def _geometry(self, positions: Tensor) -> Tensor:  # [S, 3] -> [S, width]
        lo, hi = self.aabb[0], self.aabb[1]
        x = self.pos_encoding(2.0 * (positions - lo) / (hi - lo) - 1.0)
        h = x
        for i, layer in enumerate(self.trunk):
            h = F.relu(layer(h), inplace=True)
            if i in self.skip_layers:
                h = torch.cat([h, x], dim=-1)
        return h

    def _density(self, h: Tensor) -> Tensor:  # [S, width] -> [S]
        raw = self.sigma_head(h).squeeze(-1)
        if self.training and self.density_noise_std > 0.0:
            raw = raw + torch.randn_like(raw) * self.density_noise_std
        return F.relu(raw) if self.density_activation == "relu" else F.softplus(raw)

    def query_density(
        self,
        positions: Tensor,  # [S, 3]
    ) -> Tensor:  # [S]
        """Density at positions (the colour branch is not evaluated).

        Args:
            positions: [S, 3] points in the scene's normalised frame.

        Returns:
            sigmas: [S] non-negative densities.
        """
        return self._density(self._geometry(positions))

    def forward(
        self,
        positions: Tensor,  # [S, 3]
        directions: Tensor,  # [S, 3] unit
    ) -> tuple[Tensor, Tensor]:  # sigmas [S], rgbs [S, 3]
        """Density and view-dependent colour at positions seen along directions.

        Args:
            positions: [S, 3] points in the scene's normalised frame.
            directions: [S, 3] unit viewing directions (from the camera towards the point).

        Returns:
            sigmas: [S] non-negative densities.
            rgbs: [S, 3] colours in (0, 1).
        """
        if positions.shape != directions.shape or positions.shape[-1] != 3:
            raise ValueError(
                f"VanillaField: positions and directions must both be [S, 3], "
                f"got {tuple(positions.shape)} and {tuple(directions.shape)}"
            )
        h = self._geometry(positions)
        sigmas = self._density(h)
        feature = torch.cat([self.feature_head(h), self.dir_encoding(directions)], dim=-1)
        rgbs = torch.sigmoid(self.color_head(F.relu(self.color_hidden(feature))))
        return sigmas, rgbs


class VanillaNeRF(nn.Module):
    """NeRF's pair of fields: `coarse` places the importance samples that `fine` renders.

    Both fields share the architecture; every argument is passed to each `VanillaField`. As a
    field itself (`query_density`, `forward`) the pair answers with the fine network, the one
    whose renderings are reported (used by mesh export and density queries). A
    nerf.fields.protocol.RadianceField with hierarchical sampling.
    """

    sampling = "hierarchical"

    def __init__(self, aabb: Tensor, **field_args):  # aabb [2, 3]; field_args: VanillaField's
        super().__init__()
        self.coarse = VanillaField(aabb, **field_args)
        self.fine = VanillaField(aabb, **field_args)

    def query_density(
        self,
        positions: Tensor,  # [S, 3]
    ) -> Tensor:  # [S]
        """Density of the fine field at positions (see `VanillaField.query_density`)."""
        return self.fine.query_density(positions)

    def forward(
        self,
        positions: Tensor,  # [S, 3]
        directions: Tensor,  # [S, 3] unit
    ) -> tuple[Tensor, Tensor]:  # sigmas [S], rgbs [S, 3]
        """Density and colour of the fine field (see `VanillaField.forward`)."""
        return self.fine(positions, directions)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """One optimiser group: both networks, with weight decay."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    def kernel_backends(self, device: torch.device) -> list[str]:
        """None to choose: plain PyTorch layers."""
        return []
