"""Exports started from the viewer run one at a time in a worker thread, so a button never
blocks the server and a second click cannot start a second lattice in memory."""

from __future__ import annotations

import threading
import traceback
from typing import Callable

from nerf.errors import NerfError


class BackgroundJob:
    """Runs at most one job; `on_done(name, message, ok)` reports its end (in the worker)."""

    def __init__(self, on_done: Callable[[str, str, bool], None]):
        self.on_done = on_done
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.running: str | None = None  # name of the job in progress

    def start(self, name: str, job: Callable[[], str]) -> bool:
        """Start `job() -> message` unless one is running; False when refused."""
        with self._lock:
            if self.running is not None:
                return False
            self.running = name
            self._thread = threading.Thread(target=self._run, args=(name, job), name=f"viewer-{name}", daemon=True)
            self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, name: str, job: Callable[[], str]) -> None:
        try:
            message, ok = job(), True
        except NerfError as exc:
            message, ok = str(exc), False
        except Exception as exc:  # reported in the browser and on the console, the server stays up
            traceback.print_exc()
            message, ok = f"{type(exc).__name__}: {exc}", False
        with self._lock:
            self.running = None
        self.on_done(name, message, ok)
