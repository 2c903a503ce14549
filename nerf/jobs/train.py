"""The main job: scene -> run directory -> training -> test metrics -> orbit video and mesh."""

from __future__ import annotations

import time

from nerf import distributed
from nerf.allocator import tune_malloc
from nerf.config import Config, RenderConfig
from nerf.export.mesh import MeshConfig
from nerf.jobs.mesh import MeshJobConfig, export_mesh
from nerf.jobs.render import render_path
from nerf.jobs.run import TrainedRun, prepare_scene
from nerf.train.checkpoint import latest_checkpoint
from nerf.train.rundir import prepare_run_dir
from nerf.train.trainer import StepCallback, Trainer, resolve_device


def run_training_job(cfg: Config, quiet: bool = False, on_step: StepCallback | None = None) -> dict:
    """Train (or continue) the run of `cfg`, evaluate it on the test split, then export.

    `on_step` is handed to Trainer.fit (the browser viewer watches training through it).

    Under torchrun every rank trains; rank 0 alone prepares the run directory, evaluates and
    writes the outputs, and the result of the other ranks is None.
    """
    tune_malloc()  # before the first large allocation
    start = time.perf_counter()
    d = distributed.init_distributed(resolve_device(cfg.device))
    quiet = quiet or not d.is_main
    if d.is_main:
        scene = prepare_scene(cfg)  # may generate the demo scene: once
        run_dir, resume = prepare_run_dir(cfg)
    distributed.barrier()
    if not d.is_main:
        scene = prepare_scene(cfg)
        run_dir = cfg.run_dir
        resume = latest_checkpoint(run_dir) is not None
    if not quiet:
        print(scene.summary())
    trainer = Trainer(cfg, scene, run_dir, quiet=quiet)
    if resume:
        trainer.resume()
    trainer.fit(on_step)
    if not d.is_main:
        distributed.barrier()
        return None
    metrics = trainer.evaluate("test", max_views=cfg.data.eval_views, image_dir=run_dir / "renders" / "test")
    run = TrainedRun(cfg, scene, trainer.renderer.eval(), trainer.step, run_dir)
    outputs = {}
    if cfg.output.video_frames > 0:
        rcfg = RenderConfig(run=str(run_dir), frames=cfg.output.video_frames, fps=cfg.output.video_fps,
                            elevation=cfg.output.video_elevation, outputs="rgb,depth")
        outputs.update(render_path(run, rcfg, run_dir / "renders", progress=not quiet))
    if cfg.output.mesh_resolution > 0:
        mcfg = MeshJobConfig(run=str(run_dir), mesh=MeshConfig(resolution=cfg.output.mesh_resolution))
        path, stats, seconds = export_mesh(run, mcfg, progress=not quiet)
        outputs["mesh"] = path
        metrics["mesh_faces"] = stats.n_faces
        metrics["mesh_seconds"] = round(seconds, 1)
    metrics["job_seconds"] = round(time.perf_counter() - start, 1)
    distributed.barrier()
    return {"trainer": trainer, "scene": scene, "metrics": metrics, "run_dir": run_dir, "outputs": outputs}
