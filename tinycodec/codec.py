"""The codec pipeline: image -> encoder network -> quantiser -> entropy coder -> container, and back."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import backends, container, entropy, families, parallel, quantize, runtime, tiling
from .container import ALPHA_PLANES, DOWNSCALE_FACTORS, Header
from .enhance import NONE, enhance_planes, fit_to_size, parse_filter
from .errors import TinyCodecError
from .image import Planar, to_pil, to_planar
from .limits import DEFAULT_LIMITS, Deadline, Limits
from .metadata import Metadata
from .models import SCALE_DEPTHS
from .refine import check_steps as check_refine_steps, refine_latent
from .zoo import WeightsEntry, current_entry, entry_for_file, model_name

DEFAULT_SCALE = 16
DEFAULT_PLANES = 8
DEFAULT_TILE = 256  # latent elements per tile side (entropy coding)
SCALES = tuple(sorted(SCALE_DEPTHS))

# Encoder-side pixel cap: the decoder's default, so that no file is written that a default reader refuses.
MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_pixels


class FilterSkippedWarning(UserWarning):
    """``enhance`` named a filter that does not help files of this scale level: it was not run."""


class PartialAlphaWarning(UserWarning):
    """A partial decode had the colour planes but not the whole alpha channel."""


# Keys a decoded image carries in ``image.info`` besides the metadata.
INFO_PLANES_DECODED = "tcz_planes_decoded"


@dataclass
class DecodeInfo:
    """What a decode found in the file."""

    width: int  # of the decoded image (the original size, or enlarged by a super-resolution filter)
    height: int
    scale: int
    planes: int  # kept planes in the file
    planes_decoded: int  # planes every tile has: fewer than ``planes`` only for a partial decode
    model: str
    mode: str
    tiles: int = 1  # tiles of the latent grid
    tiles_refined: int = 0  # partial decode: tiles that also have plane planes_decoded + 1
    complete: bool = True  # every segment of the file was decoded
    metadata: Metadata = field(default_factory=Metadata)
    downscale: int = 1  # the image was coded at 1/downscale of its size (tcenc --downscale)
    enhance: str = NONE  # the filter applied after decoding
    family: str = families.TINYCOMPRESS  # codec family of the file (tinycodec.families)
    quality: int | None = None  # rate-distortion families: the quality index the file was coded at
    grids: int = 0  # rate-distortion families: latent segments in the file, and how many were decoded
    grids_decoded: int = 0

    @property
    def decoded_part(self) -> str:
        """What of the file was decoded, in words (for partial decodes)."""
        if self.family != families.TINYCOMPRESS:
            return f"{self.grids_decoded} of {self.grids} latent segments"
        return f"{self.planes_decoded} of {self.planes} planes"


def _tile_slices(header: Header, tile_scale: int = 1) -> list[tuple[slice, slice]]:
    """(row slice, col slice) of every tile, in file order; ``tile_scale`` 2**k gives pixel tiles."""
    rows, cols = header.tiles
    t = header.tile * tile_scale
    return [(slice(r * t, (r + 1) * t), slice(c * t, (c + 1) * t)) for r in range(rows) for c in range(cols)]


def _check_workers(workers: int, window: int | None) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, not {workers!r}")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be an integer >= 1 pixels, not {window!r}")


def _downscale(planar: Planar, factor: int) -> Planar:
    """Pillow bicubic to ceil(size / factor): the degradation SRUNet was trained to undo."""
    h, w = planar.rgb.shape[:2]
    size = (-(-w // factor), -(-h // factor))
    rgb = np.asarray(Image.fromarray(planar.rgb, "RGB").resize(size, Image.BICUBIC))
    alpha = None
    if planar.alpha is not None:
        alpha = np.asarray(Image.fromarray(planar.alpha, "L").resize(size, Image.BICUBIC))
    return Planar(rgb, alpha, planar.grey)


def encode(image: Image.Image | np.ndarray, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES,
           *, quality: int | None = None, effort: str = "fast", family: str | None = None, tile: int = DEFAULT_TILE,
           keep_metadata: bool = True,
           workers: int = 1, window: int | None = None, downscale: int = 1, refine: int = 0, backend: str = "auto",
           device: str = "cpu", precision: str = "fp32", progressive: bool = False) -> bytes:
    """Encode an image to ``.tcz`` bytes.

    quality: 0..100 selects a rate-distortion-optimised family (higher is larger and better), ``scale``
        and ``planes`` then do not apply. ``family``: ``shallow`` (the default, :mod:`tinycodec.shallow`)
        or ``pyramid`` (:mod:`tinycodec.pyramid`). ``effort`` is ``fast`` (one network pass), ``refine``
        (plus ``refine`` gradient steps on the latents, default 100) or, pyramid only, ``overfit``
        (latents and synthesis network optimised together for this image, ``refine`` steps, default 300;
        the file carries the network; minutes per image on a CPU). None: TinyCompress, as below.

    image: a PIL image (any mode Pillow reads; grey stays grey, alpha is kept
        losslessly, 16-bit input is reduced to 8 bits with a warning) or a
        uint8 array of shape HxW, HxWx1, HxWx2, HxWx3 or HxWx4.
    scale: pixels per latent element: 4, 16, 64 or 256 (larger = smaller file).
    planes: most significant bit-planes of the 8-bit latent kept, 1..8 (fewer = smaller file).
    tile: tile side in latent elements (tiles are entropy-coded independently).
    keep_metadata: carry the ICC profile and EXIF orientation of a PIL image
        into the file (False drops them).
    workers: processes that entropy-code tiles in parallel (useful for images
        of several tiles, i.e. above about 4 megapixels at scale 16).
    window: pixels per side of the windows the encoder network runs on (None:
        512, wider at scale 256); any value gives the same latent up to float
        rounding, smaller needs less memory.
    downscale: 2 or 4 codes the image at 1/downscale of its width and height
        (Pillow bicubic) and records the original size; ``decode(..., enhance="srunet")``
        restores it with super-resolution, plain ``decode`` with bicubic. Fewer bits, less detail.
    refine: steps of latent refinement (:mod:`tinycodec.refine`): the encoder searches, by gradient
        descent through the decoder, for codes that decode closer to the image at fewer bits. 0 (the
        default) keeps the encoding network's latent; :data:`tinycodec.refine.DEFAULT_STEPS` is the tuned effort
        (seconds per megapixel on a CPU instead of milliseconds). Files decode as any other.
    backend, device, precision: what runs the encoder network (see :mod:`tinycodec.backends`):
        backend ``auto`` (the fastest available), ``torch``, ``onnx`` or ``tensorrt``; device ``cpu``
        or ``cuda``; precision ``fp32``, ``fp16`` (cuda) or ``int8``. The file is valid for every
        decoder whatever runs it; another backend gives a slightly different (equally valid) file.
    progressive: write entropy coder 3, one segment per bit-plane, so that any prefix of the file decodes
        (``decode(..., partial=True)``) to the planes that arrived; otherwise coder 4 (``entropy.coder_for``:
        coder 3 at scale 4 with 3 planes or fewer, where coder 4 does not pay), whose tiles are one segment
        each: faster to decode, and a cut file decodes only its whole tiles.

    Raises TinyCodecError for images the codec cannot take (BackendError for a backend that is not
    available here), ValueError for bad arguments.
    """
    metadata = Metadata.from_image(image) if keep_metadata and isinstance(image, Image.Image) else Metadata()
    if quality is not None:
        return encode_rd(to_planar(image), quality, effort, refine, metadata, family)
    return encode_planar(to_planar(image), scale, planes, metadata=metadata, tile=tile, workers=workers,
                         window=window, downscale=downscale, refine=refine, backend=backend, device=device,
                         precision=precision, progressive=progressive)


def encode_planar(planar: Planar, scale: int = DEFAULT_SCALE, planes: int = DEFAULT_PLANES, *,
                  metadata: Metadata = Metadata(), tile: int = DEFAULT_TILE, workers: int = 1,
                  window: int | None = None, downscale: int = 1, refine: int = 0, backend: str = "auto",
                  device: str = "cpu", precision: str = "fp32", progressive: bool = False) -> bytes:
    """:func:`encode` for an image already brought to :class:`Planar` form.

    Lets a caller drop its PIL image before the networks run (a 100-megapixel
    RGB image takes 400 MB in Pillow).
    """
    if scale not in SCALE_DEPTHS:
        raise ValueError(f"scale must be one of {SCALES}, not {scale}")
    quantize.check_planes(planes)
    if not 8 <= tile <= 0xFFFF:
        raise ValueError("tile must be 8..65535 latent elements")
    _check_workers(workers, window)
    if downscale != 1 and downscale not in DOWNSCALE_FACTORS:
        raise ValueError(f"downscale must be 1 or one of {DOWNSCALE_FACTORS}, not {downscale}")
    check_refine_steps(refine)  # before any network runs
    backends.check_request(backend, device, precision)
    height, width = planar.rgb.shape[:2]
    if width * height > MAX_IMAGE_PIXELS:
        raise TinyCodecError(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels")
    extensions = metadata.to_extensions()
    if downscale != 1:
        extensions.append(container.downscale_record(downscale, width, height))
        planar = _downscale(planar, downscale)
        height, width = planar.rgb.shape[:2]

    depth = SCALE_DEPTHS[scale]
    entry = current_entry(model_name(scale))
    try:
        latent = tiling.encode_latent(entry, scale, depth, planar.rgb, window, backend=backend, device=device,
                                      precision=precision)
    except (MemoryError, RuntimeError) as exc:
        raise TinyCodecError(f"cannot encode a {width}x{height} image here: {exc}") from None
    lo, hi = quantize.latent_range(latent)  # per image: needs the whole (small) latent
    if refine:
        try:
            latent = refine_latent(entry, scale, planar.rgb, latent, lo, hi, planes, refine, device=device)
        except (MemoryError, RuntimeError) as exc:
            raise TinyCodecError(f"cannot refine the latent of a {width}x{height} image here: {exc}") from None

    header = Header(
        width=width, height=height, color_channels=1 if planar.grey else 3,
        has_alpha=planar.alpha is not None, depth=depth, planes=planes,
        coder_id=entropy.coder_for(scale, planes, progressive),
        tile=tile, lo=tuple(float(v) for v in lo), hi=tuple(float(v) for v in hi),
        model=entry.model, weights_id=entry.short_id, extensions=extensions,
    )
    # Quantising tile by tile gives the same symbols as quantising the whole latent (elementwise).
    jobs = [(np.ascontiguousarray(quantize.quantize(latent[:, rows, cols], lo, hi, planes)), planes, header.coder_id)
            for rows, cols in _tile_slices(header)]
    del latent
    if planar.alpha is not None:
        jobs += [(np.ascontiguousarray(planar.alpha[None, rows, cols]), ALPHA_PLANES, header.coder_id)
                 for rows, cols in _tile_slices(header, 1 << depth)]
    tiles_segments = parallel.map_in_order(entropy.encode_tile, jobs, workers)
    n_tiles = len(tiles_segments) // (2 if planar.alpha is not None else 1)
    colour, alpha = tiles_segments[:n_tiles], tiles_segments[n_tiles:]
    groups = [[segments[g] for segments in colour] for g in range(len(header.colour_groups))]
    groups += [[segments[g] for segments in alpha] for g in range(len(header.alpha_groups))]
    return container.pack(header, groups)


def encode_rd(planar: Planar, quality: int, effort: str = "fast", refine: int = 0, metadata: Metadata = Metadata(),
              family: str | None = None) -> bytes:
    """A rate-distortion family's encoder (see :func:`encode`); ``refine`` 0: the effort's default steps."""
    module = families.rd_module(family or families.RD_FAMILIES[0])
    height, width = planar.rgb.shape[:2]
    if width * height > MAX_IMAGE_PIXELS:
        raise TinyCodecError(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels")
    if effort not in module.EFFORTS:
        raise TinyCodecError(f"effort '{effort}' is not one of the {module.__name__.split('.')[-1]} family's "
                             f"({', '.join(module.EFFORTS)})")
    try:
        default = getattr(module, "DEFAULT_OVERFIT_STEPS", 0) if effort == "overfit" else module.DEFAULT_REFINE_STEPS
        return module.encode_planar(planar, quality, effort, refine or default, extensions=metadata.to_extensions())
    except (MemoryError, RuntimeError) as exc:
        raise TinyCodecError(f"cannot encode a {width}x{height} image here: {exc}") from None


def simulate_rgb(rgb: np.ndarray, scale: int, planes: int = DEFAULT_PLANES, *, backend: str = "auto",
                 device: str = "cpu", precision: str = "fp32") -> np.ndarray:
    """The RGB image ``decode(encode(rgb, scale, planes))`` returns, without running the entropy coder.

    The coder is lossless, so skipping it changes nothing but the time; used to
    make training pairs for the enhancement filters. rgb: (H, W, 3) uint8.
    """
    depth = SCALE_DEPTHS[scale]
    quantize.check_planes(planes)
    height, width = rgb.shape[:2]
    entry = current_entry(model_name(scale))
    run = {"backend": backend, "device": device, "precision": precision}
    latent = tiling.encode_latent(entry, scale, depth, rgb, **run)
    lo, hi = quantize.latent_range(latent)
    symbols = quantize.quantize(latent, lo, hi, planes)
    latent = quantize.dequantize(symbols, np.asarray(lo, np.float32), np.asarray(hi, np.float32), planes)
    return runtime.run_decoder(entry, scale, latent, **run)[:height, :width]


def _effective_limits(limits: Limits, max_pixels: int | None) -> Limits:
    """``limits`` with the ``max_pixels`` shorthand applied."""
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a tinycodec.Limits, not {type(limits).__name__}")
    return limits if max_pixels is None else dataclasses.replace(limits, max_pixels=max_pixels)


def _open(data: bytes, partial: bool, limits: Limits) -> tuple[container.Decoded, WeightsEntry]:
    """Split and verify a file and find the weights that decode it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, not {type(data).__name__}")
    unpacked = container.unpack(bytes(data), partial=partial, limits=limits)
    header = unpacked.header
    if header.coder_id not in entropy.CODERS:
        known = ", ".join(map(str, entropy.CODERS))
        raise TinyCodecError(f"file uses entropy coder {header.coder_id}, unknown to this tinycodec "
                             f"(it reads {known}): upgrade")
    for ext_type, _ in header.extensions:
        if ext_type & container.EXT_CRITICAL:
            raise TinyCodecError(f"file needs header extension {ext_type}, unknown to this tinycodec: upgrade")
    if header.model != model_name(header.scale):
        raise TinyCodecError(f"file names model '{header.model}' for scale level {header.scale}: not a known pairing")
    return unpacked, entry_for_file(header.model, header.weights_id)


