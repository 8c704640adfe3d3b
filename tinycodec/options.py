"""What the codec offers: scale levels, backends, filters, default efforts. Imports nothing heavy.

The command lines build their options and ``--help`` from these names, so they live apart from the
modules that use them (numpy, Pillow, PyTorch): ``tcenc --help``, ``-V`` and usage errors then answer in
about the time Python takes to start. Those modules import the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# Scale level (pixels per latent element) -> number of block iterations k.
SCALE_DEPTHS: dict[int, int] = {4: 1, 16: 2, 64: 3, 256: 4}
SCALES = tuple(sorted(SCALE_DEPTHS))
DEFAULT_SCALE = 16
DEFAULT_PLANES = 8
DOWNSCALE_FACTORS = (2, 4)  # tcenc --downscale; the container's downscale record allows these

BACKENDS = ("auto", "torch", "onnx", "tensorrt", "numpy")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")

# Latent refinement (tinycodec.refine): the tuned effort (tuned with refine.RATE_WEIGHT), as the CLI's help says.
REFINE_STEPS = 30
MAX_REFINE_STEPS = 1000
# The rate-distortion families -Q/--quality selects (tinycodec.families), the default first, and the steps
# of each effort above "fast" when none are given (overfit: pyramid only).
RD_FAMILIES = ("shallow", "pyramid")
RD_STEPS = {"refine": 100, "overfit": 300}

NONE = "none"  # no enhancement filter
RAY_INSTALL = "pip install 'tinycodec[ray]'"  # what --engine ray needs (an optional extra)


@dataclass(frozen=True)
class FilterSpec:
    """A shipped filter: its network and how it is applied."""

    name: str  # registry/model name, e.g. "tinypssr-x2"
    upscale: int  # output size / input size
    per_channel: bool  # run on each colour channel as a one-channel image (TinyPSSR)
    multiple: int  # input height/width must be a multiple of this (padded by the runner)
    description: str
    # Scale levels of .tcz files the filter improves on Kodak (weights/README.md); decoding a file of
    # another level skips the filter with a note rather than make the image worse. None: any.
    scales: tuple[int, ...] | None = None

    def build(self):
        """The PyTorch module (tinycodec.filters), untrained."""
        from .filters import build_filter

        return build_filter(self.name)


FILTERS: dict[str, FilterSpec] = {
    spec.name: spec
    for spec in (
        FilterSpec("tinypssr-x2", 2, True, 1, "TinyPSSR 2x super-resolution (seed network, 1,356 parameters)"),
        FilterSpec("tinypssr-x4", 4, True, 1, "TinyPSSR 4x super-resolution"),
        # Kodak (docs/results/eval_codec_filters.json): it lifts every level of the v3 codec, so it runs on
        # all (the v2 UNet, whose last stage had died, lowered scales 16-256 and was limited to scale 4).
        FilterSpec("unet", 1, False, 8, "UNet artefact removal for tinycodec-decoded images, same size"),
        FilterSpec("srunet", 2, False, 4, "SRUNet 2x super-resolution + artefact removal (pairs with tcenc --downscale 2)"),
    )
}
