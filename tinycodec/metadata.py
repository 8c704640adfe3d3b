"""Image metadata a .tcz carries: the ICC colour profile and the EXIF orientation.

Both travel in non-critical header extension records (format_spec.md), so a
decoder that predates them still decodes the pixels. On decode they are put
back where Pillow keeps them (``info["icc_profile"]``, ``info["exif"]``), so
saving the decoded image writes them again, as cjpeg/cwebp users expect.
Other EXIF fields (camera, GPS, dates) are not carried.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

from PIL import Image

from .container import EXT_ICC_PROFILE, EXT_ORIENTATION

ORIENTATION_TAG = 0x0112
# Compressed profiles above this are dropped (with a warning): the whole .tcz
# header, segment table included, must fit in 64 KiB. Typical profiles
# (sRGB, Display P3, camera profiles) compress to 0.3-3 KiB.
MAX_ICC_RECORD = 32 * 1024
MAX_ICC_PROFILE = 16 << 20  # a reader inflates at most this much (zlib bomb guard)


class MetadataWarning(UserWarning):
    """Metadata of the input could not be carried (for example an oversized ICC profile)."""


@dataclass(frozen=True)
class Metadata:
    icc_profile: bytes | None = None
    orientation: int | None = None  # EXIF orientation 1..8 (1 = as stored)

    @classmethod
    def from_image(cls, image: Image.Image) -> Metadata:
        """What a Pillow image says about its colour profile and orientation."""
        icc = image.info.get("icc_profile") or None
        try:
            orientation = image.getexif().get(ORIENTATION_TAG)
        except Exception:  # noqa: BLE001 - a damaged EXIF block must not stop the encoding
            orientation = None
        if not isinstance(orientation, int) or not 1 <= orientation <= 8:
            orientation = None
        return cls(bytes(icc) if icc else None, orientation)

    def to_extensions(self) -> list[tuple[int, bytes]]:
        records = []
        if self.icc_profile:
            packed = zlib.compress(self.icc_profile, 9)
            if len(packed) <= MAX_ICC_RECORD:
                records.append((EXT_ICC_PROFILE, packed))
            else:
                warnings.warn(f"ICC profile of {len(self.icc_profile)} bytes is too large for a .tcz header: "
                              "dropped", MetadataWarning, stacklevel=3)
        if self.orientation is not None:
            records.append((EXT_ORIENTATION, bytes([self.orientation])))
        return records

    @classmethod
    def from_extensions(cls, extensions: list[tuple[int, bytes]]) -> Metadata:
        """Read the records back; a malformed one is ignored, as a reader that does not know it would."""
        icc = orientation = None
        for ext_type, data in extensions:
            if ext_type == EXT_ICC_PROFILE and icc is None:
                icc = _inflate(data)
            elif ext_type == EXT_ORIENTATION and orientation is None and len(data) == 1 and 1 <= data[0] <= 8:
                orientation = data[0]
        return cls(icc, orientation)

    def attach(self, image: Image.Image) -> Image.Image:
        """Put the metadata where Pillow looks for it when saving or transposing."""
        if self.icc_profile:
            image.info["icc_profile"] = self.icc_profile
        if self.orientation is not None:
            exif = Image.Exif()
            exif[ORIENTATION_TAG] = self.orientation
            image.info["exif"] = exif.tobytes()  # what Pillow's readers put there: b"Exif\0\0" + TIFF
        return image


def _inflate(data: bytes) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_ICC_PROFILE)
    except zlib.error:
        return None
    if inflater.unconsumed_tail or not inflater.eof or not out:
        return None
    return out
