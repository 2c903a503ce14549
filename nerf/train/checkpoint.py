"""Checkpoints: atomic writes (tmp file + rename), newest-K retention, safe validated loading.

Loading uses `torch.load(weights_only=True)`: a checkpoint holds only tensors and plain data,
so a crafted `step_*.pt` whose unpickling would run code is refused, not executed. When the
newest checkpoint cannot be read (a truncated copy, a disk error), `load_newest_readable` falls
back to the newest one that can, renaming the bad file to `*.pt.unreadable` so retention never
prefers it to the good ones, and says so. A failed write (a full disk, Ctrl-C) leaves no
temporary file and the older checkpoints as they were.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

import torch

from nerf.atomic import atomic_file
from nerf.errors import CheckpointError

FORMAT = "nerf-toolkit-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d{6,})\.pt$")
_TEMPORARY = re.compile(r"^\.step_\d{6,}\.tmp-\d+(-\d+)?\.pt$")  # nerf.atomic.temporary_name of a checkpoint


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


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed process left behind.

    Call only while holding the run's lock (no other process is writing)."""
    folder = checkpoint_dir(run_dir)
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name)] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write `state` as step_NNNNNN.pt atomically and keep only the newest `keep` checkpoints."""
    if keep < 1:
        raise CheckpointError(f"keep_checkpoints = {keep}: must be >= 1")
    folder = checkpoint_dir(run_dir)
    path = folder / f"step_{step:06d}.pt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            torch.save({"format": FORMAT, "version": VERSION, "step": step, **state}, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports some write failures as RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: cannot write the checkpoint ({reason}); the older checkpoints are kept") from exc
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; anything else is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: foreign or crafted
        raise CheckpointError(
            f"{path}: refused: it holds Python objects other than tensors and plain data, which could run code "
            "when loaded; only checkpoints written by this toolkit are loaded"
        ) from exc
    except Exception as exc:  # truncated or foreign file: say which and why
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {detail})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (no '{FORMAT}' header)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} (expected {VERSION})")
    return state


def load_newest_readable(run_dir: Path, map_location="cpu", set_aside: bool = True) -> tuple[Path, dict] | None:
    """(path, state) of the newest checkpoint that loads; None when the run has none.

    Each newer checkpoint that cannot be read is reported on stderr; once an older one loads,
    the unreadable ones are renamed to `*.unreadable` with `set_aside` (the training process,
    which holds the run's lock). When none can be read, nothing is renamed and a
    CheckpointError lists why.
    """
    problems, bad = [], []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as exc:
            problems.append(str(exc))
            bad.append(path)
            continue
        for unreadable, problem in zip(bad, problems):
            aside = unreadable.with_name(unreadable.name + ".unreadable")
            if set_aside:
                os.replace(unreadable, aside)
            print(f"warning: {problem}; {'renamed to ' + aside.name + '; ' if set_aside else ''}"
                  f"using the older {path.name}", file=sys.stderr)
        return path, state
    if problems:
        raise CheckpointError(f"{checkpoint_dir(run_dir)}: no readable checkpoint ({'; '.join(problems)})")
    return None
