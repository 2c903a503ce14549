"""Render a trained run: test-split metrics and camera-path videos (see --help)."""

import sys

from nerf.config import RenderConfig, parse_config
from nerf.errors import NerfError


def main(argv=None) -> None:
    try:
        cfg, _ = parse_config(argv, "Render test views and camera-path videos of a run.", root=RenderConfig)
        from nerf import distributed
        from nerf.jobs.render import output_dir, render_path, render_test_split
        from nerf.jobs.run import load_trained_run
        from nerf.train.trainer import resolve_device

        main_rank = distributed.init_distributed(resolve_device(cfg.device)).is_main  # torchrun splits frames
        run = load_trained_run(cfg.run, cfg.device)
        out = output_dir(run, cfg)
        if cfg.test:
            m = render_test_split(run, out, progress=main_rank)
            if main_rank:
                print(f"test: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} over {m['views']} views -> {out / 'test'}")
        if cfg.path != "none":
            for kind, path in render_path(run, cfg, out, progress=main_rank).items():
                print(f"wrote {kind}: {path}")
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