def verify(data: bytes, *, max_pixels: int | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check a whole file without decoding it: structure, every checksum, coder and model known, limits.

    Raises TinyCodecError for the first problem found.
    """
    limits = _effective_limits(limits, max_pixels)
    if (family := _family(data)) != families.TINYCOMPRESS:
        families.rd_module(family).verify(bytes(data), limits)
        return
    _open(data, False, limits)


def _family(data: bytes) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, not {type(data).__name__}")
    return families.identify(bytes(data[:12]))


def _groups_per_tile(unpacked: container.Decoded, first_group: int, n_groups: int, n_tiles: int) -> list[int]:
    """How many of the groups [first_group, first_group + n_groups) each tile has.

    Complete groups count for every tile; of the group that was cut, the
    tiles whose segment arrived whole get one group more.
    """
    complete = min(max(len(unpacked.groups) - first_group, 0), n_groups)
    cut_here = len(unpacked.groups) == first_group + complete and complete < n_groups
    arrived = len(unpacked.next_group) if cut_here else 0
    return [complete + (1 if t < arrived else 0) for t in range(n_tiles)]


def _segments_of_tile(unpacked: container.Decoded, first_group: int, tile: int, groups: int) -> list[bytes]:
    whole = unpacked.groups
    return [whole[g][tile] if g < len(whole) else unpacked.next_group[tile]
            for g in range(first_group, first_group + groups)]


def decode_with_info(data: bytes, *, partial: bool = False, max_pixels: int | None = None,
                     limits: Limits = DEFAULT_LIMITS, workers: int = 1, window: int | None = None,
                     enhance: str = NONE, backend: str = "auto", device: str = "cpu",
                     precision: str = "fp32") -> tuple[Image.Image, DecodeInfo]:
    """Decode ``.tcz`` bytes; also report what was decoded. See :func:`decode`."""
    _check_workers(workers, window)
    choice = parse_filter(enhance)  # an unknown filter fails before any work
    backends.check_request(backend, device, precision)  # and so does a backend that is not here
    if choice is not None:
        backends.check_request(backend, device, choice.precision)
    limits = _effective_limits(limits, max_pixels)
    if (family := _family(data)) != families.TINYCOMPRESS:
        return _decode_rd(bytes(data), family, partial, limits, choice, backend, device)
    unpacked, entry = _open(data, partial, limits)
    header = unpacked.header
    if choice is not None and choice.spec.scales is not None and header.scale not in choice.spec.scales:
        warnings.warn(f"{choice.name} skipped: it makes scale-{header.scale} files worse (it is trained for "
                      f"scale levels {', '.join(map(str, choice.spec.scales))})", FilterSkippedWarning, stacklevel=2)
        choice = None
    downscale = container.find_downscale(header)
    out_w, out_h = (downscale[1], downscale[2]) if downscale else (header.width, header.height)
    if choice is not None and not downscale:
        out_w, out_h = out_w * choice.spec.upscale, out_h * choice.spec.upscale
    limits.check_pixels(out_w, out_h)  # what enlarging or restoring will allocate
    run = {"backend": backend, "device": device, "precision": precision}
    try:
        image, info = _decode_unpacked(unpacked, entry, limits.deadline(header.width, header.height), workers,
                                       window, run)
        if choice is not None:
            planar = to_planar(image)
            enhanced = enhance_planes(planar.rgb, planar.alpha, planar.grey, choice, backend=backend, device=device)
            enhanced.info.update(image.info)
            image = enhanced
        if downscale:
            image = fit_to_size(image, out_w, out_h)  # crop and resize keep image.info
    except MemoryError:  # the limits keep this rare, but a small machine can still run out
        raise TinyCodecError(f"not enough memory to decode a {header.width}x{header.height} image here") from None
    info = dataclasses.replace(info, width=image.width, height=image.height, mode=image.mode,
                               downscale=downscale[0] if downscale else 1, enhance=choice.name if choice else NONE)
    return image, info


def _decode_rd(data: bytes, family: str, partial: bool, limits: Limits, choice, backend: str,
               device: str) -> tuple[Image.Image, DecodeInfo]:
    from .container_v2 import read_header

    header = read_header(data, limits=limits)[0]
    if choice is not None and choice.spec.scales is not None:
        warnings.warn(f"{choice.name} skipped: it is trained on TinyCompress artefacts, not the {family} family's",
                      FilterSkippedWarning, stacklevel=3)
        choice = None
    if choice is not None:
        limits.check_pixels(header.width * choice.spec.upscale, header.height * choice.spec.upscale)
    try:
        image, pinfo = families.rd_module(family).decode_with_info(data, partial=partial, limits=limits)
        metadata = Metadata.from_extensions(header.extensions)
        if choice is not None:
            planar = to_planar(image)
            image = enhance_planes(planar.rgb, planar.alpha, planar.grey, choice, backend=backend, device=device)
        metadata.attach(image)
    except MemoryError:
        raise TinyCodecError(f"not enough memory to decode a {header.width}x{header.height} image here") from None
    info = DecodeInfo(image.width, image.height, 0, 0, 0, pinfo.model, image.mode, complete=pinfo.complete,
                      metadata=metadata, enhance=choice.name if choice else NONE, family=family,
                      quality=pinfo.quality, grids=pinfo.grids, grids_decoded=pinfo.grids_decoded)
    return image, info


def _decode_unpacked(unpacked: container.Decoded, entry: WeightsEntry, deadline: Deadline, workers: int,
                     window: int | None, run: dict[str, str]) -> tuple[Image.Image, DecodeInfo]:
    header = unpacked.header
    scale, depth = header.scale, header.depth
    tiles = _tile_slices(header)

    sizes = header.colour_groups
    colour_groups = _groups_per_tile(unpacked, 0, len(sizes), len(tiles))
    colour_planes = [sum(sizes[:g]) for g in colour_groups]
    if max(colour_planes) == 0:
        if len(sizes) == 1 and header.planes > 1:
            raise TinyCodecError(f"truncated .tcz file: no tile arrived whole (entropy coder {header.coder_id} "
                                 "holds all planes of a tile in one segment; files written with tcenc "
                                 "--progressive decode plane by plane)")
        raise TinyCodecError("truncated .tcz file: not even the first bit-plane arrived")
    lh, lw = header.latent_size
    jobs = [(_segments_of_tile(unpacked, 0, t, g), header.planes, (3, *_extent(rows, cols, lh, lw)), deadline.check,
             header.coder_id)
            for t, ((rows, cols), g) in enumerate(zip(tiles, colour_groups))]
    alpha_tiles, alpha_planes, alpha_jobs = _alpha_jobs(unpacked, deadline)
    # Colour and alpha tiles in one go: with workers > 1 that is one process pool, not two.
    decoded = parallel.map_in_order(entropy.decode_tile, jobs + alpha_jobs, workers)
    centres = np.empty((3, lh, lw), dtype=np.uint16)  # twice the 8-bit code of each latent element
    for (rows, cols), m, symbols in zip(tiles, colour_planes, decoded[: len(jobs)]):
        centres[:, rows, cols] = quantize.bin_centres_x2(symbols, m)
    alpha, alpha_complete = _assemble_alpha(header, alpha_tiles, alpha_planes, decoded[len(jobs) :])
    del decoded

    lo = np.array(header.lo, dtype=np.float32)
    hi = np.array(header.hi, dtype=np.float32)

    def latent_of(rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        return quantize.dequantize_centres(centres[:, rows[0] : rows[1], cols[0] : cols[1]], lo, hi)

    grey = header.color_channels == 1
    image = Image.new(header.mode, (header.width, header.height))
    try:
        for y, x, rgb in tiling.decode_windows(entry, scale, depth, latent_of, (lh, lw), window, **run):
            rgb = rgb[: header.height - y, : header.width - x]  # drop the padding to a multiple of 2**k
            block_alpha = None if alpha is None else alpha[y : y + rgb.shape[0], x : x + rgb.shape[1]]
            image.paste(to_pil(np.ascontiguousarray(rgb), block_alpha, grey), (x, y))
            deadline.check()  # network windows cannot be cut short, but their time counts
    except (MemoryError, RuntimeError) as exc:  # torch reports allocation failures as RuntimeError
        raise TinyCodecError(f"cannot decode a {header.width}x{header.height} image here: {exc}") from None

    planes_decoded = min(colour_planes)
    metadata = Metadata.from_extensions(header.extensions)
    metadata.attach(image)
    image.info[INFO_PLANES_DECODED] = planes_decoded
    info = DecodeInfo(
        header.width, header.height, scale, header.planes, planes_decoded, header.model, image.mode,
        tiles=len(tiles), tiles_refined=sum(m > planes_decoded for m in colour_planes),
        complete=planes_decoded == header.planes and alpha_complete, metadata=metadata,
    )
    return image, info


def _extent(rows: slice, cols: slice, height: int, width: int) -> tuple[int, int]:
    """Size of a tile of the grid, clipped to the array (the last row and column may be smaller)."""
    return min(rows.stop, height) - rows.start, min(cols.stop, width) - cols.start


def _alpha_jobs(unpacked: container.Decoded, deadline: Deadline) -> tuple[list, list[int], list[tuple]]:
    """The alpha tiles, the planes that arrived for each, and the entropy-decoding jobs of those with any."""
    header = unpacked.header
    if not header.has_alpha:
        return [], [], []
    tiles = _tile_slices(header, 1 << header.depth)
    first, sizes = len(header.colour_groups), header.alpha_groups
    groups = _groups_per_tile(unpacked, first, len(sizes), len(tiles))
    planes = [sum(sizes[:g]) for g in groups]
    jobs = [(_segments_of_tile(unpacked, first, t, g), ALPHA_PLANES,
             (1, *_extent(rows, cols, header.height, header.width)), deadline.check, header.coder_id)
            for t, ((rows, cols), g) in enumerate(zip(tiles, groups)) if g]
    return tiles, planes, jobs


def _assemble_alpha(header: container.Header, tiles: list, planes: list[int],
                    decoded: list[np.ndarray]) -> tuple[np.ndarray | None, bool]:
    """The alpha channel (None if the file has none) and whether all of it arrived.

    In a partial file alpha comes last: tiles with some of its planes get the
    centre of their bins, tiles with none are shown opaque.
    """
    if not header.has_alpha:
        return None, True
    alpha = np.full((header.height, header.width), 255, dtype=np.uint8)
    results = iter(decoded)
    for (rows, cols), m in zip(tiles, planes):
        if m:
            alpha[rows, cols] = quantize.bin_centres_x2(next(results)[0], m) >> 1
    complete = min(planes) == ALPHA_PLANES
    if not complete:
        warnings.warn(f"alpha channel incomplete in partial file ({min(planes)} of {ALPHA_PLANES} planes): "
                      "approximated, opaque where nothing arrived", PartialAlphaWarning, stacklevel=4)
    return alpha, complete


def decode(data: bytes, *, partial: bool = False, max_pixels: int | None = None, limits: Limits = DEFAULT_LIMITS,
           workers: int = 1, window: int | None = None, enhance: str = NONE, backend: str = "auto",
           device: str = "cpu", precision: str = "fp32") -> Image.Image:
    """Decode ``.tcz`` bytes to a PIL image (mode L, LA, RGB or RGBA, the original size).

    partial: accept a truncated file (a partial download) and decode what
        arrived: every bit-plane segment that is complete (progressive
        decoding); ``image.info["tcz_planes_decoded"]`` says how many planes
        every tile has (``decode_with_info`` says more). Without it a
        truncated file is an error.
    limits: what one decode may cost (pixels, payload size, time per pixel);
        see :class:`tinycodec.Limits`. The pixel and payload limits are checked
        on the header, before anything is allocated for the image.
    max_pixels: shorthand for ``limits.max_pixels``.
    workers: processes that entropy-decode tiles in parallel.
    window: pixels per side of the windows the decoder network runs on (None: 512).
    enhance: a learned filter run on the decoded image (see
        :func:`tinycodec.enhance.filter_names`): ``unet`` removes coding
        artefacts; ``srunet`` and ``tinypssr-x2/x4`` enlarge the image, or
        restore the original size of a file encoded with ``downscale``; ``srunet-int8`` and the
        like run the filter in that precision.
    backend, device, precision: what runs the decoder network (and the filter: its precision is
        part of its name), as for :func:`encode`. Any file decodes with any of them.

    The ICC profile and EXIF orientation stored in the file are in
    ``image.info["icc_profile"]`` and ``image.info["exif"]``.
    Raises TinyCodecError for anything wrong with the data, a limit included (BackendError for a
    backend that is not available here).
    """
    return decode_with_info(data, partial=partial, max_pixels=max_pixels, limits=limits, workers=workers,
                            window=window, enhance=enhance, backend=backend, device=device,
                            precision=precision)[0]
