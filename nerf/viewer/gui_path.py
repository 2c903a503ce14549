"""The Camera path panel: keyframes from the current view, fps / seconds / field of view / size,
a preview in the browser, and the saved camera_path.json with the command that renders it."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np

from nerf.errors import ExportError
from nerf.viewer.camera import pose_from_c2w, vertical_fov
from nerf.viewer.camera_path import PathSettings, nerfstudio_camera_path, path_cameras, render_command, write_camera_path
from nerf.viewer.scene_view import move_client_camera

KEY_COLOR = (230, 90, 30)
PATH_COLOR = (230, 90, 30)
PATHS_FOLDER = "camera_paths"  # inside the run directory


def checked_file_name(name: str, suffixes: tuple[str, ...], field: str) -> str:
    """A bare file name with one of `suffixes` (no folders: exports stay in the run directory)."""
    name = name.strip()
    if not name or Path(name).name != name or name in (".", ".."):
        raise ExportError(f"{field} {name!r}: give a file name without folders")
    if not name.lower().endswith(suffixes):
        raise ExportError(f"{field} {name!r}: expected a name ending in {' or '.join(suffixes)}")
    return name


class PathEditor:
    def __init__(self, viewer):
        self.viewer = viewer
        self.keyframes: list = []  # [4, 4] OpenCV c2w tensors, normalised frame
        self._lock = threading.Lock()  # keyframes
        self._draw_lock = threading.Lock()  # the drawn nodes: panel callbacks run in a thread pool
        self._nodes: list = []
        self._playing = threading.Event()
        scene = viewer.scene
        fov = math.degrees(vertical_fov(scene.cameras, viewer.train_ids[0]))
        gui = viewer.server.gui
        with gui.add_folder("Camera path"):
            self.add = gui.add_button("Add keyframe", hint="a keyframe at the current view")
            self.remove_last = gui.add_button("Remove last keyframe")
            self.clear = gui.add_button("Clear keyframes")
            self.count = gui.add_markdown("0 keyframes")
            self.fps = gui.add_number("FPS", 30.0, min=1.0, max=240.0, step=1.0)
            self.seconds = gui.add_number("Seconds", 4.0, min=0.1, max=3600.0, step=0.1)
            self.fov = gui.add_slider("FOV (deg)", min=5.0, max=150.0, step=1.0, initial_value=round(fov))
            width, height = scene.image_size(viewer.train_ids[0])  # the camera the FOV comes from
            self.width = gui.add_number("Width", width, min=8, max=8192, step=1)
            self.height = gui.add_number("Height", height, min=8, max=8192, step=1)
            self.preview = gui.add_slider("Preview frame", min=0, max=1, step=1, initial_value=0, disabled=True)
            self.play = gui.add_button("Play preview", disabled=True)
            self.file = gui.add_text("File", "camera_path.json")
            self.save = gui.add_button("Save camera path")
            self.command = gui.add_markdown("")
        self.add.on_click(lambda event: self.add_keyframe(event.client))
        self.remove_last.on_click(lambda _: self._edit(lambda keys: keys[:-1]))
        self.clear.on_click(lambda _: self._edit(lambda keys: []))
        for handle in (self.fps, self.seconds, self.fov, self.width, self.height):
            handle.on_update(lambda _: self.redraw())
        self.preview.on_update(lambda event: self.show_frame(event.client, int(self.preview.value)))
        self.play.on_click(lambda event: self.start_preview(event.client))
        self.save.on_click(lambda _: self._save_from_button())

    # --- state -----------------------------------------------------------------------------------

    def settings(self) -> PathSettings:
        return PathSettings(fps=float(self.fps.value), seconds=float(self.seconds.value),
                            fov_deg=float(self.fov.value), width=int(self.width.value), height=int(self.height.value))

    def add_keyframe(self, client) -> None:
        if client is None:
            return
        c2w = self.viewer.pose_of(client).c2w()
        self._edit(lambda keys: keys + [c2w])

    def _edit(self, change) -> None:
        with self._lock:
            self.keyframes = change(list(self.keyframes))
        self.redraw()

    def frames(self):
        """The path's cameras (normalised frame), or None with fewer than 2 keyframes."""
        with self._lock:
            keys = list(self.keyframes)
        if len(keys) < 2:
            return None
        return path_cameras(keys, self.settings())

    # --- drawing and preview ---------------------------------------------------------------------

    def redraw(self) -> None:
        """Keyframe frustums and the interpolated path in the 3D view; panel counters."""
        with self._draw_lock:
            self._redraw()

    def _redraw(self) -> None:
        scene_api = self.viewer.server.scene
        for node in self._nodes:
            node.remove()
        self._nodes = []
        with self._lock:
            keys = list(self.keyframes)
        s = self.settings()
        scale = 0.05 * float((self.viewer.scene.aabb[1] - self.viewer.scene.aabb[0]).norm())
        for i, c2w in enumerate(keys):
            pose = pose_from_c2w(c2w, math.radians(s.fov_deg), s.width / s.height)
            self._nodes.append(scene_api.add_camera_frustum(
                f"/camera_path/key_{i:03d}", fov=pose.fov, aspect=pose.aspect, scale=scale, color=KEY_COLOR,
                thickness=0.05 * scale, wxyz=pose.wxyz, position=pose.position))
        try:
            cams = self.frames()
        except ExportError:
            cams = None
        n = 0 if cams is None else len(cams)
        if cams is not None:
            centers = cams.centers.double().numpy()
            segments = np.stack([centers[:-1], centers[1:]], axis=1)
            self._nodes.append(scene_api.add_line_segments("/camera_path/spline", segments, PATH_COLOR,
                                                           thickness=0.03 * scale))
        self.count.content = f"{len(keys)} keyframes · {n or s.n_frames} frames at {s.fps:g} fps"
        self.preview.max = max(n - 1, 1)
        self.preview.disabled = self.play.disabled = cams is None

    def show_frame(self, client, index: int) -> None:
        """Put a tab's camera on frame `index` of the path."""
        cams = self.frames()
        if client is None or cams is None:
            return
        index = min(max(index, 0), len(cams) - 1)
        pose = pose_from_c2w(cams.c2w[index], math.radians(self.settings().fov_deg), float(client.camera.aspect))
        move_client_camera(client, pose)

    def start_preview(self, client) -> None:
        """Fly the tab along the path at its frame rate (frames the renderer cannot keep up with
        are skipped, as the frame loop always renders the newest camera)."""
        cams = self.frames()
        if client is None or cams is None or self._playing.is_set():
            return
        self._playing.set()

        def play():
            try:
                period = 1.0 / self.settings().fps
                for i in range(len(cams)):
                    self.show_frame(client, i)
                    time.sleep(period)
            finally:
                self._playing.clear()

        threading.Thread(target=play, name="viewer-preview", daemon=True).start()

    # --- saving ----------------------------------------------------------------------------------

    def save_path(self) -> Path:
        """Write the path into <run>/camera_paths/<file>; returns the file. ExportError when it
        cannot (fewer than 2 keyframes, a bad name or setting, an unwritable folder)."""
        name = checked_file_name(self.file.value, (".json",), "camera path file")
        with self._lock:
            keys = list(self.keyframes)
        content = nerfstudio_camera_path(keys, self.settings())
        path = write_camera_path(self.viewer.run_dir / PATHS_FOLDER / name, content)
        command = render_command(self.viewer.run_dir, path)
        self.command.content = f"Saved {path} ({len(content['camera_path'])} frames). Render it with:\n\n```\n{command}\n```"
        print(f"viewer: saved {path}; render it with:\n  {command}", flush=True)
        return path

    def _save_from_button(self) -> None:
        try:
            self.save_path()
        except ExportError as exc:
            self.command.content = f"not saved: {exc}"
            self.viewer.notify("camera path not saved", str(exc), ok=False)
