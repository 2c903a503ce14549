"""Photos or a video -> a posed scene on disk, by structure from motion with pycolmap (CPU).

Stages: prepare images (nerf/sfm/images.py: copy or downscale photos; keep the sharpest frame
per time window of a video) -> SIFT features -> matching -> incremental mapping (the largest
model is kept) -> optional undistortion -> scene writer (nerf/sfm/scene.py).
`import_colmap_model` runs only the first and last stage on an existing COLMAP model, without
pycolmap. pycolmap is imported only when a stage needs it (`_import_pycolmap`).

The scene folder written is described in nerf/sfm/__init__.py.

Matching: exhaustive (all pairs) is the most robust for unordered photos but grows as n^2;
sequential matching pairs each image with its successors, which suits video. `matcher="auto"`
picks sequential for a video or for more than `exhaustive_max_images` photos.
"""

import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerf.datasets.colmap_io import ColmapModel, read_model, write_model
from nerf.atomic import fresh_folder
from nerf.config import check_fields, option
from nerf.errors import ConfigError, SceneError
from nerf.sfm.images import extract_video_frames, fit_size, place_image, prepare_photos, read_image
from nerf.sfm.scene import TRANSFORMS_CAMERA_MODELS, rescale_camera, transforms_intrinsics, write_scene

log = logging.getLogger(__name__)

MATCHERS = ("auto", "exhaustive", "sequential")


@dataclass(frozen=True)
class SfmConfig:
    """Options of the photo/video -> posed scene pipeline (each default is set once, here)."""

    max_image_size: int = option(1600, at_least=0)  # longest image side in pixels after downscaling; 0 keeps the size
    fps: float = option(2.0, at_least=0.0)  # frames per second of video kept (one per window); unused when frame_count > 0
    frame_count: int = option(0, at_least=0)  # target number of frames taken from a video; 0 uses fps instead
    blur_drop_ratio: float = option(0.3, at_least=0.0, at_most=1.0)  # drop a kept video frame whose sharpness is below this x the median
    camera_model: str = option("OPENCV", choices=TRANSFORMS_CAMERA_MODELS)  # COLMAP camera model estimated for the images (see TRANSFORMS_CAMERA_MODELS)
    shared_camera: bool = True  # one camera for all images (same device and zoom)
    matcher: str = option("auto", choices=MATCHERS)  # auto: sequential for video or > exhaustive_max_images photos, else exhaustive
    exhaustive_max_images: int = option(200, at_least=1)  # largest photo set matched exhaustively when matcher is auto
    sequential_overlap: int = option(10, at_least=1)  # sequential matcher: each image is matched with this many successors
    max_num_features: int = option(8192, at_least=1)  # SIFT features kept per image
    undistort: bool = False  # undistort registered images to a PINHOLE camera after mapping
    min_registered_fraction: float = option(0.5, above=0.0, at_most=1.0)  # fail when fewer than this fraction of the images register
    orient_up: bool = True  # rotate the world so that the cameras' mean up vector is +z
    num_threads: int = option(-1, at_least=-1)  # CPU threads used by pycolmap; -1 uses all cores
    seed: int = option(0, at_least=0)  # random seed of RANSAC and of the mapper, for repeatable runs
    jpeg_quality: int = option(95, at_least=1, at_most=100)  # quality of JPEG files written (video frames, downscaled photos)

    def __post_init__(self):
        check_fields(self)
        if self.num_threads == 0:
            raise ConfigError("num_threads = 0: use -1 for all cores or a positive count")
        if self.frame_count <= 0 and self.fps <= 0:
            raise ConfigError("SfmConfig: set fps > 0 or frame_count > 0 to take frames from a video")


# --------------------------------------------------------------------------------------------
# Structure from motion (pycolmap)


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as err:
        raise SceneError("structure from motion needs pycolmap: pip install pycolmap") from err
    return pycolmap


def run_colmap(image_dir: Path, names: list[str], work_dir: Path, cfg: SfmConfig, sequential: bool,
               times: dict[str, float]) -> ColmapModel:
    """SIFT extraction, matching and incremental mapping on CPU; returns the largest model.

    Args:
        image_dir: folder of the (already prepared) images.
        names: image names relative to `image_dir`, in capture order for sequential matching.
        work_dir: scratch folder for the database and the mapper's models.
        sequential: match each image with its `sequential_overlap` successors instead of all pairs.
        times: filled with seconds per stage.
    """
    pycolmap = _import_pycolmap()
    quiet = not log.isEnabledFor(logging.DEBUG)  # COLMAP's own per-image log only when debugging
    previous, pycolmap.logging.minloglevel = pycolmap.logging.minloglevel, 1 if quiet else 0
    try:
        return _run_colmap_stages(pycolmap, image_dir, names, work_dir, cfg, sequential, times)
    finally:
        pycolmap.logging.minloglevel = previous


