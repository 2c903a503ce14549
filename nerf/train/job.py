"""The main job: scene -> run directory -> training -> test metrics (-> video and mesh)."""

from __future__ import annotations

import time

from nerf.config import Config
from nerf.datasets import load_scene
from nerf.train.rundir import prepare_run_dir
from nerf.train.trainer import Trainer


def prepare_scene(cfg: Config):
    """Load the configured scene, generating the built-in demo scene first when asked."""
    if cfg.data.generate_demo:
        from nerf.datasets.demo import ensure_demo_scene

        ensure_demo_scene(cfg.data.data)
    return load_scene(cfg.data.data, format=cfg.data.format, downscale=cfg.data.downscale)


def run_training_job(cfg: Config, quiet: bool = False) -> dict:
    """Train (or continue) the run of `cfg` and evaluate it on the test split."""
    start = time.perf_counter()
    scene = prepare_scene(cfg)
    if not quiet:
        print(scene.summary())
    run_dir, resume = prepare_run_dir(cfg)
    trainer = Trainer(cfg, scene, run_dir, quiet=quiet)
    if resume:
        trainer.resume()
    trainer.fit()
    metrics = trainer.evaluate("test", image_dir=run_dir / "renders" / "test")
    metrics["job_seconds"] = round(time.perf_counter() - start, 1)
    return {"trainer": trainer, "scene": scene, "metrics": metrics, "run_dir": run_dir}
