"""What the viewer draws with: a finished run, or snapshots of a run while it trains.

The viewer never renders with the trainer's own modules. A finished run's renderer is used as
loaded; a training run is copied, between two steps (the trainer's StepCallback, in the training
thread), into a renderer the viewer owns. The copy is a clone of the state dict handed over to
the viewer's threads, so training never waits for a frame, and frames, however many tabs ask,
never see weights halfway through an optimiser step. `lock` serialises the viewer's users of the
renderer (the frame loop and the exports).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch

from nerf.config import Config
from nerf.datasets.scene import Scene
from nerf.fields import build_field
from nerf.jobs.run import TrainedRun
from nerf.render.renderer import Renderer

PAUSE_POLL_SECONDS = 0.1  # a paused trainer re-checks its pause flag and Ctrl-C this often


@dataclass
class TrainingStats:
    step: int = 0
    steps: int = 0  # configured total
    loss: float = float("nan")
    psnr: float = float("nan")  # of the last training batch
    steps_per_second: float = 0.0  # over the last STATS_WINDOW seconds, pauses excluded
    rays: int = 0  # rays of the last step
    elapsed: float = 0.0  # seconds spent in training steps
    paused: bool = False
    done: bool = False


class StaticSource:
    """A finished run: one renderer, never changing."""

    live = False

    def __init__(self, run: TrainedRun):
        self.run = run
        self.lock = threading.Lock()
        self.version = 0

    def refresh(self, want: bool = True) -> None:
        """Nothing to take (the call the frame loop makes, lock held, before each frame)."""

    def trained_run(self) -> TrainedRun:
        return self.run


class TrainingSource:
    """A run that trains in this process: its StepCallback takes snapshots for the viewer."""

    STATS_WINDOW = 2.0  # seconds over which steps/s is averaged

    def __init__(self, cfg: Config, scene: Scene, run_dir, device: torch.device, refresh_seconds: float):
        self.cfg, self.scene, self.run_dir = cfg, scene, run_dir
        self.refresh_seconds = refresh_seconds
        self.renderer = Renderer(build_field(cfg.model, scene.aabb, len(scene.splits["train"])), scene.aabb, cfg.sampler,
                                 scene.near, scene.far).to(device).eval()
        self.lock = threading.Lock()  # the viewer's renderer
        self._pending: tuple[int, dict] | None = None  # (step, state) waiting to be loaded
        self._handover = threading.Lock()  # guards _pending and stats (held for microseconds)
        self.wanted = threading.Event()  # the frame loop asks for newer weights
        self._resume = threading.Event()
        self._resume.set()
        self._taken_at = -float("inf")
        self._window: list[tuple[float, int]] = []  # (train seconds, step) for steps/s
        self.version = 0  # bumps with each snapshot loaded
        self.step = 0  # step of the loaded snapshot
        self.stats = TrainingStats(steps=cfg.train.steps)

    @property
    def live(self) -> bool:
        """Weights may still change (training neither paused nor finished)."""
        return not (self.stats.done or self.stats.paused)

    # --- the training thread -------------------------------------------------------------------

    def on_step(self, trainer, stats, seconds: float) -> None:
        """The trainer's StepCallback: statistics, a snapshot when one is wanted, the pause."""
        now = time.perf_counter()
        with self._handover:
            self._window.append((trainer.elapsed, trainer.step))
            while len(self._window) > 2 and self._window[-1][0] - self._window[0][0] > self.STATS_WINDOW:
                self._window.pop(0)
            (t0, s0), (t1, s1) = self._window[0], self._window[-1]
            self.stats.step, self.stats.loss, self.stats.psnr = trainer.step, stats.loss, stats.psnr
            self.stats.rays, self.stats.elapsed = stats.n_rays, trainer.elapsed
            self.stats.steps_per_second = (s1 - s0) / (t1 - t0) if t1 > t0 else 1.0 / max(seconds, 1e-9)
        if self.wanted.is_set() and now - self._taken_at >= self.refresh_seconds:
            self.take_snapshot(trainer)
        if not self._resume.is_set():
            self.take_snapshot(trainer)  # what the viewer shows while paused: these weights
            with self._handover:
                self.stats.paused = True
            while not self._resume.wait(PAUSE_POLL_SECONDS):
                if trainer.interrupt_requested():  # Ctrl-C: the loop saves and stops after this step
                    break
            with self._handover:
                self.stats.paused = False

    def take_snapshot(self, trainer) -> None:
        """Clone the trainer's renderer state (its EMA weights when kept) for the viewer."""
        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in trainer.renderer.state_dict().items()}
            if trainer.ema:
                state.update({f"field.{k}": v.detach().clone() for k, v in trainer.ema.items()})
        with self._handover:
            self._pending = (trainer.step, state)
        self._taken_at = time.perf_counter()
        self.wanted.clear()

    def finish(self, trainer) -> None:
        """Training is over: show its final weights (called after the training job)."""
        self.take_snapshot(trainer)
        with self._handover:
            self.stats.done, self.stats.paused = True, False
            self.stats.step = trainer.step
        self._resume.set()

    def pause(self, paused: bool) -> None:
        """Hold the trainer at its next step boundary (or let it go on)."""
        if paused and not self.stats.done:
            self._resume.clear()
        else:
            self._resume.set()

    def snapshot_stats(self) -> TrainingStats:
        with self._handover:
            return TrainingStats(**vars(self.stats))

    # --- the viewer's threads ------------------------------------------------------------------

    def refresh(self, want: bool = True) -> None:
        """Load the newest snapshot into the viewer's renderer (call with `lock` held); ask for
        the next one while training is live and `want` (some tab is open)."""
        with self._handover:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.step, state = pending
            self.renderer.load_state_dict(state)
            self.version += 1
        if self.live and want:
            self.wanted.set()

    def trained_run(self) -> TrainedRun:
        """The viewer's renderer as a run, for exports (call with `lock` held)."""
        return TrainedRun(self.cfg, self.scene, self.renderer, self.step, self.run_dir)