def _run_colmap_stages(pycolmap, image_dir: Path, names: list[str], work_dir: Path, cfg: SfmConfig,
                       sequential: bool, times: dict[str, float]) -> ColmapModel:
    database = work_dir / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.use_gpu = False
    extraction.num_threads = cfg.num_threads
    extraction.sift.max_num_features = cfg.max_num_features
    mode = pycolmap.CameraMode.SINGLE if cfg.shared_camera else pycolmap.CameraMode.PER_IMAGE

    start = time.perf_counter()
    log.info("features: SIFT on %d images (%s camera, %s)", len(names), "shared" if cfg.shared_camera else "per-image", cfg.camera_model)
    pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    times["feature_extraction"] = time.perf_counter() - start

    start = time.perf_counter()
    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = cfg.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = cfg.seed
    log.info("matching: %s", "sequential" if sequential else "exhaustive")
    if sequential:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = cfg.sequential_overlap
        pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                                  verification_options=verification, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_exhaustive(database, matching_options=matching, verification_options=verification,
                                  device=pycolmap.Device.cpu)
    times["matching"] = time.perf_counter() - start

    start = time.perf_counter()
    mapper = pycolmap.IncrementalPipelineOptions()
    mapper.num_threads = cfg.num_threads
    mapper.random_seed = cfg.seed
    log.info("mapping: incremental (COLMAP's log: --verbose)")
    models = pycolmap.incremental_mapping(database, image_dir, work_dir / "sparse", options=mapper)
    times["mapping"] = time.perf_counter() - start
    if not models:
        return ColmapModel()
    largest = max(models.values(), key=lambda rec: rec.num_reg_images())
    log.info("mapping: %d model(s); the largest has %d images", len(models), largest.num_reg_images())
    (work_dir / "largest").mkdir()
    largest.write(work_dir / "largest")
    return read_model(work_dir / "largest")


def undistort(model: ColmapModel, image_dir: Path, work_dir: Path) -> ColmapModel:
    """Undistort the registered images in place (in `image_dir`) to PINHOLE cameras."""
    pycolmap = _import_pycolmap()
    write_model(model, work_dir / "distorted")
    pycolmap.undistort_images(work_dir / "undistorted", work_dir / "distorted", image_dir)
    for image in model.images.values():
        shutil.copy2(work_dir / "undistorted" / "images" / image.name, image_dir / image.name)
    return read_model(work_dir / "undistorted" / "sparse")


