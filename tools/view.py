"""Open a trained run in the browser viewer (see --help; `pip install -e ".[viewer]"`).

    python tools/view.py --run runs/demo            # then open http://127.0.0.1:7007
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import run_command  # noqa: E402
from nerf.config import parse_config  # noqa: E402


def main(argv=None) -> None:
    def body() -> None:
        from nerf.viewer.config import ViewJobConfig

        cfg, _ = parse_config(argv, "View a trained run in the browser: fly, keyframe a path, export.",
                              root=ViewJobConfig)
        from nerf.viewer.app import view_job

        view_job(cfg)

    run_command(body)


if __name__ == "__main__":
    main()
