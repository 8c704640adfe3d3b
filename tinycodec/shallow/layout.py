"""Where the shallow family's latents live: y (M channels at 1/s) and z (Z channels at 1/4s), one segment each.

The sizes belong to the model a file names (:data:`ARCHITECTURES`): the image is padded (edge replication) to a
multiple of the model's ``align``; z is coded first (segment 0), then y (segment 1), channel-major, row by row;
every element of y is coded in one pass, since its probability depends on z alone.
"""

from __future__ import annotations

from dataclasses import dataclass

ANCHOR_QUALITIES = (0.0, 25.0, 50.0, 75.0, 100.0)
MAX_QUALITY = 100


@dataclass(frozen=True)
class Architecture:
    """The sizes of one model of the family (its weights file holds tensors of exactly these shapes)."""

    latent_stride: int  # y at 1/latent_stride resolution (16 or 8)
    latent_channels: int  # M
    hyper_channels: int  # Z: z at 1/(4 latent_stride)
    hyper_hidden: int
    synthesis_channels: int  # C: after the first transposed convolution (stride 4)
    analysis_channels: int = 128

    @property
    def align(self) -> int:  # image sides are padded to a multiple of this
        return 4 * self.latent_stride

    @property
    def last_stride(self) -> int:  # of the synthesis' second transposed convolution
        return self.latent_stride // 4


ARCHITECTURES = {
    "shallow-v1": Architecture(latent_stride=16, latent_channels=160, hyper_channels=64, hyper_hidden=80,
                               synthesis_channels=28),
    "shallow-v2": Architecture(latent_stride=8, latent_channels=96, hyper_channels=32, hyper_hidden=48,
                               synthesis_channels=12),
}


def architecture(model: str) -> Architecture:
    from ..errors import TinyCodecError

    if model not in ARCHITECTURES:
        raise TinyCodecError(f"file names model '{model}', unknown to this tinycodec's shallow family")
    return ARCHITECTURES[model]


def padded_size(height: int, width: int, arch: Architecture) -> tuple[int, int]:
    return -(-height // arch.align) * arch.align, -(-width // arch.align) * arch.align


def latent_shape(height: int, width: int, arch: Architecture) -> tuple[int, int, int]:
    ph, pw = padded_size(height, width, arch)
    return arch.latent_channels, ph // arch.latent_stride, pw // arch.latent_stride


def hyper_shape(height: int, width: int, arch: Architecture) -> tuple[int, int, int]:
    ph, pw = padded_size(height, width, arch)
    return arch.hyper_channels, ph // arch.align, pw // arch.align


def segment_elements(height: int, width: int, model: str) -> list[int]:
    """Latents in each segment of a file of this model: z, then y (the container's payload checks)."""
    arch = architecture(model)
    (c, h, w), (cz, hz, wz) = latent_shape(height, width, arch), hyper_shape(height, width, arch)
    return [cz * hz * wz, c * h * w]
