"""The shallow family's weights: a decoder file (named by every .tcz) and an encoder file (encoding only).

The decoder file holds the synthesis (float32; it decides pixels, not probabilities), the hyper-synthesis and
per-quality tables in integers (fixedpoint.py) and the Q30 constants of the Laplace tables: everything that
decides how a file parses is integer. The encoder file holds the analysis and hyper-analysis networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import zoo
from ..errors import TinyCodecError
from ..laplace import TableCoder, build_tables, table_constants
from . import fixedpoint
from .model import HyperSynthesis, ShallowDecoder, ShallowEncoder, Synthesis

MODEL = "shallow-v1"
ENCODER_MODEL = "shallow-v1-encoder"


def decoder_tensors(decoder: ShallowDecoder) -> dict[str, np.ndarray]:
    synthesis = {f"synthesis.{k}": v.detach().float().contiguous().numpy()
                 for k, v in decoder.synthesis.state_dict().items()}
    return {**synthesis, **fixedpoint.quantise_hyper(decoder.hyper, decoder.steps), **table_constants()}


def export(encoder_state: dict, decoder_state: dict, path: Path, metadata: dict[str, str]) -> None:
    """Write ``path`` (decoder) and ``<stem>-encoder.safetensors`` beside it, registered in the zoo."""
    decoder = ShallowDecoder()
    decoder.load_state_dict(decoder_state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # float16 halves the encoder file; its outputs are rounded to integers anyway
    enc = {k: v.detach().half().contiguous().numpy() for k, v in encoder_state.items()}
    zoo.save_tensors(decoder_tensors(decoder), path, {**metadata, "model": MODEL})
    zoo.save_tensors(enc, path.with_name(path.stem + "-encoder.safetensors"), {**metadata, "model": ENCODER_MODEL})


@dataclass
class LoadedDecoder:
    entry: zoo.WeightsEntry
    synthesis: Synthesis
    hyper: HyperSynthesis  # the float twin of the integer one (refinement's gradients)
    tensors: dict[str, np.ndarray]  # integer hyper-synthesis and per-quality tables
    coder: TableCoder

    def log_step(self, quality: int) -> torch.Tensor:
        return torch.log(torch.from_numpy(self.tensors["quality.step"][quality].copy()))[None]


def _fit(module: torch.nn.Module, tensors: dict[str, np.ndarray], prefix: str, what: str) -> None:
    state = {}
    for k, v in module.state_dict().items():
        t = tensors.get(prefix + k)
        if t is None or tuple(t.shape) != tuple(v.shape):
            raise TinyCodecError(f"{what} weights do not fit this tinycodec's network ({k}); reinstall tinycodec")
        state[k] = torch.from_numpy(np.array(t, dtype=np.float32))
    module.load_state_dict(state)
    module.eval()
    for p in module.parameters():  # refinement differentiates with respect to the latents only
        p.requires_grad_(False)


@lru_cache(maxsize=4)
def load_decoder(entry: zoo.WeightsEntry) -> LoadedDecoder:
    tensors = zoo.load_tensors(entry)
    synthesis = Synthesis()
    _fit(synthesis, tensors, "synthesis.", entry.model)
    fixed = {k: v for k, v in tensors.items() if k.startswith(("hyper.", "quality."))}
    try:
        fixedpoint.check_hyper(fixed)
        constants = {k: tensors[k] for k in table_constants()}
    except (ValueError, KeyError) as exc:
        raise TinyCodecError(f"{entry.model} weights are not a valid fixed-point model: {exc}") from None
    hyper = fixedpoint.dequantised_hyper(fixed)
    for p in hyper.parameters():
        p.requires_grad_(False)
    tables = build_tables(constants["entropy.rho"], constants["entropy.upper"], constants["entropy.lower"])
    return LoadedDecoder(entry, synthesis, hyper, fixed, TableCoder(tables))


@lru_cache(maxsize=2)
def load_encoder(entry: zoo.WeightsEntry) -> ShallowEncoder:
    encoder = ShallowEncoder()
    _fit(encoder, zoo.load_tensors(entry), "", entry.model)
    return encoder
