"""Test-time alignment of held-out views (nerf/train/pose_align.py)."""

import dataclasses

import pytest
import torch

from nerf.evaluation.image import psnr
from nerf.train.pose_align import AlignSettings, align_view, aligned_cameras
from nerf.train.pose_refine import perturb_poses, pose_errors
from nerf.train.trainer import Trainer
from tiny import tiny_config


@pytest.fixture(scope="module")
def trained(tiny_scene, tiny_scene_path, tmp_path_factory):
    """A tiny-scene trainer fitted 300 steps from its true poses."""
    cfg = tiny_config(tmp_path_factory.mktemp("align"), tiny_scene_path, steps=300)
    trainer = Trainer(cfg, tiny_scene, quiet=True)
    trainer.fit()
    return trainer


def _score(renderer, scene, cameras, view):
    bg = scene.render_background
    return float(psnr(renderer.render_image(cameras, view, bg, 4096)["rgb"], scene.image_float(view, bg)))


def test_alignment_moves_a_turned_held_out_view_back_and_leaves_the_field_alone(trained):
    scene, renderer = trained.scene, trained.renderer
    view = int(scene.splits["test"][0])
    truth = scene.cameras.c2w[view:view + 1].clone()
    c2w = scene.cameras.c2w.clone()
    c2w[view:view + 1] = perturb_poses(truth, 2.0, 0.0, seed=3)
    moved = dataclasses.replace(scene.cameras, c2w=c2w)
    params = {k: v.clone() for k, v in renderer.state_dict().items()}
    grads = [p.requires_grad for p in renderer.parameters()]

    fitted = align_view(renderer, moved, view, scene.image_float(view, scene.render_background),
                        scene.render_background, AlignSettings(steps=60, rays=1024, lr=3e-3))

    before, _ = pose_errors(c2w[view:view + 1], truth)
    after, _ = pose_errors(fitted[None], truth)
    assert float(after[0]) < 0.5 * float(before[0]), (float(before[0]), float(after[0]))
    aligned = dataclasses.replace(scene.cameras, c2w=c2w.clone().index_copy_(0, torch.tensor([view]), fitted[None]))
    assert _score(renderer, scene, aligned, view) > _score(renderer, scene, moved, view) + 2.0
    for k, v in renderer.state_dict().items():  # the field is only read
        assert torch.equal(v, params[k]), k
    assert [p.requires_grad for p in renderer.parameters()] == grads


def test_aligned_cameras_moves_only_the_views_asked(trained):
    scene, renderer = trained.scene, trained.renderer
    views = [int(v) for v in scene.splits["test"][:2]]
    out = aligned_cameras(renderer, scene, scene.cameras, views, AlignSettings(steps=3, rays=256))
    others = [i for i in range(len(scene.cameras)) if i not in views]
    assert torch.equal(out.c2w[others], scene.cameras.c2w[others])
    assert all(not torch.equal(out.c2w[i], scene.cameras.c2w[i]) for i in views)
