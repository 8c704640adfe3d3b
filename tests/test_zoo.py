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


def _tamper(path, change):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def test_tampered_weights_refused_when_decoding_with_both_hashes(weights_copy):
    """The decoder path too, and the message says what was found, what was expected and what to do."""
    data = tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=64)
    zoo.load_tensors.cache_clear()
    from tinycodec import backends

    backends.clear_cache()  # runners hold networks built from the weights
    entry = zoo.current_entry("tinycompress-s64")

    def flip_one_bit(tensors):
        name = sorted(tensors)[-1]
        raw = tensors[name].view(np.uint32).copy()
        raw.flat[0] ^= 1
        tensors[name] = raw.view(np.float32)

    _tamper(weights_copy / "tinycompress-s64.safetensors", flip_one_bit)
    with pytest.raises(TinyCodecError, match=f"registry {entry.sha256[:16]}; reinstall tinycodec") as info:
        tinycodec.decode(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change", ["extra tensor", "renamed tensor", "reshaped tensor"])
def test_any_change_to_the_tensors_is_refused(weights_copy, change):
    def edit(tensors):
        name = sorted(tensors)[0]
        if change == "extra tensor":
            tensors["backdoor"] = np.zeros(3, np.float32)
        elif change == "renamed tensor":
            tensors[name + "_"] = tensors.pop(name)
        else:
            name = next(n for n in sorted(tensors) if tensors[n].ndim > 1)
            tensors[name] = tensors[name].reshape(-1)

    _tamper(weights_copy / "tinycompress-s16.safetensors", edit)
    with pytest.raises(TinyCodecError, match="does not match its registered hash"):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=16)


def test_metadata_only_change_is_accepted(weights_copy):
    """Identity is the tensors, not the file bytes: a model-card edit changes nothing."""
    from safetensors.numpy import load_file, save_file

    path = weights_copy / "tinycompress-s16.safetensors"
    save_file(load_file(str(path)), str(path), metadata={"note": "edited model card"})
    assert tinycodec.decode(tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=16)).size == (8, 8)


@pytest.mark.parametrize("file", ["../tinycompress-s16.safetensors", "tinycompress-s16.pt", "/etc/passwd"])
def test_registry_may_only_name_safetensors_files_in_the_weights_folder(weights_copy, file):
    import json

    reg = weights_copy / "registry.json"
    raw = json.loads(reg.read_text())
    raw["models"]["tinycompress-s16"][0]["file"] = file
    reg.write_text(json.dumps(raw))
    zoo.registry.cache_clear()
    with pytest.raises(TinyCodecError, match="must be a .safetensors file in the weights folder"):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=16)


@pytest.mark.parametrize("text,message", [
    ("{not json", "unreadable"), ('{"models": {"tinycompress-s16": [{"file": "x.safetensors"}]}}', "damaged"),
    ('{"models": {"tinycompress-s16": [{"file": "x.safetensors", "sha256": "zz"}]}}', "damaged"),
])
def test_damaged_registry_is_one_clear_error(weights_copy, text, message):
    (weights_copy / "registry.json").write_text(text)
    zoo.registry.cache_clear()
    with pytest.raises(TinyCodecError, match=message):
        tinycodec.encode(np.zeros((8, 8, 3), np.uint8), scale=16)


def test_promoting_a_trained_file_replaces_the_registered_weights(weights_copy, tmp_path):
    """tools/promote_weights.py: the new tensors become current, the old files fail by name."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    old_file = tinycodec.encode(np.full((8, 8, 3), 90, np.uint8), scale=16)
    trained = tmp_path / "run" / "tinycompress-s16.safetensors"
    trained.parent.mkdir()
    tensors = load_file(str(weights_copy / "tinycompress-s16.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] * np.float32(1.01)  # stands in for further training
    save_file(tensors, str(trained), metadata={"model": "tinycompress-s16", "steps": "16000", "sha256": "stale"})
    tool = Path(__file__).resolve().parent.parent / "tools" / "promote_weights.py"
    subprocess.run([sys.executable, str(tool), str(trained), "--to", str(weights_copy),
                    "--set", "earlier=52,000 steps"], check=True, capture_output=True)

    zoo.registry.cache_clear()
    zoo.load_tensors.cache_clear()
    from tinycodec import backends

    backends.clear_cache()
    entry = zoo.current_entry("tinycompress-s16")
    assert entry.sha256 == zoo.weights_hash(tensors)
    with safe_open(str(weights_copy / "tinycompress-s16.safetensors"), "np") as f:
        meta = f.metadata()
    assert meta["steps"] == "16000" and meta["earlier"] == "52,000 steps" and meta["sha256"] == entry.sha256
    with pytest.raises(TinyCodecError, match="tinycompress-s16"):
        tinycodec.decode(old_file)
    assert tinycodec.decode(tinycodec.encode(np.full((8, 8, 3), 90, np.uint8), scale=16)).size == (8, 8)
