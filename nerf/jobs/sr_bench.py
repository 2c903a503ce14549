"""Does super-resolution help a NeRF: upscaled low-resolution renders against full-size photos.

The benchmark renders a run's first test views at 1/scale of the photos' resolution and
upscales them by `scale` with each method, then scores the results against the photos:

    bicubic   torch's bicubic interpolation (align_corners=False), clamped to [0, 1]
    adapted   the run's scene-adapted RRDBNet (`<run>/sr/adapted_x{scale}.pth`; trained on the
              run's training renders and photos by `train_adapted_sr`, then saved, when missing)
    pretrained  a given ESRGAN / Real-ESRGAN weight file (e.g. realesr-animevideov3.pth)

For a Blender scene trained at downscale 4 (200x200) the renders are 200x200, upscaled to the
800x800 test photos, read from the same folder at downscale 1. Renders and photos are both
composited on the scene's background (white for Blender scenes); photos without alpha are
taken as they are.

The report also separates the two things the gain depends on. `clean_methods` scores the same
upscalers on the photos box-filtered to the render size (what an exact NeRF would render at low
resolution; the loaders' own area downscaling), so it measures the upscaler alone;
`render_psnr` is the renders against those same box-filtered photos, the NeRF's own novel-view
error at low resolution. When that error is as large as what bicubic upscaling loses, it bounds
the gain of any post-pass: on lego at 200 px the adapted net gained +1.81 dB on clean
inputs but +0.58 dB on renders of 27.4 dB, half of whose error lies at scales above 6 px of the
800 px photos (view-dependent colour, not missing detail). `error_fractions` makes the
dependence explicit: inputs `clean + f * (render - clean)` carry a fraction f of the NeRF's error
(f = 0: the photos, f = 1: the renders), each scored for bicubic and the adapted net.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerf.datasets import load_scene
from nerf.errors import ConfigError, SceneError
from nerf.evaluation.image import psnr
from nerf.evaluation.upscaling import Upscaler, bicubic_upscale, box_downscale, compare_upscalers
from nerf.jobs.render import training_pairs
from nerf.jobs.run import TrainedRun, load_trained_run
from nerf.sr.adapt import AdaptConfig, adapted_sr_path, load_adapted_sr, save_adapted_sr, train_adapted_sr
from nerf.sr.upscale import upscale_image
from nerf.sr.weights import load_sr_weights

# the compact Real-ESRGAN net next to the repository: ../shared/weights/realesr-animevideov3.pth
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights" / "realesr-animevideov3.pth"


@dataclass(frozen=True)
class SRBenchConfig:
    run: str = "runs/lego_200"  # run directory (trained at 1/scale of the photos' resolution)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    views: int = 8  # first test views scored (0 = all)
    scale: int = 4  # upscaling factor: renders are 1/scale of the photos' size
    sr_steps: int = 2000  # steps of scene-adaptive SR training when the run has no adapted net
    weights: str = "auto"  # pretrained SR weights (none; auto: ../shared/weights/realesr-animevideov3.pth)
    tile: int = 256  # SR inference tile side in input pixels (0 = whole image)
    error_fractions: str = ""  # e.g. 0.5,0.75: also score box-filtered photos + f * (render - them)


def net_upscaler(model: torch.nn.Module, tile: int = 256) -> Upscaler:
    """An Upscaler running a super-resolution net with tiled inference."""
    def run(image: Tensor) -> Tensor:  # [h, w, 3] -> [s*h, s*w, 3]
        return torch.from_numpy(upscale_image(model, image.detach().cpu().float(), tile=tile))

    return run


def parse_fractions(text: str) -> list[float]:
    """"0.5, 0.75" -> [0.5, 0.75]; each in [0, 1]; "" -> []."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"error_fractions = {text!r}: expected comma-separated numbers") from None
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ConfigError(f"error_fractions = {text!r}: {bad} outside [0, 1]")
    return values


def resolve_weights(weights: str) -> Path | None:
    """The pretrained weight file to use: "auto" -> DEFAULT_WEIGHTS when present, "none" or ""
    -> None, anything else -> that path (load_sr_weights reports a missing file)."""
    if weights in ("", "none"):
        return None
    if weights == "auto":
        return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None
    return Path(weights)


