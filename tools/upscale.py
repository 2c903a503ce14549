"""Upscale an image, a folder of images or a video with an ESRGAN / Real-ESRGAN net.

    python tools/upscale.py renders/ --weights realesr-animevideov3.pth --out renders_x4/
    python tools/upscale.py orbit.mp4 --weights runs/lego/sr/adapted_x4.pth --tile 128
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio.v3 as iio  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from nerf.atomic import atomic_file  # noqa: E402
from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.errors import ConfigError, SceneError  # noqa: E402
from nerf.export.video import write_video  # noqa: E402
from nerf.frames import to_uint8_frame  # noqa: E402
from nerf.sr.upscale import DEFAULT_BATCH, DEFAULT_TILE, upscale_frames, upscale_image  # noqa: E402
from nerf.sr.weights import load_sr_weights  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


def _read_image(path: Path) -> np.ndarray:  # [H, W, 3 | 4] float32 in [0, 1]
    try:
        image = iio.imread(path)
    except Exception as exc:  # imageio raises many types for undecodable files
        raise SceneError(f"{path}: cannot decode the image (expected {', '.join(sorted(IMAGE_SUFFIXES))}): "
                         f"{type(exc).__name__}") from exc
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    scale = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    return image.astype(np.float32) / scale


def _write_png(path: Path, image: np.ndarray) -> None:  # [H, W, 3 | 4] float32
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        iio.imwrite(tmp, np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _video_frames(path: Path) -> tuple[float, object]:
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:  # ffmpeg's whole log is in the message
        raise SceneError(f"{path}: cannot decode the video (expected a video ffmpeg reads: "
                         f"{', '.join(sorted(VIDEO_SUFFIXES))})") from exc
    width, height = meta["size"]
    frames = (np.frombuffer(b, np.uint8).reshape(height, width, 3) / np.float32(255)
              for b in reader)
    return float(meta["fps"]), frames


def main(argv=None) -> None:
    run_command(lambda: _upscale(argv))


def _upscale(argv) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="an image, a folder of images, or a video")
    parser.add_option("weights", type=Path, required=True, help="SR weight file (.pth)")
    parser.add_option("out", type=Path, help="output PNG, folder or .mp4 (default: beside the input)")
    parser.add_option("tile", type=int, default=DEFAULT_TILE,
                      help="tile side in input pixels, >= 0; 0: no tiling (default: %(default)s)")
    parser.add_option("tile_pad", type=int, help="context pixels per tile, >= 0 (default: the net's radius, capped)")
    parser.add_option("batch", type=int, default=DEFAULT_BATCH,
                      help="video frames per forward pass, >= 1 (default: %(default)s)")
    parser.add_option("device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_switch("half", help="float16 inference (CUDA only)")
    args = parser.parse_args(argv)
    for name, value, least in (("tile", args.tile, 0), ("tile_pad", args.tile_pad, 0), ("batch", args.batch, 1)):
        if value is not None and value < least:
            raise ConfigError(f"--{name} {value}: must be >= {least}")
    if not args.input.exists():
        raise ConfigError(f"{args.input}: input not found")
    model = load_sr_weights(args.weights, args.device)
    options = dict(tile=args.tile, tile_pad=args.tile_pad, half=args.half)
    suffix = f"_x{model.scale}"
    if args.input.is_dir():
        files = sorted(p for p in args.input.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"{args.input}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        out_dir = args.out or args.input.with_name(args.input.name + suffix)
        for path in files:
            image = upscale_image(model, _read_image(path), **options)
            _write_png(out_dir / f"{path.stem}.png", image)
        print(f"{out_dir}: {len(files)} upscaled images")
    elif args.input.suffix.lower() in VIDEO_SUFFIXES:
        fps, frames = _video_frames(args.input)
        out = args.out or args.input.with_name(args.input.stem + suffix + ".mp4")
        upscaled = upscale_frames(model, frames, batch_size=args.batch, **options)
        count = write_video(out, (to_uint8_frame(f) for f in upscaled), fps)
        print(f"{out}: {count} upscaled frames at {fps:g} fps")
    else:
        out = args.out or args.input.with_name(args.input.stem + suffix + ".png")
        _write_png(out, upscale_image(model, _read_image(args.input), **options))
        print(f"{out}: upscaled image")


if __name__ == "__main__":
    main()
