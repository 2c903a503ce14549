"""The run's training log: metrics.jsonl lines (and TensorBoard events when it is installed).

metrics.jsonl holds one JSON object per line, told apart by `kind`:
    "train"  every `log_every` steps, the window since the previous line: mean `loss`, `psnr`
             of the window's mean MSE, the learning rate `lr` at its last step, `rays` and
             `samples` per step (means), `samples_per_second` and `rays_per_second` over the
             window's step time, `elapsed` training seconds (steps only) and `step`;
    "eval"   each evaluation: step, split, views, psnr, ssim, lpips (or null with
             `lpips_status` saying why it is absent), train_seconds, eval_seconds.
With the `tensorboard` package (`pip install -e ".[tensorboard]"`) the same scalars also go to
event files in <run>/tensorboard/ (train/*, <split>/*); without it the log says so once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TENSORBOARD_HINT = 'pip install -e ".[tensorboard]"'


def tensorboard_writer_class():
    """torch's SummaryWriter, or (None, the reason it is absent)."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs the package)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None, f"TensorBoard logging is off: the tensorboard package is not installed ({TENSORBOARD_HINT})"
    return SummaryWriter, ""


class MetricsLog:
    """Appends training and evaluation lines to <run_dir>/metrics.jsonl (rank 0 only).

    Nothing is written before the first line: the trainer is built before its run directory is
    opened (a replaced run is still in place then), so the event folder is created lazily."""

    def __init__(self, run_dir: Path, every: int, quiet: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.every = every
        self._writer_class, note = tensorboard_writer_class()
        self._writer = None
        if note and not quiet:
            print(note)
        self._reset()

    @property
    def writer(self):
        """The SummaryWriter of <run_dir>/tensorboard, opened at first use (None without tensorboard)."""
        if self._writer is None and self._writer_class is not None:
            self._writer = self._writer_class(log_dir=str(self.path.parent / "tensorboard"))
        return self._writer

    def _reset(self) -> None:
        self.steps, self.loss, self.mse, self.rays, self.samples, self.seconds = 0, 0.0, 0.0, 0, 0, 0.0

    def _append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def train_step(self, step: int, loss: float, psnr: float, lr: float, rays: int, samples: int,
                   seconds: float, elapsed: float) -> dict | None:
        """Account one step; every `every` steps write (and return) the window's line."""
        if self.every <= 0:
            return None
        self.steps += 1
        self.loss += loss
        self.mse += 10.0 ** (-psnr / 10.0)
        self.rays += rays
        self.samples += samples
        self.seconds += seconds
        if step % self.every != 0:
            return None
        n, secs = self.steps, max(self.seconds, 1e-12)
        record = {
            "kind": "train", "step": step, "loss": self.loss / n,
            "psnr": -10.0 * math.log10(max(self.mse / n, 1e-12)), "lr": lr,
            "rays": self.rays / n, "samples": self.samples / n,
            "samples_per_second": self.samples / secs, "rays_per_second": self.rays / secs,
            "elapsed": round(elapsed, 3),
        }
        self._append(record)
        if self.writer is not None:
            for key in ("loss", "psnr", "lr", "samples_per_second", "rays"):
                self.writer.add_scalar(f"train/{key}", record[key], step)
        self._reset()
        return record

    def evaluation(self, record: dict) -> None:
        """Write an evaluation's line (kind "eval")."""
        record = {"kind": "eval", **record}
        self._append(record)
        if self.writer is not None:
            for key in ("psnr", "ssim", "lpips"):
                if record.get(key) is not None:
                    self.writer.add_scalar(f"{record['split']}/{key}", record[key], record["step"])
            self.writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
