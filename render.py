"""Render a trained run: test-split metrics and camera-path videos (see --help)."""

from nerf.cli import run_command
from nerf.config import RenderConfig, parse_config


def main(argv=None) -> None:
    def body() -> None:
        cfg, _ = parse_config(argv, "Render test views and camera-path videos of a run.", root=RenderConfig)
        from nerf.jobs.render import run_render_job

        run_render_job(cfg)

    run_command(body)


if __name__ == "__main__":
    main()
