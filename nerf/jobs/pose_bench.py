"""The pose-refinement check: does learning the poses undo an error in them? One process.

Three trainings of the same configuration and budget (`max_seconds` or `steps`), scored on the
held-out views with their true poses (they were never trained, so never perturbed):

    given      the scene as loaded
    perturbed  every training pose turned by `degrees` about a random axis through its centre
               and moved by `fraction` of the scene size (the aabb's longest side) in a random
               direction (`nerf.train.pose_refine.perturb_poses`, seeded), pose_refine off
    refined    the same perturbed poses, pose_refine on

Each variant reports test PSNR/SSIM twice: at the test views' true poses, and after fitting each
test view's pose to its photo under the trained field (BARF's protocol, nerf/train/pose_align.py:
a field learned from refined poses lives in their frame, which can sit a few hundredths of a
degree from the true one). Also the steps it completed, and the mean rotation (degrees) and centre
(scene units) errors of its training poses against the given ones, before and after.
Nothing is written to disk.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from nerf.config import Config
from nerf.errors import ConfigError
from nerf.jobs.run import prepare_scene
from nerf.process import prepare_process
from nerf.train.pose_refine import perturb_poses, pose_errors
from nerf.train.trainer import Trainer

VARIANTS = ("given", "perturbed", "refined")


@dataclass(frozen=True)
class PoseBenchSettings:
    degrees: float = 1.0  # rotation of each perturbed training pose about its centre
    fraction: float = 0.01  # displacement of each perturbed training centre, as a fraction of the scene size
    seed: int = 0  # seed of the perturbation's axes and directions
    variants: tuple[str, ...] = VARIANTS  # which trainings to run


def _check(settings: PoseBenchSettings) -> None:
    bad = [v for v in settings.variants if v not in VARIANTS]
    if bad or not settings.variants:
        raise ConfigError(f"pose benchmark: variants must be a comma-separated list of {', '.join(VARIANTS)}, "
                          f"got {','.join(settings.variants)}")
    if not (settings.degrees >= 0 and settings.fraction >= 0):
        raise ConfigError(f"pose benchmark: degrees and fraction must be >= 0, got {settings.degrees}, {settings.fraction}")


def _mean_errors(c2w: torch.Tensor, truth: torch.Tensor) -> dict:  # [T, 4, 4] each
    degrees, distances = pose_errors(c2w, truth)
    return {"rotation_deg": round(float(degrees.mean()), 4), "translation": round(float(distances.mean()), 5)}


def benchmark_pose_refine(cfg: Config, settings: PoseBenchSettings, progress: bool = True) -> dict:
    """Train the variants (module docstring) one after the other; returns the report dict."""
    _check(settings)
    prepare_process()  # malloc tuned, denormals flushed: before any large allocation or thread pool
    scene = prepare_scene(cfg)
    train = scene.splits["train"]
    truth = scene.cameras.c2w[train]
    size = float((scene.aabb[1] - scene.aabb[0]).max())
    c2w = scene.cameras.c2w.clone()
    c2w[train] = perturb_poses(truth, settings.degrees, settings.fraction * size, settings.seed)
    perturbed = dataclasses.replace(scene, cameras=dataclasses.replace(scene.cameras, c2w=c2w))
    result = {"scene": str(scene.source), "resolution": f"{scene.width}x{scene.height}",
              "degrees": settings.degrees, "fraction": settings.fraction, "scene_size": round(size, 4),
              "translation_perturbation": round(settings.fraction * size, 5), "seed": settings.seed,
              "max_seconds": cfg.train.max_seconds, "max_steps": cfg.train.steps, "pose_lr": cfg.train.pose_lr,
              "variants": {}}
    for name in settings.variants:
        refine = name == "refined"
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pose_refine=refine))
        trainer = Trainer(run_cfg, scene if name == "given" else perturbed, run_dir=None, quiet=True)
        result["device"] = str(trainer.device)
        before = trainer.cameras.c2w[trainer.train_ids]
        start = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - start
        after = trainer.poses.refined_c2w().detach() if refine else before
        metrics = trainer.evaluate("test", max_views=cfg.data.eval_views, align=True)
        result["variants"][name] = {
            "steps": trainer.step, "train_seconds": round(trainer.elapsed, 1), "wall_seconds": round(wall, 1),
            "test_views": metrics["views"], "psnr": round(metrics["psnr_given_poses"], 2),
            "ssim": round(metrics["ssim_given_poses"], 4),
            "psnr_aligned": round(metrics["psnr"], 2), "ssim_aligned": round(metrics["ssim"], 4),
            "pose_error_before": _mean_errors(before, truth), "pose_error_after": _mean_errors(after, truth),
        }
        if progress:
            print(format_row(name, result["variants"][name]), flush=True)
    return result


def format_row(name: str, row: dict) -> str:
    b, a = row["pose_error_before"], row["pose_error_after"]
    return (f"  {name:<9}  {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  aligned {row['psnr_aligned']:6.2f} dB  "
            f"{row['steps']:6d} steps "
            f"{row['train_seconds']:6.1f} s   pose error {b['rotation_deg']:.3f} deg {b['translation']:.4f} -> "
            f"{a['rotation_deg']:.3f} deg {a['translation']:.4f}")


def format_report(result: dict) -> str:
    lines = [f"{result['scene']} ({result['resolution']}, {result['device']}): training poses perturbed by "
             f"{result['degrees']} deg and {result['translation_perturbation']} ({result['fraction']:.0%} of "
             f"{result['scene_size']}), seed {result['seed']}; test views keep their true poses"]
    lines += [format_row(name, row) for name, row in result["variants"].items()]
    rows = result["variants"]
    if "given" in rows and "refined" in rows:
        lines.append(f"  refined - given: {rows['refined']['psnr'] - rows['given']['psnr']:+.2f} dB at the true test "
                     f"poses, {rows['refined']['psnr_aligned'] - rows['given']['psnr_aligned']:+.2f} dB with each test "
                     "view aligned to the field first")
    return "\n".join(lines)