def _finish(model: ColmapModel, out_dir: Path, cfg: SfmConfig, summary: dict, times: dict) -> dict:
    start = time.perf_counter()
    write_scene(model, out_dir, cfg.orient_up)
    times["write_scene"] = time.perf_counter() - start
    errors = [p.error for p in model.points3d.values() if p.error >= 0]
    summary.update(registered=len(model.images), num_points=len(model.points3d),
                   mean_reprojection_error_px=float(np.mean(errors)) if errors else None,
                   seconds=dict(times), total_seconds=sum(times.values()))
    (out_dir / "sfm_summary.json").write_text(json.dumps(summary, indent=2))
    err = summary["mean_reprojection_error_px"]
    log.info("registered %d/%d images, %d points, mean reprojection error %s px; %s", summary["registered"],
             summary["total"], summary["num_points"], "n/a" if err is None else f"{err:.3f}",
             ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return summary


def _scene_folder(out_dir: Path, inputs: list[Path], overwrite: bool):
    """The new scene is built in a hidden sibling folder and renamed to `out_dir` when complete,
    so a failure (bad photo, too few registered images, Ctrl-C) leaves an existing folder as it
    was; an existing non-empty `out_dir` is replaced only with `overwrite`, and never when an
    input lies inside it (the originals would go with it)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise SceneError(f"{out_dir}: exists and is not empty; choose a new --out folder or pass --overwrite "
                             "(the old folder is replaced only once the new scene is complete)")
        target = out_dir.resolve()
        for src in inputs:
            if src.resolve() == target or target in src.resolve().parents:
                raise SceneError(f"input {src}: lies inside the output folder {out_dir}, which --overwrite would "
                                 "replace; write the scene to another folder")
    try:
        return fresh_folder(out_dir, replace=overwrite)
    except OSError as exc:
        raise SceneError(f"{out_dir}: cannot create the scene folder ({exc.strerror})") from exc


def run_sfm(source: str | Path, out_dir: str | Path, cfg: SfmConfig = SfmConfig(), overwrite: bool = False) -> dict:
    """Pose a folder of photos or a video with COLMAP and write a scene folder (see module doc).

    Args:
        source: a folder of images or a video file.
        out_dir: the scene folder to write; it appears only once complete.
        overwrite: replace an existing non-empty `out_dir` (after the new scene is complete).
    Returns:
        The summary also saved as out_dir/sfm_summary.json.
    """
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise SceneError(f"input {source}: does not exist (expected a folder of images or a video file)")
    with _scene_folder(out_dir, [source], overwrite) as building:
        return _run_sfm(source, building, cfg)


def _run_sfm(source: Path, out_dir: Path, cfg: SfmConfig) -> dict:
    images_out = out_dir / "images"
    times: dict[str, float] = {}
    start = time.perf_counter()
    is_video = source.is_file()
    if is_video:
        names = extract_video_frames(source, images_out, cfg.fps, cfg.frame_count, cfg.blur_drop_ratio,
                                     cfg.max_image_size, cfg.jpeg_quality)
    else:
        names = sorted(prepare_photos(source, images_out, cfg.max_image_size, cfg.jpeg_quality))
    times["prepare_images"] = time.perf_counter() - start
    sequential = cfg.matcher == "sequential" or (
        cfg.matcher == "auto" and (is_video or len(names) > cfg.exhaustive_max_images))
    with tempfile.TemporaryDirectory(prefix="nerf_sfm_") as work:
        model = run_colmap(images_out, names, Path(work), cfg, sequential, times)
        registered = len(model.images)
        if registered < max(2, math.ceil(cfg.min_registered_fraction * len(names))):
            raise SceneError(
                f"structure from motion on {source}: only {registered} of {len(names)} images registered "
                f"(need {cfg.min_registered_fraction:.0%}). Likely causes: too little overlap between views, "
                "blurry or textureless images, moving objects or a pure rotation. Try: more photos with more "
                "overlap, --matcher sequential for ordered captures, a smaller --max_image_size, or "
                "--shared_camera false if the photos come from several cameras or zoom levels.")
        if cfg.undistort:
            start = time.perf_counter()
            model = undistort(model, images_out, Path(work))
            times["undistortion"] = time.perf_counter() - start
    registered_names = {image.name for image in model.images.values()}
    summary = {"input": str(source), "total": len(names), "matcher": "sequential" if sequential else "exhaustive",
               "camera_model": "PINHOLE" if cfg.undistort else cfg.camera_model,
               "unregistered": [n for n in names if n not in registered_names]}
    return _finish(model, out_dir, cfg, summary, times)


def import_colmap_model(model_dir: str | Path, image_dir: str | Path, out_dir: str | Path,
                        cfg: SfmConfig = SfmConfig(), overwrite: bool = False) -> dict:
    """Write a scene folder from an existing COLMAP model without running SfM (no pycolmap).

    Images may be stored at another resolution than the model's cameras (e.g. images_4/):
    intrinsics and 2D points are rescaled to the images written. The folder appears only once
    complete; an existing non-empty `out_dir` is replaced only with `overwrite`.
    Returns:
        The summary also saved as out_dir/sfm_summary.json.
    """
    model_dir, image_dir, out_dir = Path(model_dir), Path(image_dir), Path(out_dir)
    if not image_dir.is_dir():
        raise SceneError(f"image folder {image_dir}: does not exist or is not a folder")
    with _scene_folder(out_dir, [model_dir, image_dir], overwrite) as building:
        return _import_colmap_model(model_dir, image_dir, building, cfg)


def _import_colmap_model(model_dir: Path, image_dir: Path, out_dir: Path, cfg: SfmConfig) -> dict:
    times: dict[str, float] = {}
    start = time.perf_counter()
    model = read_model(model_dir)
    if not model.images:
        raise SceneError(f"COLMAP model {model_dir}: has no registered images")
    for camera in model.cameras.values():
        transforms_intrinsics(camera)
    missing = [im.name for im in model.images.values() if not (image_dir / im.name).is_file()]
    if missing:
        raise SceneError(f"image folder {image_dir}: {len(missing)} of {len(model.images)} images of the model "
                         f"{model_dir} are missing, e.g. {', '.join(missing[:5])}")
    from tqdm import tqdm

    new_sizes: dict[int, tuple[int, int]] = {}
    for image in tqdm(sorted(model.images.values(), key=lambda im: im.name), desc="prepare images", unit="img"):
        camera, pixels = model.cameras[image.camera_id], read_image(image_dir / image.name)
        height, width = pixels.shape[:2]
        if abs(width / camera.width - height / camera.height) > 0.01 * width / camera.width:
            raise SceneError(f"image {image_dir / image.name}: size {width}x{height} does not have the aspect of "
                             f"its camera {camera.camera_id} ({camera.width}x{camera.height})")
        size = fit_size(width, height, cfg.max_image_size)
        if new_sizes.setdefault(camera.camera_id, size) != size:
            raise SceneError(f"image {image_dir / image.name}: size {width}x{height} differs from other images "
                             f"of camera {camera.camera_id}")
        place_image(pixels, image_dir / image.name, out_dir / "images" / image.name, size, cfg.jpeg_quality)
    cameras = {cid: rescale_camera(model.cameras[cid], *size) for cid, size in new_sizes.items()}
    images = {}
    for image_id, image in model.images.items():
        old, new = model.cameras[image.camera_id], cameras[image.camera_id]
        scale = np.array([new.width / old.width, new.height / old.height])
        images[image_id] = dataclasses.replace(image, xys=image.xys * scale)
    times["prepare_images"] = time.perf_counter() - start
    summary = {"input": str(model_dir), "total": len(model.images), "matcher": None,
               "camera_model": sorted({c.model for c in cameras.values()}), "unregistered": []}
    return _finish(ColmapModel(cameras, images, model.points3d), out_dir, cfg, summary, times)
