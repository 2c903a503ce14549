"""Tests of camera pose refinement: the exponential, the ray correction, the trainer's use of it."""

import dataclasses
import json
import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from nerf.cameras import Cameras
from nerf.train.pose_refine import (
    PoseRefinement, compose, perturb_poses, pose_errors, refined_c2w, refined_cameras, so3_exp,
)
from nerf.train.trainer import REFINED_POSES, Trainer
from tiny import tiny_config

# float64 Rodrigues (and its series below 0.1 rad) against scipy: a few ulps.
EXP_TOL = dict(rtol=0.0, atol=1e-12)


def test_so3_exp_is_the_identity_at_zero_and_matches_known_rotations():
    torch.testing.assert_close(so3_exp(torch.zeros(3, dtype=torch.float64)), torch.eye(3, dtype=torch.float64),
                               rtol=0.0, atol=0.0)
    quarter = so3_exp(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))  # 90 degrees about z: x -> y
    torch.testing.assert_close(quarter, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                                                     dtype=torch.float64), **EXP_TOL)
    g = torch.Generator().manual_seed(0)
    axes = torch.randn(200, 3, generator=g, dtype=torch.float64)
    angles = torch.cat([torch.logspace(-9, 0.49, 100, dtype=torch.float64), torch.rand(100, generator=g) * 3.0])
    omega = axes / axes.norm(dim=-1, keepdim=True) * angles[:, None]  # both sides of the series threshold
    expected = torch.from_numpy(Rotation.from_rotvec(omega.numpy()).as_matrix())
    torch.testing.assert_close(so3_exp(omega), expected, **EXP_TOL)


def test_so3_exp_gradient_at_zero_is_finite_and_the_generator():
    omega = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(so3_exp, omega)  # [3, 3, 3]: d R[i, j] / d omega[k]
    assert torch.isfinite(jac).all()
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1.0
        generator = torch.linalg.cross(e.expand(3, 3), torch.eye(3, dtype=torch.float64)).T  # [e_k]x
        torch.testing.assert_close(jac[..., k], generator, rtol=0.0, atol=1e-15)
    small = torch.tensor([1e-4, -2e-3, 5e-3], dtype=torch.float64, requires_grad=True)
    large = torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(so3_exp, (small,)) and torch.autograd.gradcheck(so3_exp, (large,))


def _cameras(c2w):
    return Cameras.create(c2w, fx=20.0, fy=22.0, cx=16.0, cy=15.0, width=32, height=30)


