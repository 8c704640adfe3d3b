"""Model registry: which trained weights exist, where they are, and their hashes.

Decoder weights are part of the format: a ``.tcz`` names the model and the first
bytes of its weights hash. ``weights/registry.json`` maps each model id to one or
more weight versions (file + sha256). Before 1.0 a retrained model replaces its
entry and older files fail with a clear message; once an id is frozen, new
versions are *added* beside the old ones so every file ever made stays decodable.

The weights hash is computed over tensor names, dtypes, shapes and bytes (not
over the file), so model-card metadata in the file does not change identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import TinyCodecError

REGISTRY_FILE = "registry.json"
ID_BYTES = 8  # bytes of the weights hash stored in every .tcz


def model_name(scale: int) -> str:
    return f"tinycompress-s{scale}"


def weights_hash(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over the tensors in a canonical order; independent of file metadata."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class WeightsEntry:
    model: str
    file: str
    sha256: str
    frozen: bool

    @property
    def short_id(self) -> bytes:
        return bytes.fromhex(self.sha256)[:ID_BYTES]


def weights_dir() -> Path:
    """The installed weights folder (package data ``tinycodec.weights``)."""
    return Path(str(resources.files("tinycodec.weights")))


@lru_cache(maxsize=None)
def registry() -> dict[str, list[WeightsEntry]]:
    path = weights_dir() / REGISTRY_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise TinyCodecError(f"model registry not found at {path}: the installation is incomplete") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TinyCodecError(f"model registry {path} is unreadable ({exc}): reinstall tinycodec") from None
    out: dict[str, list[WeightsEntry]] = {}
    try:
        for model, versions in raw["models"].items():
            out[model] = [WeightsEntry(model, str(v["file"]), str(v["sha256"]), bool(v.get("frozen", False)))
                          for v in versions]
    except (KeyError, TypeError, AttributeError) as exc:
        raise TinyCodecError(f"model registry {path} is damaged (missing {exc}): reinstall tinycodec") from None
    for entry in (e for versions in out.values() for e in versions):
        if len(entry.sha256) != 64 or entry.sha256.strip("0123456789abcdef"):
            raise TinyCodecError(f"model registry {path} is damaged (hash of '{entry.model}' is not a "
                                 "sha256 in lowercase hex): reinstall tinycodec")
    return out


def current_entry(model: str) -> WeightsEntry:
    """The version new files are encoded with (the last one listed)."""
    versions = registry().get(model)
    if not versions:
        raise TinyCodecError(f"no weights registered for model '{model}'")
    return versions[-1]


def entry_for_file(model: str, short_id: bytes) -> WeightsEntry:
    """The registered version a file was made with, or a clear error."""
    versions = registry().get(model)
    if not versions:
        raise TinyCodecError(f"file was made with model '{model}', which this tinycodec does not know")
    for v in versions:
        if v.short_id == short_id:
            return v
    raise TinyCodecError(
        f"file was made with weights {short_id.hex()} of '{model}', this tinycodec has "
        f"{', '.join(v.short_id.hex() for v in versions)}: decode it with the tinycodec version that wrote it"
    )


@lru_cache(maxsize=None)
def load_tensors(entry: WeightsEntry) -> dict[str, np.ndarray]:
    """Tensors of a registered version, verified against the registry hash.

    Only safetensors files (no pickle: loading runs no code) in the weights folder
    itself are read, and the hash is computed on the very tensors that are
    returned, so a file swapped after the check cannot be used unverified.
    """
    from safetensors.numpy import load_file

    name = Path(entry.file)
    if name.name != entry.file or name.suffix != ".safetensors":
        raise TinyCodecError(f"registry entry for '{entry.model}' names '{entry.file}': "
                             "weights must be a .safetensors file in the weights folder")
    path = weights_dir() / entry.file
    if not path.is_file():
        raise TinyCodecError(f"weights file missing: {path}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise TinyCodecError(f"weights file {path} is unreadable: {exc}") from None
    actual = weights_hash(tensors)
    if actual != entry.sha256:
        raise TinyCodecError(f"weights file {path} does not match its registered hash (modified or damaged): "
                             f"sha256 {actual[:16]}, registry {entry.sha256[:16]}; reinstall tinycodec")
    return tensors


def save_weights(module, path: Path, metadata: dict[str, str]) -> Path:
    """Write a module's weights as safetensors and (re)register them as the current version.

    Used by the training tools. A frozen model gets a new version appended; an
    unfrozen one has its entry replaced (pre-1.0 behaviour).
    """
    tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in module.state_dict().items()}
    return save_tensors(tensors, path, metadata)


def save_tensors(tensors: dict[str, np.ndarray], path: Path, metadata: dict[str, str]) -> Path:
    """:func:`save_weights` for tensors already in numpy form (``tools/promote_weights.py``)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = weights_hash(tensors)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={**metadata, "sha256": digest})
    tmp.chmod(0o644)  # safetensors writes owner-only files; installed weights must be readable by all
    tmp.replace(path)

    reg_path = path.parent / REGISTRY_FILE
    raw = json.loads(reg_path.read_text()) if reg_path.exists() else {"format": 1, "models": {}}
    name = metadata["model"]
    versions = raw["models"].setdefault(name, [])
    entry = {"file": path.name, "sha256": digest, "frozen": False}
    if versions and not versions[-1].get("frozen", False):
        versions[-1] = entry
    else:
        if versions:  # frozen versions keep their file; the new one needs its own name
            entry["file"] = f"{path.stem}-{digest[:8]}{path.suffix}"
            path.replace(path.parent / entry["file"])
        versions.append(entry)
    reg_tmp = reg_path.with_suffix(".tmp")
    reg_tmp.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    reg_tmp.replace(reg_path)
    registry.cache_clear()
    return path
