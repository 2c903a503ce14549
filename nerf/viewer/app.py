"""The viewer: a viser server showing a run, its frame loop, and its panels.

`open_run_viewer` shows a finished run (`nerf-view`); `TrainingViewer` is handed to the training
job as its step callback and opens the viewer at the first step, on the trainer's own scene
(`train_nerf.py --viewer`). Either way the server binds 127.0.0.1 unless `--host` says
otherwise, and then prints a warning: the port has no authentication.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from nerf.errors import NerfError
from nerf.jobs.run import load_trained_run
from nerf.viewer.background import BackgroundJob
from nerf.viewer.camera import ViewPose
from nerf.viewer.config import ViewerConfig, ViewJobConfig, check_viewer_config, remote_warning
from nerf.viewer.frame_loop import FrameLoop, FrameSettings
from nerf.viewer.scene_view import add_scene_content, first_view, move_client_camera, torch_ids, training_view_pose
from nerf.viewer.source import StaticSource, TrainingSource
from nerf.viewer.view_render import Frame

CONNECT_POSE_WAIT_SECONDS = 10.0  # a new tab's first camera report is awaited this long at most


def import_viser():
    """The viser module, or a NerfError saying how to install it."""
    try:
        import viser
    except ImportError as exc:
        raise NerfError(f"the viewer needs viser ({exc}); install it with pip install -e \".[viewer]\"") from exc
    return viser


def refuse_share_tunnel(server) -> None:
    """No public share link: viser's share button opens a tunnel through a third-party relay,
    which would publish the run (and its export buttons) beyond the host the user chose. The
    button is hidden and a request for it from a tab is refused."""
    server.gui.configure_theme(show_share_button=False)

    def refuse(verbose: bool = True) -> None:
        print("viewer: a tab asked for a public share link; refused (use --host to listen elsewhere)",
              file=sys.stderr, flush=True)

    server.request_share_url = refuse


class Viewer:
    """A viser server on one run: scene content, the frame loop and the panels."""

    def __init__(self, source, cfg: ViewerConfig, label: str):
        viser = import_viser()
        from nerf.viewer.gui_export import ExportPanel
        from nerf.viewer.gui_path import PathEditor
        from nerf.viewer.gui_render import RenderPanel

        check_viewer_config(cfg)
        self.cfg, self.source = cfg, source
        run = source.trained_run()
        self.scene, self.run_dir, self.run_cfg = run.scene, Path(run.run_dir), run.cfg
        self.train_ids = torch_ids(self.scene.splits.get("train", range(len(self.scene.cameras))))
        self.server = viser.ViserServer(host=cfg.host, port=cfg.port, label=f"nerf-toolkit: {label}", verbose=False)
        refuse_share_tunnel(self.server)
        shown_host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host  # "all addresses" is no URL
        self.url = f"http://{shown_host}:{self.server.get_port()}"
        self.frames = FrameLoop(
            source, self._send,
            FrameSettings(moving_resolution=cfg.moving_resolution, rest_resolution=cfg.rest_resolution,
                          training_resolution=cfg.training_resolution, rest_seconds=cfg.rest_seconds),
            self.scene.render_background, self.run_cfg.train.render_chunk,
        )
        self.jobs = BackgroundJob(self._job_done)
        self.frustums = add_scene_content(self.server, self.scene, self.train_ids, cfg.thumbnail_size,
                                          self.show_training_view)
        self.render_panel = RenderPanel(self)
        self.path = PathEditor(self)
        self.export = ExportPanel(self)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(lambda client: self.frames.drop(client.client_id))
        self.frames.start()
        self._status_stop = threading.Event()
        self._status_thread = threading.Thread(target=self._status_loop, name="viewer-status", daemon=True)
        self._status_thread.start()

    # --- tabs ------------------------------------------------------------------------------------

    def _connect(self, client) -> None:
        position, look_at, up, fov = first_view(self.scene, self.train_ids)
        with client.atomic():
            client.camera.fov = fov
            client.camera.up_direction = tuple(up.tolist())
            client.camera.position = tuple(position.tolist())
            client.camera.look_at = tuple(look_at.tolist())
        client.camera.on_update(lambda camera: self.frames.set_pose(client.client_id, self.pose_of(client)))
        self.frames.set_pose(client.client_id, self.pose_of(client))

    @staticmethod
    def pose_of(client) -> ViewPose:
        cam = client.camera
        return ViewPose(tuple(float(v) for v in cam.wxyz), tuple(float(v) for v in cam.position),
                        float(cam.fov), float(cam.aspect))

    def _send(self, client_id: int, frame: Frame) -> None:
        client = self.server.get_clients().get(client_id)
        if client is None:
            return
        client.scene.set_background_image(frame.image, format="jpeg", jpeg_quality=self.cfg.jpeg_quality,
                                          depth=frame.depth)

    def show_training_view(self, client, index: int) -> None:
        """Fly a tab to training camera `index` (a click on its frustum)."""
        if client is None:
            return
        pose = training_view_pose(self.scene, index, float(client.camera.aspect))
        move_client_camera(client, pose, look_distance=float(
            ((self.scene.aabb.mean(0) - self.scene.cameras.centers[index]).norm())))

    # --- exports and messages --------------------------------------------------------------------

    def notify(self, title: str, body: str, ok: bool = True) -> None:
        """A message in every tab and on the console."""
        print(f"viewer: {title}: {body}", file=sys.stdout if ok else sys.stderr, flush=True)
        for client in self.server.get_clients().values():
            client.add_notification(title, body, auto_close_seconds=10.0 if ok else None,
                                    color=None if ok else "red")

    def _job_done(self, name: str, message: str, ok: bool) -> None:
        self.export.job_finished(name, message, ok)
        self.notify(f"{name} {'done' if ok else 'failed'}", message, ok)

    def _status_loop(self) -> None:
        while not self._status_stop.wait(0.5):
            try:
                self.render_panel.update_status()
            except Exception as exc:  # the status line must not end the thread
                print(f"viewer: status update failed: {exc}", file=sys.stderr)

    # --- lifetime --------------------------------------------------------------------------------

    def wait_for_clients(self, n: int = 1, timeout: float = CONNECT_POSE_WAIT_SECONDS) -> bool:
        """Whether `n` tabs connected within `timeout` seconds."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if len(self.server.get_clients()) >= n:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._status_stop.set()
        self.frames.stop()
        self.jobs.join(timeout=1.0)
        self.server.stop()


