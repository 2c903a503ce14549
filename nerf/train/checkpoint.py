"""Checkpoints: atomic writes (tmp file + rename), newest-K retention, validated loading."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from nerf.errors import CheckpointError

FORMAT = "nerf-toolkit-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d{6,})\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write `state` as step_NNNNNN.pt atomically and keep only the newest `keep` checkpoints."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:06d}.pt"
    tmp = folder / f".{path.name}.tmp"
    torch.save({"format": FORMAT, "version": VERSION, "step": step, **state}, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; anything else is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated or foreign file: say which and why
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (no '{FORMAT}' header)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} (expected {VERSION})")
    return state
