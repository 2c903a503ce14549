"""The run directory: created once, never silently overwritten, trained by one process at a time.

Re-running the same configuration continues the run in place (it resumes from the newest
checkpoint); a different configuration is refused unless `--overwrite` (start afresh) or
`--resume` (continue the saved run; its model settings must match) is given.

Nothing of an old run is lost to a mistake: `plan_run_dir` only looks (the job calls it, then
loads the scene and builds the trainer, so a bad setting fails first), `open_run_dir` then
acts. `--overwrite` moves the old run aside to a backup folder beside it, and the job deletes
that backup only once the new run has written its first checkpoint. A run name must be a plain
folder name, so a run never resolves to the runs folder itself or outside it.

`RunLock` makes a second training of the same run directory fail at once with a message
naming the process that holds it. It is an advisory `flock` on `<runs_dir>/.<name>.lock`,
which the kernel releases when the holder exits or is killed, so a lock left by a dead
process is never in the way.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nerf.atomic import write_text_atomic
from nerf.config import Config, config_to_text, load_config_file, run_name_problem
from nerf.errors import CheckpointError
from nerf.train.checkpoint import latest_checkpoint

_IGNORED_KEYS = ("resume", "overwrite", "device", "name", "runs_dir")  # keys that do not make a run different (a moved run is the same run)


def _comparable(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = (s.strip() for s in line.split("=", 1))
            if key == "data":  # runs saved before data paths were absolute: relative to here
                value = str(Path(value).resolve())
            if key not in _IGNORED_KEYS:
                out[key] = value
    return out


def checked_run_dir(cfg: Config) -> Path:
    """`cfg.run_dir`, refused when the name could reach the runs folder itself or outside it."""
    problem = run_name_problem(cfg.name)
    runs = Path(cfg.runs_dir)
    run_dir = cfg.run_dir
    if problem is None and run_dir.resolve().parent != runs.resolve():
        problem = "must name a folder directly inside runs_dir"
    if problem:
        raise CheckpointError(f"name = {cfg.name!r}: {problem}")
    return run_dir


@dataclass(frozen=True)
class RunPlan:
    """What opening the run directory will do: "new", "continue" or "replace" (`--overwrite`)."""

    run_dir: Path
    action: str
    resume: bool  # a checkpoint will be loaded


def plan_run_dir(cfg: Config) -> RunPlan:
    """Decide what to do with `cfg.run_dir` without touching it; refusals are CheckpointErrors."""
    run_dir = checked_run_dir(cfg)
    config_path = run_dir / "config.txt"
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a folder; choose another --name")
    if run_dir.is_dir() and any(p for p in run_dir.iterdir()):
        if not config_path.is_file():
            raise CheckpointError(
                f"{run_dir} exists and is not a run directory (no config.txt); choose another --name "
                "(--overwrite replaces runs only, never other folders)"
            )
        if cfg.overwrite:
            return RunPlan(run_dir, "replace", False)
        old = _comparable(config_path.read_text())
        new = _comparable(config_to_text(cfg))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed and not cfg.resume:
            diff = ", ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in changed[:8])
            raise CheckpointError(
                f"{run_dir} already holds a different run ({diff}); pass --overwrite to replace "
                "it, --resume to continue it, or choose another --name"
            )
        if cfg.resume and load_config_file(config_path).model != cfg.model:
            raise CheckpointError(
                f"{config_path}: the saved run uses different model settings; "
                "--resume needs the same model (or pass --overwrite)"
            )
        return RunPlan(run_dir, "continue", latest_checkpoint(run_dir) is not None)
    if cfg.resume:
        raise CheckpointError(f"--resume: {run_dir} holds no checkpoint to resume from")
    return RunPlan(run_dir, "new", False)


def open_run_dir(cfg: Config, plan: RunPlan) -> Path | None:
    """Carry out `plan`: write config.txt, moving a replaced run aside first.

    Returns:
        The backup folder of a replaced run (None otherwise); delete it with
        `drop_backup` once the new run has a checkpoint.
    """
    run_dir, backup = plan.run_dir, None
    try:
        if plan.action == "replace":
            backup = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(run_dir, backup)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.txt", config_to_text(cfg))  # a continued run records its settings
    except OSError as exc:
        raise CheckpointError(f"{run_dir}: cannot create the run directory ({exc.strerror})") from exc
    return backup


def drop_backup(backup: Path) -> None:
    shutil.rmtree(backup, ignore_errors=True)


def prepare_run_dir(cfg: Config) -> tuple[Path, bool]:
    """Plan and open `cfg.run_dir` at once (tests and callers without a trainer to build first);
    a replaced run is deleted here. Returns (run_dir, resume)."""
    plan = plan_run_dir(cfg)
    backup = open_run_dir(cfg, plan)
    if backup is not None:
        drop_backup(backup)
    return plan.run_dir, plan.resume


class RunLock:
    """An exclusive lock on one run directory for the life of a training process.

    The lock file holds the holder's process id, for the refusal message only: the lock itself
    is the kernel's `flock`, gone with the process however it ends. A clean exit removes the
    file; one left by a killed process is simply locked again.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir.with_name(f".{run_dir.name}.lock")
        self.run_dir = run_dir
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise CheckpointError(f"{self.run_dir}: cannot create the run lock {self.path} "
                                      f"({exc.strerror})") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise CheckpointError(
                    f"{self.run_dir}: another training of this run is in progress (process {holder}); wait for "
                    "it to finish, stop it, or choose another --name"
                ) from None
            if self._still_linked(fd):  # else its holder released and removed it while we waited: retry
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in this order, so a waiting process that
        locked the removed file sees it is gone and retries)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