def test_corrected_rays_are_the_rays_of_the_refined_poses():
    from nerf.rotations import look_at

    eye = torch.tensor([[3.0, 0.5, 1.0], [-2.0, 2.0, 0.5], [0.0, -3.0, 2.0]])
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])).float()
    poses = PoseRefinement(c2w)
    rays = _cameras(c2w)
    image = torch.tensor([0, 1, 2, 2, 1, 0])
    cols, rows = torch.tensor([0, 5, 31, 16, 8, 20]), torch.tensor([0, 29, 3, 15, 7, 11])
    origins, directions = rays.pixel_rays(image, cols, rows)
    o, d = poses(image, origins, directions)  # zero correction: the given rays
    torch.testing.assert_close(o, origins, rtol=0.0, atol=0.0)
    torch.testing.assert_close(d, directions, rtol=0.0, atol=1e-6)  # R R^T in float32
    with torch.no_grad():
        poses.delta.copy_(torch.tensor([[0.02, -0.01, 0.03, 0.1, -0.05, 0.2],
                                        [-0.3, 0.2, 0.1, 0.0, 0.3, -0.1],
                                        [0.0, 0.0, 0.5, -0.2, 0.0, 0.0]]))
    o, d = poses(image, origins, directions)
    expected_o, expected_d = _cameras(poses.refined_c2w().detach()).pixel_rays(image, cols, rows)
    torch.testing.assert_close(o, expected_o, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(d, expected_d, rtol=0.0, atol=1e-6)
    # right-multiplied: a pure rotation keeps the centre, a translation along camera z moves it forward
    turned = compose(c2w, so3_exp(torch.tensor([[0.0, 0.4, 0.0]]).expand(3, 3)), torch.zeros(3, 3))
    torch.testing.assert_close(turned[:, :3, 3], c2w[:, :3, 3])
    moved = compose(c2w, torch.eye(3).expand(3, 3, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3))
    torch.testing.assert_close(moved[:, :3, 3] - c2w[:, :3, 3], c2w[:, :3, 2])


def test_perturb_poses_turns_and_moves_each_pose_by_the_amounts_asked():
    from nerf.rotations import look_at

    c2w = look_at(torch.randn(10, 3, generator=torch.Generator().manual_seed(3)) * 3, torch.zeros(3),
                  torch.tensor([0.0, 0.0, 1.0])).float()
    out = perturb_poses(c2w, 1.0, 0.03, seed=7)
    degrees, distances = pose_errors(out, c2w)
    torch.testing.assert_close(degrees, torch.full((10,), 1.0, dtype=torch.float64), rtol=0.0, atol=1e-3)
    torch.testing.assert_close(distances, torch.full((10,), 0.03, dtype=torch.float64), rtol=0.0, atol=1e-6)
    torch.testing.assert_close(perturb_poses(c2w, 1.0, 0.03, seed=7), out, rtol=0.0, atol=0.0)  # reproducible
    assert not torch.equal(perturb_poses(c2w, 1.0, 0.03, seed=8), out)
    axes = torch.from_numpy(Rotation.from_matrix((out[:, :3, :3] @ c2w[:, :3, :3].transpose(1, 2)).double()
                                                 .numpy()).as_rotvec())
    assert axes.norm(dim=-1).std() < 1e-4 and (axes / axes.norm(dim=-1, keepdim=True)).std(0).min() > 0.2


def _perturbed(scene, degrees, distance, seed=0):
    train = scene.splits["train"]
    c2w = scene.cameras.c2w.clone()
    c2w[train] = perturb_poses(c2w[train], degrees, distance, seed)
    return dataclasses.replace(scene, cameras=dataclasses.replace(scene.cameras, c2w=c2w))


def _reprojection_error(cameras, c2w, truth, points):  # [T, 4, 4] x 2, points [P, 3] -> mean pixels
    """How far scene points land from where the true poses put them, averaged over cameras: the
    error the images see (a small turn and a sideways shift nearly cancel in it, and the tiny
    scene cannot tell them apart, so neither error alone is a fair measure)."""
    t, p = c2w.shape[0], points.shape[0]
    ids = torch.arange(t).repeat_interleave(p)
    pts = points.repeat(t, 1)
    xy, _ = dataclasses.replace(cameras, c2w=c2w.float()).project(pts, ids)
    xy_true, _ = dataclasses.replace(cameras, c2w=truth.float()).project(pts, ids)
    return float((xy - xy_true).norm(dim=-1).mean())


def test_pose_refinement_recovers_a_perturbed_toy_scene(tiny_scene, tmp_path):
    """Train the tiny scene from poses turned 3 degrees and moved 3% of the scene: the learned
    corrections undo much of the error the images see, and the rotations come closer."""
    size = float((tiny_scene.aabb[1] - tiny_scene.aabb[0]).max())
    scene = _perturbed(tiny_scene, 3.0, 0.03 * size)
    cfg = tiny_config(tmp_path, tmp_path, steps=250, pose_refine=True, pose_lr=3e-3)
    trainer = Trainer(cfg, scene, quiet=True)
    train = tiny_scene.splits["train"]
    truth, cameras = tiny_scene.cameras.c2w[train], tiny_scene.cameras[train]
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) - 0.5  # the object's middle
    pixels_before = _reprojection_error(cameras, trainer.poses.refined_c2w().detach(), truth, points)
    rot_before, _ = pose_errors(trainer.poses.refined_c2w(), truth)
    trainer.fit()
    pixels_after = _reprojection_error(cameras, trainer.poses.refined_c2w().detach(), truth, points)
    rot_after, _ = pose_errors(trainer.poses.refined_c2w(), truth)
    assert pixels_after < 0.6 * pixels_before, (pixels_before, pixels_after)
    assert rot_after.mean() < 0.8 * rot_before.mean()


def test_pose_corrections_are_checkpointed_resumed_and_written(tiny_scene_path, tmp_path):
    from nerf.jobs.train import run_training_job

    cfg = tiny_config(tmp_path, tiny_scene_path, steps=10, pose_refine=True, pose_align_steps=2)
    first = run_training_job(cfg, quiet=True)
    trainer = first["trainer"]
    delta = trainer.poses.delta.detach().clone()
    assert delta.abs().max() > 0
    lines = [json.loads(line) for line in (first["run_dir"] / "metrics.jsonl").read_text().splitlines()]
    [final] = [line for line in lines if line["kind"] == "eval"]  # held-out views scored aligned and as given
    assert {"psnr", "psnr_given_poses", "ssim_given_poses"} <= final.keys()
    record = json.loads((first["run_dir"] / REFINED_POSES).read_text())
    assert record["step"] == 10 and len(record["frames"]) == len(trainer.train_ids)
    refined = torch.tensor([f["c2w_refined"] for f in record["frames"]])
    torch.testing.assert_close(refined, trainer.poses.refined_c2w().detach())
    again = Trainer(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=12)),
                    first["scene"], first["run_dir"], quiet=True)
    assert again.resume() and again.step == 10
    torch.testing.assert_close(again.poses.delta.detach(), delta, rtol=0.0, atol=0.0)
    assert again.pose_optimizer.state_dict()["state"][0]["step"] == 10
    off = Trainer(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pose_refine=False)),
                  first["scene"], first["run_dir"], quiet=True)
    assert off.resume() and off.poses is None  # a run continued without refinement uses the given poses


