"""Train a radiance field: `python train_nerf.py --config configs/demo.txt` (see --help).

`--viewer` also opens the browser viewer on the run as it trains (nerf/viewer).
"""

from nerf.cli import run_command
from nerf.config import parse_config


def main(argv=None) -> None:
    def body() -> None:
        from nerf.viewer.config import add_watch_options, watch_config

        cfg, ns = parse_config(argv, description="Train a NeRF on a posed-image scene.", extra=add_watch_options)
        from nerf.jobs.train import run_training_job

        watcher = None
        if watch_config(ns).viewer:
            from nerf.viewer.app import TrainingViewer

            watcher = TrainingViewer(watch_config(ns).view)
        try:
            result = run_training_job(cfg, on_step=watcher.on_step if watcher else None)
            viewer = watcher.finish(result) if watcher else None
        except BaseException:
            if watcher is not None:
                watcher.close()
            raise
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

    run_command(body)


if __name__ == "__main__":
    main()
