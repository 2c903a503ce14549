"""Images for structure from motion: photo folders copied or downscaled, sharp frames from videos.

Sizes are (width, height) in pixels. Downscaling uses Lanczos filtering and keeps the aspect
ratio up to rounding; callers that rescale intrinsics use the exact ratio of the written sizes.
"""

import logging
import shutil
from pathlib import Path

import numpy as np

from nerf.errors import SceneError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")



def fit_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """Output size whose longest side is at most `max_size` (0: unchanged)."""
    if max_size <= 0 or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_uint8(image: np.ndarray) -> np.ndarray:  # [H, W] or [H, W, 3|4] -> same, uint8
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.integer):
        return (image.astype(np.float64) * (255.0 / np.iinfo(image.dtype).max)).round().astype(np.uint8)
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _save(image: np.ndarray, path: Path, size: tuple[int, int], quality: int) -> None:
    """Write `image` [H, W(, 3|4)] resized to `size` (w, h) with Lanczos filtering."""
    from PIL import Image

    pil = Image.fromarray(_to_uint8(image))
    if pil.size != size:
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        pil.convert("RGB").save(path, quality=quality)
    else:
        pil.save(path)


def place_image(pixels: np.ndarray, src: Path, dst: Path, size: tuple[int, int], jpeg_quality: int) -> None:
    """Copy `src` to `dst`, or write `pixels` [H, W(, C)] resized to `size` (w, h) there."""
    same = src.resolve() == dst.resolve()
    if size == (pixels.shape[1], pixels.shape[0]):
        if not same:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    elif same:
        raise SceneError(f"image {src}: downscaling would overwrite the original; write the scene to "
                         "another folder or keep the size (--max_image_size 0)")
    else:
        _save(pixels, dst, size, jpeg_quality)


def read_image(path: Path) -> np.ndarray:  # -> [H, W] or [H, W, C]
    """Decode an image file; SceneError naming the file if it cannot be decoded."""
    import imageio.v3 as iio

    try:
        image = iio.imread(path)
    except Exception as err:  # imageio raises many types; its text may advise plugins that would not help
        raise SceneError(f"image {path}: cannot be decoded (expected an image file: "
                         f"{', '.join(sorted(IMAGE_EXTENSIONS))}; {type(err).__name__})") from err
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise SceneError(f"image {path}: unexpected shape {image.shape} (expected H x W or H x W x C)")
    return image


def list_images(folder: Path) -> list[str]:
    """Sorted names (relative to `folder`, recursive) of the image files in `folder`."""
    if not folder.is_dir():
        raise SceneError(f"image folder {folder}: does not exist or is not a folder")
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise SceneError(f"image folder {folder}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return names


def prepare_photos(src: Path, images_out: Path, max_size: int, jpeg_quality: int = 95) -> dict[str, tuple[int, int]]:
    """Copy every photo of `src` into `images_out`, downscaled to a longest side of `max_size` (0: kept).

    Returns:
        {name: (width, height) of the source image} for every image written.
    """
    from tqdm import tqdm

    sizes = {}
    for name in tqdm(list_images(src), desc="prepare images", unit="img"):
        image = read_image(src / name)
        height, width = image.shape[:2]
        place_image(image, src / name, images_out / name, fit_size(width, height, max_size), jpeg_quality)
        sizes[name] = (width, height)
    return sizes


def sharpness(image: np.ndarray) -> float:  # image [H, W, 3] uint8
    """Variance of the 4-neighbour Laplacian of the grey image: high for sharp, low for blurry."""
    grey = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    laplacian = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(laplacian.var())


def extract_video_frames(video: Path, images_out: Path, fps: float, frame_count: int = 0, blur_drop_ratio: float = 0.3,
                         max_size: int = 0, jpeg_quality: int = 95) -> list[str]:
    """Keep the sharpest frame of each time window of `video`, downscaled, as JPEG files.

    Windows last 1 / fps seconds, or split the video into `frame_count` equal parts when
    frame_count > 0. Kept frames whose sharpness is below `blur_drop_ratio` times the median of the
    kept ones are dropped (whole windows of motion blur). Frames are downscaled to `max_size`.
    Returns:
        Sorted names of the frames written to `images_out`.
    """
    import imageio_ffmpeg
    from tqdm import tqdm

    try:
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as err:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise SceneError(f"video {video}: cannot be decoded ({last})") from err
    width, height = meta["size"]
    video_fps = float(meta.get("fps") or 0.0)
    if video_fps <= 0:
        raise SceneError(f"video {video}: frame rate unknown ({meta.get('fps')!r}); extract frames to a folder first")
    estimated = max(1, round(float(meta.get("duration") or 0.0) * video_fps))
    size = fit_size(width, height, max_size)
    images_out.mkdir(parents=True, exist_ok=True)

    def window_of(index: int) -> int:
        if frame_count > 0:
            return min(index * frame_count // estimated, frame_count - 1)
        return int(index / video_fps * fps)

    kept: dict[str, float] = {}
    best: tuple[float, np.ndarray] | None = None
    window = 0

    def flush() -> None:
        if best is not None:
            name = f"frame_{len(kept) + 1:05d}.jpg"
            _save(best[1], images_out / name, size, jpeg_quality)
            kept[name] = best[0]

    try:
        for index, raw in enumerate(tqdm(reader, total=estimated, desc="extract frames", unit="frame")):
            frame = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            if window_of(index) != window:
                flush()
                best, window = None, window_of(index)
            score = sharpness(frame)
            if best is None or score > best[0]:
                best = (score, frame.copy())
        flush()
    except (OSError, RuntimeError, ValueError) as err:
        raise SceneError(f"video {video}: decoding failed after {len(kept)} kept frames ({err})") from err
    finally:
        reader.close()
    if not kept:
        raise SceneError(f"video {video}: no frames could be decoded")
    threshold = blur_drop_ratio * float(np.median(list(kept.values())))
    for name, score in list(kept.items()):
        if score < threshold:
            (images_out / name).unlink()
            del kept[name]
    log.info("video %s: kept %d sharp frames of about %d", video.name, len(kept), estimated)
    return sorted(kept)