def announce(viewer: Viewer) -> None:
    warning = remote_warning(viewer.cfg.host, viewer.server.get_port())
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"viewer: {viewer.url}", flush=True)


def open_run_viewer(cfg: ViewJobConfig) -> Viewer:
    """The viewer on a finished run (the newest checkpoint of `cfg.run`)."""
    check_viewer_config(cfg.view)  # before the run loads: a bad host fails at once
    run = load_trained_run(cfg.run, cfg.device)
    viewer = Viewer(StaticSource(run), cfg.view, label=Path(cfg.run).name)
    announce(viewer)
    return viewer


def serve_until_interrupted(viewer: Viewer) -> None:
    """Keep serving until Ctrl+C, then close the server."""
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("viewer: closed", flush=True)
    finally:
        viewer.close()


class TrainingViewer:
    """The training job's step callback that opens the viewer at the first step.

    The viewer is built from the trainer itself (its scene, run directory and device), so the
    scene is loaded once. `finish(result)` shows the final weights once the job returns.
    """

    def __init__(self, cfg: ViewerConfig):
        check_viewer_config(cfg)
        self.cfg = cfg
        self.viewer: Viewer | None = None
        self.source: TrainingSource | None = None

    def _open(self, trainer) -> None:
        self.source = TrainingSource(trainer.cfg, trainer.scene, trainer.run_dir, trainer.device,
                                     self.cfg.refresh_seconds)
        self.source.take_snapshot(trainer)
        self.viewer = Viewer(self.source, self.cfg, label=f"{trainer.cfg.name} (training)")
        announce(self.viewer)

    def on_step(self, trainer, stats, seconds: float) -> None:
        if self.viewer is None:
            if not trainer.dist.is_main:  # under torchrun rank 0 alone serves the viewer
                return
            self._open(trainer)
        self.source.on_step(trainer, stats, seconds)

    def finish(self, result: dict | None) -> Viewer | None:
        """After the training job: the final weights (opening the viewer now if no step ran)."""
        if result is None:
            return None
        trainer = result["trainer"]
        if self.viewer is None:
            self._open(trainer)
        self.source.finish(trainer)
        return self.viewer

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()


def view_job(cfg: ViewJobConfig) -> None:
    """nerf-view: open the viewer on a run and serve until Ctrl+C."""
    try:
        viewer = open_run_viewer(cfg)
    except OSError as exc:
        raise NerfError(f"viewer: cannot start the server on {cfg.view.host}:{cfg.view.port} ({exc})") from exc
    serve_until_interrupted(viewer)
