"""The shallow family: a transform codec with a heavy amortised encoder and a decoder of under 2,000 MAC per pixel.

Lineage: Yang & Mandt, "Computationally-efficient neural image compression with shallow decoders" (ICCV
2023): a nearly linear two-layer synthesis, all the nonlinearity on the encoder side, amortised encoding
refined by gradient steps; its entropy model is the mean-scale hyperprior of Minnen, Balle & Toderici,
"Joint autoregressive and hierarchical priors for learned image compression" (NeurIPS 2018), here small and
computed in integers, so every machine parses a file the same way. Data flow::

    image ──analysis (4 strided convs, GDN)──> y: 160 x H/16 x W/16 ──/ step(q), round──> integers ──┐
      └──hyper-analysis──> z: 64 x H/64 x W/64 ──round──> integers ──Laplace(0, b_c(q))──> segment 0  │
                                      └──integer hyper-synthesis──> mean, scale per element of y ──> segment 1

    .tcz ──> z ──> hyper-synthesis ──> y ──x step(q)──> tconv 8x8/4 (28 ch) ──IGDN──> tconv 8x8/4 ──> RGB

Modules: ``layout`` (shapes, segments), ``model`` (PyTorch networks, training loss), ``fixedpoint`` (the
integer hyper-synthesis and per-quality tables), ``synthesis`` (the decoder networks in numpy), ``bitstream``
(latents <-> segments), ``weights``, ``decoder`` (numpy only), ``codec`` (encoding; PyTorch).
"""

from .decoder import decode, decode_with_info, verify

DEFAULT_QUALITY = 50
DEFAULT_REFINE_STEPS = 100
EFFORTS = ("fast", "refine")

__all__ = ["DEFAULT_QUALITY", "DEFAULT_REFINE_STEPS", "EFFORTS", "decode", "decode_with_info", "encode",
           "encode_planar", "verify"]


def __getattr__(name: str):
    # The encoder needs PyTorch; decoding must not import it.
    if name in ("encode", "encode_planar"):
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
