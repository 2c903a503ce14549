"""Train a configuration for its step / time budget and print held-out quality, seconds and steps.

    python tools/benchmark.py --config configs/lego_200.txt
    python tools/benchmark.py --config configs/demo.txt --max_seconds 120

Nothing is written to disk (no run directory); the numbers go to stdout as a table and, with
--json FILE, as one JSON record.
"""

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import run_command  # noqa: E402
from nerf.config import add_json_option, parse_config, write_json_report  # noqa: E402


def main(argv=None) -> None:
    run_command(lambda: _benchmark(argv))


def _benchmark(argv) -> None:
    cfg, ns = parse_config(argv, "Benchmark a training configuration.", add_json_option)
    from nerf.jobs.run import prepare_scene
    from nerf.process import prepare_process
    from nerf.train.trainer import Trainer

    prepare_process()  # malloc tuned, denormals flushed: before any large allocation or thread pool
    scene = prepare_scene(cfg)
    print(scene.summary())
    trainer = Trainer(cfg, scene, run_dir=None)
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    metrics = trainer.evaluate("test", max_views=cfg.data.eval_views)
    record = {
        "config": ns.config, "scene": str(scene.source), "resolution": scene.size_text,
        "steps": trainer.step, "train_seconds": round(trainer.elapsed, 1), "wall_seconds": round(wall, 1),
        "test_views": metrics["views"], "psnr": round(metrics["psnr"], 2),
        "ssim": round(metrics["ssim"], 4), "device": str(trainer.device),
    }
    if ns.json:
        write_json_report(ns.json, record, indent=None)
    width = max(len(k) for k in record)
    for key, value in record.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
