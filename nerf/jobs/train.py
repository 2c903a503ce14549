"""The main job: scene -> run directory -> training -> test metrics -> orbit video and mesh."""

from __future__ import annotations

import time
from dataclasses import replace

from nerf import distributed
from nerf.config import Config, RenderConfig
from nerf.datasets.normalize import camera_layout
from nerf.export.mesh import MeshConfig
from nerf.export.nerfstudio import write_dataparser_transforms
from nerf.jobs.mesh import MeshJobConfig, export_mesh
from nerf.jobs.render import render_path
from nerf.jobs.run import TrainedRun, prepare_scene, with_absolute_data
from nerf.process import prepare_process
from nerf.train.checkpoint import latest_checkpoint
from nerf.train.rundir import RunLock, drop_backup, open_run_dir, plan_run_dir
from nerf.train.trainer import StepCallback, Trainer, resolve_device


def run_training_job(cfg: Config, quiet: bool = False, on_step: StepCallback | None = None) -> dict:
    """Train (or continue) the run of `cfg`, evaluate it on the test split, then export.

    Order matters for the user's data: the run directory is only inspected and locked, then the
    scene is loaded and the trainer built (a bad setting fails here, with the old run intact),
    and only then is the run directory written; a run replaced by `--overwrite` waits in a
    backup folder until the new run's first checkpoint exists.

    `on_step` is handed to Trainer.fit (the browser viewer watches training through it).

    Under torchrun every rank trains; rank 0 alone prepares the run directory, evaluates and
    writes the outputs, and the result of the other ranks is None.
    """
    prepare_process()  # malloc tuned, denormals flushed: before any large allocation or thread pool
    start = time.perf_counter()
    cfg = with_absolute_data(cfg)
    exports = _export_configs(cfg)  # their settings are checked now, not after training
    d = distributed.init_distributed(resolve_device(cfg.device))
    quiet = quiet or not d.is_main
    lock = None
    try:
        if d.is_main:
            plan_run_dir(cfg)  # refuse a wrong run before waiting for anything
            lock = RunLock(cfg.run_dir).acquire()
            plan = plan_run_dir(cfg)  # again, now that no other training can change it
            scene = prepare_scene(cfg)  # may generate the demo scene: once
            trainer = Trainer(cfg, scene, plan.run_dir, quiet=quiet)
            backup = open_run_dir(cfg, plan)
            write_dataparser_transforms(plan.run_dir, scene.transform)  # nerfstudio's frame file
            if backup is not None:
                trainer.on_checkpoint = _dropper(backup, quiet)
                if not quiet:
                    print(f"the old run is kept in {backup} until this run's first checkpoint")
            resume = plan.resume
        distributed.barrier()
        if not d.is_main:
            scene = prepare_scene(cfg)
            trainer = Trainer(cfg, scene, cfg.run_dir, quiet=quiet)
            resume = latest_checkpoint(cfg.run_dir) is not None
        if not quiet:
            print(scene.summary())
        if resume:
            trainer.resume()
        trainer.fit(on_step)
        return _finish(cfg, trainer, scene, d, quiet, start, exports)
    finally:
        if lock is not None:
            lock.release()


def _dropper(backup, quiet: bool):
    """on_checkpoint callback: delete the replaced run once, after the first new checkpoint."""

    def drop(path) -> None:
        if backup.exists():
            drop_backup(backup)
            if not quiet:
                print(f"deleted the replaced run {backup} ({path.name} written)")

    return drop


def _export_configs(cfg: Config) -> tuple[RenderConfig | None, MeshJobConfig | None]:
    """The orbit video's and the mesh's settings (None: not asked for)."""
    run = str(cfg.run_dir)
    rcfg = mcfg = None
    if cfg.output.video_frames > 0:
        rcfg = RenderConfig(run=run, frames=cfg.output.video_frames, fps=cfg.output.video_fps,
                            elevation=cfg.output.video_elevation, outputs="rgb,depth")
    if cfg.output.mesh_resolution > 0:
        mcfg = MeshJobConfig(run=run, mesh=MeshConfig(resolution=cfg.output.mesh_resolution))
    return rcfg, mcfg


def _finish(cfg: Config, trainer: Trainer, scene, d, quiet: bool, start: float, exports) -> dict | None:
    """Rank 0: test metrics, the video (an orbit, or LLFF's spiral for a forward-facing layout)
    and the mesh of the trained run."""
    run_dir = trainer.run_dir
    rcfg, mcfg = exports
    if not d.is_main:
        distributed.barrier()
        return None
    metrics = trainer.evaluate("test", max_views=cfg.data.eval_views, image_dir=run_dir / "renders" / "test")
    run = TrainedRun(cfg, scene, trainer.renderer.eval(), trainer.step, run_dir)
    outputs = {}
    if rcfg is not None:
        train_c2w = scene.cameras.c2w[scene.splits["train"]].double().numpy()
        if camera_layout(train_c2w) == "forward":  # an orbit would swing behind a forward-facing rig
            rcfg = replace(rcfg, path="spiral")
        outputs.update(render_path(run, rcfg, run_dir / "renders", progress=not quiet))
    if mcfg is not None:
        path, stats, seconds = export_mesh(run, mcfg, progress=not quiet)
        outputs["mesh"] = path
        metrics["mesh_faces"] = stats.n_faces
        metrics["mesh_seconds"] = round(seconds, 1)
    metrics["job_seconds"] = round(time.perf_counter() - start, 1)
    distributed.barrier()
    return {"trainer": trainer, "scene": scene, "metrics": metrics, "run_dir": run_dir, "outputs": outputs}
