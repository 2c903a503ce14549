"""The training loop: ray batches, loss, optimiser, schedule, evaluation, checkpoints, resume.

One step draws `n_rays` random pixels across all training images (a dynamic count that keeps
the number of samples near `target_samples`, like instant-ngp; pixels the scene masks out, the
padding of images smaller than the largest included, are dropped), renders them, and takes an Adam
step on an MSE or Huber loss (with `pose_refine`, the training rays come from learned corrections
of the camera poses, nerf/train/pose_refine.py, with an Adam of their own). RGBA scenes are
composited on a random background per ray so the field cannot bake the background into its
colours. All randomness flows from one generator, so CPU runs with a fixed seed are
deterministic and a resumed run continues the same curve.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from nerf import distributed
from nerf.atomic import write_text_atomic
from nerf.config import Config, config_to_text
from nerf.datasets.scene import Scene
from nerf.errors import CheckpointError, ConfigError, TrainingError
from nerf.evaluation.image import OptionalLPIPS
from nerf.evaluation.views import score_views
from nerf.fields import build_field
from nerf.render.renderer import Renderer
from nerf.train.checkpoint import load_newest_readable, remove_stale_temporaries, save_checkpoint
from nerf.train.metrics_log import MetricsLog
from nerf.train.pose_align import aligned_cameras, held_out_alignment
from nerf.train.pose_refine import PoseRefinement, checked_delta, pose_errors, refined_cameras


RAY_COUNT_MULTIPLE = 256  # dynamic ray counts are rounded to this
RANK_SEED_STRIDE = 1_000_003  # seed offset between ranks (and between a resumed rank's streams)
REFINED_POSES = "refined_poses.json"  # written into the run directory with each checkpoint (pose_refine)


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available; under torchrun each process takes its local GPU."""
    d = distributed.info()
    if d.enabled:
        name = distributed.device_for_rank(name, d.local_rank)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {name!r}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device = {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device = {name!r}: Apple MPS is not available on this machine; use --device cpu or auto")
    return device


def state_dict_problem(exc: Exception) -> str:
    """torch's state-dict mismatch (a multi-line diff) as one short line: its first problem."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0] if lines else ""
    more = f" and {len(lines) - 2} more" if len(lines) > 2 else ""
    return f"{detail[:200]}{more}"


def _never() -> bool:
    return False


@contextmanager
def _interrupt_between_steps():
    """Yield `interrupted() -> bool`: SIGINT sets a flag the loop reads between steps (only in
    the main thread, where Python delivers signals); a second SIGINT raises at once."""
    import signal
    import threading

    flag = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if flag:
            raise KeyboardInterrupt("interrupted twice; stopped without a checkpoint of the current step")
        flag.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(flag)
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class StepStats:
    loss: float
    psnr: float
    n_rays: int
    n_samples: int


# Called by Trainer.fit in the training thread after each step (and its checkpoint or
# evaluation), with the trainer, the step's stats and the step's seconds. Between steps the
# weights and the occupancy grid are consistent, so a viewer copies them here; a callback may
# block (a viewer's pause button) without the wait counting towards `max_seconds`.
StepCallback = Callable[["Trainer", StepStats, float], None]


class Trainer:
    """Trains a radiance field on a Scene and writes the run directory."""

    def __init__(self, cfg: Config, scene: Scene, run_dir: Path | None = None, quiet: bool = False):
        self.dist = distributed.info()
        self.cfg, self.scene, self.run_dir = cfg, scene, run_dir
        self.quiet = quiet or not self.dist.is_main  # logs and progress bars print once
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.field = build_field(cfg.model, scene.aabb, len(scene.splits["train"])).to(self.device)
        self.renderer = Renderer(self.field, scene.aabb, cfg.sampler, scene.near, scene.far).to(self.device)
        self.cameras = scene.cameras.to(self.device)
        self.train_ids = scene.splits["train"].to(self.device)
        if len(self.train_ids) == 0:
            raise TrainingError(f"{scene.source}: the scene has no training images")
        if self.renderer.grid is not None:
            self.renderer.grid.mark_invisible_cells(self.cameras[self.train_ids.cpu()])
        groups = self.field.parameter_groups(cfg.train.weight_decay)
        # fused: one kernel for all parameters (CPU: 0.6 ms against 5.4 ms per step for the
        # for-loop Adam on a 2^17 x 8 level table)
        self.optimizer = torch.optim.Adam(groups, lr=cfg.train.lr, betas=(0.9, 0.99), eps=1e-15,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.poses = self.pose_optimizer = None
        if cfg.train.pose_refine:
            self.poses = PoseRefinement(self.cameras.c2w[self.train_ids])
            self.pose_optimizer = torch.optim.Adam(self.poses.parameters(), lr=cfg.train.pose_lr,
                                                   betas=(0.9, 0.99), eps=1e-15)
        # each rank draws its own rays: rank-offset seeds (rank 0 = the single-process stream)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed + RANK_SEED_STRIDE * self.dist.rank)
        self.ddp = None
        if self.dist.enabled and self.field.sampling == "occupancy":  # the renderer calls the field itself
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.field, device_ids=ids)
        # training pixels, flat: [T * H * W, 3|4] uint8
        imgs = scene.images[scene.splits["train"]]
        self.pixels = imgs.reshape(-1, imgs.shape[-1]).to(self.device)
        self.mask = None if scene.masks is None else scene.masks[scene.splits["train"]].reshape(-1).to(self.device)
        self.height, self.width = scene.height, scene.width
        self.background = scene.render_background.to(self.device)
        # the per-step budget is shared by the ranks, so the total batch does not depend on N
        self.target_samples = max(1, cfg.train.target_samples // self.dist.world_size)
        self.max_rays = max(RAY_COUNT_MULTIPLE, cfg.train.max_rays // self.dist.world_size)
        self.n_rays = max(RAY_COUNT_MULTIPLE, cfg.train.initial_rays // self.dist.world_size)
        self.step = 0
        self.elapsed = 0.0  # seconds spent in training steps (not evaluation or checkpoints)
        self.ema = (
            {k: v.detach().clone() for k, v in self.field.state_dict().items()}
            if cfg.train.ema_decay > 0 else None
        )
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.on_checkpoint = None  # called with each checkpoint's path after it is written (rank 0)
        self.interrupt_requested = _never  # during fit: whether Ctrl-C asked training to stop
        self.log = MetricsLog(run_dir, cfg.train.log_every, self.quiet) if run_dir and self.dist.is_main else None
        self._lpips = None  # built at the first evaluation
        if not quiet:
            print(f"device {self.device}; backends: {', '.join(self.backends())}")

    def backends(self) -> list[str]:
        """The kernels this run uses, for the log (field, marching, compositing)."""
        from nerf.render.composite import pick_backend as composite_backend
        from nerf.sampling.march import pick_backend as march_backend

        s = self.cfg.sampler
        used = self.field.kernel_backends(self.device)
        if self.renderer.grid is not None:
            used.append(f"marching {march_backend(s.march_backend, self.device)}")
        return used + [f"compositing {composite_backend(s.composite_backend, self.device)}"]

    # --- one step ------------------------------------------------------------------------------

    def progress(self) -> float:
        """Fraction of training done, by steps or by the wall-clock budget, whichever is further."""
        p = self.step / max(self.cfg.train.steps, 1)
        if self.cfg.train.max_seconds > 0:
            p = max(p, self.elapsed / self.cfg.train.max_seconds)
        return min(p, 1.0)

    def learning_rate(self, base: float | None = None) -> float:
        """`base` (default: the field's lr) after the warm-up and decay of this step."""
        t = self.cfg.train
        warm = min(1.0, (self.step + 1) / max(t.lr_warmup, 1))
        return (t.lr if base is None else base) * warm * t.lr_final_factor ** self.progress()

    def sample_batch(self) -> tuple[Tensor, Tensor, Tensor]:
        """Random training rays and their target colours: origins, directions [N, 3], rgb [N, 3]."""
        n = self.n_rays
        hw = self.height * self.width
        idx = torch.randint(0, self.pixels.shape[0], (n,), device=self.device, generator=self.generator)
        if self.mask is not None:
            idx = idx[self.mask[idx]]
        image = idx // hw  # [N] index among the training images (pose corrections, appearance codes)
        self._batch_images = image
        pix = idx % hw
        origins, directions = self.cameras.pixel_rays(self.train_ids[image], pix % self.width, pix // self.width)
        if self.poses is not None:
            origins, directions = self.poses(image, origins, directions)
        rgba = self.pixels[idx].float() / 255.0
        if rgba.shape[-1] == 4:
            if self.cfg.train.random_background:
                bg = torch.rand(len(idx), 3, device=self.device, generator=self.generator)
            else:
                bg = self.background.expand(len(idx), 3)
            target = rgba[:, :3] * rgba[:, 3:] + bg * (1.0 - rgba[:, 3:])
        else:
            bg = self.background
            target = rgba
        self._batch_background = bg
        return origins, directions, target

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.cfg.train.loss == "huber":
            return F.smooth_l1_loss(pred, target, beta=self.cfg.train.huber_delta)
        return F.mse_loss(pred, target)

    def _update_grid(self) -> None:
        grid = self.renderer.grid
        s = self.cfg.sampler
        if grid is None or self.step % s.grid_update_every != 0:
            return
        step = self.renderer.step
        grid.update(
            lambda x: self.field.query_density(x) * step,
            warmup=self.step < s.grid_warmup, ema=s.grid_ema, threshold=s.grid_threshold,
            generator=self.generator, reduce_fn=distributed.all_reduce_max_ if self.dist.enabled else None,
        )

    def train_step(self) -> StepStats:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        if self.pose_optimizer is not None:
            self.pose_optimizer.param_groups[0]["lr"] = self.learning_rate(self.cfg.train.pose_lr)
        self._update_grid()
        origins, directions, target = self.sample_batch()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            out = self.renderer.render_rays(
                origins, directions, self._batch_background, train=True, generator=self.generator,
                field_forward=self.ddp, image_ids=self._batch_images if self.cfg.model.appearance_dim else None,
            )
        loss = self._loss(out.rgb, target)
        if out.coarse_rgb is not None:
            loss = loss + self._loss(out.coarse_rgb, target)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"step {self.step}: the loss became {float(loss.detach())}; training stopped. The last good "
                "checkpoint is kept; try a lower --lr or --loss huber"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.pose_optimizer is not None:
            self.pose_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.enabled and self.ddp is None:
            self._average_gradients(self.field.parameters())
        if self.dist.enabled and self.poses is not None:  # DDP wraps the field only
            self._average_gradients(self.poses.parameters())
        self.optimizer.step()
        if self.pose_optimizer is not None:
            self.pose_optimizer.step()
        self._update_ema()
        self.step += 1
        if out.n_samples > 0 and self.field.sampling == "occupancy":  # samples per ray vary
            wanted = self.n_rays * self.target_samples / out.n_samples
            wanted = int(math.ceil(wanted / RAY_COUNT_MULTIPLE) * RAY_COUNT_MULTIPLE)
            self.n_rays = max(RAY_COUNT_MULTIPLE, min(self.max_rays, wanted))
        with torch.no_grad():
            mse = F.mse_loss(out.rgb, target)
        return StepStats(float(loss.detach()), -10.0 * math.log10(max(float(mse), 1e-12)), len(origins), out.n_samples)

    def _average_gradients(self, parameters) -> None:
        """What DDP does, for fields whose forward DDP cannot wrap (the vanilla coarse + fine pair)
        and for the pose corrections."""
        import torch.distributed as dist

        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.dist.world_size

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        d = self.cfg.train.ema_decay
        with torch.no_grad():
            for k, v in self.field.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(d).add_(v, alpha=1 - d)

    # --- the loop ------------------------------------------------------------------------------

    def fit(self, on_step: StepCallback | None = None) -> None:
        """Train until `steps` or `max_seconds`, with periodic checkpoints and evaluations;
        `on_step` runs after every step (see StepCallback).

        Ctrl-C (SIGINT) is taken between steps, never inside one: the step in progress finishes,
        a checkpoint of it is written (with a run directory) and KeyboardInterrupt is raised
        with a one-line message saying where; a second Ctrl-C stops at once.
        """
        t = self.cfg.train
        bar = tqdm(total=t.steps, initial=self.step, disable=self.quiet, desc="train", dynamic_ncols=True)
        with _interrupt_between_steps() as interrupted:
            self.interrupt_requested = interrupted  # a step callback that blocks (a pause) asks it
            try:
                self._loop(bar, interrupted, on_step)
            finally:
                self.interrupt_requested = _never
        bar.close()
        if self.log is not None:
            self.log.flush()
        if self.run_dir is not None:
            self.save()

    def _loop(self, bar, interrupted, on_step: StepCallback | None) -> None:
        t = self.cfg.train
        while self.step < t.steps and (t.max_seconds <= 0 or self.elapsed < t.max_seconds):
            if interrupted():
                bar.close()
                where = ""
                if self.run_dir is not None and self.dist.is_main:
                    path = save_checkpoint(self.run_dir, self.step, self.state_dict(), t.keep_checkpoints)
                    if self.on_checkpoint is not None:  # e.g. drop the run an --overwrite replaced
                        self.on_checkpoint(path)
                    where = f"; saved {path}; run the same command to continue"
                raise KeyboardInterrupt(f"training stopped at step {self.step}{where}")
            start = time.perf_counter()
            stats = self.train_step()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - start
            self.elapsed += dt
            bar.update(1)
            if self.log is not None:
                self.log.train_step(self.step, stats.loss, stats.psnr, self.optimizer.param_groups[0]["lr"],
                                    stats.n_rays, stats.n_samples, dt, self.elapsed)
            bar.set_postfix(loss=f"{stats.loss:.4f}", psnr=f"{stats.psnr:.2f}",
                            rays=stats.n_rays, rays_s=f"{stats.n_rays / dt:.0f}")
            if self.run_dir is not None and t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save()
            if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
                if self.dist.is_main:
                    self.evaluate(max_views=self.cfg.data.eval_views)
                distributed.barrier()
            if on_step is not None:
                on_step(self, stats, dt)
            if t.max_seconds > 0 and self.dist.enabled:
                self._agree_on_time()

    # --- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str = "test", max_views: int = 0, image_dir: Path | None = None,
                 align: bool | None = None) -> dict:
        """PSNR/SSIM (LPIPS when available) on held-out views; logged to metrics.jsonl ("eval").

        `align` (default: when the run refines its poses and `pose_align_steps` > 0) first fits
        each held-out view's pose to its photo (nerf/train/pose_align.py); the record then also
        holds the scores at the given poses (`psnr_given_poses`, `ssim_given_poses`)."""
        ids = self.scene.splits.get(split)
        if ids is None or len(ids) == 0:
            ids, split = self.scene.splits["train"], "train"
        ids = ids[:max_views] if max_views > 0 else ids
        start = time.perf_counter()
        self._lpips = self._lpips or OptionalLPIPS(self.device)
        cameras = self.cameras
        given = None  # scores of held-out views at their given poses, when they are aligned first
        if self.poses is not None:  # training views (evaluated when there is no held-out split) at their refined poses
            cameras = refined_cameras(cameras, self.train_ids, self.poses.delta.detach())
        with self._ema_weights():
            alignment = held_out_alignment(self.cfg.train, align) if split != "train" else None
            if alignment is not None:
                given = score_views(self.renderer, self.scene, cameras, ids.tolist(), self.cfg.train.render_chunk)
                cameras = aligned_cameras(self.renderer, self.scene, cameras, ids.tolist(), alignment)
            values = score_views(self.renderer, self.scene, cameras, ids.tolist(),
                                 self.cfg.train.render_chunk, image_dir, split, progress=not self.quiet,
                                 lpips=self._lpips)
        record = {
            "step": self.step, "split": split, "views": len(values),
            "psnr": sum(v["psnr"] for v in values) / len(values),
            "ssim": sum(v["ssim"] for v in values) / len(values),
            **self._lpips.summary(values),
            **({} if given is None else {
                "psnr_given_poses": sum(v["psnr"] for v in given) / len(given),
                "ssim_given_poses": sum(v["ssim"] for v in given) / len(given),
            }),
            "train_seconds": round(self.elapsed, 2),
            "eval_seconds": round(time.perf_counter() - start, 2),
        }
        if self.log is not None:
            self.log.evaluation(record)
        if not self.quiet:
            aligned = "" if given is None else f"; poses aligned, {record['psnr_given_poses']:.2f} dB at the given poses"
            print(f"step {self.step}: {split} PSNR {record['psnr']:.2f} dB, SSIM {record['ssim']:.4f} "
                  f"({len(values)} views{aligned})")
        return record

    @contextmanager
    def _ema_weights(self):
        """Evaluate with the EMA weights when they are kept; restore the trained ones after."""
        if self.ema is None:
            yield
            return
        saved = {k: v.clone() for k, v in self.field.state_dict().items()}
        self.field.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.field.load_state_dict(saved)

    # --- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "model_kind": self.cfg.model.model,
            "config": config_to_text(self.cfg),
            "renderer": self.renderer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "n_rays_total": self.n_rays * self.dist.world_size,  # resumable with any process count
            "elapsed": self.elapsed,
            "ema": self.ema,
            "poses": None if self.poses is None else {
                "delta": self.poses.delta.detach().clone(), "optimizer": self.pose_optimizer.state_dict(),
            },
        }

    def _agree_on_time(self) -> None:
        """Ranks stop on the same step: the time budget follows rank 0's clock."""
        clock = torch.tensor([self.elapsed], dtype=torch.float64, device=self.device)
        self.elapsed = float(distributed.broadcast_(clock)[0])

    def save(self) -> Path | None:
        """Checkpoint on rank 0 (atomic); the other ranks wait for it."""
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.run_dir, self.step, self.state_dict(), self.cfg.train.keep_checkpoints)
            if self.poses is not None:
                self.write_refined_poses()
            if self.on_checkpoint is not None:
                self.on_checkpoint(path)
        distributed.barrier()
        return path

    def write_refined_poses(self) -> Path:
        """<run>/refined_poses.json: each training image's given and refined camera-to-world
        (OpenCV axes, the trained frame: dataparser_transforms.json maps the data's frame to it)
        and how far refinement moved it (degrees, scene units)."""
        refined = self.poses.refined_c2w().detach()
        degrees, distances = pose_errors(refined, self.poses.given)
        train_ids = self.train_ids.tolist()
        frames = [{
            "image": self.scene.image_paths[i] if i < len(self.scene.image_paths) else None,
            "camera_index": i,
            "c2w_given": self.poses.given[k].tolist(),
            "c2w_refined": refined[k].tolist(),
            "rotation_deg": round(float(degrees[k]), 5),
            "translation": round(float(distances[k]), 6),
        } for k, i in enumerate(train_ids)]
        record = {"step": self.step, "frame": "trained (normalised) frame, OpenCV camera axes",
                  "correction": "c2w_refined = c2w_given @ [[exp(omega), tau], [0, 1]]", "frames": frames}
        path = self.run_dir / REFINED_POSES
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")
        return path

    def load_state_dict(self, state: dict, source: Path) -> None:
        if state.get("model_kind") != self.cfg.model.model:
            raise CheckpointError(
                f"{source}: checkpoint of a {state.get('model_kind')!r} model, this run trains "
                f"{self.cfg.model.model!r}"
            )
        try:
            self.renderer.load_state_dict(state["renderer"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{source}: does not match this model ({state_dict_problem(exc)})") from exc
        self.step = int(state["step"])
        if self.dist.rank == 0:
            self.generator.set_state(state["generator"].to(self.generator.get_state().device))
        else:  # only rank 0's stream is saved: other ranks start a fresh stream of their own
            self.generator.manual_seed(self.cfg.seed + RANK_SEED_STRIDE * self.dist.rank + self.step)
        self.n_rays = max(RAY_COUNT_MULTIPLE, int(state["n_rays_total"]) // self.dist.world_size)
        self.elapsed = float(state["elapsed"])
        self.ema = state.get("ema")
        self._load_poses(state.get("poses"), source)

    def _load_poses(self, saved: dict | None, source: Path) -> None:
        """The pose corrections of a checkpoint; a run that did not refine poses (continued with
        --resume --pose_refine) starts from the given ones; a refining run continued without
        pose_refine trains on the given poses again."""
        if self.poses is None or saved is None:
            return
        delta = checked_delta(saved["delta"], self.poses.delta.shape[0], source)
        with torch.no_grad():
            self.poses.delta.copy_(delta)
        try:
            self.pose_optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{source}: pose optimiser state does not match ({state_dict_problem(exc)})") from exc

    def resume(self) -> bool:
        """Restore the newest readable checkpoint of the run directory; False when there is none.

        Temporary files of a write that a killed process left are removed first, and an
        unreadable newest checkpoint is set aside with a warning (`load_newest_readable`).
        """
        if self.run_dir is None:
            return False
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir)
        found = load_newest_readable(self.run_dir, map_location=self.device, set_aside=self.dist.is_main)
        if found is None:
            return False
        path, state = found
        self.load_state_dict(state, path)
        if not self.quiet:
            print(f"resumed from {path} (step {self.step})")
        return True
