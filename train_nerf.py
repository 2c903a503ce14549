"""Train a radiance field: `python train_nerf.py --config configs/demo.txt` (see --help)."""

import sys

from nerf.config import parse_config
from nerf.errors import NerfError


def main(argv=None) -> None:
    try:
        cfg, _ = parse_config(argv, description="Train a NeRF on a posed-image scene.")
        from nerf.jobs.train import run_training_job

        result = run_training_job(cfg)
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return
    m = result["metrics"]
    for kind, path in result["outputs"].items():
        print(f"wrote {kind}: {path}")
    print(f"done in {m['job_seconds']} s: test PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}; "
          f"outputs in {result['run_dir']}")


if __name__ == "__main__":
    main()
