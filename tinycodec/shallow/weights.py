"""The shallow family's weights: a decoder file (named by every .tcz) and an encoder file (encoding only).

The decoder file holds the synthesis (float32; it decides pixels, not probabilities), the hyper-synthesis and
per-quality tables in integers (fixedpoint.py) and the Q30 constants of the Laplace tables: everything that
decides how a file parses is integer. The encoder file holds the analysis and hyper-analysis networks
(float16). Loading the decoder needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import zoo
from ..errors import TinyCodecError
from ..laplace import TableCoder, build_tables, table_constants
from . import fixedpoint, layout, synthesis

MODEL = "shallow-v2"  # what new files are encoded with (lowest validation loss); every registered model decodes


def encoder_model(model: str) -> str:
    return f"{model}-encoder"


def synthesis_shapes(arch: layout.Architecture) -> dict[str, tuple[int, ...]]:
    m, c, s = arch.latent_channels, arch.synthesis_channels, arch.last_stride
    return {"synthesis.up1.weight": (m, c, 8, 8), "synthesis.up1.bias": (c,), "synthesis.igdn.beta": (c,),
            "synthesis.igdn.gamma": (c, c), "synthesis.up2.weight": (c, 3, 2 * s, 2 * s), "synthesis.up2.bias": (3,)}


def export(encoder_state: dict, decoder_state: dict, path: Path, metadata: dict[str, str], model: str) -> None:
    """Write ``path`` (decoder) and ``<stem>-encoder.safetensors`` beside it, registered in the zoo as ``model``."""
    from .model import ShallowDecoder

    decoder = ShallowDecoder(layout.ARCHITECTURES[model])
    decoder.load_state_dict(decoder_state)
    synthesis = {f"synthesis.{k}": v.detach().float().contiguous().numpy()
                 for k, v in decoder.synthesis.state_dict().items()}
    tensors = {**synthesis, **fixedpoint.quantise_hyper(decoder.hyper, decoder.steps), **table_constants()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # float16 halves the encoder file; its outputs are rounded to integers anyway
    enc = {k: v.detach().half().contiguous().numpy() for k, v in encoder_state.items()}
    zoo.save_tensors(tensors, path, {**metadata, "model": model})
    zoo.save_tensors(enc, path.with_name(path.stem + "-encoder.safetensors"), {**metadata, "model": encoder_model(model)})


@dataclass(frozen=True, eq=False)
class LoadedDecoder:
    entry: zoo.WeightsEntry
    arch: layout.Architecture
    tensors: dict[str, np.ndarray]  # the file's: synthesis (float32), integer hyper-synthesis, per-quality tables
    coder: TableCoder
    hyper: dict[str, np.ndarray]  # fixedpoint.prepare of the tensors
    synthesis: dict[str, np.ndarray]  # synthesis.prepare of the tensors

    def step(self, quality: int) -> np.ndarray:
        """Quantisation step of each channel of y at this quality (float32)."""
        return self.tensors["quality.step"][quality]


@lru_cache(maxsize=4)
def load_decoder(entry: zoo.WeightsEntry) -> LoadedDecoder:
    arch = layout.architecture(entry.model)
    tensors = zoo.load_tensors(entry)
    for k, shape in synthesis_shapes(arch).items():
        if k not in tensors or tuple(tensors[k].shape) != shape:
            raise TinyCodecError(f"{entry.model} weights do not fit this tinycodec's network ({k}); reinstall tinycodec")
    try:
        fixedpoint.check_hyper(tensors, arch)
        constants = {k: tensors[k] for k in table_constants()}
    except (ValueError, KeyError) as exc:
        raise TinyCodecError(f"{entry.model} weights are not a valid fixed-point model: {exc}") from None
    tables = build_tables(constants["entropy.rho"], constants["entropy.upper"], constants["entropy.lower"])
    return LoadedDecoder(entry, arch, tensors, TableCoder(tables), fixedpoint.prepare(tensors),
                         synthesis.prepare(tensors))