def test_pose_options_are_on_the_command_line():
    from nerf.config import parse_config
    from nerf.errors import ConfigError

    cfg, _ = parse_config(["--pose_refine", "--pose_lr", "2e-3"])
    assert cfg.train.pose_refine and cfg.train.pose_lr == 2e-3
    assert not parse_config([])[0].train.pose_refine  # off by default
    with pytest.raises(ConfigError, match="pose_lr"):
        parse_config(["--pose_lr", "0"])


def _random_poses(n, seed):  # [n, 4, 4] float64 cameras around the origin
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, :3, :3] = so3_exp(torch.randn(n, 3, generator=g, dtype=torch.float64))
    c2w[:, :3, 3] = 4.0 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    return c2w


def test_refined_cameras_put_training_views_at_their_refined_poses_and_keep_the_rest():
    c2w = _random_poses(8, seed=2).float()
    cameras = Cameras.create(c2w, 100.0, 100.0, 50.0, 40.0, 100, 80)
    train = torch.tensor([0, 2, 3, 5, 7])
    held_out = torch.tensor([1, 4, 6])
    g = torch.Generator().manual_seed(5)
    delta = torch.cat([0.02 * torch.randn(len(train), 3, generator=g), 0.05 * torch.randn(len(train), 3, generator=g)], -1)
    moved = refined_cameras(cameras, train, delta)
    expected = c2w[train].double() @ _local(delta.double())
    torch.testing.assert_close(moved.c2w[train], expected.float(), rtol=0.0, atol=1e-6)
    torch.testing.assert_close(moved.c2w[held_out], c2w[held_out], rtol=0.0, atol=0.0)
    torch.testing.assert_close(refined_c2w(c2w[train], delta), moved.c2w[train], rtol=0.0, atol=0.0)
    assert torch.equal(moved.fx, cameras.fx) and torch.equal(cameras.c2w, c2w)  # the input is left alone


def _local(delta):  # [T, 6] -> [T, 4, 4] the correction matrices [[exp(omega), tau], [0, 1]], via scipy
    out = torch.eye(4, dtype=torch.float64).repeat(len(delta), 1, 1)
    out[:, :3, :3] = torch.from_numpy(Rotation.from_rotvec(delta[:, :3].numpy()).as_matrix())
    out[:, :3, 3] = delta[:, 3:]
    return out


def test_a_refined_run_renders_from_its_refined_poses(tiny_scene_path, tmp_path):
    """load_trained_run (test renders, videos, meshes) sees the cameras the trainer evaluated with."""
    from nerf.jobs.run import load_trained_run
    from nerf.jobs.train import run_training_job

    cfg = tiny_config(tmp_path, tiny_scene_path, steps=10, pose_refine=True, pose_align_steps=0)
    first = run_training_job(cfg, quiet=True)
    trainer = first["trainer"]
    run = load_trained_run(first["run_dir"], "cpu")
    expected = refined_cameras(trainer.cameras, trainer.train_ids, trainer.poses.delta.detach())
    torch.testing.assert_close(run.scene.cameras.c2w, expected.c2w, rtol=0.0, atol=1e-6)
    assert not torch.allclose(run.scene.cameras.c2w, first["scene"].cameras.c2w)
    lines = [json.loads(line) for line in (first["run_dir"] / "metrics.jsonl").read_text().splitlines()]
    [final] = [line for line in lines if line["kind"] == "eval"]
    assert "psnr_given_poses" not in final  # pose_align_steps 0: scored at the given poses only


def test_render_scores_a_refined_runs_test_views_aligned_and_as_given(tiny_scene_path, tmp_path):
    from nerf.jobs.render import render_test_split
    from nerf.jobs.run import load_trained_run
    from nerf.jobs.train import run_training_job

    cfg = tiny_config(tmp_path, tiny_scene_path, steps=10, pose_refine=True, pose_align_steps=2)
    run = load_trained_run(run_training_job(cfg, quiet=True)["run_dir"], "cpu")
    result = render_test_split(run, tmp_path / "out", progress=False)
    assert {"psnr_given_poses", "ssim_given_poses"} <= result.keys()
    assert all("psnr_given_pose" in v for v in result["per_view"])


def test_a_run_whose_pose_corrections_do_not_fit_its_scene_is_refused(tiny_scene_path, tmp_path):
    """A checkpoint with corrections for another number of training images: CheckpointError
    naming the checkpoint and both counts, before anything renders."""
    from nerf.errors import CheckpointError
    from nerf.jobs.run import load_trained_run
    from nerf.jobs.train import run_training_job

    cfg = tiny_config(tmp_path, tiny_scene_path, steps=10, pose_refine=True, pose_align_steps=0)
    first = run_training_job(cfg, quiet=True)
    n_train = len(first["trainer"].train_ids)
    [path] = sorted((first["run_dir"] / "checkpoints").glob("*.pt"))[-1:]
    state = torch.load(path, weights_only=True)
    state["poses"]["delta"] = torch.zeros(n_train + 2, 6)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"{path.name}.*\({n_train + 2}, 6\).*{n_train} training images"):
        load_trained_run(first["run_dir"], "cpu")
