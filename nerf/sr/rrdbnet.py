"""RRDBNet, the ESRGAN generator, with BasicSR's module names.

Vocabulary: "feature resolution" is the resolution the residual trunk runs at. For scale 4 it
is the input resolution; for scale 2 and 1 the input is first pixel-unshuffled by 2 or 4
(BasicSR's trick, used by RealESRGAN_x2plus), so the trunk always runs at output / 4 and the
two nearest-neighbour x2 upsampling stages always bring it back to output resolution.

Module names match BasicSR's `RRDBNet` exactly (conv_first, body.N.rdb1..3.conv1..5,
conv_body, conv_up1, conv_up2, conv_hr, conv_last), so a BasicSR / Real-ESRGAN state dict
loads with `load_state_dict(strict=True)`; `nerf.sr.weights` maps the older ESRGAN layouts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2  # ESRGAN's LeakyReLU negative slope
RESIDUAL_SCALE = 0.2  # residual scaling inside dense blocks and RRDBs (ESRGAN, section 3.2)
RDB_INIT_SCALE = 0.1  # BasicSR scales the Kaiming init of dense-block convs by 0.1
SUPPORTED_SCALES = (1, 2, 4)


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; conv k sees the input and all earlier outputs."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(num_feat, num_grow_ch)
        self.conv2 = _conv3x3(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv3x3(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv3x3(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv3x3(num_feat + 4 * num_grow_ch, num_feat)
        # Small initial residuals keep a deep trunk close to identity at the start of training.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(RDB_INIT_SCALE)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, F, h, w] -> [B, F, h, w]
        x1 = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), LRELU_SLOPE)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), LRELU_SLOPE)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), LRELU_SLOPE)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + RESIDUAL_SCALE * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside a scaled skip."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:  # [B, F, h, w] -> [B, F, h, w]
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator: conv, RRDB trunk with a long skip, two x2 nearest upsamplings.

    Args:
        num_in_ch: image channels in (3 for RGB).
        num_out_ch: image channels out.
        scale: 1, 2 or 4; scales 1 and 2 pixel-unshuffle the input by 4 and 2.
        num_feat: trunk feature channels F.
        num_block: number of RRDBs in the trunk.
        num_grow_ch: channels each dense-block conv adds.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"RRDBNet: scale must be one of {SUPPORTED_SCALES}, got {scale}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.scale = scale
        self.num_feat = num_feat
        self.num_block = num_block
        self.num_grow_ch = num_grow_ch
        self.unshuffle = 4 // scale
        self.conv_first = _conv3x3(num_in_ch * self.unshuffle**2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3x3(num_feat, num_feat)
        self.conv_up1 = _conv3x3(num_feat, num_feat)
        self.conv_up2 = _conv3x3(num_feat, num_feat)
        self.conv_hr = _conv3x3(num_feat, num_feat)
        self.conv_last = _conv3x3(num_feat, num_out_ch)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (the pixel-unshuffle factor)."""
        return self.unshuffle

    @property
    def receptive_radius(self) -> int:
        """An upper bound, in input pixels, on how far an output pixel's inputs reach.

        Every 3x3 conv adds one pixel at its own resolution: 2 + 15 * num_block at feature
        resolution (conv_first, 15 per RRDB along the longest dense path, conv_body), and the
        four convs after upsampling add 1.25 feature pixels, rounded up to 2.
        """
        return self.unshuffle * (2 + 15 * self.num_block + 2)

    def forward(self, x: Tensor) -> Tensor:  # [B, in, H, W] -> [B, out, scale*H, scale*W]
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv_up in (self.conv_up1, self.conv_up2):
            feat = F.interpolate(feat, scale_factor=2.0, mode="nearest")
            feat = F.leaky_relu(conv_up(feat), LRELU_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE))

