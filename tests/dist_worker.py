"""Worker for tests/test_distributed.py, launched by torchrun (or alone for the reference run).

    python -m torch.distributed.run --nproc_per_node=2 tests/dist_worker.py train SCENE OUT STEPS
    python -m torch.distributed.run --nproc_per_node=2 tests/dist_worker.py render RUN OUT

`train` trains a tiny field for STEPS steps and saves this rank's parameters and losses to
OUT/rank<r>.pt; `render` renders a 3-frame orbit of RUN into OUT as PNG frames.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf import distributed  # noqa: E402
from nerf.config import (Config, DataConfig, ModelConfig, OutputConfig, RenderConfig, SamplerConfig,  # noqa: E402
                         TrainConfig)
from nerf.datasets import load_scene  # noqa: E402


def tiny_config(scene: str, steps: int, runs_dir: str = "unused") -> Config:
    return Config(
        name="dist", runs_dir=runs_dir, device="cpu", data=DataConfig(data=scene),
        model=ModelConfig(hash_levels=4, hash_log2_size=10, hash_max_resolution=32, hidden_dim=16),
        sampler=SamplerConfig(grid_resolution=16, march_steps=64, grid_warmup=8, grid_update_every=4),
        train=TrainConfig(steps=steps, target_samples=4096, initial_rays=512, lr=0.03, lr_warmup=2),
        output=OutputConfig(video_frames=0, mesh_resolution=0),
    )


def train(scene_path: str, out: str, steps: int) -> None:
    from nerf.train.trainer import Trainer

    torch.set_num_threads(1)
    d = distributed.init_distributed(torch.device("cpu"))
    trainer = Trainer(tiny_config(scene_path, steps), load_scene(scene_path), quiet=True)
    losses = [trainer.train_step().loss for _ in range(steps)]
    state = {k: v.clone() for k, v in trainer.renderer.state_dict().items()}
    torch.save({"state": state, "losses": losses, "world_size": d.world_size}, Path(out) / f"rank{d.rank}.pt")
    distributed.cleanup()


def render(run_dir: str, out: str) -> None:
    from nerf.jobs.render import render_path
    from nerf.jobs.run import load_trained_run

    torch.set_num_threads(1)
    distributed.init_distributed(torch.device("cpu"))
    run = load_trained_run(run_dir, "cpu")
    cfg = RenderConfig(run=run_dir, frames=3, outputs="rgb,depth", frame_format="png", out=out)
    render_path(run, cfg, Path(out), progress=False)
    distributed.cleanup()


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        render(sys.argv[2], sys.argv[3])
