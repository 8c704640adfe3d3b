"""Weights: found, verified against the registry, refused when missing or modified."""

import shutil

import numpy as np
import pytest

import tinycodec
from tinycodec import TinyCodecError, zoo


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """A private copy of the installed weights folder that tests may damage."""
    copy = tmp_path / "weights"
    shutil.copytree(zoo.weights_dir(), copy)
    monkeypatch.setattr(zoo, "weights_dir", lambda: copy)
    zoo.registry.cache_clear()
    zoo.load_tensors.cache_clear()
    from tinycodec import backends

    backends.clear_cache()
    yield copy
    zoo.registry.cache_clear()
    zoo.load_tensors.cache_clear()
    backends.clear_cache()


def test_every_scale_registered_and_hash_matches():
    for scale in tinycodec.SCALES:
        entry = zoo.current_entry(zoo.model_name(scale))
        tensors = zoo.load_tensors(entry)
        assert zoo.weights_hash(tensors) == entry.sha256


def test_missing_weights_file(weights_copy):
    (weights_copy / "tinycompress-s64.safetensors").unlink()
    with pytest.raises(TinyCodecError, match="weights file missing"):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=64)


def test_tampered_weights_refused(weights_copy):
    from safetensors.numpy import load_file, save_file

    path = weights_copy / "tinycompress-s16.safetensors"
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + np.float32(1e-3)
    save_file(tensors, str(path))
    with pytest.raises(TinyCodecError, match="does not match its registered hash"):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=16)


def test_damaged_weights_file_refused(weights_copy):
    (weights_copy / "tinycompress-s4.safetensors").write_bytes(b"garbage")
    with pytest.raises(TinyCodecError, match="unreadable"):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=4)


def test_missing_registry(weights_copy):
    (weights_copy / "registry.json").unlink()
    with pytest.raises(TinyCodecError, match="registry not found"):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8))


def test_hash_ignores_file_metadata_but_not_values():
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    b = {"w": a["w"].copy()}
    assert zoo.weights_hash(a) == zoo.weights_hash(b)
    b["w"][0, 0] = 0.5
    assert zoo.weights_hash(a) != zoo.weights_hash(b)
    assert zoo.weights_hash(a) != zoo.weights_hash({"w": a["w"].reshape(3, 2)})
