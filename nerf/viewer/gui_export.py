"""The Export panel: a crop box drawn in the 3D view (numbers or a drag handle) for the mesh,
and a video of the keyframed path. Both run as background jobs on the viewer's renderer (a
training run's newest snapshot), writing into the run directory."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nerf.config import RenderConfig
from nerf.errors import ExportError, NerfError
from nerf.export.mesh import MeshConfig
from nerf.jobs.mesh import MeshJobConfig, export_mesh
from nerf.jobs.render import render_path
from nerf.viewer.gui_path import checked_file_name

CROP_COLOR = (20, 200, 120)
MESH_SUFFIXES = (".ply", ".obj", ".glb")


def initial_crop(scene, renderer, unbounded_crop: float) -> tuple[np.ndarray, np.ndarray]:
    """The box of the occupancy grid's occupied cells (where the mesh job would crop anyway),
    inside the scene box or, for unbounded captures, inside the mesh job's default content box."""
    lo, hi = scene.aabb[0].double().numpy(), scene.aabb[1].double().numpy()
    if scene.unbounded:
        lo, hi = np.maximum(lo, -unbounded_crop), np.minimum(hi, unbounded_crop)
    if renderer.grid is not None:
        occ = renderer.grid.occupied_box.detach().cpu().double().numpy()
        olo, ohi = np.maximum(lo, occ[0]), np.minimum(hi, occ[1])
        if (ohi > olo).all():
            lo, hi = olo, ohi
    return lo, hi


def checked_crop(lo, hi) -> tuple[tuple[float, ...], tuple[float, ...]]:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
        raise ExportError(f"crop box: every 'max' must exceed its 'min' (min {lo.tolist()}, max {hi.tolist()})")
    return tuple(lo.tolist()), tuple(hi.tolist())


class ExportPanel:
    def __init__(self, viewer):
        self.viewer = viewer
        gui, scene_api = viewer.server.gui, viewer.server.scene
        with viewer.source.lock:
            lo, hi = initial_crop(viewer.scene, viewer.source.trained_run().renderer, MeshJobConfig.unbounded_crop)
        extent = float(np.linalg.norm(hi - lo))
        with gui.add_folder("Export"):
            self.crop_min = gui.add_vector3("Crop min", tuple(lo.tolist()), step=0.01)
            self.crop_max = gui.add_vector3("Crop max", tuple(hi.tolist()), step=0.01)
            self.drag = gui.add_checkbox("Crop box handle", False, hint="a handle to drag the crop box in the 3D view")
            self.resolution = gui.add_number("Mesh resolution", 256, min=16, max=1024, step=16)
            self.iso_level = gui.add_text("Iso level", "auto", hint="auto (the renders' surface), voxel, or a density")
            self.mesh_file = gui.add_text("Mesh file", "mesh_viewer.ply")
            self.mesh = gui.add_button("Export mesh")
            self.video = gui.add_button("Render video of the path")
            self.status = gui.add_markdown("")
        self.box = None
        self.handle = scene_api.add_transform_controls("/crop_handle", scale=0.2 * extent, disable_rotations=True,
                                                       position=tuple(((lo + hi) / 2).tolist()), visible=False)
        self.drag.on_update(lambda _: setattr(self.handle, "visible", bool(self.drag.value)))
        self.handle.on_update(lambda _: self._handle_moved())
        for v in (self.crop_min, self.crop_max):
            v.on_update(lambda _: self.draw_box())
        self.mesh.on_click(lambda _: self.start_mesh())
        self.video.on_click(lambda _: self.start_video())
        self.draw_box()

    # --- crop box --------------------------------------------------------------------------------

    def draw_box(self) -> None:
        lo, hi = np.asarray(self.crop_min.value), np.asarray(self.crop_max.value)
        size = np.maximum(hi - lo, 1e-6)
        self.box = self.viewer.server.scene.add_box("/crop_box", color=CROP_COLOR, dimensions=tuple(size.tolist()),
                                                    wireframe=True, position=tuple(((lo + hi) / 2).tolist()))
        center = (lo + hi) / 2
        if not np.allclose(np.asarray(self.handle.position), center):
            self.handle.position = tuple(center.tolist())

    def _handle_moved(self) -> None:
        lo, hi = np.asarray(self.crop_min.value), np.asarray(self.crop_max.value)
        shift = np.asarray(self.handle.position) - (lo + hi) / 2
        if np.allclose(shift, 0.0):
            return
        self.crop_min.value = tuple((lo + shift).tolist())
        self.crop_max.value = tuple((hi + shift).tolist())

    # --- jobs ------------------------------------------------------------------------------------

    def _start(self, name: str, job) -> None:
        if not self.viewer.jobs.start(name, job):
            self.viewer.notify(f"{name} not started", f"{self.viewer.jobs.running} is still running", ok=False)
            return
        self.status.content = f"{name} running..."
        self.mesh.disabled = self.video.disabled = True

    def job_finished(self, name: str, message: str, ok: bool) -> None:
        self.status.content = message if ok else f"{name} failed: {message}"
        self.mesh.disabled = self.video.disabled = False

    def mesh_job(self):
        """The mesh export as a job (its settings read now, from the panel)."""
        lo, hi = checked_crop(self.crop_min.value, self.crop_max.value)
        name = checked_file_name(self.mesh_file.value, MESH_SUFFIXES, "mesh file")
        out = self.viewer.run_dir / name
        mesh_cfg = MeshConfig(resolution=int(self.resolution.value), crop_min=lo, crop_max=hi,
                              iso_level=self.iso_level.value.strip())
        source = self.viewer.source

        def job() -> str:
            with source.lock:
                run = source.trained_run()
                cfg = MeshJobConfig(run=str(run.run_dir), out=str(out), mesh=mesh_cfg)
                path, stats, seconds = export_mesh(run, cfg)
            return (f"wrote {path}: {stats.n_vertices} vertices, {stats.n_faces} faces "
                    f"(step {run.step}, {seconds:.1f} s)")

        return job

    def video_job(self):
        """The path video as a job: saves the camera path, then renders it as render.py would."""
        path = self.viewer.path.save_path()
        source = self.viewer.source
        out = self.viewer.run_dir / "renders"

        def job() -> str:
            start = time.perf_counter()
            with source.lock:
                run = source.trained_run()
                rcfg = RenderConfig(run=str(run.run_dir), test=False, path=str(path), outputs="rgb", out=str(out))
                written = render_path(run, rcfg, Path(out), progress=False)
            return f"wrote {written['rgb']} (step {run.step}, {time.perf_counter() - start:.1f} s)"

        return job

    def start_mesh(self) -> None:
        try:
            self._start("mesh export", self.mesh_job())
        except NerfError as exc:
            self.status.content = f"mesh not started: {exc}"

    def start_video(self) -> None:
        try:
            self._start("video", self.video_job())
        except NerfError as exc:
            self.status.content = f"video not started: {exc}"
