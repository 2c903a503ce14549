"""Rendering from a run directory: the test split with metrics, and camera-path videos.

`--upscale s` renders at 1/s of the output resolution and super-resolves each frame with either
given ESRGAN/Real-ESRGAN weights or the scene-adapted RRDBNet (trained on the run's own training
views on first use, then reused from `<run>/sr/`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from nerf import distributed
from nerf.atomic import fresh_folder, write_text_atomic
from nerf.cameras import Cameras
from nerf.config import ELEVATION_MEAN, RenderConfig
from nerf.datasets import load_scene
from nerf.errors import ConfigError, ExportError
from nerf.export.camera_paths import interpolate_path, load_nerfstudio_camera_path, orbit_path, spiral_path
from nerf.export.crop import OrientedBox, cropped_renderer
from nerf.export.nerfstudio import read_dataparser_transforms
from nerf.evaluation.image import OptionalLPIPS
from nerf.evaluation.views import score_views
from nerf.export.video import colorize_depth, write_frames, write_video
from nerf.frames import to_uint8_frame
from nerf.jobs.run import TrainedRun
from nerf.rotations import mean_up
from nerf.train.pose_align import aligned_cameras, held_out_alignment

EMPTY_OPACITY = 0.01  # a path whose every pixel stays below this opacity shows nothing


def output_dir(run: TrainedRun, cfg: RenderConfig) -> Path:
    """The output folder, created and proven writable before anything is rendered."""
    out = Path(cfg.out) if cfg.out else run.run_dir / "renders"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    probe = out / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(f"{out}: cannot write into the output folder ({exc.strerror})") from exc
    return out


def run_render_job(cfg: RenderConfig) -> None:
    """render.py: check every option and the output folder, then the test split and the path.

    The camera path and the SR weights file are checked before the test split is rendered, so
    a mistake in them costs seconds, not a render. Under torchrun each rank renders a share.
    """
    from nerf.jobs.run import load_trained_run
    from nerf.train.trainer import resolve_device

    main_rank = distributed.init_distributed(resolve_device(cfg.device)).is_main
    if cfg.sr_weights and not Path(cfg.sr_weights).is_file():
        raise ConfigError(f"sr_weights = {cfg.sr_weights!r}: file not found")
    run = load_trained_run(cfg.run, cfg.device)
    out = output_dir(run, cfg)
    if cfg.path != "none":
        camera_path(run, cfg)  # a bad path fails here, before the test split is rendered
    if cfg.test:
        m = render_test_split(run, out, progress=main_rank)
        if main_rank:
            print(f"test: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} over {m['views']} views -> {out / 'test'}")
    if cfg.path != "none":
        for kind, path in render_path(run, cfg, out, progress=main_rank).items():
            print(f"wrote {kind}: {path}")


def render_test_split(run: TrainedRun, out: Path, progress: bool = True) -> dict:
    """Render every test view; write images and per-view PSNR/SSIM (test_metrics.json). A run
    that refined its poses scores each view after fitting its pose to its photo, and also at its
    given pose (`psnr_given_poses`), as its training job did (nerf/train/pose_align.py)."""
    scene, renderer = run.scene, run.renderer
    ids = scene.splits.get("test")
    if ids is None or len(ids) == 0:
        raise ExportError(f"{scene.source}: the scene has no test views")
    cams = scene.cameras.to(renderer.aabb.device)
    mine = [ids.tolist()[k] for k in distributed.shard(len(ids))]  # this rank's views
    lpips = OptionalLPIPS(renderer.aabb.device)
    given = None
    alignment = held_out_alignment(run.cfg.train)  # the trainer's protocol
    if alignment is not None:
        given = score_views(renderer, scene, cams, mine, run.cfg.train.render_chunk)
        cams = aligned_cameras(renderer, scene, cams, mine, alignment)
    per_view = score_views(renderer, scene, cams, mine, run.cfg.train.render_chunk, out / "test",
                           "test", progress, lpips)
    if given is not None:
        for v, g in zip(per_view, given):
            v["psnr_given_pose"], v["ssim_given_pose"] = g["psnr"], g["ssim"]
    gathered = distributed.gather_to_main(per_view)
    if gathered is None:
        return {}
    per_view = sorted((v for part in gathered for v in part), key=lambda v: v["view"])
    result = {
        "step": run.step, "views": len(per_view),
        "psnr": float(np.mean([v["psnr"] for v in per_view])),
        "ssim": float(np.mean([v["ssim"] for v in per_view])),
        **lpips.summary(per_view),
        **({} if given is None else {
            "psnr_given_poses": float(np.mean([v["psnr_given_pose"] for v in per_view])),
            "ssim_given_poses": float(np.mean([v["ssim_given_pose"] for v in per_view])),
        }),
        "per_view": per_view,
    }
    write_text_atomic(out / "test_metrics.json", json.dumps(result, indent=1))
    return result


@dataclass(frozen=True)
class PathToRender:
    cameras: Cameras  # normalised frame
    fps: float
    crop: OrientedBox | None = None  # normalised frame; density outside it is dropped
    background: Tensor | None = None  # [3] colour behind the crop (None = the scene's)


def nerfstudio_path(run: TrainedRun, cfg: RenderConfig) -> PathToRender:
    """A camera_path.json in the run's frame: the path is in the frame of `cfg.path_frame` (a
    dataparser_transforms.json, e.g. of a nerfstudio run on the same data) or, by default, in
    this run's own dataparser frame (the normalised frame; <run>/dataparser_transforms.json)."""
    path = load_nerfstudio_camera_path(cfg.path)
    if cfg.path_frame:
        theirs = read_dataparser_transforms(cfg.path_frame)
        path = path.transformed(run.scene.transform.double() @ torch.linalg.inv(theirs))
    path = path.resized(cfg.width, cfg.height)
    return PathToRender(path.cameras, path.fps, path.crop, path.crop_background)


