"""Command-line tools ``tcenc``, ``tcdec`` and ``tinycodec``: thin layers over the Python API.

Errors a user can cause end in one line on stderr and exit status 1; outputs
are written atomically, so a failed or interrupted run leaves no partial file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import sys
import time
import warnings
from pathlib import Path

import click
import numpy as np

from . import __version__
from .backends import BACKENDS, DEVICES, PRECISIONS
from .codec import DEFAULT_PLANES, DEFAULT_SCALE, SCALES, PartialAlphaWarning, decode_with_info, encode
from .container import DOWNSCALE_FACTORS
from .enhance import NONE, enhance, parse_filter
from .filters import FILTERS
from .errors import TinyCodecError
from .files import read_image, save_image, write_atomic
from .image import HighBitDepthWarning

ENHANCE_HELP = f"{NONE}, {', '.join(FILTERS)} (add -int8 or -fp16 to run a filter in that precision)"


def _fail(prog: str, message: str, code: int = 1) -> None:
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


def _user_errors(prog: str):
    """Turn the errors a user can cause into one line and a non-zero exit."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            warnings.simplefilter("ignore")  # shown as notes by the commands themselves
            try:
                return fn(*args, **kwargs)
            except TinyCodecError as exc:
                _fail(prog, str(exc))
            except OSError as exc:  # disk full, permission denied, broken pipe, ...
                _fail(prog, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
            except KeyboardInterrupt:
                _fail(prog, "interrupted", 130)

        return inner

    return wrap


def _backend_options(prog: str):
    """--backend, --device, --precision and -v for a command; the command gets them as ``run`` (a dict)."""

    def wrap(fn):
        @click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                      help="What runs the networks: auto picks the fastest available (-v says which).")
        @click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
                      help="cuda needs a CUDA build of PyTorch and a GPU (torch fp32/fp16, tensorrt).")
        @click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                      help="Of the codec network: int8 (onnx on cpu, tensorrt), fp16 (cuda).")
        @click.option("-v", "--verbose", is_flag=True, help="Say which backend runs each network, and what is built.")
        @functools.wraps(fn)
        def inner(*args, backend: str, device: str, precision: str, verbose: bool, **kwargs):
            if verbose:
                _log_to_stderr(prog)
            return fn(*args, run={"backend": backend, "device": device, "precision": precision}, **kwargs)

        return inner

    return wrap


