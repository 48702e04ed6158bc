import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.inference import Upscaler
from engine.models import model_names
from engine.weights import load_weights
from training.feature_net import FeatureNet, save_feature_net
from training.trainer import StopFlag, TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[2]


def tiny_config(tmp_path, vol, arch="new_carn", scale=2.0, **kw) -> TrainConfig:
    base = dict(
        arch=arch,
        scale=scale,
        data=[vol],
        out=tmp_path / f"{arch}.safetensors",
        steps=2,
        batch_size=2,
        patch=32,
        val_every=1000,
        log_every=1,
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("arch", [n for n in model_names() if n != "bicubic"])
def test_one_training_step_per_architecture(tmp_path, tiny_volume, arch):
    scale = None if arch == "meta_srgan" else 2.0
    events = []
    cfg = tiny_config(tmp_path, tiny_volume, arch=arch, scale=scale, steps=1)
    path = Trainer(cfg, emit=events.append).run()
    assert path is not None and path.exists()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and "progress" in kinds and kinds[-1] == "done"
    loss = next(e for e in events if e["event"] == "progress")["loss"]
    assert all(torch.isfinite(torch.tensor(v)) for v in loss.values())


def test_validation_reports_gain_over_bicubic(tmp_path, tiny_volume, tiny_val_volume):
    events = []
    cfg = tiny_config(tmp_path, tiny_volume, steps=2, val_data=[tiny_val_volume], val_every=2)
    Trainer(cfg, emit=events.append).run()
    val = [e for e in events if e["event"] == "validation"]
    assert val and set(val[-1]["scales"]["2"]) >= {"psnr_fg", "ssim_fg", "bicubic_psnr_fg", "gain_db"}


def test_gan_step_uses_discriminator_and_perceptual_loss(tmp_path, tiny_volume):
    from training.gan import GANTrainer

    feat = tmp_path / "features.safetensors"
    save_feature_net(FeatureNet(), feat)
    events = []
    cfg = tiny_config(
        tmp_path, tiny_volume, arch="srgan", loss="gan", steps=2, pretrain_steps=0, feature_net=feat
    )
    GANTrainer(cfg, emit=events.append).run()
    losses = [e["loss"] for e in events if e["event"] == "progress"]
    assert set(losses[-1]) == {"l1", "adv", "perceptual", "d"}


def test_weights_round_trip_into_the_engine(tmp_path, tiny_volume):
    cfg = tiny_config(tmp_path, tiny_volume, steps=2)
    path = Trainer(cfg).run()
    loaded = load_weights(path)
    assert loaded.card["steps"] == 2 and loaded.card["recipe"]["loss"] == "l1"
    up = Upscaler.load("new_carn", 2, weights=path, device="cpu")
    out = up.upscale_slice(torch.rand(20, 24).numpy(), 2)
    assert out.shape == (40, 48)


def test_cancel_leaves_a_usable_checkpoint_and_resume_is_exact(tmp_path, tiny_volume):
    # uninterrupted reference
    ref = Trainer(tiny_config(tmp_path / "a", tiny_volume, steps=6)).run()
    # stopped after 3 steps, then resumed
    stop = StopFlag()
    cfg = tiny_config(tmp_path / "b", tiny_volume, steps=6)

    def stop_after_three(ev):
        if ev["event"] == "progress" and ev["step"] == 3:
            stop.stop = True

    assert Trainer(cfg, emit=stop_after_three, stop=stop).run() is None
    ckpt = cfg.checkpoint_path()
    assert ckpt.exists()
    cfg2 = tiny_config(tmp_path / "b", tiny_volume, steps=6, resume=ckpt)
    out = Trainer(cfg2).run()
    a, b = load_weights(ref).model.state_dict(), load_weights(out).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def _cli(tmp_path, vol, out, *extra):
    return [
        sys.executable,
        "-m",
        "engine.cli",
        "train",
        "--arch",
        "new_carn",
        "--scale",
        "2",
        "--data",
        str(vol),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--patch",
        "32",
        "--progress",
        "json",
        "--threads",
        "1",
        "--seed",
        "3",
        *extra,
    ]


@pytest.mark.slow
def test_resume_after_kill_9_matches_uninterrupted_run(tmp_path, tiny_volume):
    ref_out = tmp_path / "ref.safetensors"
    subprocess.run(
        _cli(tmp_path, tiny_volume, ref_out, "--steps", "30"),
        check=True,
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    out = tmp_path / "killed.safetensors"
    proc = subprocess.Popen(
        _cli(tmp_path, tiny_volume, out, "--steps", "30", "--checkpoint-every", "5"),
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    seen = None
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["event"] == "checkpoint" and ev["step"] >= 10:
            seen = ev["step"]
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert seen is not None and not out.exists()
    ckpt = out.with_name("killed.ckpt.safetensors")
    subprocess.run(
        _cli(tmp_path, tiny_volume, out, "--steps", "30", "--resume", str(ckpt)),
        check=True,
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    a, b = load_weights(ref_out).model.state_dict(), load_weights(out).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_checkpoint(tmp_path, tiny_volume):
    out = tmp_path / "term.safetensors"
    proc = subprocess.Popen(
        _cli(tmp_path, tiny_volume, out, "--steps", "100000"), stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    for line in proc.stdout:
        if json.loads(line)["event"] == "progress":
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    assert '"cancelled"' in rest
    assert out.with_name("term.ckpt.safetensors").exists()


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path, tiny_volume):
    out = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "engine.cli",
        "train",
        "--arch",
        "new_carn",
        "--scale",
        "2",
        "--data",
        str(tiny_volume),
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--patch",
        "32",
        "--progress",
        "json",
        "--threads",
        "1",
    ]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = load_weights(out)
    assert loaded.card["steps"] == 3 and loaded.card["recipe"]["batch_size"] == 4
    assert time.time() - t0 < 300
    done = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert sum(1 for e in done if e["event"] == "done") == 1  # only rank 0 reports
