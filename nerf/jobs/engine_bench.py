"""The engine benchmark: the PyTorch reference path against the default path, in one process.

Both variants train and render the same scene with the same configuration and the same starting
weights; they differ only in the kernel backends:

    reference  hash_backend = torch, march_backend = torch, composite_backend = torch
    default    what the configuration says (normally auto: the fastest usable kernels here)

First the default path trains `warmup_steps` steps, so that the field and its occupancy grid
look like a real run's (an untrained field has no empty space to skip and no early stop), or,
with `run`, the newest checkpoint of a trained run of the same configuration is the starting
state (what users render: a converged field is sharper, so rays stop sooner). Then,
for each variant and each of `repeats` rounds, the warmed-up state is restored and the variant
times `steps` training steps (samples per second: samples evaluated with gradient over the
seconds of those steps) and renders the first `views` test views (rays per second, seconds per
view). The report gives medians and the default/reference ratios.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nerf.config import Config
from nerf.errors import CheckpointError, ConfigError
from nerf.jobs.run import prepare_scene
from nerf.process import prepare_process
from nerf.train.checkpoint import load_newest_readable
from nerf.train.trainer import Trainer

REFERENCE = {"hash_backend": "torch", "march_backend": "torch", "composite_backend": "torch"}


@dataclass(frozen=True)
class EngineBenchSettings:
    warmup_steps: int = 300  # default-path steps that shape the field before anything is timed
    steps: int = 30  # training steps timed per round and variant
    views: int = 2  # test views rendered per round and variant
    repeats: int = 3  # rounds; the report gives medians
    run: str = ""  # start from this trained run's newest checkpoint instead of warming up ("" = warm up)


def reference_config(cfg: Config) -> Config:
    """`cfg` with every kernel backend set to the PyTorch reference."""
    model = dataclasses.replace(cfg.model, hash_backend=REFERENCE["hash_backend"])
    sampler = dataclasses.replace(cfg.sampler, march_backend=REFERENCE["march_backend"],
                                  composite_backend=REFERENCE["composite_backend"])
    return dataclasses.replace(cfg, model=model, sampler=sampler)


def _time_training(trainer: Trainer, steps: int) -> tuple[float, int]:
    """Seconds and samples of `steps` training steps."""
    samples, start = 0, time.perf_counter()
    for _ in range(steps):
        samples += trainer.train_step().n_samples
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, samples


@torch.no_grad()
def _time_rendering(trainer: Trainer, views: list[int]) -> tuple[float, int]:
    """Seconds and rays of rendering `views` at full resolution."""
    bg = trainer.background
    rays, start = 0, time.perf_counter()
    for i in views:
        image = trainer.renderer.render_image(trainer.cameras, i, bg, trainer.cfg.train.render_chunk)
        rays += image["rgb"].shape[0] * image["rgb"].shape[1]
    return time.perf_counter() - start, rays


def _trained_state(run: str, device: torch.device) -> tuple[Path, dict]:
    """(checkpoint path, trainer state on `device`) of the newest readable checkpoint of `run`."""
    found = load_newest_readable(Path(run), map_location=device, set_aside=False)
    if found is None:
        raise CheckpointError(f"{run}: no checkpoint to start the benchmark from; train the run first")
    return found


def benchmark_engine(cfg: Config, settings: EngineBenchSettings, progress: bool = True) -> dict:
    """Time the reference and the default path (module docstring); returns the report dict."""
    if min(settings.steps, settings.views, settings.repeats) < 1 or settings.warmup_steps < 0:
        raise ConfigError(f"engine benchmark: steps, views and repeats must be >= 1 and warmup_steps >= 0, "
                          f"got {settings}")
    prepare_process()  # malloc tuned, denormals flushed: before any large allocation or thread pool
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_seconds=0.0, ema_decay=0.0))
    scene = prepare_scene(cfg)
    test = scene.splits.get("test")
    views = (test if test is not None and len(test) else scene.splits["train"])[: settings.views].tolist()
    warm = Trainer(cfg, scene, run_dir=None, quiet=True)
    if settings.run:
        source, state = _trained_state(settings.run, warm.device)
        warm.load_state_dict(state, source=source)  # refuses a run of another model
    else:
        for step in range(settings.warmup_steps):
            warm.train_step()
            if progress and (step + 1) % 100 == 0:
                print(f"warm-up step {step + 1}/{settings.warmup_steps}")
    state = copy.deepcopy(warm.state_dict())
    state["step"] = warm.step
    variants = {"reference": Trainer(reference_config(cfg), scene, run_dir=None, quiet=True),
                "default": Trainer(cfg, scene, run_dir=None, quiet=True)}
    rows: dict[str, dict[str, list[float]]] = {name: {"train": [], "render": [], "view": []} for name in variants}
    for round_ in range(settings.repeats):
        for name, trainer in variants.items():
            trainer.load_state_dict(copy.deepcopy(state), source="warm-up state")
            seconds, samples = _time_training(trainer, settings.steps)
            rows[name]["train"].append(samples / seconds)
            seconds, rays = _time_rendering(trainer, views)
            rows[name]["render"].append(rays / seconds)
            rows[name]["view"].append(seconds / len(views))
            if progress:
                print(f"round {round_ + 1}/{settings.repeats} {name}: {samples / 1e3:.0f}k samples, "
                      f"train {rows[name]['train'][-1] / 1e6:.3f} M samples/s, "
                      f"render {rows[name]['render'][-1] / 1e3:.1f} k rays/s")
    result = {"scene": str(scene.source), "resolution": scene.size_text,
              "device": str(warm.device), "start": settings.run or f"{settings.warmup_steps} warm-up steps",
              "start_step": int(state["step"]), "steps": settings.steps,
              "views": len(views), "repeats": settings.repeats,
              "default_backends": variants["default"].backends(),
              "reference_backends": variants["reference"].backends()}
    for name in variants:
        result[f"{name}_train_samples_per_s"] = statistics.median(rows[name]["train"])
        result[f"{name}_render_rays_per_s"] = statistics.median(rows[name]["render"])
        result[f"{name}_seconds_per_view"] = statistics.median(rows[name]["view"])
    result["train_speedup"] = result["default_train_samples_per_s"] / result["reference_train_samples_per_s"]
    result["render_speedup"] = result["default_render_rays_per_s"] / result["reference_render_rays_per_s"]
    return result


def format_report(result: dict) -> str:
    lines = [f"{result['scene']} ({result['resolution']}, {result['device']}), from {result['start']} "
             f"(step {result['start_step']}), medians of {result['repeats']}:"]
    for name in ("reference", "default"):
        lines.append(f"  {name:<9}  train {result[f'{name}_train_samples_per_s'] / 1e6:7.3f} M samples/s   "
                     f"render {result[f'{name}_render_rays_per_s'] / 1e3:8.1f} k rays/s   "
                     f"{result[f'{name}_seconds_per_view']:7.2f} s/view   ({', '.join(result[f'{name}_backends'])})")
    lines.append(f"  default / reference: training x{result['train_speedup']:.2f}, "
                 f"rendering x{result['render_speedup']:.2f}")
    return "\n".join(lines)