def _log_to_stderr(prog: str) -> None:
    logger = logging.getLogger("tinycodec")
    for old in [h for h in logger.handlers if getattr(h, "_tinycodec_cli", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    handler._tinycodec_cli = True
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise TinyCodecError(f"is a directory: {path}") from None


@contextlib.contextmanager
def _notes(prog: str, quiet: bool):
    """Collect the warnings tinycodec gives users and print them as notes afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if not quiet:
        for w in caught:
            if issubclass(w.category, (HighBitDepthWarning, PartialAlphaWarning)):
                click.echo(f"{prog}: note: {w.message}", err=True)


def _check_output(path: str, force: bool, inputs: str) -> None:
    """Never overwrite silently: a default output name can be the user's original."""
    if path != "-" and not force and Path(path).exists():
        raise TinyCodecError(f"{path} already exists (use -f to overwrite)")
    if path != "-" and path == inputs:
        raise TinyCodecError("output and input are the same file")


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        if sys.stdout.isatty():
            raise TinyCodecError("refusing to write binary data to a terminal: use -o FILE or a pipe")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(path, data)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", type=str)
@click.option("-o", "--output", type=str, default=None,
              help="Output .tcz file, '-' for stdout. Default: IMAGE with the suffix .tcz (stdout for stdin input).")
@click.option("-s", "--scale", type=click.Choice([str(s) for s in SCALES]), default=str(DEFAULT_SCALE),
              show_default=True, help="Pixels per latent element: larger is smaller and blurrier.")
@click.option("-p", "--planes", type=click.IntRange(1, 8), default=DEFAULT_PLANES, show_default=True,
              help="Bit-planes of the 8-bit latent kept: fewer is smaller.")
@click.option("--downscale", type=click.Choice(["1", *map(str, DOWNSCALE_FACTORS)]), default="1", show_default=True,
              help="Code the image at 1/N of its width and height; tcdec --enhance srunet restores the size.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@click.version_option(__version__, "-V", "--version", prog_name="tcenc")
@_backend_options("tcenc")
@_user_errors("tcenc")
def tcenc(image: str, output: str | None, scale: str, planes: int, downscale: str, force: bool, quiet: bool,
          run: dict) -> None:
    """Encode IMAGE (any format Pillow reads; '-' for stdin) to a .tcz file."""
    im = read_image(io.BytesIO(_read_input("-")) if image == "-" else image)
    if output is None:
        output = "-" if image == "-" else str(Path(image).with_suffix(".tcz"))
    _check_output(output, force, image)
    with _notes("tcenc", quiet):
        start = time.perf_counter()
        data = encode(im, scale=int(scale), planes=planes, downscale=int(downscale), **run)
        elapsed = time.perf_counter() - start
    _write_output(output, data)
    if not quiet:
        bpp = 8 * len(data) / (im.width * im.height)
        shrunk = f", downscale {downscale}" if downscale != "1" else ""
        click.echo(f"{image} -> {output}: {im.width}x{im.height} {im.mode}, scale {scale}, {planes} planes{shrunk}, "
                   f"{len(data)} bytes, {bpp:.4f} bpp, {elapsed * 1000:.0f} ms", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=str)
@click.option("-o", "--output", type=str, default=None,
              help="Output image; the format follows the extension. '-' writes PNG to stdout. Default: FILE with .png.")
@click.option("--enhance", type=str, default=NONE, show_default=True,
              help=f"Learned filter after decoding: {ENHANCE_HELP}. srunet and tinypssr-x2/x4 enlarge the image "
                   "(or restore the size of a --downscale file).")
@click.option("--partial", is_flag=True, help="Decode a truncated file from the bit-planes that arrived whole.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@click.version_option(__version__, "-V", "--version", prog_name="tcdec")
@_backend_options("tcdec")
@_user_errors("tcdec")
def tcdec(file: str, output: str | None, enhance: str, partial: bool, force: bool, quiet: bool, run: dict) -> None:
    """Decode a .tcz FILE ('-' for stdin) to an image."""
    parse_filter(enhance)  # an unknown name fails before any reading or decoding
    data = _read_input(file)
    if output is None:
        output = "-" if file == "-" else str(Path(file).with_suffix(".png"))
    _check_output(output, force, file)
    with _notes("tcdec", quiet):
        start = time.perf_counter()
        image, info = decode_with_info(data, partial=partial, enhance=enhance, **run)
        elapsed = time.perf_counter() - start
    if output == "-":
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        _write_output("-", buf.getvalue())
    else:
        save_image(image, output)
    if not quiet:
        planes = f"{info.planes_decoded} of {info.planes} planes" if partial else f"{info.planes} planes"
        extra = f", {info.enhance}" if info.enhance != NONE else ""
        click.echo(f"{file} -> {output}: {info.width}x{info.height} {info.mode}, scale {info.scale}, {planes}{extra}, "
                   f"{elapsed * 1000:.0f} ms", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="tinycodec")
def main() -> None:
    """tinycodec: a learned image codec small enough for edge devices (see also tcenc, tcdec)."""


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@main.command()
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Image to use instead of the bundled photograph.")
@click.option("-o", "--outdir", type=click.Path(file_okay=False), default=None,
              help="Also write the .tcz files and decoded PNGs here.")
@_user_errors("tinycodec demo")
def demo(image: str | None, outdir: str | None) -> None:
    """Round-trip a photograph at every scale level and print bpp and PSNR."""
    if image is None:
        from matplotlib import cbook  # matplotlib ships this photograph (Grace Hopper, 512x600)

        image = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    im = read_image(image).convert("RGB")
    ref = np.asarray(im)
    click.echo(f"{Path(image).name}: {im.width}x{im.height}")
    click.echo(f"{'scale':>5} {'planes':>6} {'bytes':>8} {'bpp':>7} {'PSNR dB':>8} {'enc ms':>7} {'dec ms':>7}")
    for scale, planes in [(4, 8), (16, 8), (16, 6), (64, 8), (256, 8)]:
        t0 = time.perf_counter()
        data = encode(im, scale=scale, planes=planes)
        t1 = time.perf_counter()
        out, _ = decode_with_info(data)
        t2 = time.perf_counter()
        bpp = 8 * len(data) / (im.width * im.height)
        click.echo(f"{scale:>5} {planes:>6} {len(data):>8} {bpp:>7.3f} {_psnr(ref, np.asarray(out)):>8.2f} "
                   f"{(t1 - t0) * 1000:>7.0f} {(t2 - t1) * 1000:>7.0f}")
        if outdir:
            Path(outdir).mkdir(parents=True, exist_ok=True)
            stem = Path(outdir) / f"demo-s{scale}-p{planes}"
            write_atomic(stem.with_suffix(".tcz"), data)
            save_image(out, stem.with_suffix(".png"))


@main.command("enhance")
@click.argument("image", type=str)
@click.option("-o", "--output", type=str, required=True, help="Output image; the format follows the extension.")
@click.option("--filter", "filter_name", type=str, required=True, help=f"One of {', '.join(FILTERS)}.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@_backend_options("tinycodec enhance")
@_user_errors("tinycodec enhance")
def enhance_command(image: str, output: str, filter_name: str, force: bool, quiet: bool, run: dict) -> None:
    """Run a learned filter on any IMAGE: upscale a photograph (tinypssr-x2/x4, srunet) or clean one (unet)."""
    if parse_filter(filter_name) is None:
        raise TinyCodecError("--filter none does nothing: choose a filter")
    im = read_image(image)
    _check_output(output, force, image)
    with _notes("tinycodec enhance", quiet):
        start = time.perf_counter()
        if run.pop("precision") != "fp32":
            raise TinyCodecError("the filter's precision is part of its name: --filter srunet-int8")
        out = enhance(im, filter_name, **run)
        elapsed = time.perf_counter() - start
    save_image(out, output)
    if not quiet:
        click.echo(f"{image} -> {output}: {im.width}x{im.height} -> {out.width}x{out.height}, {filter_name}, "
                   f"{elapsed * 1000:.0f} ms", err=True)


@main.command("rd")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="docs/results", show_default=True,
              help="Folder for the JSON per codec, the per-image CSV, the plots and bd_table.md.")
@click.option("--codecs", type=str, default="jpeg,webp,avif,jxl,tinycodec", show_default=True,
              help="Comma-separated subset of jpeg, webp, avif, jxl, tinycodec.")
@click.option("--quick", is_flag=True, help="A small sweep: 4 settings per codec (tinycodec: 8 planes at each scale).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (each runs single-threaded; timings are per core).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images (by name).")
@_user_errors("tinycodec rd")
def rd_command(data_dir: str, out: str, codecs: str, quick: bool, jobs: int, limit: int | None) -> None:
    """Rate-distortion comparison on the images of DATA_DIR: tinycodec against JPEG, WebP, AVIF and JPEG XL.

    Writes rd_<codec>.json (CompressAI's results format), rd_per_image.csv, rd_psnr.png, rd_psnr_y.png,
    rd_msssim.png and bd_table.md (Bjontegaard deltas, PCHIP interpolation) to --out.
    """
    from . import rd  # imported here: tcenc and tcdec need none of it

    report = rd.run_rd(data_dir, out, codecs=codecs, quick=quick, jobs=jobs, limit=limit)
    click.echo(report.table)
    click.echo(f"{report.measurements} measurements on {report.images} images; wrote "
               + ", ".join(str(p) for p in report.files), err=True)