def camera_path(run: TrainedRun, cfg: RenderConfig) -> PathToRender:
    """The cameras of the requested path, in the normalised frame, and the frame rate."""
    scene = run.scene
    train = scene.cameras[scene.splits["train"]]
    # the first training camera's size (every image's when the sizes agree)
    width = cfg.width or int(train.width[0])
    height = cfg.height or int(train.height[0])
    if cfg.path.endswith(".json"):
        plan = nerfstudio_path(run, cfg)
        check_path_cameras(plan.cameras, cfg.path)
        return replace(plan, cameras=plan.cameras.scaled(1.0 / cfg.downscale))
    if cfg.path == "orbit":
        center = (scene.aabb[0] + scene.aabb[1]) / 2 if not scene.unbounded else torch.zeros(3)
        up = torch.as_tensor(mean_up(train.c2w), dtype=torch.float32)
        up = up / up.norm()
        rel = train.centers - center
        radius = float(rel.norm(dim=-1).mean()) * cfg.radius_scale
        if not radius > 1e-6:
            raise ConfigError(f"{run.run_dir}: the orbit radius is {radius:g} (the training cameras sit at the "
                              "orbit centre); use --path interpolate or --path spiral")
        if cfg.elevation != ELEVATION_MEAN:  # negative elevations look up from below
            elevation = cfg.elevation
        else:
            sin_el = (rel / rel.norm(dim=-1, keepdim=True)) @ up
            elevation = math.degrees(math.asin(float(sin_el.mean().clamp(-1, 1))))
        fov = math.degrees(2 * math.atan(0.5 * float(train.height[0]) / float(train.fy[0])))
        cams = orbit_path(center, up, radius, elevation, cfg.frames, width, height, fov)
    elif cfg.path == "spiral":
        cams = spiral_path(train, cfg.frames, near=scene.near, far=scene.far)
    elif cfg.path == "interpolate":
        cams = interpolate_path(train, cfg.frames)
    else:
        raise ConfigError(f"path = {cfg.path!r}: expected orbit, spiral, interpolate, none or a .json file")
    if cfg.path != "orbit" and (cfg.width, cfg.height) != (0, 0):
        cams = cams.scaled(width / float(cams.width[0]))
    return PathToRender(cams.scaled(1.0 / cfg.downscale) if cfg.downscale != 1 else cams, cfg.fps)