def adapted_net(run: TrainedRun, cfg: SRBenchConfig, progress: bool = True) -> torch.nn.Module:
    """The run's adapted x{scale} RRDBNet, trained and saved first when missing.

    Training uses the same pairs as `render.py --upscale` (training_pairs: the training views
    rendered at 1/scale of the training resolution, against the training photos) for
    cfg.sr_steps steps, seeded with the run's seed; the net is saved to <run>/sr/.

    Args:
        run: the trained run.
        cfg: scale and sr_steps.
        progress: show tqdm bars.

    Returns:
        The RRDBNet in eval mode on the renderer's device.
    """
    dev = run.renderer.aabb.device
    if adapted_sr_path(run.run_dir, cfg.scale).is_file():
        return load_adapted_sr(run.run_dir, cfg.scale, device=dev)
    lr_imgs, hr_imgs = training_pairs(run, cfg.scale, progress)
    net = train_adapted_sr(lr_imgs, hr_imgs, AdaptConfig(steps=cfg.sr_steps), scale=cfg.scale,
                           seed=run.cfg.seed, device=dev, progress=progress)
    save_adapted_sr(net, run.run_dir)
    return net


@torch.no_grad()
def render_test_inputs(run: TrainedRun, cfg: SRBenchConfig) -> tuple[list[Tensor], list[Tensor]]:
    """The first `views` test views: renders at 1/scale of the photos' size, and the photos.

    The photos are the run's scene folder read again at downscale 1 (test split only); each
    pair is checked to be the same view by its file name.

    Args:
        run: the trained run.
        cfg: views and scale.

    Returns:
        (renders [h, w, 3] each, photos [scale*h, scale*w, 3] each), on the CPU.
    """
    scene, data = run.scene, run.cfg.data
    if scene.sizes_differ:  # one scale factor from the run's images to the photos
        raise SceneError(f"{data.data}: the SR benchmark needs images of one size; this scene's images "
                         f"have different sizes ({scene.size_text})")
    photos = load_scene(data.data, format=data.format, downscale=1, splits=("test",))
    ids, photo_ids = scene.splits.get("test"), photos.splits.get("test")
    if ids is None or len(ids) == 0 or photo_ids is None or len(photo_ids) != len(ids):
        raise SceneError(f"{data.data}: the run's test split ({0 if ids is None else len(ids)} views) "
                         f"and the full-size test photos ({0 if photo_ids is None else len(photo_ids)})"
                         " must be the same non-empty set of views")
    if photos.width % cfg.scale or photos.height % cfg.scale:
        raise ConfigError(f"scale = {cfg.scale}: the test photos are {photos.width}x{photos.height}, "
                          "not a multiple of it")
    count = len(ids) if cfg.views <= 0 else min(cfg.views, len(ids))
    dev = run.renderer.aabb.device
    cams = scene.cameras.scaled(photos.width / cfg.scale / scene.width).to(dev)
    bg = scene.render_background
    renders, targets = [], []
    for i, j in zip(ids[:count].tolist(), photo_ids[:count].tolist()):
        if scene.image_paths and photos.image_paths and (
                Path(scene.image_paths[i]).stem != Path(photos.image_paths[j]).stem):
            raise SceneError(f"{data.data}: test view {i} of the run is {scene.image_paths[i]} but the "
                             f"full-size test photo {j} is {photos.image_paths[j]}")
        out = run.renderer.render_image(cams, i, bg.to(dev), run.cfg.train.render_chunk)["rgb"]
        renders.append(out.float().cpu())
        targets.append(photos.image_float(j, bg.cpu()))
    return renders, targets


