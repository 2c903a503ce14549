"""SR benchmark scoring: known upsamplers on synthetic pairs give the PSNR the math predicts."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nerf.evaluation.upscaling import bicubic_upscale, box_downscale, compare_upscalers
from nerf.jobs.sr_bench import net_upscaler, resolve_weights

SCALE = 4
NOISE = 0.01  # amplitude of the +-NOISE checker added to the targets
PSNR_TOL = 1e-3  # dB; float32 rounding of a 40 dB error
EXACT_TOL = 1e-6


class NearestUpsampler(nn.Module):
    """An "adapted net" that is exactly nearest-neighbour x4 upsampling (a 1x1 identity conv)."""

    scale, size_multiple, receptive_radius, num_in_ch, num_out_ch = SCALE, 1, 0, 3, 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()

    def forward(self, x):  # [B, 3, h, w] -> [B, 3, 4h, 4w]
        return F.interpolate(self.conv(x), scale_factor=SCALE, mode="nearest")


def synthetic_pairs(n=2, h=10, w=12, seed=0):
    """Targets = nearest-upsampled inputs plus a +-NOISE checker, so nearest upsampling misses
    them by exactly NOISE at every pixel: PSNR = -20 log10(NOISE) = 40 dB."""
    gen = torch.Generator().manual_seed(seed)
    lrs = [0.1 + 0.8 * torch.rand(h, w, 3, generator=gen) for _ in range(n)]
    yy, xx = torch.meshgrid(torch.arange(SCALE * h), torch.arange(SCALE * w), indexing="ij")
    checker = NOISE * (1 - 2 * ((yy + xx) % 2)).float()[..., None]
    hrs = [lr.repeat_interleave(SCALE, 0).repeat_interleave(SCALE, 1) + checker for lr in lrs]
    return lrs, hrs


def test_identity_like_net_scores_the_analytic_psnr_and_beats_bicubic():
    lrs, hrs = synthetic_pairs()
    result = compare_upscalers(lrs, hrs, {
        "bicubic": lambda image: bicubic_upscale(image, SCALE),
        "adapted": net_upscaler(NearestUpsampler(), tile=4),  # tiles smaller than the image
    })
    expected = -20.0 * math.log10(NOISE)
    assert result["adapted"]["psnr"] == pytest.approx(expected, abs=PSNR_TOL)
    assert len(result["adapted"]["per_view"]) == len(lrs)
    assert result["bicubic"]["psnr"] < expected - 1.0  # smooth interpolation blurs the blocks
    assert result["adapted"]["ssim"] > result["bicubic"]["ssim"]


def test_bicubic_is_exact_on_constants_and_clamped_on_edges():
    flat = torch.full((5, 7, 3), 0.25)
    out = bicubic_upscale(flat, SCALE)
    assert out.shape == (20, 28, 3)
    torch.testing.assert_close(out, torch.full_like(out, 0.25), atol=EXACT_TOL, rtol=0)
    edge = torch.zeros(6, 6, 3)
    edge[:, 3:] = 1.0  # a hard step overshoots in bicubic interpolation (Keys' negative lobes)
    raw = F.interpolate(edge.permute(2, 0, 1)[None], scale_factor=SCALE, mode="bicubic", align_corners=False)
    assert raw.max() > 1.0 and raw.min() < 0.0
    out = bicubic_upscale(edge, SCALE)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_box_downscale_undoes_block_upsampling_and_averages_each_block():
    lrs, hrs = synthetic_pairs(n=1)  # hrs = lrs repeated in SCALE x SCALE blocks, plus a +-checker
    torch.testing.assert_close(box_downscale(hrs[0], SCALE), lrs[0], atol=EXACT_TOL, rtol=0)
    ramp = torch.arange(8.0).repeat(2, 1)[..., None].expand(2, 8, 3)  # columns 0..7
    out = box_downscale(ramp / 8, 2)
    assert out.shape == (1, 4, 3)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]) / 8)


def test_mismatched_sizes_are_refused():
    lrs, hrs = synthetic_pairs(n=1)
    with pytest.raises(ValueError, match="target"):
        compare_upscalers(lrs, [hrs[0][:-4]], {"bicubic": lambda image: bicubic_upscale(image, SCALE)})
    with pytest.raises(ValueError, match="numbers"):
        compare_upscalers(lrs, [], {})


def test_resolve_weights(tmp_path):
    assert resolve_weights("none") is None and resolve_weights("") is None
    assert resolve_weights(str(tmp_path / "w.pth")) == tmp_path / "w.pth"
