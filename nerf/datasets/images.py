"""Reading a scene's images from disk: uint8, decoded in parallel, one size or one each.

Every reader hands this module a list of image files (plus a label per file, such as
"transforms_train.json frame 12", for messages) and gets back one uint8 tensor
`[C, H, W, 3|4]`. The rules:

- With one output size (`size`, or `downscale` of the files' size), all files must have one
  size on disk; the first file that differs is a SceneError naming it and both sizes (checked
  from the headers, before any pixel is decoded).
- With a size per image (`sizes`: cameras of different sizes, e.g. COLMAP's undistorter crops
  each image differently, portrait and landscape shots mix), image i is resized to its own
  sizes[i] and occupies the top-left corner of a tensor of the largest width and height; the
  rest is zero (`padded_canvas`). The readers take each image's size on disk from
  `image_sizes` and check it against its own camera.
- Grey images become RGB; palette / grey+alpha images become RGB or RGBA. If any image has
  alpha, every image gets an alpha channel (opaque where the file has none).
- Resizing uses an area filter (a box filter: each output pixel is the mean of the input
  area it covers; RGBA is averaged premultiplied by alpha so transparent colour does not bleed).
- Decoding runs in a thread pool (PIL releases the GIL while it decodes) straight into one
  pre-allocated buffer, so peak memory is the final tensor plus one image per worker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from nerf.errors import SceneError

MAX_WORKERS = 8  # decoding threads; more do not help once the disk or the cores are busy
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (hidden files skipped)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def downscaled_folders(root: Path, stem: str = "images") -> dict[int, Path]:
    """Pre-downscaled copies next to `root/stem`: {1: images, 4: images_4, ...} (those present)."""
    found = {}
    if (root / stem).is_dir():
        found[1] = root / stem
    for p in root.glob(f"{stem}_*"):
        m = re.fullmatch(rf"{re.escape(stem)}_(\d+)", p.name)
        if m and p.is_dir() and int(m.group(1)) > 0:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def target_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """Size (width, height) of an image of `width` x `height` downscaled by `downscale`."""
    return max(1, round(width / downscale)), max(1, round(height / downscale))


def check_downscale(downscale: float) -> float:
    """Validate the `downscale` argument of the readers (a factor >= 1)."""
    if not (isinstance(downscale, (int, float)) and np.isfinite(downscale) and downscale >= 1):
        raise SceneError(f"downscale must be a number >= 1, got {downscale!r}")
    return float(downscale)


def image_size(path: Path, label: str = "") -> tuple[int, int]:
    """(width, height) of an image file, read from its header only."""
    return _probe(path, label)[0]


def _where(label: str) -> str:
    return f"{label}: " if label else ""


def _check_exists(path: Path, label: str) -> None:
    if not path.is_file():
        looked = path.parent if path.parent.is_dir() else f"{path.parent}, which does not exist"
        raise SceneError(f"{_where(label)}file '{path.name}' not found (looked in {looked})")


def _decode_reason(exc: Exception) -> str:
    """Pillow's reason in one line, without the path it repeats."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow can read"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def _probe(path: Path, label: str) -> tuple[tuple[int, int], bool]:
    """((width, height), has_alpha) from the header, with errors that name the file."""
    _check_exists(path, label)
    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
                im.mode == "P" and "transparency" in im.info
            )
            return im.size, has_alpha
    except _DECODE_ERRORS as exc:
        raise SceneError(f"{_where(label)}cannot read image {path}: {_decode_reason(exc)} "
                         f"(expected one of {', '.join(IMAGE_SUFFIXES)})") from exc


