"""A run directory opened for rendering and export, and the scene a run trains on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from nerf.config import Config, load_config_file
from nerf.datasets import load_scene
from nerf.datasets.scene import Scene
from nerf.errors import CheckpointError
from nerf.fields import build_field
from nerf.process import prepare_process
from nerf.render.renderer import Renderer
from nerf.train.checkpoint import load_newest_readable
from nerf.train.pose_refine import checked_delta, refined_cameras
from nerf.train.trainer import resolve_device, state_dict_problem


def with_absolute_data(cfg: Config) -> Config:
    """`cfg` with its scene path made absolute, so the run's config.txt names the same scene
    from whatever folder the run is opened later."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data=str(Path(cfg.data.data).resolve())))


def prepare_scene(cfg: Config) -> Scene:
    """Load the configured scene, generating the built-in demo scene first when asked."""
    if cfg.data.generate_demo:
        from nerf.datasets.demo import ensure_demo_scene

        ensure_demo_scene(cfg.data.data)
    return load_scene(cfg.data.data, format=cfg.data.format, downscale=cfg.data.downscale)


@dataclass
class TrainedRun:
    cfg: Config
    scene: Scene
    renderer: Renderer  # on `device`, in eval mode, weights of the newest checkpoint (EMA if kept)
    step: int
    run_dir: Path


def load_trained_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """Config, scene and renderer of the newest checkpoint in `run_dir`."""
    prepare_process()  # malloc tuned, denormals flushed: before any large allocation or thread pool
    run_dir = Path(run_dir)
    if not (run_dir / "config.txt").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.txt)")
    cfg = load_config_file(run_dir / "config.txt")
    dev = resolve_device(device)
    found = load_newest_readable(run_dir, map_location=dev, set_aside=False)  # never runs code
    if found is None:
        raise CheckpointError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}; train first")
    path, state = found
    scene = prepare_scene(cfg)
    field = build_field(cfg.model, scene.aabb, len(scene.splits["train"]))
    renderer = Renderer(field, scene.aabb, cfg.sampler, scene.near, scene.far).to(dev)
    try:
        renderer.load_state_dict(state["renderer"])
        if state.get("ema"):
            field.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not match the run's config.txt ({state_dict_problem(exc)})") from exc
    renderer.eval()
    poses = state.get("poses")
    if poses is not None:  # a pose_refine run renders from its refined poses (nerf/train/pose_refine.py)
        train_ids = scene.splits["train"]
        delta = checked_delta(poses["delta"].cpu(), len(train_ids), path)
        scene = dataclasses.replace(scene, cameras=refined_cameras(scene.cameras, train_ids, delta))
    return TrainedRun(cfg, scene, renderer, int(state["step"]), run_dir)


def training_cameras(run: TrainedRun):
    """The cameras the field was trained on (every camera when the scene has no train split)."""
    ids = run.scene.splits.get("train")
    return run.scene.cameras if ids is None or len(ids) == 0 else run.scene.cameras[torch.as_tensor(ids)]
