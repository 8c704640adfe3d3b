"""The pyramid family: a rate-distortion-optimised codec with a decoder of under 2,000 MAC per pixel.

Lineage: Cool-chic (Ladune et al., "COOL-CHIC: Coordinate-based Low Complexity Hierarchical Image Codec",
ICCV 2023, and its successors to Cool-chic 5) and C3 (Kim et al., "C3: High-performance and low-complexity
neural compression from a single image or video", CVPR 2024): hierarchical latent grids coded under a learned
Laplace context model, upsampled and turned into pixels by a tiny synthesis network. Unlike them the decoder
is shared (its weights ship in ``weights/``) and the latents come from an amortised encoder network in one
pass, optionally refined by gradient steps (Yang & Mandt 2023, shallow decoders with amortised + iterative
encoding). The context model runs in fixed point and decodes in 4 polyphase passes per grid (JPEG AI's
2x2 scheme), so a Python decoder costs a few vectorised steps per grid, not one call per element.

Data flow::

    image ──AmortisedEncoder(q)──> 9 float grids (1/1 ... 1/64) ──/ step_g(q), round──> integer grids
                                                                                          │
        ┌──────────── fixed-point context model (8 neighbours, 5 parent taps, pass, q) ◄──┤ 4 passes per grid
        ▼                                                                                 │
    Laplace tables ──range coder (constriction, one call per table per pass)──> one segment per grid ──> .tcz

    .tcz ──> segments ──(same passes, same integers)──> integer grids ──x step_g(q)──> bilinear upsampling
         ──> 9 x H x W ──1x1 layers 9-40-16-3, two 3x3 residual layers──> RGB

Modules: ``layout`` (grids, passes, contexts), ``model`` (float networks, training losses), ``fixedpoint``
(the integer context model), ``laplace`` (integer tables, grouped coding), ``bitstream`` (grids <->
segments), ``container`` (the version-2 header), ``weights``, ``refine``, ``codec`` (image <-> bytes).
"""

from .codec import (DEFAULT_OVERFIT_STEPS, DEFAULT_QUALITY, DEFAULT_REFINE_STEPS, EFFORTS, PyramidInfo, decode,
                    decode_with_info, encode, encode_planar, verify)

__all__ = ["DEFAULT_OVERFIT_STEPS", "DEFAULT_QUALITY", "DEFAULT_REFINE_STEPS", "EFFORTS", "PyramidInfo", "decode",
           "decode_with_info", "encode", "encode_planar", "verify"]
