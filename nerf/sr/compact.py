"""SRVGGNetCompact, Real-ESRGAN's small VGG-style video upscaler, with its module names.

The whole network runs at input resolution: a plain stack of 3x3 convs with per-channel PReLU,
a last conv to `num_out_ch * scale**2` channels, a pixel shuffle to output resolution, and the
nearest-upsampled input added, so the convs learn only the residual over nearest upscaling.
`body` is a flat list [conv, prelu, conv, prelu, ..., conv], so a Real-ESRGAN state dict
(`body.0.weight`, `body.1.weight` (PReLU), ..., `body.{2 * num_conv + 2}.weight`) loads as is.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SRVGGNetCompact(nn.Module):
    """Compact VGG-style super-resolution net with a nearest-upsampling skip.

    Args:
        num_in_ch: image channels in.
        num_out_ch: image channels out; must equal num_in_ch (the skip adds the input).
        num_feat: feature channels F.
        num_conv: number of F -> F convs between the first and the last conv.
        scale: integer upscaling factor (pixel shuffle).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
    ) -> None:
        super().__init__()
        if num_in_ch != num_out_ch:
            raise ValueError(
                f"SRVGGNetCompact: num_in_ch ({num_in_ch}) must equal num_out_ch ({num_out_ch})"
            )
        if scale < 1:
            raise ValueError(f"SRVGGNetCompact: scale must be >= 1, got {scale}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_conv = num_conv
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (any size works)."""
        return 1

    @property
    def receptive_radius(self) -> int:
        """How far, in input pixels, an output pixel's inputs reach: one per 3x3 conv."""
        return self.num_conv + 2

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, scale*H, scale*W]
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.scale)
        return out + F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
