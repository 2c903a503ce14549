"""The run directory: created once, never silently overwritten.

Re-running the same configuration continues the run in place (it resumes from the newest
checkpoint); a different configuration is refused unless `--overwrite` (start afresh) or
`--resume` (continue the saved run; its model settings must match) is given.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nerf.config import Config, config_to_text, load_config_file
from nerf.errors import CheckpointError
from nerf.train.checkpoint import latest_checkpoint

_IGNORED_KEYS = ("resume", "overwrite", "device")  # keys that do not make a run different


def _comparable(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = (s.strip() for s in line.split("=", 1))
            if key not in _IGNORED_KEYS:
                out[key] = value
    return out


def prepare_run_dir(cfg: Config) -> tuple[Path, bool]:
    """Create or reuse `cfg.run_dir`; returns (run_dir, resume)."""
    run_dir = cfg.run_dir
    config_path = run_dir / "config.txt"
    text = config_to_text(cfg)
    if run_dir.exists() and any(run_dir.iterdir()):
        if cfg.overwrite:
            shutil.rmtree(run_dir)
        else:
            if not config_path.is_file():
                raise CheckpointError(
                    f"{run_dir} exists and is not a run directory (no config.txt); "
                    "choose another --name or pass --overwrite"
                )
            old = _comparable(config_path.read_text())
            new = _comparable(text)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if changed and not cfg.resume:
                diff = ", ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed[:8])
                raise CheckpointError(
                    f"{run_dir} already holds a different run ({diff}); pass --overwrite to replace "
                    "it, --resume to continue it, or choose another --name"
                )
            if cfg.resume:
                saved = load_config_file(config_path)
                if saved.model != cfg.model:
                    raise CheckpointError(
                        f"{config_path}: the saved run uses different model settings; "
                        "--resume needs the same model (or pass --overwrite)"
                    )
                write_text_atomic(config_path, text)  # the run continues with the new settings
            return run_dir, latest_checkpoint(run_dir) is not None
    if cfg.resume and not (run_dir / "checkpoints").is_dir():
        raise CheckpointError(f"--resume: {run_dir} holds no checkpoint to resume from")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config_path, text)
    except OSError as exc:
        raise CheckpointError(f"{run_dir}: cannot create the run directory ({exc.strerror})") from exc
    return run_dir, False


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