def benchmark_sr(cfg: SRBenchConfig, progress: bool = True) -> dict:
    """Score bicubic, the scene-adapted net and (when available) pretrained weights on a run.

    Returns:
        {"run", "views", "lr_size", "hr_size", "methods": compare_upscalers' result on the renders,
         "adapted_gain_db": PSNR(adapted) - PSNR(bicubic) on the renders,
         "render_psnr": mean PSNR of the renders against the box-filtered photos,
         "clean_methods": compare_upscalers' result on the box-filtered photos,
         "clean_adapted_gain_db": the adapted net's gain on those,
         "error_sweep": per error fraction f, {"fraction", "input_psnr" (against the box-filtered
         photos; None for f = 0), "bicubic", "adapted" (PSNR against the photos), "gain_db"}}.
    """
    if cfg.scale not in (2, 4):
        raise ConfigError(f"scale = {cfg.scale}: expected 2 or 4")
    fractions = parse_fractions(cfg.error_fractions)
    run = load_trained_run(cfg.run, cfg.device)
    weights = resolve_weights(cfg.weights)
    pretrained = None
    if weights is not None:  # load before the long steps so a bad file fails fast
        pretrained = load_sr_weights(weights, device=run.renderer.aabb.device, expected_scale=cfg.scale)
    renders, targets = render_test_inputs(run, cfg)
    upscalers: dict[str, Upscaler] = {
        "bicubic": lambda image: bicubic_upscale(image, cfg.scale),
        "adapted": net_upscaler(adapted_net(run, cfg, progress), cfg.tile),
    }
    if pretrained is not None:
        upscalers[f"pretrained ({weights.name})"] = net_upscaler(pretrained, cfg.tile)
    methods = compare_upscalers(renders, targets, upscalers, progress)
    clean = [box_downscale(target, cfg.scale) for target in targets]
    clean_methods = compare_upscalers(clean, targets, upscalers, progress)
    render_psnr = float(np.mean([psnr(r, c) for r, c in zip(renders, clean)]))
    sweep = []
    for f in fractions:
        if f in (0.0, 1.0):  # the photos and the renders themselves, scored above; at f = 0
            # the input equals the photos, whose PSNR is infinite and has no JSON number
            scores, input_psnr = (clean_methods, None) if f == 0.0 else (methods, render_psnr)
        else:
            inputs = [c + f * (r - c) for r, c in zip(renders, clean)]
            scores = compare_upscalers(inputs, targets, {k: upscalers[k] for k in ("bicubic", "adapted")})
            input_psnr = float(np.mean([psnr(x, c) for x, c in zip(inputs, clean)]))
        sweep.append({"fraction": f, "input_psnr": input_psnr,
                      "bicubic": scores["bicubic"]["psnr"], "adapted": scores["adapted"]["psnr"],
                      "gain_db": scores["adapted"]["psnr"] - scores["bicubic"]["psnr"]})
    return {
        "run": str(run.run_dir), "views": len(renders),
        "lr_size": f"{renders[0].shape[1]}x{renders[0].shape[0]}",
        "hr_size": f"{targets[0].shape[1]}x{targets[0].shape[0]}",
        "methods": methods,
        "adapted_gain_db": methods["adapted"]["psnr"] - methods["bicubic"]["psnr"],
        "render_psnr": render_psnr,
        "clean_methods": clean_methods,
        "clean_adapted_gain_db": clean_methods["adapted"]["psnr"] - clean_methods["bicubic"]["psnr"],
        "error_sweep": sweep,
    }


def format_report(result: dict) -> str:
    """PSNR / SSIM per method and the adapted net's gain over bicubic, on the renders and on the
    box-filtered photos, as text."""
    lines = [f"{result['run']}: {result['views']} test views, {result['lr_size']} -> {result['hr_size']}"]
    width = max(len(name) for name in result["methods"])
    for title, methods, gain in (
        (f"NeRF renders (PSNR {result['render_psnr']:.2f} dB against the box-filtered photos):",
         result["methods"], result["adapted_gain_db"]),
        ("box-filtered photos (the upscaler alone):", result["clean_methods"],
         result["clean_adapted_gain_db"]),
    ):
        lines.append(f" {title}")
        for name, m in methods.items():
            lines.append(f"  {name:<{width}}  PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.4f}")
        lines.append(f"  adapted - bicubic: {gain:+.2f} dB")
    if result.get("error_sweep"):
        lines.append(" photos + a fraction f of the NeRF's error:")
        for row in result["error_sweep"]:
            input_psnr = "   exact" if row["input_psnr"] is None else f"{row['input_psnr']:6.2f} dB"
            lines.append(f"  f = {row['fraction']:.2f}  input PSNR {input_psnr}  bicubic "
                         f"{row['bicubic']:6.2f} dB  adapted {row['adapted']:6.2f} dB  "
                         f"gain {row['gain_db']:+.2f} dB")
    return "\n".join(lines)
