"""Held-out PSNR of a run's appearance codes, NeRF-W's protocol: for each test view a code is
fitted on the left half of the photo (the field frozen) and the right half is scored with it.

Also scored on the same right halves: the mean of the training codes (what videos and the test
metrics use) and, for a run without codes, the field as it is, so two runs of one scene (with and
without `appearance_dim`) compare on identical pixels. Nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nerf.errors import ConfigError
from nerf.evaluation.image import psnr
from nerf.jobs.run import TrainedRun, load_trained_run
from nerf.process import prepare_process


@dataclass(frozen=True)
class FitSettings:
    steps: int = 100  # Adam steps fitting each view's code
    rays: int = 2048  # left-half rays per step
    lr: float = 1e-2  # Adam learning rate of the code
    views: int = 0  # test views scored (0 = all)
    seed: int = 0


def _psnr_of(run: TrainedRun, o, d, photo) -> float:  # o, d, photo [P, 3]
    """PSNR of the rays' renders (in chunks of the run's render_chunk) against `photo`."""
    bg = run.scene.render_background.to(o.device)
    chunk = run.cfg.train.render_chunk
    rgb = torch.cat([run.renderer.render_rays(o[i:i + chunk], d[i:i + chunk], bg).rgb for i in range(0, len(o), chunk)])
    return psnr(rgb.clamp(0, 1), photo)


def fit_code(run: TrainedRun, o, d, left, photo, settings: FitSettings) -> torch.Tensor:  # -> [E]
    """The code that best renders the `left` pixels (o, d [P, 3], photo [P, 3]), from the mean."""
    field, renderer = run.renderer.field, run.renderer
    code = field.appearance.weight.detach().mean(dim=0).clone().requires_grad_()
    opt = torch.optim.Adam([code], lr=settings.lr)
    ids = torch.nonzero(left).squeeze(1)
    gen = torch.Generator(device=o.device).manual_seed(settings.seed)
    bg = run.scene.render_background.to(o.device)
    frozen = [p for p in field.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        field.code_override = code
        for _ in range(settings.steps):
            pick = ids[torch.randint(0, len(ids), (settings.rays,), generator=gen, device=o.device)]
            with torch.enable_grad():
                out = renderer.render_rays(o[pick], d[pick], bg)
                loss = torch.nn.functional.mse_loss(out.rgb, photo[pick])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        field.code_override = None
        for p in frozen:
            p.requires_grad_(True)
    return code.detach()


@torch.no_grad()
def benchmark_appearance(run_dir: str, settings: FitSettings, device: str = "auto") -> dict:
    """Per test view and on average: right-half PSNR with the mean code and with the code fitted
    on the left half (runs with codes), or with the field as it is (runs without)."""
    prepare_process()  # malloc tuned, denormals flushed: before any large allocation or thread pool
    run = load_trained_run(run_dir, device)
    field = run.renderer.field
    has_codes = getattr(field, "appearance", None) is not None
    views = [int(v) for v in run.scene.splits["test"]]
    if not views:
        raise ConfigError(f"{run_dir}: the scene has no test views")
    views = views[:settings.views] if settings.views > 0 else views
    cams = run.scene.cameras.to(run.renderer.aabb.device)
    rows = []
    for v in views:
        w, h = run.scene.image_size(v)
        o, d = (t.reshape(-1, 3) for t in cams.image_rays(v))
        photo = run.scene.image_float(v, run.scene.render_background).reshape(-1, 3).to(o.device)
        x = torch.arange(w * h, device=o.device) % w
        left, right = x < w // 2, x >= w // 2
        scored = (o[right], d[right], photo[right])
        if not has_codes:
            rows.append({"view": v, "right_half": _psnr_of(run, *scored)})
            continue
        row = {"view": v, "mean_code": _psnr_of(run, *scored)}
        field.code_override = fit_code(run, o, d, left, photo, settings)
        try:
            row["fitted_code"] = _psnr_of(run, *scored)
        finally:
            field.code_override = None
        rows.append(row)
    keys = [k for k in rows[0] if k != "view"]
    return {"run": str(run_dir), "codes": has_codes, "views": rows,
            "mean": {k: sum(r[k] for r in rows) / len(rows) for k in keys}}


def format_report(result: dict) -> str:
    keys = list(result["mean"])
    lines = [f"{result['run']}: right-half PSNR (dB) of {len(result['views'])} test views"
             + ("; codes fitted on the left half" if result["codes"] else "; no appearance codes"),
             "view  " + "  ".join(f"{k:>12}" for k in keys)]
    for r in result["views"]:
        lines.append(f"{r['view']:>4}  " + "  ".join(f"{r[k]:12.3f}" for k in keys))
    lines.append("mean  " + "  ".join(f"{result['mean'][k]:12.3f}" for k in keys))
    return "\n".join(lines)