ROTATION_TOLERANCE = 1e-3  # max |R^T R - I| of a camera path's rotation part (float32 files, rounding)


def check_path_cameras(cams: Cameras, source: str) -> None:
    """Refuse camera-path frames that cannot be rendered: rotation parts that are not rotations
    (singular, scaled or mirrored matrices) and focal lengths that are not positive."""
    rot = cams.c2w[:, :3, :3].double()  # [C, 3, 3]
    eye = torch.eye(3, dtype=torch.float64)
    error = (rot.transpose(1, 2) @ rot - eye).abs().amax(dim=(1, 2))  # [C]
    det = torch.linalg.det(rot)  # [C]
    bad = torch.nonzero(~((error <= ROTATION_TOLERANCE) & (det > 0))).flatten()
    if len(bad):
        i = int(bad[0])
        raise ConfigError(f"{source}: camera_path frame {i}: the camera-to-world rotation is not a rotation "
                          f"(|R^T R - I| = {float(error[i]):.3g}, det = {float(det[i]):.3g}); {len(bad)} frame(s) "
                          "like this")
    focal_ok = (cams.fx > 0) & (cams.fy > 0) & torch.isfinite(cams.fx) & torch.isfinite(cams.fy)
    if not bool(focal_ok.all()):
        i = int(torch.nonzero(~focal_ok).flatten()[0])
        raise ConfigError(f"{source}: camera_path frame {i}: the field of view gives a focal length of "
                          f"{float(cams.fx[i]):g} px; it must be positive (fov in (0, 180) degrees)")


def _super_resolver(run: TrainedRun, cfg: RenderConfig, progress: bool):
    from nerf.sr.adapt import AdaptConfig, adapted_sr_path, load_adapted_sr, save_adapted_sr, train_adapted_sr
    from nerf.sr.weights import load_sr_weights

    dev = run.renderer.aabb.device
    if cfg.sr_weights:
        return load_sr_weights(cfg.sr_weights, device=dev, expected_scale=cfg.upscale)
    if not adapted_sr_path(run.run_dir, cfg.upscale).is_file():
        if distributed.info().is_main:  # trained once, by rank 0; the others wait and load it
            lr_imgs, hr_imgs = training_pairs(run, cfg.upscale, progress)
            net = train_adapted_sr(lr_imgs, hr_imgs, AdaptConfig(steps=cfg.sr_steps), scale=cfg.upscale,
                                   seed=run.cfg.seed, device=dev, progress=progress)
            save_adapted_sr(net, run.run_dir)
        distributed.barrier()
    return load_adapted_sr(run.run_dir, cfg.upscale, device=dev)


@torch.no_grad()
def training_pairs(run: TrainedRun, scale: int, progress: bool = True) -> tuple[list, list]:
    """(low-resolution NeRF renders, photos) of the training cameras for scene-adaptive SR.

    When the run was trained on images downscaled by at least `scale` (e.g. lego at 200x200 from
    800x800 photos), the renders are made at the training resolution and the targets are the
    photos `scale` times larger, read from disk: exactly the task of upscaling novel views.
    Otherwise the renders are made at 1/scale of the training resolution against its photos.
    """
    scene, renderer = run.scene, run.renderer
    dev = renderer.aabb.device
    ids = scene.splits["train"].tolist()
    bg = scene.render_background.to(dev)
    d = run.cfg.data.downscale
    if d >= scale and d % scale == 0:
        low = scene.cameras.to(dev)
        photos = load_scene(run.cfg.data.data, format=run.cfg.data.format, downscale=d // scale,
                            splits=("train",))
        targets = [photos.image_float(int(i), bg.cpu()) for i in photos.splits["train"]]  # same order
    else:
        low = scene.cameras.scaled(1.0 / scale).to(dev)
        targets = []
        for i in ids:  # each photo at its own size, cut to a multiple of the scale
            w, h = scene.image_size(i)
            targets.append(scene.image_float(i, bg.cpu())[:h - h % scale, :w - w % scale])
    lr_imgs, hr_imgs = [], []
    if len(targets) != len(ids):
        raise ExportError(f"{run.cfg.data.data}: {len(targets)} training photos for {len(ids)} cameras")
    for i, target in zip(tqdm(ids, desc="renders for SR training", disable=not progress), targets):
        lr = renderer.render_image(low, i, bg, run.cfg.train.render_chunk)["rgb"].cpu().numpy()
        hr = target.numpy()
        lr_imgs.append(lr)
        hr_imgs.append(hr[: lr.shape[0] * scale, : lr.shape[1] * scale])
    return lr_imgs, hr_imgs


