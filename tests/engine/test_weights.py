import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.errors import WeightsError
from engine.models import build_model
from engine.weights import load_weights, read_metadata, save_weights


@pytest.fixture
def weights_file(tmp_path):
    torch.manual_seed(0)
    model = build_model("new_carn", 2, blocks=2)
    path = tmp_path / "new_carn_x2.safetensors"
    save_weights(model, path, arch="new_carn", args={"blocks": 2}, scale=2.0, card={"data": ["x"]})
    return model, path


def test_round_trip_rebuilds_the_network_alone(weights_file):
    model, path = weights_file
    loaded = load_weights(path)
    assert loaded.arch == "new_carn" and loaded.scale == 2.0 and loaded.args == {"blocks": 2}
    x = torch.rand(1, 1, 12, 12)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    assert loaded.card["sha256"] == loaded.sha256 and loaded.card["data"] == ["x"]


def test_weights_files_get_the_users_permissions_not_owner_only(weights_file):
    _, path = weights_file
    old = os.umask(0o022)
    os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~old  # shareable like any file the user writes


def test_tampered_tensor_is_refused(weights_file, tmp_path):
    _, path = weights_file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1e-3
    bad = tmp_path / "tampered.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="sha256 mismatch") as exc:
        load_weights(bad)
    assert "tampered.safetensors" in str(exc.value)


def test_wrong_architecture_and_scale_are_refused(weights_file):
    _, path = weights_file
    with pytest.raises(WeightsError, match="not edsr"):
        load_weights(path, expected_arch="edsr")
    with pytest.raises(WeightsError, match="not x4"):
        load_weights(path, expected_scale=4.0)


def test_pickle_and_garbage_files_are_refused(tmp_path):
    pt = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(WeightsError, match="only .safetensors"):
        read_metadata(pt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="junk.safetensors"):
        read_metadata(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not a MedSR weights file"):
        read_metadata(foreign)


def test_shape_mismatch_is_refused(tmp_path):
    model = build_model("new_carn", 2, blocks=2)
    path = tmp_path / "lying.safetensors"
    save_weights(model, path, arch="new_carn", args={"blocks": 3}, scale=2.0)
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights(path)


def test_metadata_is_plain_json(weights_file):
    _, path = weights_file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["card"])["sha256"] == meta["sha256"]
