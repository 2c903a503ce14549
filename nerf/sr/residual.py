"""An SR net that learns only what bicubic interpolation misses: bicubic(x) + body(x).

Scene-adaptive training starts from a net whose last conv is zero, so step 0 already equals
bicubic upscaling and every step refines it. (An RRDBNet started as a smooth nearest-plus-blur
upsampler scored 1.1 dB below bicubic on lego's 200 -> 800 renders and spent its first thousand
steps catching up: after 800 steps, +0.23 dB over bicubic against +0.48 dB for this form.)

Files: the body is saved in its own layout (BasicSR for an RRDBNet) with one extra top-level
entry `"residual": "bicubic"`; `load_sr_weights` reads it back as this wrapper. Other ESRGAN
tools load such a file as a plain RRDBNet and must add bicubic upsampling of the input to its
output themselves.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

BICUBIC_RADIUS = 2  # input pixels either side that bicubic interpolation reads
RESIDUAL_KEY, RESIDUAL_BICUBIC = "residual", "bicubic"  # the marker in weight files


def bicubic(x: Tensor, scale: int) -> Tensor:  # [B, C, H, W] -> [B, C, scale*H, scale*W]
    """torch's bicubic interpolation, align_corners=False (not clamped)."""
    return F.interpolate(x, scale_factor=float(scale), mode="bicubic", align_corners=False)


class BicubicResidual(nn.Module):
    """bicubic(x) + body(x) for an SR body with `scale`, `size_multiple`, `receptive_radius`,
    `num_in_ch` and `num_out_ch` (RRDBNet, SRVGGNetCompact); the same attributes are exposed."""

    def __init__(self, body: nn.Module, zero_init: bool = False) -> None:
        super().__init__()
        self.body = body
        if zero_init:  # start as exact bicubic upscaling
            last = body.conv_last
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    scale = property(lambda self: int(self.body.scale))
    num_in_ch = property(lambda self: int(self.body.num_in_ch))
    num_out_ch = property(lambda self: int(self.body.num_out_ch))
    size_multiple = property(lambda self: int(self.body.size_multiple))

    @property
    def receptive_radius(self) -> int:
        return max(int(self.body.receptive_radius), BICUBIC_RADIUS)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, scale*H, scale*W]
        return bicubic(x, self.scale) + self.body(x)