def _decode(path: Path, label: str, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image to uint8 [H, W, channels], area-resized to `size` (w, h) if given."""
    try:
        with Image.open(path) as im:
            im.load()  # force the full decode here so truncated files fail with their name
            mode = "RGBA" if channels == 4 else "RGB"
            if im.mode != mode:
                im = im.convert(mode)
            if size is not None and im.size != tuple(size):
                im = im.resize(tuple(size), resample=Image.Resampling.BOX)
            arr = np.asarray(im, dtype=np.uint8)
    except _DECODE_ERRORS as exc:
        raise SceneError(f"{_where(label)}cannot decode image {path}: {_decode_reason(exc)}") from exc
    return arr


def image_sizes(paths: Sequence[Path], labels: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """(width, height) of each image file, read from the headers only."""
    labels = list(labels) if labels is not None else [""] * len(paths)
    return [image_size(Path(p), lab) for p, lab in zip(paths, labels)]


def padded_canvas(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(width, height) of the tensor that holds images of `sizes` (w, h) in its top-left corner."""
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def read_images(
    paths: Sequence[Path],
    labels: Sequence[str] | None = None,
    downscale: float = 1.0,
    size: tuple[int, int] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> Tensor:  # [C, H, W, 3|4] uint8
    """Read images into one uint8 tensor, resized with an area filter.

    Args:
        paths: C image files.
        labels: C strings naming each file's origin in messages (default: none).
        downscale: factor >= 1 applied to the on-disk size (ignored when `size` or `sizes` is
            given); every file must then have one size.
        size: one exact output (width, height) for every image, e.g. to resize a pre-downscaled
            folder; every file must have one size on disk.
        sizes: C output sizes (width, height), one per image; the files may differ in size.
    Returns:
        uint8 tensor [C, H, W, 3] or [C, H, W, 4] (4 when any file has alpha). With `sizes`,
        H and W are the largest height and width and image i fills [i, :h_i, :w_i] (the rest
        is 0).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise SceneError("no images to read")
    labels = list(labels) if labels is not None else [""] * len(paths)
    probes = [_probe(p, lab) for p, lab in zip(paths, labels)]
    if sizes is not None:
        if len(sizes) != len(paths):
            raise ValueError(f"read_images: {len(sizes)} sizes for {len(paths)} images")
        out_sizes = [tuple(int(v) for v in s) for s in sizes]
    else:
        first_size = probes[0][0]
        for (sz, _), p, lab in zip(probes, paths, labels):
            if sz != first_size:
                raise SceneError(
                    f"{_where(lab)}image {p} is {sz[0]}x{sz[1]} but {paths[0]} is "
                    f"{first_size[0]}x{first_size[1]}; all images of a scene must have one size"
                )
        one = tuple(size) if size is not None else target_size(*first_size, check_downscale(downscale))
        out_sizes = [one] * len(paths)
    channels = 4 if any(alpha for _, alpha in probes) else 3
    width, height = padded_canvas(out_sizes)
    uniform = len(set(out_sizes)) == 1
    out = (np.empty if uniform else np.zeros)((len(paths), height, width, channels), dtype=np.uint8)

    def work(i: int) -> None:
        (w, h), on_disk = out_sizes[i], probes[i][0]
        out[i, :h, :w] = _decode(paths[i], labels[i], channels, None if (w, h) == on_disk else (w, h))

    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, i) for i in range(len(paths))]:
            future.result()  # re-raises the first failure (a SceneError naming its file)
    return torch.from_numpy(out)


def read_masks(
    paths: Sequence[Path],
    labels: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    canvas: tuple[int, int] | None = None,
) -> Tensor:  # [C, H, W] bool
    """Read grey masks (bright = use the pixel), each resized to its image's size by majority vote.

    Args:
        paths: C mask files (any mode; converted to 8-bit grey).
        labels: C strings naming each mask's origin in messages.
        sizes: C sizes (width, height) of the masks' images; a mask of another size is resized
            to it with the area filter, and a pixel is used when its mean grey value is >= 128.
        canvas: (width, height) of the output (default the largest of `sizes`); mask i fills
            [i, :h_i, :w_i] and the rest is False (padding is never used).
    Returns:
        bool tensor [C, H, W], True where the pixel is used for training.
    """
    width, height = canvas if canvas is not None else padded_canvas(sizes)
    out = np.zeros((len(paths), height, width), dtype=bool)

    def work(i: int) -> None:
        path, label, (w, h) = Path(paths[i]), labels[i], sizes[i]
        _check_exists(path, label)
        try:
            with Image.open(path) as im:
                im.load()
                im = im.convert("L")
                if im.size != (w, h):
                    im = im.resize((w, h), resample=Image.Resampling.BOX)
                out[i, :h, :w] = np.asarray(im) >= 128
        except _DECODE_ERRORS as exc:
            raise SceneError(f"{_where(label)}cannot decode mask {path}: {exc}") from exc

    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, i) for i in range(len(paths))]:
            future.result()
    return torch.from_numpy(out)
