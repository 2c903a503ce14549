"""The frame loop: one thread renders for every browser tab, cheap frames first.

Each tab (client) reports its camera; the loop decides what to render next:
  * a camera that moved within `rest_seconds` gets a frame at `moving_resolution`;
  * a camera at rest climbs the resolution ladder (moving, 2x, 4x, ... up to the rest
    resolution; while training runs, up to `training_resolution`), one frame per rung, so the
    first refined frame comes quickly and the finest one last;
  * new weights (a training snapshot) re-render each view at the rung it has.
One thread for all tabs means N tabs cost N frames in turn, never N renders at once on the
CPU that trains. The loop knows nothing of viser: it takes poses and hands frames to `send`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from nerf.viewer.camera import ViewPose, pose_cameras
from nerf.viewer.view_render import Frame, render_frame

IDLE_WAIT_SECONDS = 0.05  # the loop sleeps at most this long when nothing needs a frame


def ladder(moving: int, rest: int) -> list[int]:
    """Resolutions a resting view climbs: moving, 2 moving, 4 moving, ..., rest."""
    rungs = [moving]
    while rungs[-1] * 2 < rest:
        rungs.append(rungs[-1] * 2)
    if rest > moving:
        rungs.append(rest)
    return rungs


@dataclass(frozen=True)
class FrameSettings:
    output: str = "rgb"  # rgb | depth | opacity
    moving_resolution: int = 128
    rest_resolution: int = 512
    training_resolution: int = 256
    rest_seconds: float = 0.15


@dataclass
class ClientView:
    pose: ViewPose | None = None  # the newest camera of the tab
    moved_at: float = 0.0
    key: tuple | None = None  # (pose, output) of the frame shown
    resolution: int = 0  # of the frame shown
    version: int = -1  # model version of the frame shown
    shown_at: float = 0.0


@dataclass
class FrameRecord:
    client: int
    resolution: int
    width: int
    height: int
    seconds: float  # render + conversion, without sending
    version: int
    moving: bool
    done_at: float = field(default_factory=time.perf_counter)


class FrameLoop:
    """Renders the views of every tab in one thread; `send(client, frame)` delivers a frame."""

    def __init__(self, source, send: Callable[[int, Frame], None], settings: FrameSettings,
                 background: torch.Tensor, chunk: int):
        self.source, self.send = source, send
        self.settings = settings
        self.background, self.chunk = background, chunk
        self.views: dict[int, ClientView] = {}
        self.records: list[FrameRecord] = []  # the newest frames, for the status line and tests
        self.shown: dict[int, tuple[ViewPose, int, Frame]] = {}  # per tab: pose, resolution, frame sent
        self._lock = threading.Lock()  # views and settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="viewer-frames", daemon=True)
        self.error: str | None = None  # the last render failure, shown in the panel

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    # --- inputs (viser's threads) --------------------------------------------------------------

    def set_pose(self, client: int, pose: ViewPose) -> None:
        with self._lock:
            view = self.views.setdefault(client, ClientView())
            if view.pose != pose:
                view.pose, view.moved_at = pose, time.perf_counter()
        self._wake.set()

    def drop(self, client: int) -> None:
        with self._lock:
            self.views.pop(client, None)
            self.shown.pop(client, None)

    def update_settings(self, **changes) -> None:
        with self._lock:
            self.settings = replace(self.settings, **changes)
        self._wake.set()

    def last_shown(self, client: int) -> tuple[ViewPose, int, Frame] | None:
        """(pose, resolution, frame) of the newest frame sent to `client`."""
        with self._lock:
            return self.shown.get(client)

    def last_record(self, client: int | None = None) -> FrameRecord | None:
        """The newest frame sent (to `client`, or to any tab)."""
        with self._lock:
            mine = [r for r in self.records if client is None or r.client == client]
        return mine[-1] if mine else None

    # --- the decision ----------------------------------------------------------------------------

    def next_resolution(self, view: ClientView, now: float, version: int, live: bool) -> int | None:
        """The resolution of the next frame of `view`, or None when its frame is current."""
        s = self.settings
        if view.pose is None:
            return None
        top = min(s.rest_resolution, s.training_resolution) if live else s.rest_resolution
        rungs = ladder(s.moving_resolution, max(top, s.moving_resolution))
        resting = now - view.moved_at >= s.rest_seconds
        if view.key != (view.pose, s.output):
            if not resting:
                return s.moving_resolution
            return rungs[1] if len(rungs) > 1 else rungs[0]
        if view.version != version and live:
            return min(view.resolution, rungs[-1])
        if resting and view.resolution < rungs[-1]:
            return next(r for r in rungs if r > view.resolution)
        if view.version != version:  # final weights (training done or paused)
            return view.resolution
        return None

    def _pick(self) -> tuple[int, ViewPose, str, int, bool] | None:
        now = time.perf_counter()
        live = self.source.live
        with self._lock:
            jobs = []
            for client, view in self.views.items():
                res = self.next_resolution(view, now, self.source.version, live)
                if res is not None:
                    moving = now - view.moved_at < self.settings.rest_seconds
                    jobs.append((not moving, view.shown_at, client, view.pose, self.settings.output, res, moving))
        if not jobs:
            return None
        _, _, client, pose, output, res, moving = min(jobs, key=lambda j: j[:3])  # moving first, then oldest
        return client, pose, output, res, moving

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                watched = bool(self.views)
            with self.source.lock:
                self.source.refresh(want=watched)
            job = self._pick()
            if job is None:
                self._wake.wait(IDLE_WAIT_SECONDS)
                self._wake.clear()
                continue
            client, pose, output, res, moving = job
            try:
                self._render(client, pose, output, res, moving)
            except Exception as exc:  # a frame must never take the server down
                if self.error is None:
                    print(f"viewer: rendering a frame failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                self.error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    view = self.views.get(client)
                    if view is not None:
                        view.key, view.resolution, view.version = (pose, output), res, self.source.version
                time.sleep(IDLE_WAIT_SECONDS)

    def _render(self, client: int, pose: ViewPose, output: str, res: int, moving: bool) -> None:
        start = time.perf_counter()
        with self.source.lock:
            renderer = self.source.trained_run().renderer
            dev = renderer.aabb.device
            cams = pose_cameras(pose, res).to(dev)
            frame = render_frame(renderer, cams, self.background.to(dev), output, self.chunk)
            version = self.source.version
        seconds = time.perf_counter() - start
        with self._lock:
            view = self.views.get(client)
            if view is None:
                return
            view.key, view.resolution, view.version, view.shown_at = (pose, output), res, version, time.perf_counter()
            self.records.append(FrameRecord(client, res, int(cams.width[0]), int(cams.height[0]),
                                            seconds, version, moving))
            del self.records[:-64]
            self.shown[client] = (pose, res, frame)
        self.send(client, frame)
        self.error = None
