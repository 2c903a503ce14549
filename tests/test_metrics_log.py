"""metrics.jsonl training curves, evaluation lines, TensorBoard events and LPIPS status."""

import importlib.util
import json
import math

import pytest
from tiny import tiny_config

from nerf.train.metrics_log import MetricsLog

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_LPIPS = importlib.util.find_spec("lpips") is not None
TRAIN_KEYS = {"kind", "step", "loss", "psnr", "lr", "rays", "samples", "samples_per_second",
              "rays_per_second", "elapsed"}


@pytest.fixture(scope="module")
def logged_run(tiny_scene_path, tmp_path_factory):
    from nerf.jobs.train import run_training_job

    cfg = tiny_config(tmp_path_factory.mktemp("logged"), tiny_scene_path, steps=12, log_every=4, eval_every=8)
    return cfg, run_training_job(cfg, quiet=True)["run_dir"]


def read_lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_curve_every_n_steps(logged_run):
    cfg, run_dir = logged_run
    train = [r for r in read_lines(run_dir) if r["kind"] == "train"]
    assert [r["step"] for r in train] == [4, 8, 12]
    t = cfg.train
    for r in train:
        assert set(r) == TRAIN_KEYS and all(math.isfinite(r[k]) for k in TRAIN_KEYS - {"kind"})
        step = r["step"] - 1  # the rate the last step of the window trained with
        progress = min(step / t.steps, 1.0)
        expected_lr = t.lr * min(1.0, (step + 1) / t.lr_warmup) * t.lr_final_factor ** progress
        assert r["lr"] == pytest.approx(expected_lr, rel=1e-6)
        assert r["samples_per_second"] > 0 and r["rays"] >= 256 and 0 < r["psnr"] < 60
    assert [r["elapsed"] for r in train] == sorted(r["elapsed"] for r in train)


def test_evaluation_lines_and_lpips_status(logged_run):
    _, run_dir = logged_run
    evals = [r for r in read_lines(run_dir) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [8, 12] and evals[-1]["split"] == "test"
    for r in evals:
        if HAS_LPIPS and r["lpips"] is not None:
            assert 0 <= r["lpips"] <= 1
        else:
            assert r["lpips"] is None and r["lpips_status"].startswith("absent: ")


def test_render_test_metrics_record_lpips_status(cli_render, tiny_run, tmp_path):
    cli_render(["--run", str(tiny_run), "--path", "none", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "test_metrics.json").read_text())
    assert "lpips" in metrics
    if metrics["lpips"] is None:
        assert "not installed" in metrics["lpips_status"] or "weights" in metrics["lpips_status"]


@pytest.fixture
def cli_render():
    from test_cli import load_cli

    return load_cli("render.py").main


@pytest.mark.skipif(HAS_TENSORBOARD, reason="tensorboard is installed: the note is for machines without it")
def test_without_tensorboard_the_log_says_so_once(tmp_path, capsys):
    log = MetricsLog(tmp_path, every=2)
    for step in range(1, 5):
        log.train_step(step, loss=0.1, psnr=20.0, lr=1e-2, rays=256, samples=1000, seconds=0.01, elapsed=step)
    log.evaluation({"step": 4, "split": "test", "psnr": 20.0, "ssim": 0.5, "lpips": None})
    out = capsys.readouterr().out
    assert out.count("tensorboard package is not installed") == 1
    assert not (tmp_path / "tensorboard").exists()
    lines = read_lines(tmp_path)
    assert [r["kind"] for r in lines] == ["train", "train", "eval"]
    assert lines[0]["psnr"] == pytest.approx(20.0) and lines[0]["samples_per_second"] == pytest.approx(1e5)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason='tensorboard not installed (pip install -e ".[tensorboard]")')
def test_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, every=2, quiet=True)
    for step in range(1, 7):
        log.train_step(step, loss=0.1 * step, psnr=20.0, lr=1e-2, rays=256, samples=1000, seconds=0.01,
                       elapsed=step)
    log.evaluation({"step": 6, "split": "test", "psnr": 21.0, "ssim": 0.5, "lpips": None})
    log.flush()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [2, 4, 6]
    assert [e.value for e in loss] == pytest.approx([0.15, 0.35, 0.55])
    assert events.Scalars("test/psnr")[0].value == pytest.approx(21.0)
