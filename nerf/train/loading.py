"""Open a finished (or running) run directory for rendering and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nerf.config import Config, load_config_file
from nerf.datasets.scene import Scene
from nerf.errors import CheckpointError
from nerf.fields import build_field
from nerf.render.renderer import Renderer
from nerf.train.checkpoint import latest_checkpoint, load_checkpoint
from nerf.train.trainer import resolve_device


@dataclass
class TrainedRun:
    cfg: Config
    scene: Scene
    renderer: Renderer  # on `device`, in eval mode, weights of the newest checkpoint (EMA if kept)
    step: int
    run_dir: Path


def load_trained_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """Config, scene and renderer of the newest checkpoint in `run_dir`."""
    from nerf.train.job import prepare_scene

    run_dir = Path(run_dir)
    if not (run_dir / "config.txt").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.txt)")
    path = latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}; train first")
    cfg = load_config_file(run_dir / "config.txt")
    dev = resolve_device(device)
    state = load_checkpoint(path, map_location=dev)
    scene = prepare_scene(cfg)
    field = build_field(cfg.model, scene.aabb)
    renderer = Renderer(field, scene.aabb, cfg.sampler, scene.near, scene.far).to(dev)
    try:
        renderer.load_state_dict(state["renderer"])
        if state.get("ema"):
            field.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not match the run's config.txt ({exc})") from exc
    renderer.eval()
    return TrainedRun(cfg, scene, renderer, int(state["step"]), run_dir)