def warn_if_empty(path: str, max_opacity: float) -> None:
    """Say so on stderr when no pixel of any frame sees anything (the video would be blank)."""
    if max_opacity >= EMPTY_OPACITY:
        return
    hint = ("; a camera_path.json is read in the run's dataparser frame (<run>/dataparser_transforms.json) "
            "unless --path_frame names the frame it was written in") if path.endswith(".json") else ""
    print(f"warning: every frame of the path {path} renders empty (largest opacity {max_opacity:.3g})"
          f"{hint}", file=sys.stderr)


@torch.no_grad()
def render_path(run: TrainedRun, cfg: RenderConfig, out: Path, progress: bool = True) -> dict[str, Path]:
    """Render the camera path; write the requested videos / PNG frames. Returns written paths."""
    kinds = [k.strip() for k in cfg.outputs.split(",") if k.strip()]  # checked by RenderConfig
    plan = camera_path(run, cfg)
    cams, fps = plan.cameras, plan.fps
    dev = run.renderer.aabb.device
    sr = None
    if cfg.upscale > 1:
        sr = _super_resolver(run, cfg, progress)
        cams = cams.scaled(1.0 / cfg.upscale)
    cams = cams.to(dev)
    renderer = run.renderer if plan.crop is None else cropped_renderer(run.renderer, plan.crop)
    bg = (run.scene.render_background if plan.background is None else plan.background).to(dev)
    rendered = {}  # frame index -> (rgb uint8, depth, opacity) for this rank's frames
    for i in tqdm(distributed.shard(len(cams)), desc="path frames", disable=not progress):
        img = renderer.render_image(cams, i, bg, run.cfg.train.render_chunk)
        rgb = img["rgb"].cpu().numpy()
        if sr is not None and "rgb" in kinds:
            from nerf.sr.upscale import upscale_image

            rgb = upscale_image(sr, rgb)
        rendered[i] = (to_uint8_frame(rgb), img["depth"].cpu().numpy(), img["opacity"].cpu().numpy())
    gathered = distributed.gather_to_main(rendered)
    if gathered is None:  # rank 0 writes the videos
        return {}
    for part in gathered:
        rendered.update(part)
    warn_if_empty(cfg.path, max(float(r[2].max()) for r in rendered.values()))
    first_depth, first_opacity = rendered[0][1], rendered[0][2]
    hit = first_depth[first_opacity > 0.5]  # one colour scale for the whole video
    depth_range = (float(np.percentile(hit, 1)), float(np.percentile(hit, 99))) if hit.size else (0.0, 1.0)
    frames: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    for i in range(len(cams)):
        rgb, depth, opacity = rendered[i]
        if "rgb" in kinds:
            frames["rgb"].append(rgb)
        if "depth" in kinds:
            frames["depth"].append(colorize_depth(depth, opacity, *depth_range))
        if "opacity" in kinds:
            frames["opacity"].append(to_uint8_frame(np.repeat(opacity[..., None], 3, axis=-1)))
    written = {}
    suffix = f"_{cfg.path}" if not cfg.path.endswith(".json") else "_camera_path"
    for kind, seq in frames.items():
        if cfg.frame_format in ("mp4", "both"):
            path = out / f"{kind}{suffix}.mp4"
            write_video(path, seq, fps, cfg.video_quality)
            written[kind] = path
        if cfg.frame_format in ("png", "both"):
            folder = out / f"{kind}{suffix}"
            try:
                with fresh_folder(folder, replace=True) as tmp:  # all frames or none
                    write_frames(tmp, seq)
            except OSError as exc:
                raise ExportError(f"{folder}: cannot write the frames ({exc.strerror})") from exc
            written[f"{kind}_frames"] = folder
    return written
