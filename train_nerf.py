"""Train a radiance field: `python train_nerf.py --config configs/demo.txt` (see --help)."""

from nerf.cli import run_command
from nerf.config import parse_config


def main(argv=None) -> None:
    def body() -> None:
        cfg, _ = parse_config(argv, description="Train a NeRF on a posed-image scene.")
        from nerf.jobs.train import run_training_job

        result = run_training_job(cfg)
        if result is None:  # a torchrun rank other than 0: rank 0 reports
            return
        m = result["metrics"]
        for kind, path in result["outputs"].items():
            print(f"wrote {kind}: {path}")
        print(f"done in {m['job_seconds']} s: test PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}; "
              f"outputs in {result['run_dir']}")

    run_command(body)


if __name__ == "__main__":
    main()
