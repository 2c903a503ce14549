"""Tests of video and frame writing and depth colouring (nerf/export/video.py, colormap.py)."""

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from nerf.errors import ExportError
from nerf.export.colormap import apply_colormap, turbo
from nerf.export.video import colorize_depth, pad_to_even, write_frames, write_video

CODEC_TOL = 4  # uint8 steps: H.264 at high quality on flat colour plus yuv420p rounding
EDGE_TOL = 16  # uint8 steps next to a sharp edge, where H.264 blocks ring


def read_video(path):
    """Metadata and frames [N, H, W, 3] uint8 through imageio-ffmpeg's reader."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])
    return meta, frames


def flat_frames(n, h, w):
    """Frames of one grey level each, level i * 20 in frame i (float in [0, 1])."""
    return [np.full((h, w, 3), i * 20 / 255.0, np.float32) for i in range(n)]


def test_video_round_trip(tmp_path):
    path = tmp_path / "out" / "video.mp4"
    assert write_video(path, flat_frames(12, 48, 64), fps=24) == 12
    meta, frames = read_video(path)
    assert tuple(meta["size"]) == (64, 48) and len(frames) == 12 and frames.shape[1:3] == (48, 64)
    assert meta["fps"] == pytest.approx(24)
    levels = frames.reshape(12, -1).mean(axis=1)
    np.testing.assert_allclose(levels, np.arange(12) * 20, atol=CODEC_TOL)
    assert sorted(p.name for p in path.parent.iterdir()) == ["video.mp4"]  # no temporary left


def test_video_odd_size_padded_by_edge(tmp_path):
    h, w = 31, 45
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, -1] = [200, 200, 200]  # the last column is bright
    frame[-1, :] = [100, 100, 100]
    frame[-1, -1] = [200, 200, 200]
    path = tmp_path / "odd.mp4"
    write_video(path, [frame] * 3, fps=10)
    meta, frames = read_video(path)
    assert tuple(meta["size"]) == (w + 1, h + 1) and len(frames) == 3
    # the padded column repeats the bright last column, the padded row the last row
    assert abs(int(frames[1, h // 2, w].mean()) - 200) <= EDGE_TOL
    assert abs(int(frames[1, h, w // 2].mean()) - 100) <= EDGE_TOL
    assert int(frames[1, h // 2, w // 2].mean()) <= EDGE_TOL


def test_pad_to_even_exact():
    frame = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    out = pad_to_even(frame)
    assert out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out[:3, :5], frame)
    np.testing.assert_array_equal(out[3, :5], frame[2])
    np.testing.assert_array_equal(out[:3, 5], frame[:, 4])
    assert pad_to_even(out) is out


def test_video_errors(tmp_path):
    with pytest.raises(ExportError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], fps=10)
    frames = flat_frames(2, 16, 16) + [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(ExportError, match="frame 2 is 8x8"):
        write_video(tmp_path / "mixed.mp4", frames, fps=10)
    assert list(tmp_path.iterdir()) == []  # failed writes leave nothing behind
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="is a file"):
        write_video(blocker / "v.mp4", flat_frames(2, 16, 16), fps=10)
    with pytest.raises(ExportError, match=r"\[H, W, 3\]"):
        write_video(tmp_path / "gray.mp4", [np.zeros((16, 16))], fps=10)


def test_write_frames_png_exact(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(3)]
    paths = write_frames(tmp_path / "frames", frames)
    assert [p.name for p in paths] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    for path, frame in zip(paths, frames):
        np.testing.assert_array_equal(iio.imread(path), frame)


def test_colorize_depth_ends_and_background():
    depth = np.tile(np.linspace(1.0, 5.0, 101, dtype=np.float32), (4, 1))
    opacity = np.ones_like(depth)
    opacity[3] = 0.0  # background row
    img = colorize_depth(depth, opacity, near=1.0, far=5.0)
    assert img.shape == (4, 101, 3) and img.dtype == np.uint8
    # the published polynomial is slightly off in the last few percent at either end; test inside
    near_px, mid_px, far_px = img[0, 5].astype(int), img[0, 50].astype(int), img[0, 95].astype(int)
    assert near_px[2] > near_px[0]  # turbo starts blue
    assert far_px[0] > far_px[2]  # and ends red
    assert mid_px[1] > max(mid_px[0], mid_px[2])  # with green in the middle
    assert (img[3] == 0).all()
    auto = colorize_depth(depth).astype(int)  # percentile range covers nearly the same span
    assert auto[0, 5, 2] > auto[0, 5, 0] and auto[0, 95, 0] > auto[0, 95, 2]


def test_turbo_properties():
    x = np.linspace(0.0, 1.0, 256)
    rgb = turbo(x)
    assert rgb.shape == (256, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    np.testing.assert_array_equal(turbo([-1.0, 2.0]), turbo([0.0, 1.0]))  # clamped
    # turbo's hue sweeps blue -> cyan -> green -> yellow -> red: the argmax channel moves monotonically
    inner = rgb[13:-13]  # x in [0.05, 0.95]: away from the polynomial's end errors
    dominant = np.argmax(inner[:, [2, 1, 0]], axis=1)  # 0 = blue, 1 = green, 2 = red
    assert (np.diff(dominant) >= 0).all() and dominant[0] == 0 and dominant[-1] == 2
    brightness = rgb.sum(axis=1)
    assert brightness[0] < 0.5 * brightness[128] and brightness[-1] < 0.5 * brightness[128]  # dark ends
    np.testing.assert_array_equal(apply_colormap(x, "gray")[:, 0], x.astype(np.float32))
    with pytest.raises(ExportError, match="unknown colour map"):
        apply_colormap(x, "jet")


def top_level_atoms(path) -> list[str]:
    """The MP4's top-level box types in file order (size, type; size 1 = 64-bit size follows)."""
    data, names, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        names.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return names


def test_video_is_faststart(tmp_path):
    path = write_video(tmp_path / "v.mp4", flat_frames(6, 32, 32), fps=12) and tmp_path / "v.mp4"
    atoms = top_level_atoms(path)
    assert "moov" in atoms and "mdat" in atoms
    assert atoms.index("moov") < atoms.index("mdat")  # the index first: plays while downloading


def test_video_quality_option(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(4)]  # noise: size follows quality
    low, high = tmp_path / "low.mp4", tmp_path / "high.mp4"
    write_video(low, frames, fps=10, quality=2)
    write_video(high, frames, fps=10, quality=10)
    assert high.stat().st_size > 2 * low.stat().st_size
    with pytest.raises(ExportError, match="quality must be in 0..10, got 11"):
        write_video(tmp_path / "bad.mp4", frames, fps=10, quality=11)
