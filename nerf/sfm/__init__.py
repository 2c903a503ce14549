"""Structure from motion: photos, a video or a COLMAP model -> a posed scene folder.

Modules, one job each:
    reconstruct  `SfmConfig` and the pipeline: `run_sfm` (pycolmap on the CPU) and
                 `import_colmap_model` (an existing model, no pycolmap)
    images       photo folders copied or downscaled, the sharpest frames of a video
    scene        COLMAP model -> transforms.json (axes, world frame, intrinsics) and sparse/0
    evaluate     recovered poses against reference poses after a similarity alignment
    command      the `nerf-process` command line (tools/colmap2nerf.py)

pycolmap is an optional extra (`pip install -e ".[sfm]"`) imported only when SfM runs, so
importing this package, or importing a model, does not need it.

The scene folder written:
    images/            the images transforms.json refers to (unregistered ones stay, unreferenced)
    transforms.json    instant-ngp / nerfstudio format (axes and world frame: nerf/sfm/scene.py)
    sparse/0/          the COLMAP model (binary, written by nerf.datasets.colmap_io), in COLMAP's world
    sfm_summary.json   registered/total, mean reprojection error (pixels of the model's cameras),
                       number of points, seconds per stage
"""

from nerf.sfm.command import cli
from nerf.sfm.evaluate import compare_poses, evaluate_scene, load_transforms_poses
from nerf.sfm.reconstruct import MATCHERS, SfmConfig, import_colmap_model, run_sfm

__all__ = ["MATCHERS", "SfmConfig", "cli", "compare_poses", "evaluate_scene",
           "import_colmap_model", "load_transforms_poses", "run_sfm"]
