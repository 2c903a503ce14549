"""NeRF's positional encoding: sines and cosines at octave frequencies.

Convention (the original NeRF code's, not its paper's): for an input x and n_frequencies = K,

    gamma(x) = [x, sin(2^0 x), cos(2^0 x), sin(2^1 x), cos(2^1 x), ..., sin(2^(K-1) x), cos(2^(K-1) x)]

with no factor pi, applied to each of the in_dim coordinates: every block above is in_dim wide
(sin of all coordinates, then cos of all coordinates). The leading x is present only with
include_input. Callers choose the input's scale; the vanilla field maps its box to [-1, 1]^3,
so the lowest frequency has a period of 2 pi, about three box widths.
"""

import torch
from torch import Tensor, nn

from nerf.errors import ConfigError


class FrequencyEncoding(nn.Module):
    """gamma(x) of the module docstring.

    Args:
        in_dim: D, coordinates per input point.
        n_frequencies: K >= 0, number of octaves 2^0 .. 2^(K-1).
        include_input: prepend x itself.

    Forward: x [..., D] -> [..., out_dim], out_dim = D * (include_input + 2K).
    """

    def __init__(self, in_dim: int, n_frequencies: int, include_input: bool = True):
        super().__init__()
        if in_dim < 1 or n_frequencies < 0:
            raise ConfigError(
                f"frequency encoding: need in_dim >= 1 and n_frequencies >= 0, got {in_dim}, {n_frequencies}"
            )
        if n_frequencies == 0 and not include_input:
            raise ConfigError("frequency encoding: n_frequencies=0 without include_input encodes nothing")
        self.in_dim = in_dim
        self.n_frequencies = n_frequencies
        self.include_input = include_input
        self.register_buffer("frequencies", 2.0 ** torch.arange(n_frequencies, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.n_frequencies)

    def forward(self, x: Tensor) -> Tensor:  # [..., D] -> [..., out_dim]
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"FrequencyEncoding expects [..., {self.in_dim}], got {tuple(x.shape)}")
        scaled = x[..., None, :] * self.frequencies.to(x.dtype)[:, None]  # [..., K, D]
        # [..., K, 2, D]: for each octave, sin of all coordinates then cos of all coordinates.
        waves = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2).flatten(-3)
        return torch.cat([x, waves], dim=-1) if self.include_input else waves
