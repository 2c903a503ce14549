"""Held-out views aligned to a pose-refined field before scoring (test-time pose optimisation).

A run that refines its training poses (`pose_refine`) learns its field in the frame the refined
poses define, which is the given poses' frame up to a small common drift of all corrections, and,
when the given poses carry errors, up to the mean of those errors. Neither is visible from the
training images, and at a sharp field's scale it is not small: on lego_200 a held-out view turned
by 0.04 degrees (a fifth of a pixel at 200x200) loses 0.66 dB. Scoring held-out views at their
given poses then measures that frame offset as much as the reconstruction.

So, as BARF (Lin et al. 2021) and the pose-refinement papers after it evaluate, each held-out
view's pose is first fitted to its photo with the field frozen: six parameters (a rotation about
the camera centre and a translation, in camera axes, `PoseRefinement`'s parameterisation)
optimised by Adam on the photometric error of random pixels of that view. Six numbers against
tens of thousands of pixels cannot fit the image content; they only move the view. The trainer's
evaluation reports both scores when a run refines poses (`psnr` aligned, `psnr_given_poses`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from nerf.cameras import Cameras
from nerf.config import TrainConfig
from nerf.train.pose_refine import PoseRefinement, refined_c2w


@dataclass(frozen=True)
class AlignSettings:
    steps: int = 150  # Adam steps per view
    rays: int = 4096  # random pixels of the view per step
    lr: float = 5e-4  # radians / scene units per step at the start
    lr_final_factor: float = 0.05  # exponential decay to lr * this at the last step
    seed: int = 0


def held_out_alignment(train: TrainConfig, force: bool | None = None) -> AlignSettings | None:
    """How a run's held-out views are aligned before scoring: with `pose_refine` and
    `pose_align_steps` > 0 (or when `force` says so), else None (scored at their given poses)."""
    steps = train.pose_align_steps
    wanted = train.pose_refine and steps > 0 if force is None else force
    if not wanted:
        return None
    return AlignSettings(steps=steps) if steps > 0 else AlignSettings()


def align_view(
    renderer,  # nerf.render.renderer.Renderer
    cameras: Cameras,
    index: int,
    target: Tensor,  # [h, w, 3] the view's photo on `background`, float in [0, 1]
    background: Tensor,  # [3]
    settings: AlignSettings = AlignSettings(),
) -> Tensor:  # [4, 4] camera-to-world of view `index` fitted to `target`
    """The pose of view `index` that best explains its photo under the frozen field."""
    dev = renderer.aabb.device
    h, w = target.shape[:2]
    target = target.to(dev).reshape(-1, 3)
    background = background.to(dev)
    poses = PoseRefinement(cameras.c2w[index:index + 1].to(dev))
    optimizer = torch.optim.Adam(poses.parameters(), lr=settings.lr)
    generator = torch.Generator(device=dev).manual_seed(settings.seed)
    camera = torch.full((settings.rays,), index, dtype=torch.long, device=dev)
    zeros = torch.zeros(settings.rays, dtype=torch.long, device=dev)  # the one camera `poses` corrects
    params = list(renderer.parameters())
    frozen = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad():  # callers score views under no_grad
            for step in range(settings.steps):
                decay = settings.lr_final_factor ** (step / max(settings.steps - 1, 1))
                optimizer.param_groups[0]["lr"] = settings.lr * decay
                pix = torch.randint(0, h * w, (settings.rays,), device=dev, generator=generator)
                origins, directions = poses(zeros, *cameras.pixel_rays(camera, pix % w, pix // w))
                rgb = renderer.render_rays(origins, directions, background).rgb
                loss = torch.nn.functional.mse_loss(rgb, target[pix])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        for p, g in zip(params, frozen):
            p.requires_grad_(g)
    return refined_c2w(poses.given, poses.delta.detach())[0]


def aligned_cameras(
    renderer,
    scene,  # nerf.datasets.scene.Scene (image_float, render_background)
    cameras: Cameras,  # on the renderer's device
    views: list[int],
    settings: AlignSettings = AlignSettings(),
) -> Cameras:
    """`cameras` with each of `views` moved to the pose its photo fits best (`align_view`)."""
    bg = scene.render_background
    c2w = cameras.c2w.clone()
    for i in views:
        c2w[i] = align_view(renderer, cameras, i, scene.image_float(i, bg), bg, settings).to(c2w)
    return dataclasses.replace(cameras, c2w=c2w)
