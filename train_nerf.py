"""Train a radiance field: `python train_nerf.py --config configs/demo.txt` (see --help).

`--viewer true` also opens the browser viewer on the run as it trains (nerf/viewer).
"""

import sys

from nerf.config import parse_config
from nerf.errors import NerfError


def main(argv=None) -> None:
    watcher = None
    try:
        from nerf.viewer.config import add_watch_options, watch_config

        cfg, ns = parse_config(argv, description="Train a NeRF on a posed-image scene.", extra=add_watch_options)
        from nerf.jobs.train import run_training_job

        if watch_config(ns).viewer:
            from nerf.viewer.app import TrainingViewer

            watcher = TrainingViewer(watch_config(ns).view)
        result = run_training_job(cfg, on_step=watcher.on_step if watcher else None)
        viewer = watcher.finish(result) if watcher else None
    except NerfError as exc:
        if watcher is not None:
            watcher.close()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if result is not None:  # None: a torchrun rank other than 0 (rank 0 reports)
        m = result["metrics"]
        for kind, path in result["outputs"].items():
            print(f"wrote {kind}: {path}")
        print(f"done in {m['job_seconds']} s: test PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}; "
              f"outputs in {result['run_dir']}")
    if viewer is not None:
        from nerf.viewer.app import serve_until_interrupted

        print(f"viewer still open at {viewer.url} on the final weights; Ctrl+C quits", flush=True)
        serve_until_interrupted(viewer)


if __name__ == "__main__":
    main()
