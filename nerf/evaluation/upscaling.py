"""Upscalers scored: each method's upscaled images against full-size targets (PSNR, SSIM).

An upscaler is any function [h, w, 3] -> [scale*h, scale*w, 3] (float32 in [0, 1]); bicubic
interpolation is the baseline every super-resolution net is compared with, and box-filtered
photos are the inputs an exact NeRF would render at low resolution.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from nerf.evaluation.image import psnr, ssim

Upscaler = Callable[[Tensor], Tensor]  # [h, w, 3] -> [scale*h, scale*w, 3], float32 in [0, 1]


def bicubic_upscale(
    image: Tensor,  # [h, w, 3] float in [0, 1]
    scale: int,
) -> Tensor:  # [scale*h, scale*w, 3] float32 in [0, 1]
    """Bicubic interpolation by `scale` (torch, align_corners=False), clamped to [0, 1]."""
    x = image.float().permute(2, 0, 1)[None]
    out = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0.0, 1.0)


def compare_upscalers(
    lr_images: list[Tensor],  # each [h, w, 3] float in [0, 1]
    hr_images: list[Tensor],  # each [scale*h, scale*w, 3] float in [0, 1]
    upscalers: dict[str, Upscaler],
    progress: bool = False,
) -> dict[str, dict]:
    """Upscale every low-resolution image with each method and score it against its target.

    Args:
        lr_images: the inputs.
        hr_images: the targets, one per input.
        upscalers: method name -> Upscaler.
        progress: show a tqdm bar per method.

    Returns:
        method -> {"psnr": mean dB, "ssim": mean, "per_view": [{"psnr", "ssim"}, ...]}.
    """
    if len(lr_images) != len(hr_images) or not lr_images:
        raise ValueError(f"need equal, non-zero numbers of inputs and targets, got "
                         f"{len(lr_images)} and {len(hr_images)}")
    results = {}
    for name, upscale in upscalers.items():
        per_view = []
        for lr, hr in tqdm(list(zip(lr_images, hr_images)), desc=name, disable=not progress):
            out = upscale(lr).float().cpu()
            target = hr.float().cpu()
            if out.shape != target.shape:
                raise ValueError(f"{name}: upscaled {tuple(lr.shape)} to {tuple(out.shape)}, "
                                 f"but the target is {tuple(target.shape)}")
            per_view.append({"psnr": psnr(out, target), "ssim": ssim(out, target)})
        results[name] = {
            "psnr": float(np.mean([v["psnr"] for v in per_view])),
            "ssim": float(np.mean([v["ssim"] for v in per_view])),
            "per_view": per_view,
        }
    return results


def box_downscale(
    image: Tensor,  # [H, W, 3] float in [0, 1], H and W multiples of scale
    scale: int,
) -> Tensor:  # [H/scale, W/scale, 3] float32: each pixel the mean of a scale x scale block
    """Box-filter (area) downscaling by an integer factor, as the scene loaders downscale photos."""
    x = image.float().permute(2, 0, 1)[None]
    return F.avg_pool2d(x, scale)[0].permute(1, 2, 0)
