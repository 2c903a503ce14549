"""The viewer in a real browser: headless Chromium (Debian's `chromium`, driven by playwright)
loads the page of a viewer on the tiny run, the test moves the tab's camera to two poses and
reads back the canvas, then keyframes a path with the page's own buttons and renders it with
render.py. Every wait is bounded by WAIT_SECONDS."""

import shutil
import time

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
pytest.importorskip("viser", reason="the viewer needs viser: pip install -e '.[viewer]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright: pip install -e '.[test]'")

WAIT_SECONDS = 30.0  # longest wait for the browser, the server or a frame
VIEWPORT = {"width": 900, "height": 600}
REST_RESOLUTION = 128
BLANK_STD = 8.0  # a canvas whose pixels vary less than this (8-bit units) shows nothing
POSES = {"A": ([2.2, -0.8, 1.4], [0.0, 0.0, 0.0]), "B": ([-1.0, 2.0, 0.6], [0.0, 0.0, 0.0])}


def wait_until(condition, what: str, timeout: float = WAIT_SECONDS):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = condition()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's, no browser download) for the module's tests."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=WAIT_SECONDS * 1000,
                                    args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, viewer):
    """A tab on `viewer`, connected; returns (page, its viser client)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_SECONDS * 1000)
    before = set(viewer.server.get_clients())
    page.goto(viewer.url)
    new = wait_until(lambda: (set(viewer.server.get_clients()) - before) or None, "the page to connect to the viewer")
    client_id = next(iter(new))
    return page, viewer.server.get_clients()[client_id]


@pytest.fixture(scope="module")
def browser_viewer(browser, tiny_run, tmp_path_factory):
    """A viewer on a copy of the tiny run (the test writes into it) and a headless tab on it."""
    from nerf.viewer.app import open_run_viewer
    from nerf.viewer.config import ViewerConfig, ViewJobConfig

    run = tmp_path_factory.mktemp("viewer") / "tiny"
    shutil.copytree(tiny_run, run)
    viewer = open_run_viewer(ViewJobConfig(run=str(run), device="cpu", view=ViewerConfig(
        port=0, moving_resolution=64, rest_resolution=REST_RESOLUTION, rest_seconds=0.1)))
    try:
        page, client = open_page(browser, viewer)
        viewer.render_panel.show_cameras(False)  # the canvas then shows the field, the boxes only
        yield viewer, page, client
        page.close()
    finally:
        viewer.close()


def move_to(viewer, client, name: str) -> None:
    """Set the tab's camera from the server and wait until the browser took it and the viewer
    sent the finest frame of it."""
    eye, target = POSES[name]
    with client.atomic():
        client.camera.up_direction = (0.0, 0.0, 1.0)
        client.camera.position = tuple(eye)
        client.camera.look_at = tuple(target)

    def finest_frame_at_pose():
        shown = viewer.frames.last_shown(client.client_id)
        return (shown is not None and shown[1] == REST_RESOLUTION
                and np.allclose(shown[0].position, eye, atol=1e-3)
                and np.allclose(client.camera.position, eye, atol=1e-3))

    wait_until(finest_frame_at_pose, f"the {REST_RESOLUTION} px frame of pose {name}")


def canvas(client, page) -> np.ndarray:  # [H, W, 3] uint8, once two reads agree
    """The canvas as the browser draws it (read back from WebGL), once it is steady."""
    h, w = VIEWPORT["height"], VIEWPORT["width"]
    previous = None

    def steady():
        nonlocal previous
        current = client.get_render(h, w, timeout=WAIT_SECONDS)[..., :3]
        same = previous is not None and np.array_equal(current, previous)
        previous = current
        return current if same else None

    return wait_until(steady, "a steady canvas")


def resized(image: np.ndarray, shape) -> np.ndarray:  # nearest neighbour, grey, float
    rows = (np.arange(shape[0]) * image.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * image.shape[1] / shape[1]).astype(int)
    return image[rows][:, cols].astype(np.float64).mean(-1)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_canvas_shows_the_field_from_two_poses(browser_viewer, tmp_path):
    viewer, page, client = browser_viewer
    shots, frames = {}, {}
    for name in POSES:
        move_to(viewer, client, name)
        frames[name] = viewer.frames.last_shown(client.client_id)[2].image
        shots[name] = canvas(client, page)
        page.screenshot(path=str(tmp_path / f"page_{name}.png"))  # for a person to look at
    for name, shot in shots.items():
        assert shot.std() > BLANK_STD, f"pose {name}: the canvas is blank"
    a, b = (resized(shots[n], frames[n].shape[:2]) for n in "AB")
    assert np.abs(a - b).mean() > 2.0, "the canvas did not change between the poses"
    fa, fb = (frames[n].astype(np.float64).mean(-1) for n in "AB")
    # each canvas shows its own pose's render, and better than the other pose's
    c = {(s, f): correlation(shot, frame) for s, shot in (("A", a), ("B", b)) for f, frame in (("A", fa), ("B", fb))}
    assert c["A", "A"] > max(0.9, c["A", "B"]) and c["B", "B"] > max(0.9, c["B", "A"]), c


def test_keyframed_path_saved_in_the_page_renders_with_render_py(browser_viewer, tmp_path):
    from nerf.config import RenderConfig
    from nerf.jobs.render import camera_path
    from nerf.jobs.run import load_trained_run
    from render import main as render_main

    viewer, page, client = browser_viewer
    viewer.path.keyframes = []
    for i, name in enumerate(POSES):
        move_to(viewer, client, name)
        page.get_by_role("button", name="Add keyframe").click()
        wait_until(lambda: len(viewer.path.keyframes) == i + 1, f"keyframe {i + 1}")
    viewer.path.fps.value, viewer.path.seconds.value = 4.0, 1.5  # 6 frames
    viewer.path.width.value, viewer.path.height.value = 24, 16
    saved = viewer.run_dir / "camera_paths" / "camera_path.json"
    page.get_by_role("button", name="Save camera path").click()
    wait_until(saved.is_file, f"{saved}")

    run = load_trained_run(viewer.run_dir, "cpu")
    plan = camera_path(run, RenderConfig(run=str(viewer.run_dir), path=str(saved)))
    cams, fps = plan.cameras, plan.fps
    assert len(cams) == 6 and fps == 4.0
    for index, name in ((0, "A"), (-1, "B")):  # the path starts and ends at the keyframed views
        np.testing.assert_allclose(cams.centers[index].numpy(), POSES[name][0], atol=1e-3)
    out = tmp_path / "renders"
    render_main(["--run", str(viewer.run_dir), "--path", str(saved), "--test", "false", "--outputs", "rgb",
                 "--frame_format", "png", "--out", str(out), "--device", "cpu"])
    frames = sorted((out / "rgb_camera_path").glob("*.png"))
    assert len(frames) == 6


def test_training_viewer_pauses_from_the_page(browser, tmp_path, tiny_scene_path):
    """train_nerf.py --viewer's path: the viewer opens at the first step; two tabs both get
    frames; one's pause button holds training at a step boundary, its panel says so, and resume
    lets training finish."""
    import threading

    from nerf.jobs.train import run_training_job
    from nerf.viewer.app import TrainingViewer
    from nerf.viewer.config import ViewerConfig
    from tiny import tiny_config

    watcher = TrainingViewer(ViewerConfig(port=0, moving_resolution=32, rest_resolution=64))
    gate, result = threading.Event(), {}

    def on_step(trainer, stats, seconds):
        watcher.on_step(trainer, stats, seconds)
        if trainer.step == 3:  # hold training until the page has clicked pause
            gate.wait(WAIT_SECONDS)

    def train():
        result["job"] = run_training_job(tiny_config(tmp_path, tiny_scene_path, steps=30), quiet=True, on_step=on_step)

    thread = threading.Thread(target=train)
    thread.start()
    try:
        viewer = wait_until(lambda: watcher.viewer, "the viewer to open at the first step")
        page, first = open_page(browser, viewer)
        second_page, second = open_page(browser, viewer)
        for client in (first, second):
            wait_until(lambda: viewer.frames.last_shown(client.client_id), f"a frame in tab {client.client_id}")
        page.get_by_role("button", name="Pause training").click()
        wait_until(lambda: page.get_by_role("button", name="Resume training").count() == 1, "the resume button")
        gate.set()
        held = wait_until(lambda: (lambda s: s if s.paused else None)(watcher.source.snapshot_stats()), "the pause")
        time.sleep(0.3)
        assert held.step == 4 and watcher.source.snapshot_stats().step == 4  # held at the next step boundary
        wait_until(lambda: page.get_by_text("paused").count() > 0, "the panel to say paused")
        page.get_by_role("button", name="Resume training").click()
        thread.join(WAIT_SECONDS * 2)
        assert not thread.is_alive() and result["job"]["trainer"].step == 30
        watcher.finish(result["job"])
        wait_until(lambda: page.get_by_text("done").count() > 0, "the panel to say done")
    finally:
        gate.set()
        watcher.source and watcher.source.pause(False)
        thread.join(WAIT_SECONDS * 2)
        watcher.close()
