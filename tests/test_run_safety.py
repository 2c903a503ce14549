"""Nothing lost, nothing executed: run-directory safety, the run lock, checkpoint faults
(crafted, corrupt, a full disk, Ctrl-C, kill -9) and outputs that appear whole or not at all.

Each test states the fault, then checks the message and that the user's files are as they were
(folders are compared by hashing every file)."""

import dataclasses
import errno
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nerf.config import config_to_text
from nerf.errors import CheckpointError, ConfigError, SceneError
from nerf.jobs.train import run_training_job
from nerf.train import checkpoint as checkpoint_module
from nerf.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from nerf.train.rundir import RunLock, prepare_run_dir
from nerf.train.trainer import Trainer
from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def folder_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder` (hidden ones included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def train_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_train_nerf", ROOT / "train_nerf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def copied_run(tmp_path, tiny_run) -> Path:
    """A private copy of the shared tiny run (its config.txt names the tiny scene absolutely)."""
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, run)
    return run


def run_argv(run: Path, *extra: str) -> list[str]:
    return ["--config", str(run / "config.txt"), "--runs_dir", str(run.parent), "--name", run.name, *extra]


def exit_status(main, argv) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


# --- run names and --overwrite ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../elsewhere"])
def test_run_names_that_reach_the_runs_folder_or_outside_are_refused(copied_run, capsys, name):
    before = folder_digest(copied_run.parent)
    assert exit_status(train_main(), run_argv(copied_run, "--name", name, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plain folder name" in err
    assert folder_digest(copied_run.parent) == before


@pytest.mark.parametrize("bad", [["--loss", "l1"], ["--steps", "-3"], ["--device", "gpu"], ["--lr", "-1"],
                                 ["--data", "no/such/scene"], ["--eval_views", "-2"]])
def test_overwrite_with_an_invalid_value_leaves_the_old_run_byte_identical(copied_run, capsys, bad):
    before = folder_digest(copied_run.parent)
    assert exit_status(train_main(), run_argv(copied_run, "--overwrite", *bad)) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert folder_digest(copied_run.parent) == before


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(copied_run, tiny_scene_path, monkeypatch):
    cfg = dataclasses.replace(tiny_config(copied_run.parent.parent, tiny_scene_path, steps=4, lr=0.02),
                              overwrite=True)
    before = folder_digest(copied_run)

    def fails(self):
        raise RuntimeError("simulated crash before the first checkpoint")

    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", fails)
        with pytest.raises(RuntimeError, match="simulated"):
            run_training_job(cfg, quiet=True)
    backups = sorted(copied_run.parent.glob("tiny.replaced-*"))
    assert len(backups) == 1 and folder_digest(backups[0]) == before  # the old run, untouched
    backups[0].rename(copied_run.parent / "kept")
    out = run_training_job(cfg, quiet=True)  # replaces the failed attempt's run directory
    assert list_checkpoints(out["run_dir"])[-1].name == "step_000004.pt"
    assert not list(copied_run.parent.glob("tiny.replaced-*"))  # deleted after the first checkpoint


def test_a_folder_that_is_not_a_run_is_never_replaced(tmp_path, tiny_scene_path):
    cfg = dataclasses.replace(tiny_config(tmp_path, tiny_scene_path), overwrite=True)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "thesis.tex").write_text("years of work")
    with pytest.raises(CheckpointError, match="not a run directory"):
        run_training_job(cfg, quiet=True)
    assert (cfg.run_dir / "thesis.tex").read_text() == "years of work"


# --- the run lock ----------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from nerf.train.rundir import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_training_of_the_same_run_is_refused_and_a_dead_holder_frees_it(copied_run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(copied_run)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = folder_digest(copied_run)
        assert exit_status(train_main(), run_argv(copied_run)) == 2
        err = capsys.readouterr().err
        assert f"another training of this run is in progress (process {holder.pid})" in err
        assert folder_digest(copied_run) == before
    finally:
        holder.kill()  # kill -9: the lock file stays, the kernel's lock goes
        holder.wait()
    assert (copied_run.parent / ".tiny.lock").exists()
    RunLock(copied_run).acquire().release()  # a dead process's lock is no obstacle


# --- checkpoints: crafted, corrupt, disk full ------------------------------------------------

class RunsCode:
    """Unpickling this calls open(marker, "w"): a file appears if any code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_is_refused_without_running_code(tmp_path, copied_run):
    marker = tmp_path / "code_ran"
    crafted = copied_run / "checkpoints" / "step_999999.pt"
    torch.save({"format": "nerf-toolkit-checkpoint", "version": 1, "step": 999999, "x": RunsCode(marker)}, crafted)
    with pytest.raises(CheckpointError, match="refused.*could run code"):
        load_checkpoint(crafted)
    assert not marker.exists()
    from nerf.jobs.run import load_trained_run  # rendering the run: falls back, runs nothing

    run = load_trained_run(copied_run, "cpu")
    assert run.step == 10 and not marker.exists() and crafted.exists()
    torch.load(crafted, weights_only=False)  # the payload is real: the unsafe load runs it
    assert marker.exists()


def test_resume_falls_back_to_the_newest_readable_checkpoint(copied_run, tiny_scene, capsys):
    good = list_checkpoints(copied_run)[-1]
    bad = copied_run / "checkpoints" / "step_000020.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a truncated copy
    cfg = dataclasses.replace(tiny_config(copied_run.parent.parent, tiny_scene.source), resume=True)
    trainer = Trainer(cfg, tiny_scene, copied_run, quiet=True)
    assert trainer.resume() and trainer.step == 10
    err = capsys.readouterr().err
    assert "step_000020.pt: not a readable checkpoint" in err and "using the older step_000010.pt" in err
    assert not bad.exists() and bad.with_name("step_000020.pt.unreadable").exists()


def test_a_full_disk_during_a_checkpoint_leaves_no_temporary_and_the_old_checkpoints(tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = save_checkpoint(run, 1, {"w": torch.ones(3)})

    def full_disk(obj, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="step_000002.pt: cannot write the checkpoint.*No space left"):
        save_checkpoint(run, 2, {"w": torch.ones(3)})
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [first.name]


# --- Ctrl-C and kill -9 ----------------------------------------------------------------------

def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, tiny_scene_path, monkeypatch, capsys):
    cfg = tiny_config(tmp_path, tiny_scene_path, steps=50, checkpoint_every=100)
    config = tmp_path / "tiny.txt"
    config.write_text(config_to_text(cfg))
    step = Trainer.train_step

    def interrupted_at_3(self):
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C were pressed during step 4
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_3)
    assert exit_status(train_main(), ["--config", str(config)]) == 130
    err = capsys.readouterr().err  # the progress bar, then one line
    last = err.rstrip("\n").split("\n")[-1]
    assert "Traceback" not in err and last.startswith("interrupted: training stopped at step 4; saved ")
    assert last.endswith("run the same command to continue")
    assert [p.name for p in list_checkpoints(cfg.run_dir)] == ["step_000004.pt"]
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "step_000004.pt")["step"] == 4


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, "tests")
import torch
from nerf.datasets import load_scene
from nerf.train import checkpoint
from nerf.train.rundir import prepare_run_dir
from nerf.train.trainer import Trainer
from tiny import tiny_config

cfg = tiny_config(Path(sys.argv[1]), Path(sys.argv[2]), steps=int(sys.argv[3]), checkpoint_every=5)
save = torch.save

def dies_writing_step_10(obj, path):
    if obj["step"] == 10:  # half the bytes of step 10 on disk, then kill -9
        Path(path).write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    save(obj, path)

checkpoint.torch.save = dies_writing_step_10
run_dir, _ = prepare_run_dir(cfg)
Trainer(cfg, load_scene(cfg.data.data), run_dir, quiet=True).fit()
"""
KILL_STEPS = 16


def params(trainer):
    return {k: v.clone() for k, v in trainer.renderer.state_dict().items()}


def test_kill_9_mid_checkpoint_write_then_resume_continues_the_same_curve(tmp_path, tiny_scene, tiny_scene_path):
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "b"), str(tiny_scene_path),
                             str(KILL_STEPS)], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    cfg = tiny_config(tmp_path / "b", tiny_scene_path, steps=KILL_STEPS, checkpoint_every=5)
    folder = cfg.run_dir / "checkpoints"
    assert [p.name for p in list_checkpoints(cfg.run_dir)] == ["step_000005.pt"]
    assert any(p.name.startswith(".step_000010.tmp-") for p in folder.iterdir())  # the torn write

    run_dir, resume = prepare_run_dir(cfg)
    resumed = Trainer(cfg, tiny_scene, run_dir, quiet=True)
    assert resume and resumed.resume() and resumed.step == 5
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # temporaries cleaned up
    resumed.fit()
    straight = Trainer(tiny_config(tmp_path / "a", tiny_scene_path, steps=KILL_STEPS), tiny_scene, quiet=True)
    straight.fit()
    a, b = params(straight), params(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_kill_9_at_a_random_moment_of_training_then_resume_continues_the_same_curve(tmp_path, tiny_scene,
                                                                                   tiny_scene_path):
    """The CLI trains in a subprocess, is killed with SIGKILL once a checkpoint exists, and the
    same command finishes on the same parameters as an uninterrupted run of the CLI."""
    steps = 400
    straight = tiny_config(tmp_path / "a", tiny_scene_path, steps=steps, checkpoint_every=20)
    cfg = tiny_config(tmp_path / "b", tiny_scene_path, steps=steps, checkpoint_every=20)
    for c, name in ((straight, "a.txt"), (cfg, "b.txt")):
        (tmp_path / name).write_text(config_to_text(c))
    subprocess.run([sys.executable, "train_nerf.py", "--config", str(tmp_path / "a.txt")], cwd=ROOT, check=True,
                   capture_output=True)
    command = [sys.executable, "train_nerf.py", "--config", str(tmp_path / "b.txt")]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list_checkpoints(cfg.run_dir) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(cfg.run_dir) and torch.load(list_checkpoints(cfg.run_dir)[-1])["step"] < steps
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    expected = load_checkpoint(list_checkpoints(straight.run_dir)[-1])["renderer"]
    state = load_checkpoint(list_checkpoints(cfg.run_dir)[-1])["renderer"]
    for k, v in expected.items():  # every weight and the occupancy grid, exactly
        assert torch.equal(v, state[k]), k


# --- outputs that appear whole or not at all -------------------------------------------------

def test_a_failed_scene_import_leaves_the_existing_scene_untouched(tmp_path):
    import imageio.v3 as iio

    from nerf.sfm import run_sfm

    scene = tmp_path / "scene"
    (scene / "images").mkdir(parents=True)
    iio.imwrite(scene / "images" / "a.png", np.full((8, 8, 3), 7, np.uint8))
    photos = tmp_path / "photos"
    photos.mkdir()
    iio.imwrite(photos / "a.png", np.zeros((8, 8, 3), np.uint8))
    (photos / "b.jpg").write_bytes(b"not a jpeg")
    before = folder_digest(tmp_path)
    with pytest.raises(SceneError, match="exists and is not empty.*--overwrite"):
        run_sfm(photos, scene)
    with pytest.raises(SceneError, match=r"b\.jpg: cannot be decoded \(expected an image file"):
        run_sfm(photos, scene, overwrite=True)  # a.png was already prepared when b.jpg failed
    assert folder_digest(tmp_path) == before
    with pytest.raises(SceneError, match="inside the output folder"):
        run_sfm(scene / "images", scene, overwrite=True)


def test_render_checks_the_camera_path_before_rendering(tmp_path):
    from nerf.cameras import Cameras
    from nerf.jobs.render import check_path_cameras

    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[1, :3, :3] = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0]])  # singular
    cams = Cameras.create(c2w, fx=torch.full((3,), 20.0), fy=torch.full((3,), 20.0), cx=torch.full((3,), 8.0),
                          cy=torch.full((3,), 8.0), width=torch.full((3,), 16), height=torch.full((3,), 16))
    with pytest.raises(ConfigError, match="path.json: camera_path frame 1: .*not a rotation"):
        check_path_cameras(cams, "path.json")
    cams.c2w[1] = torch.eye(4)
    cams.fx[2] = -1.0
    with pytest.raises(ConfigError, match="frame 2: .*must be positive"):
        check_path_cameras(cams, "path.json")


def test_saved_runs_name_their_scene_absolutely(tmp_path, tiny_scene_path, monkeypatch):
    monkeypatch.chdir(tiny_scene_path.parent)
    cfg = dataclasses.replace(tiny_config(tmp_path, Path(tiny_scene_path.name), steps=2))
    out = run_training_job(cfg, quiet=True)
    saved = (out["run_dir"] / "config.txt").read_text()
    assert f"data = {tiny_scene_path.resolve()}\n" in saved


def test_undecodable_images_name_the_file_and_what_was_expected(tmp_path):
    from nerf.datasets.images import read_images

    fake = tmp_path / "photo.png"
    fake.write_text("just text")
    with pytest.raises(SceneError) as info:
        read_images([fake], ["transforms.json frame 0"])
    message = str(info.value)
    assert "\n" not in message and str(fake) in message and "not an image format" in message and ".jpg" in message
    assert "pip" not in message
