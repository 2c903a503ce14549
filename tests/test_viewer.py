"""The browser viewer's parts that need no browser: camera conversion, the saved camera path,
the frame schedule, the options, and training watched by a viewer (nerf/viewer)."""

import json
import math
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("viser", reason="the viewer needs viser: pip install -e '.[viewer]'")

from nerf.errors import ConfigError, ExportError  # noqa: E402
from nerf.export.camera_paths import load_nerfstudio_camera_path, look_at  # noqa: E402
from nerf.viewer.camera import ViewPose, frame_size, pose_cameras, pose_from_c2w  # noqa: E402
from nerf.viewer.camera_path import (  # noqa: E402
    PathSettings, nerfstudio_camera_path, path_cameras, write_camera_path,
)
from nerf.viewer.config import ViewerConfig, check_viewer_config, remote_warning  # noqa: E402
from nerf.viewer.frame_loop import ClientView, FrameLoop, FrameSettings, ladder  # noqa: E402
from nerf.viewer.gui_path import checked_file_name  # noqa: E402

POSE_TOL = 1e-5  # float32 poses through float64 math
PATH_TOL = 1e-4  # float32 poses through a similarity and its inverse (scale 0.37)


def test_pose_cameras_see_with_the_browser_fov():
    c2w = look_at([2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    pose = pose_from_c2w(c2w, fov=math.radians(40.0), aspect=1.5)
    cams = pose_cameras(pose, 96)
    assert (int(cams.width[0]), int(cams.height[0])) == (96, 64) == frame_size(1.5, 96)
    assert frame_size(0.5, 96) == (48, 96)  # the longer side is the resolution
    torch.testing.assert_close(cams.c2w[0], c2w, atol=POSE_TOL, rtol=0)
    # a point fov/2 above the optical axis projects onto the top edge, on the centre column
    up = -c2w[:3, 1].double()
    fwd = c2w[:3, 2].double()
    direction = math.cos(math.radians(20.0)) * fwd + math.sin(math.radians(20.0)) * up
    point = (c2w[:3, 3].double() + 3.0 * direction).float()
    xy, depth = cams.project(point[None], torch.tensor([0]))
    torch.testing.assert_close(xy[0], torch.tensor([48.0, 0.0]), atol=1e-3, rtol=0)
    assert float(depth[0]) > 0


def test_view_pose_round_trip():
    pose = ViewPose((0.9, 0.1, 0.3, -0.2), (1.0, 2.0, 3.0), 0.8, 1.25)
    back = pose_from_c2w(pose.c2w(), pose.fov, pose.aspect)
    q = torch.tensor(pose.wxyz, dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(back.wxyz, dtype=torch.float64), q / q.norm(), atol=POSE_TOL, rtol=0)
    assert back.position == pose.position


def test_saved_path_loads_in_render_frame_through_the_keyframes(tmp_path):
    """The file is in the run's dataparser (normalised) frame, the frame render.py reads a
    camera_path.json in: loaded back it gives the path's cameras, from keyframe to keyframe."""
    keys = [look_at([2.0, 0.0, 0.5], [0, 0, 0], [0, 0, 1]), look_at([0.0, 2.0, 1.0], [0, 0, 0], [0, 0, 1]),
            look_at([-2.0, 0.5, 0.8], [0, 0, 0], [0, 0, 1])]
    settings = PathSettings(fps=5.0, seconds=2.2, fov_deg=40.0, width=48, height=32)
    path = write_camera_path(tmp_path / "paths" / "camera_path.json", nerfstudio_camera_path(keys, settings))
    data = json.loads(path.read_text())
    assert len(data["keyframes"]) == 3 and data["render_width"] == 48
    loaded = load_nerfstudio_camera_path(path)  # what render.py reads (nerf.jobs.render.nerfstudio_path)
    cams = loaded.cameras
    assert loaded.fps == 5.0 and len(cams) == 11  # round(5 * 2.2)
    torch.testing.assert_close(cams.c2w, path_cameras(keys, settings).c2w, atol=PATH_TOL, rtol=0)
    torch.testing.assert_close(cams.c2w[0], keys[0], atol=PATH_TOL, rtol=0)  # starts and ends on keyframes
    torch.testing.assert_close(cams.c2w[-1], keys[-1], atol=PATH_TOL, rtol=0)
    focal = 0.5 * 32 / math.tan(math.radians(20.0))
    torch.testing.assert_close(cams.fy, torch.full((11,), focal), atol=1e-3, rtol=0)


def test_camera_path_bad_inputs(tmp_path):
    key = look_at([2.0, 0.0, 0.5], [0, 0, 0], [0, 0, 1])
    with pytest.raises(ExportError, match="at least 2 keyframes"):
        nerfstudio_camera_path([key], PathSettings())
    with pytest.raises(ExportError, match="fps"):
        nerfstudio_camera_path([key, key], PathSettings(fps=0.0))
    with pytest.raises(ExportError, match="without folders"):
        checked_file_name("../escape.json", (".json",), "camera path file")
    with pytest.raises(ExportError, match="ending in .json"):
        checked_file_name("path.txt", (".json",), "camera path file")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match="cannot write"):
        write_camera_path(blocker / "camera_path.json", {"camera_path": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


class FakeSource:
    def __init__(self, live):
        self.live, self.version = live, 0


def test_frame_schedule_moving_rest_and_training():
    assert ladder(128, 512) == [128, 256, 512] and ladder(128, 384) == [128, 256, 384] and ladder(128, 128) == [128]
    settings = FrameSettings(moving_resolution=128, rest_resolution=512, training_resolution=256, rest_seconds=0.2)
    loop = FrameLoop(FakeSource(live=False), lambda c, f: None, settings, torch.ones(3), 1024)
    pose = ViewPose((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 3.0), 0.8, 1.0)
    view = ClientView(pose=pose, moved_at=10.0)
    assert loop.next_resolution(view, 10.1, 0, live=False) == 128  # moving: cheap frames
    assert loop.next_resolution(view, 10.3, 0, live=False) == 256  # at rest: the first refined rung
    view.key, view.resolution, view.version = (pose, "rgb"), 256, 0
    assert loop.next_resolution(view, 10.3, 0, live=False) == 512
    view.resolution = 512
    assert loop.next_resolution(view, 10.3, 0, live=False) is None  # done until something changes
    assert loop.next_resolution(view, 10.3, 1, live=True) == 256  # new weights while training: capped
    view.resolution = 256
    assert loop.next_resolution(view, 10.3, 0, live=True) is None  # training: no finer than 256
    loop.update_settings(output="depth")
    assert loop.next_resolution(view, 10.3, 0, live=True) == 256  # another output: a new frame


def test_viewer_options_are_checked():
    check_viewer_config(ViewerConfig(port=0))
    with pytest.raises(ConfigError, match="port = 70000"):
        check_viewer_config(ViewerConfig(port=70000))
    with pytest.raises(ConfigError, match="rest_resolution"):
        check_viewer_config(ViewerConfig(moving_resolution=256, rest_resolution=128))
    with pytest.raises(ConfigError, match="cannot listen"):
        check_viewer_config(ViewerConfig(host="203.0.113.7"))  # TEST-NET-3: never this machine
    assert remote_warning("127.0.0.1", 7007) is None and remote_warning("localhost", 7007) is None
    assert "NO authentication" in remote_warning("0.0.0.0", 7007)


def test_view_cli_errors_exit_2(tmp_path, capsys):
    from tools.view import main

    with pytest.raises(SystemExit) as exc:
        main(["--run", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "not a run directory" in capsys.readouterr().err


def test_train_viewer_bad_host_exits_2_before_training(tmp_path, tiny_scene_path, capsys):
    from train_nerf import main

    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tiny_scene_path), "--runs_dir", str(tmp_path), "--viewer", "true",
              "--host", "203.0.113.7"])
    assert exc.value.code == 2
    assert "host = '203.0.113.7'" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def trained_state(trainer) -> dict:
    return {k: v.clone() for k, v in trainer.renderer.state_dict().items()}


def test_rendering_snapshots_while_training_leaves_training_unchanged(tmp_path, tiny_scene, tiny_scene_path):
    """Training watched by a viewer that renders as fast as it can ends on the same weights, bit
    for bit, as training alone; the viewer's renderer holds the trainer's weights of a step."""
    from nerf.train.trainer import Trainer
    from nerf.viewer.camera import pose_cameras
    from nerf.viewer.source import TrainingSource
    from nerf.viewer.view_render import render_frame
    from tiny import tiny_config

    alone = Trainer(tiny_config(tmp_path / "a", tiny_scene_path, steps=24), tiny_scene, quiet=True)
    alone.fit()
    watched = Trainer(tiny_config(tmp_path / "b", tiny_scene_path, steps=24), tiny_scene, quiet=True)
    source = TrainingSource(watched.cfg, tiny_scene, None, watched.device, refresh_seconds=0.0)
    pose = pose_from_c2w(look_at([2.5, 0.5, 1.0], [0, 0, 0], [0, 0, 1]), math.radians(40.0), 1.0)
    stop, frames = threading.Event(), []

    def view():
        while not stop.is_set():
            with source.lock:
                source.refresh()
                frames.append(render_frame(source.renderer, pose_cameras(pose, 24), torch.ones(3), "rgb", 4096))

    viewer = threading.Thread(target=view)
    viewer.start()
    try:
        watched.fit(on_step=source.on_step)
    finally:
        stop.set()
        viewer.join(30)
    assert frames and source.version >= 2  # snapshots were taken and rendered during training
    final = trained_state(watched)
    for k, v in trained_state(alone).items():
        assert torch.equal(v, final[k]), k
    source.finish(watched)
    with source.lock:
        source.refresh()
        for k, v in source.renderer.state_dict().items():
            assert torch.equal(v, final[k]), k


def test_pause_holds_training_at_a_step(tmp_path, tiny_scene, tiny_scene_path):
    from nerf.train.trainer import Trainer
    from nerf.viewer.source import TrainingSource
    from tiny import tiny_config

    trainer = Trainer(tiny_config(tmp_path, tiny_scene_path, steps=12), tiny_scene, quiet=True)
    source = TrainingSource(trainer.cfg, tiny_scene, None, trainer.device, refresh_seconds=1.0)
    source.pause(True)
    thread = threading.Thread(target=trainer.fit, kwargs={"on_step": source.on_step})
    thread.start()
    deadline = time.perf_counter() + 30.0
    while not source.snapshot_stats().paused and time.perf_counter() < deadline:
        time.sleep(0.02)
    held = source.snapshot_stats()
    time.sleep(0.3)
    assert held.paused and trainer.step == held.step == 1
    source.pause(False)
    thread.join(60)
    assert not thread.is_alive() and trainer.step == 12


def level_inside(viewer, lo, hi) -> float:
    """Halfway between the median and the largest density of the field inside the box."""
    from nerf.export.mesh import density_lattice

    renderer = viewer.source.run.renderer
    sigma = density_lattice(renderer.field.query_density, torch.tensor([lo, hi]), 32,
                            occupied_fn=renderer.grid.is_occupied).numpy()
    assert sigma.max() > np.median(sigma), "the tiny run's field is constant in the box"
    return 0.5 * (float(np.median(sigma)) + float(sigma.max()))


def test_exports_from_the_viewer_honour_the_crop_box_and_the_path(tiny_run, tmp_path):
    """The Export panel's jobs on the tiny run: a mesh inside the drawn crop box, a video with
    the keyframed path's frame count; a crop box inside out is refused."""
    import shutil

    import imageio.v3 as iio
    import trimesh

    from nerf.viewer.app import open_run_viewer
    from nerf.viewer.config import ViewJobConfig

    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    viewer = open_run_viewer(ViewJobConfig(run=str(run), device="cpu", view=ViewerConfig(port=0)))
    try:
        panel = viewer.export
        lo, hi = (-0.3, -0.4, -0.5), (0.35, 0.3, 0.2)
        panel.crop_min.value, panel.crop_max.value = lo, hi
        panel.resolution.value, panel.mesh_file.value = 32, "cropped.ply"
        panel.iso_level.value = repr(level_inside(viewer, lo, hi))  # the tiny field has no opaque surface
        message = panel.mesh_job()()
        assert "cropped.ply" in message
        mesh = trimesh.load(run / "cropped.ply", process=False)
        transform = viewer.scene.transform.double().numpy()  # the file is in the original frame
        normalised = mesh.vertices @ transform[:3, :3].T + transform[:3, 3]
        voxel = (np.array(hi) - np.array(lo)).max() / 31
        assert len(normalised) > 0
        assert (normalised >= np.array(lo) - voxel).all() and (normalised <= np.array(hi) + voxel).all()
        panel.crop_max.value = (-0.4, 0.3, 0.2)
        with pytest.raises(ExportError, match="crop box"):
            panel.mesh_job()

        viewer.path.keyframes = [look_at([2.0, 0.0, 0.8], [0, 0, 0], [0, 0, 1]),
                                 look_at([0.0, 2.0, 0.8], [0, 0, 0], [0, 0, 1])]
        viewer.path.fps.value, viewer.path.seconds.value = 4.0, 1.0
        viewer.path.width.value, viewer.path.height.value = 24, 16
        message = panel.video_job()()
        video = run / "renders" / "rgb_camera_path.mp4"
        assert str(video) in message and (run / "camera_paths" / "camera_path.json").is_file()
        frames = list(iio.imiter(video))
        assert len(frames) == 4 and frames[0].shape[:2] == (16, 24)
    finally:
        viewer.close()


def test_a_stop_request_ends_a_pause(tmp_path, tiny_scene, tiny_scene_path):
    """Ctrl-C while the viewer holds training: the pause gives way so the loop can save and stop
    (here the trainer's stop request is set by hand; fit runs in a thread, without signals)."""
    from nerf.train.trainer import Trainer
    from nerf.viewer.source import TrainingSource
    from tiny import tiny_config

    trainer = Trainer(tiny_config(tmp_path, tiny_scene_path, steps=12), tiny_scene, quiet=True)
    source = TrainingSource(trainer.cfg, tiny_scene, None, trainer.device, refresh_seconds=1.0)
    source.pause(True)
    trainer.train_step()
    stats = trainer.train_step()
    trainer.interrupt_requested = lambda: True
    start = time.perf_counter()
    source.on_step(trainer, stats, 0.01)  # returns although the pause was never lifted
    assert time.perf_counter() - start < 5.0 and not source.snapshot_stats().paused  # training no longer held
