"""Held-out views scored: render each view, compare it with its photo, keep the images.

The renderer and scene are taken by what they do (`renderer.render_image`, `renderer.aabb`,
`scene.render_background`, `scene.image_float`), so this module sits below rendering in the layer
order and serves the trainer's periodic evaluation and `render.py`'s test split alike.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import torch
from tqdm import tqdm

from nerf.atomic import atomic_file
from nerf.evaluation.image import psnr, ssim
from nerf.frames import to_uint8_frame


@torch.no_grad()
def score_views(
    renderer,  # nerf.render.renderer.Renderer (render_image, aabb)
    scene,  # nerf.datasets.scene.Scene
    cameras,  # scene.cameras on the renderer's device
    views: list[int],
    chunk: int,
    image_dir: Path | None = None,
    prefix: str = "test",
    progress: bool = False,
    lpips=None,  # nerf.evaluation.image.OptionalLPIPS, scored when available
) -> list[dict]:
    """Render `views`, score them against the photos (PSNR, SSIM, LPIPS when given and
    available), optionally save the renders.

    Returns one {"view", "psnr", "ssim"[, "lpips"]} record per view; images go to
    `image_dir/<prefix>_<view>.png`.
    """
    dev = renderer.aabb.device
    bg = scene.render_background.to(dev)
    if image_dir is not None:
        image_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in tqdm(views, desc=f"{prefix} views", disable=not progress, leave=False):
        img = renderer.render_image(cameras, i, bg, chunk)["rgb"]
        gt = scene.image_float(i, bg.cpu()).to(dev)
        records.append({"view": i, "psnr": psnr(img, gt), "ssim": ssim(img, gt)})
        if lpips is not None and lpips.available:
            records[-1]["lpips"] = lpips(img, gt)
        if image_dir is not None:
            with atomic_file(image_dir / f"{prefix}_{i:04d}.png") as tmp:  # whole or absent
                iio.imwrite(tmp, to_uint8_frame(img))
    return records
