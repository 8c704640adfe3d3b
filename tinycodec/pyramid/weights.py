"""The pyramid family's weights: a decoder file (named by every .tcz) and an encoder file (encoding only).

The decoder file holds the quantiser steps and synthesis (float32), the context model in fixed point (int64)
and the Q30 constants of the Laplace tables (int64): everything that decides the decoded pixels. The encoder
file holds the amortised encoder; retraining it alone leaves every existing file decodable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import zoo
from ..errors import TinyCodecError
from . import fixedpoint
from ..laplace import TableCoder, build_tables, table_constants
from .model import AmortisedEncoder, ContextModel, PyramidDecoder

MODEL = "pyramid-v1"
ENCODER_MODEL = "pyramid-v1-encoder"


def decoder_tensors(decoder_state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A trained PyramidDecoder state dict -> the tensors of the decoder file."""
    float_part = {k: v.detach().float().contiguous().numpy() for k, v in decoder_state.items()
                  if k.startswith(("steps.", "synthesis."))}
    context = ContextModel()
    context.load_state_dict({k[len("context."):]: v for k, v in decoder_state.items() if k.startswith("context.")})
    return {**float_part, **fixedpoint.quantise_context(context), **table_constants()}


def export_decoder(encoder_state: dict, decoder_state: dict, path: Path, metadata: dict[str, str],
                   register: bool = False) -> None:
    """Write ``path`` (decoder) and ``<stem>-encoder.safetensors`` beside it."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = {k: v.detach().float().contiguous().numpy() for k, v in encoder_state.items()}
    enc_path = path.with_name(path.stem + "-encoder.safetensors")
    dec = decoder_tensors(decoder_state)
    if register:
        zoo.save_tensors(dec, path, {**metadata, "model": MODEL})
        zoo.save_tensors(enc, enc_path, {**metadata, "model": ENCODER_MODEL})
    else:
        save_file(dec, str(path), metadata={**metadata, "model": MODEL, "sha256": zoo.weights_hash(dec)})
        save_file(enc, str(enc_path), metadata={**metadata, "model": ENCODER_MODEL, "sha256": zoo.weights_hash(enc)})


@dataclass
class LoadedDecoder:
    entry: zoo.WeightsEntry
    network: PyramidDecoder  # steps + synthesis in float; its context model is the dequantised fixed-point one
    context: dict[str, np.ndarray]  # fixed-point tensors
    coder: TableCoder


def _check_shapes(tensors: dict[str, np.ndarray], reference: dict[str, torch.Tensor], what: str) -> None:
    for k, v in reference.items():
        t = tensors.get(k)
        if t is None or tuple(t.shape) != tuple(v.shape):
            raise TinyCodecError(f"{what} weights do not fit this tinycodec's network ({k}); reinstall tinycodec")


@lru_cache(maxsize=4)
def load_decoder(entry: zoo.WeightsEntry) -> LoadedDecoder:
    tensors = zoo.load_tensors(entry)
    net = PyramidDecoder()
    float_ref = {k: v for k, v in net.state_dict().items() if k.startswith(("steps.", "synthesis."))}
    _check_shapes(tensors, float_ref, entry.model)
    context = {k: v for k, v in tensors.items() if k.startswith("context.")}
    try:
        fixedpoint.check_context(context)
        constants = {k: tensors[k] for k in table_constants()}
    except (ValueError, KeyError) as exc:
        raise TinyCodecError(f"{entry.model} weights are not a valid fixed-point model: {exc}") from None
    net.load_state_dict({**{k: torch.from_numpy(tensors[k].copy()) for k in float_ref},
                         **{f"context.{k}": v for k, v in fixedpoint.dequantised_context(context).state_dict().items()}})
    net.eval()
    for p in net.parameters():  # refinement differentiates with respect to the latents only
        p.requires_grad_(False)
    tables = build_tables(constants["entropy.rho"], constants["entropy.upper"], constants["entropy.lower"])
    return LoadedDecoder(entry, net, context, TableCoder(tables))


@lru_cache(maxsize=2)
def load_encoder(entry: zoo.WeightsEntry) -> AmortisedEncoder:
    tensors = zoo.load_tensors(entry)
    enc = AmortisedEncoder()
    _check_shapes(tensors, enc.state_dict(), entry.model)
    enc.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    enc.eval()
    return enc


def describe(entry: zoo.WeightsEntry) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(zoo.weights_dir() / entry.file), "np") as f:
        meta = dict(f.metadata() or {})
    return {k: (json.loads(v) if k == "validation" else v) for k, v in meta.items()}
