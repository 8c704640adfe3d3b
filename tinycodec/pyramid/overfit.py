"""Effort "overfit": the latents and the synthesis network optimised for one image; the weights go in the file.

Cool-chic and C3 overfit their whole decoder per image from scratch (thousands of steps); here the shared
decoder is the starting point, so the synthesis only has to move a little, and its change is stored as
deltas from the shared weights: integers in units of 2^-DELTA_BITS, zigzag varints, zlib-compressed (about
1-3 KB). The context model stays the shared fixed-point one, so the bit-exact machinery is unchanged; only
pixels (floating point anyway) depend on the file's weights.
"""

from __future__ import annotations

import copy
import zlib

import torch

from ..errors import TinyCodecError
from . import layout
from .model import LATENT_LIMIT, Synthesis
from .refine import optimise
from .weights import LoadedDecoder

DELTA_BITS = 10
DELTA_LIMIT = (1 << 15) - 1  # a delta beyond +-32 is refused: the network has left the shared one's basin
MAX_INFLATED = 8 * 4096  # bytes; 1,275 parameters need at most 3 bytes each
LATENT_LR = 0.1
WEIGHT_LR = 1e-3


def synthesis_names(synthesis: Synthesis) -> list[str]:
    return sorted(synthesis.state_dict())


def encode_weights(synthesis: Synthesis, shared: Synthesis) -> tuple[bytes, Synthesis]:
    """(weights segment, the synthesis the decoder will rebuild from it)."""
    own, base = synthesis.state_dict(), shared.state_dict()
    out = bytearray()
    rebuilt = {}
    for name in synthesis_names(shared):
        delta = torch.round((own[name] - base[name]) * 2**DELTA_BITS).clamp(-DELTA_LIMIT, DELTA_LIMIT).long()
        rebuilt[name] = base[name] + delta.float() / 2**DELTA_BITS
        for v in delta.flatten().tolist():
            z = (v << 1) ^ (v >> 63)  # zigzag
            while True:
                byte = z & 0x7F
                z >>= 7
                out.append(byte | (0x80 if z else 0))
                if not z:
                    break
    packed = zlib.compress(bytes(out), 9)
    packed += b"\0" * (-len(packed) % 4)  # segments are whole 32-bit words
    result = Synthesis()
    result.load_state_dict(rebuilt)
    return packed, result


def decode_weights(segment: bytes, shared: Synthesis) -> Synthesis:
    """The synthesis an overfit file carries; TinyCodecError for anything an encoder could not have written."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(segment, MAX_INFLATED)
    except zlib.error:
        raise TinyCodecError("corrupt .tcz file: its weights segment is not a zlib stream") from None
    if not inflater.eof or inflater.unconsumed_tail or any(inflater.unused_data) or len(inflater.unused_data) > 3:
        raise TinyCodecError("corrupt .tcz file: malformed weights segment")
    base = shared.state_dict()
    values, pos = [], 0
    expected = sum(base[n].numel() for n in base)
    while pos < len(raw) and len(values) < expected:
        z = shift = 0
        while True:
            if pos >= len(raw) or shift > 21:
                raise TinyCodecError("corrupt .tcz file: malformed weights segment")
            byte = raw[pos]
            pos += 1
            z |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append((z >> 1) ^ -(z & 1))
    if len(values) != expected or pos != len(raw) or max(map(abs, values), default=0) > DELTA_LIMIT:
        raise TinyCodecError("corrupt .tcz file: its weights segment does not fit this decoder")
    rebuilt, i = {}, 0
    for name in synthesis_names(shared):
        n = base[name].numel()
        delta = torch.tensor(values[i : i + n], dtype=torch.float32).view_as(base[name])
        rebuilt[name] = base[name] + delta / 2**DELTA_BITS
        i += n
    out = Synthesis()
    out.load_state_dict(rebuilt)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def overfit(latents: list[torch.Tensor], x: torch.Tensor, dec: LoadedDecoder, quality: int, steps: int,
            ) -> tuple[list[torch.Tensor], bytes, Synthesis]:
    """Optimise latents and synthesis jointly; returns (float grids in decoder units, weights segment, the
    quantised synthesis the decoder will use). Runs on CUDA when it is there."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = dec.network
    shared = net.synthesis
    synthesis = Synthesis().to(device)
    synthesis.load_state_dict(shared.state_dict())
    q = torch.tensor([quality], device=device)
    context = copy.deepcopy(net.context).to(device)  # the cached shared decoder stays where it is
    step_sizes = copy.deepcopy(net.steps).to(device)(q)[0]
    x = x.to(device)
    z = [(y.to(device) / step_sizes[g.index]).detach().clone().requires_grad_(True)
         for g, y in zip(layout.GRIDS, latents)]
    opt = torch.optim.Adam([{"params": z, "lr": LATENT_LR, "base": LATENT_LR},
                            {"params": list(synthesis.parameters()), "lr": WEIGHT_LR, "base": WEIGHT_LR}])
    optimise(z, opt, steps, synthesis, context, step_sizes, q, x)
    segment, rebuilt = encode_weights(synthesis.cpu(), shared)
    with torch.no_grad():
        grids = [t.detach().cpu().clamp(-LATENT_LIMIT, LATENT_LIMIT) * step_sizes[g.index].cpu()
                 for g, t in zip(layout.GRIDS, z)]
    return grids, segment, rebuilt
