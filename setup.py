"""Package metadata for the NeRF toolkit (pure Python: no compiler, no build step)."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "nerf" / "__init__.py").read_text(), version)

extras = {
    "test": ["pytest>=7", "triton>=3.0; platform_system == 'Linux' and platform_machine == 'x86_64'",
             "playwright>=1.40"],  # drives the system chromium in the viewer's browser test
    "viewer": ["viser>=1.0"],
    "mesh": ["open3d>=0.18"],
    "sfm": ["pycolmap>=3.10"],
    "tensorboard": ["tensorboard>=2.10"],  # event files beside metrics.jsonl
}
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})
# LPIPS fetches its AlexNet weights on first use, so it stays out of "all" (offline machines)
extras["lpips"] = ["lpips>=0.1.4"]

setup(
    name="nerf-toolkit",
    version=version["__version__"],
    description="NeRF reconstruction: posed photos to radiance fields, videos and coloured meshes",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["nerf", "nerf.*"]) + ["nerf_tools"],
    package_dir={"nerf_tools": "tools"},
    py_modules=["train_nerf", "render"],
    install_requires=[
        "torch>=2.1",
        "numpy>=1.22",
        "imageio>=2.28",
        "imageio-ffmpeg>=0.4.8",
        "configargparse>=1.5",
        "trimesh>=4.0",
        "scikit-image>=0.21",
        "scipy>=1.9",
        "tqdm>=4.60",
        "numba>=0.59",  # CPU kernels, compiled at first use (a wheel with its own LLVM)
    ],
    extras_require=extras,
    entry_points={
        "console_scripts": [
            "nerf-train = train_nerf:main",
            "nerf-render = render:main",
            "nerf-process = nerf_tools.colmap2nerf:main",
            "nerf-demo-scene = nerf_tools.make_demo_scene:main",
            "nerf-upscale = nerf_tools.upscale:main",
            "nerf-extract-mesh = nerf_tools.extract_mesh:main",
            "nerf-export = nerf_tools.export:main",
            "nerf-evaluate-mesh = nerf_tools.evaluate_mesh:main",
            "nerf-benchmark = nerf_tools.benchmark:main",
            "nerf-view = nerf_tools.view:main",
        ]
    },
)
