"""Time the browser viewer's frames on a run (see nerf/viewer/bench.py and --help).

    python tools/benchmark_viewer.py --run runs/demo
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.config import run_report_tool  # noqa: E402


def job(cfg) -> dict:
    from nerf.jobs.run import load_trained_run
    from nerf.viewer.bench import measure_viewer_frames

    return measure_viewer_frames(load_trained_run(cfg.run, cfg.device), aspect=cfg.aspect,
                                 moving_frames=cfg.moving_frames)


def text(r: dict) -> str:
    return (f"first frame at {r['first_frame_px']} px: {r['first_frame_seconds']} s (the process's first; new poses "
            f"after it: median {r['new_pose_frame_seconds_median']} s, max {r['new_pose_frame_seconds_max']} s); "
            f"moving at {r['moving_px']} px: {r['moving_frames_per_second']} frames/s over {r['moving_frames']} "
            f"poses (aspect {r['aspect']}, step {r['step']})")


def main(argv=None) -> None:
    from nerf.viewer.bench import ViewerBenchConfig

    run_report_tool(argv, "Time the viewer's frames on a run.", ViewerBenchConfig, job, text)


if __name__ == "__main__":
    main()
