"""Command-line tools ``tcenc``, ``tcdec`` and ``tinycodec``: thin layers over the Python API.

Errors a user can cause end in one line on stderr and exit status 1; outputs
are written atomically, so a failed or interrupted run leaves no partial file:
SIGINT, SIGTERM and SIGHUP become exceptions (exit status 128 + signal number)
so that the temporary file is removed on the way out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from .errors import TinyCodecError, describe_os_error, printable
from .limits import DEFAULT_LIMITS
from .options import (BACKENDS, DEFAULT_PLANES, DEFAULT_SCALE, DEVICES, DOWNSCALE_FACTORS, FILTERS,
                      MAX_REFINE_STEPS, NONE, PRECISIONS, RAY_INSTALL, RD_FAMILIES, RD_STEPS,
                      REFINE_STEPS as DEFAULT_REFINE_STEPS, SCALES)

if TYPE_CHECKING:
    import numpy as np

    from . import batch

# Only light modules above: --help, -V and usage errors must answer without numpy or PyTorch
# (tests/test_startup.py). The codec's modules are imported where a command first needs them.

# numpy's BLAS on one thread unless the user chose: the codec's matrix products are small, and OpenBLAS's
# spinning threads made a Kodak-size tcdec 1.4-2.2x slower on a busy 2-core machine (tools/bench_startup.py).
# OpenBLAS reads this when numpy is first imported, which in a command is after this module.
if "OPENBLAS_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

ENHANCE_HELP = f"{NONE}, {', '.join(FILTERS)} (add -int8 or -fp16 to run a filter in that precision)"


def _say(line: str) -> None:
    """One line on stderr; names of files and strings read from them are escaped (errors.printable)."""
    click.echo(printable(line), err=True)


def _fail(prog: str, message: str, code: int = 1) -> None:
    _say(f"{prog}: error: {message}")
    sys.exit(code)


class _Stopped(KeyboardInterrupt):
    """A stop signal, raised where the program is, so that ``finally`` and ``except`` blocks clean up.

    A KeyboardInterrupt so that everything that cleans up after Ctrl-C (write_atomic
    removing its temporary file) does the same for SIGTERM and SIGHUP.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _stop(signum: int, frame) -> None:
    for sig in _STOP_SIGNALS:  # a second signal must not interrupt the clean-up of the first
        signal.signal(sig, signal.SIG_IGN)
    raise _Stopped(signum)


@contextlib.contextmanager
def _stop_signals_raise():
    """Within the block, SIGINT/SIGTERM/SIGHUP raise :class:`_Stopped` (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _user_errors(prog: str):
    """Turn the errors a user can cause into one line and a non-zero exit."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            warnings.simplefilter("ignore")  # shown as notes by the commands themselves
            try:
                with _stop_signals_raise():
                    return fn(*args, **kwargs)
            except TinyCodecError as exc:
                _fail(prog, str(exc))
            except OSError as exc:  # disk full, permission denied, broken pipe, ...
                _fail(prog, describe_os_error(exc))
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                _fail(prog, "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}",
                      128 + signum)

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


@contextlib.contextmanager
def _notes(prog: str, quiet: bool):
    """Collect the warnings tinycodec gives users and print them as notes afterwards."""
    from .codec import FilterSkippedWarning, PartialAlphaWarning
    from .image import HighBitDepthWarning
    from .metadata import MetadataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if not quiet:
        for w in caught:
            if issubclass(w.category, (HighBitDepthWarning, PartialAlphaWarning, MetadataWarning,
                                       FilterSkippedWarning)):
                _say(f"{prog}: note: {w.message}")


def _check_output(path: str, force: bool, inputs: str) -> None:
    """Never overwrite silently (a default output name can be the user's original), and never the input."""
    if path == "-":
        return
    from .files import output_target

    if path == inputs or (inputs != "-" and _same_file(path, inputs)):
        raise TinyCodecError("output and input are the same file")
    output_target(path, force)  # early, before any work; checked again when the file is put in place


def _same_file(a: str, b: str) -> bool:
    """True for two names of one file: ./x and x, a symlink and its target, hard links."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _write_output(path: str, data: bytes, force: bool) -> None:
    from .files import write_atomic, write_fully

    if path == "-":
        if sys.stdout.isatty():
            raise TinyCodecError("refusing to write binary data to a terminal: use -o FILE or a pipe")
        sys.stdout.flush()  # text written before, if any, then the data through the checked loop
        write_fully(sys.stdout.buffer, data)
    else:
        write_atomic(path, data, overwrite=force)


def _single_output(source: str, output: str | None, suffix: str) -> str:
    """Output name for one input: -o as given, in the folder -o, or beside the input ('-' to '-')."""
    from . import batch

    if output is not None and output != "-" and batch.is_directory_target(output):
        if source == "-":
            raise TinyCodecError("-o is a folder, but stdin has no file name: give -o FILE")
        folder = Path(output)
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            raise TinyCodecError(f"-o {output} names a folder, but {folder} exists and is not one")
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / (Path(source).stem + suffix))
    if output is not None:
        return output
    return "-" if source == "-" else str(Path(source).with_suffix(suffix))


def _is_batch(inputs: tuple[str, ...], opts: _BatchOptions) -> bool:
    """Batch mode: several inputs, a folder, or anything run on Ray, listed in a file or written to a manifest."""
    if len(inputs) > 1 and "-" in inputs:
        raise TinyCodecError("'-' (stdin) cannot be combined with other inputs")
    if inputs[0] == "-" and opts.forced:
        raise TinyCodecError("--engine ray, --manifest and --files-from take files, not stdin")
    return len(inputs) > 1 or (inputs[0] != "-" and Path(inputs[0]).is_dir()) or opts.forced


@dataclasses.dataclass(frozen=True)
class _BatchOptions:
    """How a batch is made, run and reported (the options of _batch_options)."""

    engine: str = "local"
    ray_address: str | None = None
    manifest: str | None = None
    cpus: int | None = None  # -j as given on the command line: the CPUs of a local Ray cluster
    recursive: bool = False
    files_from: str | None = None

    @property
    def forced(self) -> bool:
        """Batch mode whatever the inputs."""
        return self.engine == "ray" or self.manifest is not None or self.files_from is not None

    def inputs(self, given: tuple[str, ...], argument: str) -> tuple[str, ...]:
        """The inputs on the command line, then those listed by --files-from."""
        if self.files_from is None:
            if not given:
                raise click.UsageError(f"Missing argument '{argument}...'.")
            return given
        from . import batch

        listed = tuple(batch.read_list(self.files_from))
        if not given and not listed:
            raise TinyCodecError(f"--files-from {self.files_from} lists no files")
        return (*given, *listed)

    def plan(self, inputs: tuple[str, ...], output: str | None, suffixes: set[str],
             suffix: str) -> tuple[list[batch.Job], list[tuple[str, str]]]:
        """The jobs and the problems of batch.expand_inputs. One input file with -o naming a file is refused:
        batch mode writes into folders."""
        from . import batch

        if len(inputs) == 1 and not Path(inputs[0]).is_dir() and output is not None \
                and not batch.is_directory_target(output):
            raise TinyCodecError(f"-o {output}: with --engine ray, --manifest or --files-from, -o names a folder "
                                 "(end it with '/')")
        sources, problems = batch.expand_inputs(inputs, suffixes, self.recursive)
        return batch.plan_jobs(sources, output, suffix), problems


def _batch_options(fn):
    """--engine, --ray-address, --manifest, -r and --files-from; the command gets them as ``opts``
    (a _BatchOptions)."""

    @click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                  help="What runs a batch: local worker processes (-j N), or Ray tasks, on a local Ray cluster "
                       "(of -j N CPUs; default all) or on the cluster at --ray-address (inputs and outputs then on "
                       "a file system every node shares). With ray, a rerun skips the outputs already there and "
                       "valid, so a killed run loses only the files in flight (-f redoes them). Needs "
                       f"{RAY_INSTALL}.")
    @click.option("--ray-address", type=str, default=None, metavar="ADDRESS",
                  help="Ray cluster for --engine ray (host:port, ray://host:port or auto). Default: $RAY_ADDRESS, "
                       "else a new local cluster.")
    @click.option("--manifest", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                  help="Write a JSON line per file as it completes: input, output, status (done, skipped, "
                       "failed), bytes, bpp, seconds, error (and psnr with tcenc --psnr). Rewritten by each run.")
    @click.option("-r", "--recursive", is_flag=True,
                  help="Folders: the files of their subfolders too, written to the same subfolders under -o.")
    @click.option("--files-from", type=str, default=None, metavar="LIST",
                  help="Also the inputs listed in the file LIST ('-': stdin), one path, folder or file:// URI "
                       "per line.")
    @functools.wraps(fn)
    def inner(*args, engine: str, ray_address: str | None, manifest: str | None, recursive: bool,
              files_from: str | None, **kwargs):
        ctx = click.get_current_context()
        cpus = kwargs["jobs"] if ctx.get_parameter_source("jobs") == click.core.ParameterSource.COMMANDLINE else None
        if engine != "ray" and ray_address is not None:
            raise TinyCodecError("--ray-address applies to --engine ray")
        remote = (ray_address or os.environ.get("RAY_ADDRESS") or "local") != "local"
        if engine == "ray" and cpus is not None and remote:
            raise TinyCodecError("-j sets the CPUs of a local Ray cluster; a cluster at an address has its own")
        if engine == "ray":
            from . import ray_engine

            ray_engine.import_ray()  # without Ray, say how to install it before any work
        return fn(*args, opts=_BatchOptions(engine, ray_address, manifest, cpus, recursive, files_from), **kwargs)

    return inner


def _run_batch(prog: str, jobs: list[batch.Job], work, workers: int, quiet: bool, problems: list[tuple[str, str]] = (),
               opts: _BatchOptions = _BatchOptions(), psnr: bool = False) -> None:
    """Run the jobs (on the local pool or on Ray) with a progress bar (on a terminal, unless -q); report failures
    by name, and the inputs that gave no job (``problems``) first; write the manifest; exit 1 if any failed."""
    from tqdm import tqdm  # only batch mode needs it

    from . import batch

    for name, message in problems:
        _say(f"{prog}: error: {name}: {message}")
    summary = batch.Summary()
    with contextlib.ExitStack() as stack:
        manifest = stack.enter_context(batch.Manifest(opts.manifest, psnr)) if opts.manifest else None
        execute, where = None, ""
        if opts.engine == "ray" and jobs:
            from . import ray_engine

            execute = stack.enter_context(ray_engine.connect(opts.ray_address, opts.cpus))
            workers, where = execute.cpus, "Ray"
        start = time.perf_counter()
        # shutil falls back to 80x24 where a terminal reports a size of 0 (tqdm would then draw nothing)
        columns, lines = shutil.get_terminal_size()
        with tqdm(total=len(jobs), unit="file", desc=prog, file=sys.stderr, leave=False, ncols=columns, nrows=lines,
                  disable=quiet or not sys.stderr.isatty()) as bar:
            for outcome in batch.run(jobs, work, workers, execute):
                summary.add(outcome)
                if manifest is not None:
                    manifest.add(outcome)
                if outcome.error is not None:
                    bar.write(printable(f"{prog}: error: {outcome.job.src}: {outcome.error}"), file=sys.stderr)
                elif not quiet:
                    for note in outcome.notes:
                        bar.write(printable(f"{prog}: note: {outcome.job.src}: {note}"), file=sys.stderr)
                bar.update()
        summary.seconds = time.perf_counter() - start
    if not quiet:
        skipped = f"; {len(problems)} input{'s' if len(problems) > 1 else ''} gave no file" if problems else ""
        click.echo(f"{prog}: {summary.line(workers, where)}{skipped}", err=True)
    if summary.failed or problems:
        sys.exit(1)


_JOBS_HELP = "Parallel workers: files in parallel with several inputs, tiles of the image with one."


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, type=str)
@click.option("-o", "--output", type=str, default=None,
              help="Output .tcz file, '-' for stdout, or a folder (ends with '/', or exists; required to be one "
                   "with several inputs). Default: each IMAGE with the suffix .tcz (stdout for stdin input).")
@click.option("-s", "--scale", type=click.Choice([str(s) for s in SCALES]), default=str(DEFAULT_SCALE),
              show_default=True, help="Pixels per latent element: larger is smaller and blurrier.")
@click.option("-p", "--planes", type=click.IntRange(1, 8), default=DEFAULT_PLANES, show_default=True,
              help="Bit-planes of the 8-bit latent kept: fewer is smaller.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help=_JOBS_HELP)
@click.option("--strip", is_flag=True, help="Drop the ICC profile and EXIF orientation instead of carrying them.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--downscale", type=click.Choice(["1", *map(str, DOWNSCALE_FACTORS)]), default="1", show_default=True,
              help="Code the image at 1/N of its width and height; tcdec --enhance srunet restores the size.")
@click.option("--refine", type=click.IntRange(0, MAX_REFINE_STEPS), default=0, show_default=True, metavar="STEPS",
              help=f"Search, by gradient descent through the decoder, for a latent that decodes closer to the "
                   f"image at fewer bits ({DEFAULT_REFINE_STEPS} is the tuned effort: seconds per megapixel "
                   f"instead of milliseconds). Files decode as any other.")
@click.option("-Q", "--quality", type=click.IntRange(0, 100), default=None, metavar="0..100",
              help="Code with a rate-distortion-optimised family at this quality; higher is larger and better. "
                   "-s/--planes/--downscale then do not apply.")
@click.option("--family", type=click.Choice(list(RD_FAMILIES)), default=RD_FAMILIES[0], show_default=True,
              help="With -Q: shallow (transform codec with a hyperprior) or pyramid (hierarchical latent grids, "
                   "experimental).")
@click.option("--effort", type=click.Choice(["fast", "refine", "overfit"]), default="fast", show_default=True,
              help="With -Q: fast (one network pass), refine (gradient steps on the latents: --refine STEPS, "
                   "default 100; seconds per image) or, pyramid only, overfit (latents and synthesis network "
                   "optimised for the image, --refine STEPS, default 300; minutes per image on a CPU; the file "
                   "carries the network). Every effort decodes with any tinycodec that reads the family.")
@click.option("--progressive", is_flag=True,
              help="Write entropy coder 3 (one segment per bit-plane) so that any prefix of the file decodes "
                   "(tcdec --partial) to the planes that arrived, like progressive JPEG. Default: coder 4 (coder 3 "
                   "at scale 4 with 3 planes or fewer), faster to decode; a cut coder-4 file decodes only "
                   "its whole tiles.")
@click.option("--psnr", is_flag=True, help="Batch mode: measure each file's PSNR (RGB, against the decoded output; "
              "one decode more per file) for the --manifest.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success (no progress bar, no summary).")
@click.version_option(__version__, "-V", "--version", prog_name="tcenc")
@_backend_options("tcenc")
@_user_errors("tcenc")
@_batch_options
def tcenc(images: tuple[str, ...], output: str | None, scale: str, planes: int, jobs: int, strip: bool,
          force: bool, downscale: str, refine: int, quality: int | None, family: str, effort: str, progressive: bool,
          psnr: bool, quiet: bool, run: dict, opts: _BatchOptions) -> None:
    """Encode IMAGES (any format Pillow reads; folders: the images in them; '-' for stdin) to .tcz files."""
    images = opts.inputs(images, "IMAGES")  # a usage error answers before the codec is imported
    ctx = click.get_current_context()
    if quality is not None:
        given = [f"--{name}" for name in ("scale", "planes", "downscale", "progressive")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise TinyCodecError(f"{', '.join(given)} set TinyCompress options; -Q/--quality selects the "
                                 f"{family} family")
        if effort == "overfit" and family != "pyramid":
            raise TinyCodecError("--effort overfit exists in the pyramid family only: add --family pyramid")
    elif effort != "fast" or ctx.get_parameter_source("family") == click.core.ParameterSource.COMMANDLINE:
        raise TinyCodecError("--effort and --family apply to the rate-distortion families: give -Q/--quality too")
    from . import batch
    from .codec import encode_planar, encode_rd
    from .files import read_source

    if _is_batch(images, opts):
        settings = batch.EncodeSettings(int(scale), planes, keep_metadata=not strip, force=force,
                                        downscale=int(downscale), refine=refine, run=run, quality=quality,
                                        effort=effort, progressive=progressive, family=family,
                                        resume=opts.engine == "ray", psnr=psnr)
        jobs_list, problems = opts.plan(images, output, batch.image_suffixes(), batch.TCZ_SUFFIX)
        _run_batch("tcenc", jobs_list, functools.partial(batch.encode_job, settings=settings), jobs, quiet, problems,
                   opts, psnr)
        return
    if psnr:
        raise TinyCodecError("--psnr measures files for a --manifest (batch mode)")
    image = images[0]
    source = read_source(io.BytesIO(sys.stdin.buffer.read()) if image == "-" else image, keep_metadata=not strip)
    output = _single_output(image, output, batch.TCZ_SUFFIX)
    _check_output(output, force, image)
    with _notes("tcenc", quiet):
        start = time.perf_counter()
        if quality is not None:
            data = encode_rd(source.planar, quality, effort, refine, source.metadata, family)
        else:
            data = encode_planar(source.planar, int(scale), planes, metadata=source.metadata, workers=jobs,
                                 downscale=int(downscale), refine=refine, progressive=progressive, **run)
        elapsed = time.perf_counter() - start
    _write_output(output, data, force)
    if not quiet:
        bpp = 8 * len(data) / (source.width * source.height)
        if quality is not None:
            how = f"{family}, quality {quality}, effort {effort}"
            if effort != "fast":
                how += f" ({refine or RD_STEPS[effort]} steps)"
        else:
            how = f"scale {scale}, {planes} planes"
            how += f", downscale {downscale}" if downscale != "1" else ""
            how += f", refined ({refine} steps)" if refine else ""
            how += ", progressive" if progressive else ""
        _say(f"{image} -> {output}: {source.width}x{source.height} {source.mode}, {how}, "
             f"{len(data)} bytes, {bpp:.4f} bpp, {elapsed * 1000:.0f} ms")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, type=str)
@click.option("-o", "--output", type=str, default=None,
              help="Output image (the format follows the extension), '-' for PNG on stdout, or a folder (ends "
                   "with '/', or exists; required to be one with several inputs). Default: each FILE with the "
                   "suffix of --format.")
@click.option("--format", "fmt", type=str, default="png", show_default=True,
              help="Output format (an extension: png, webp, bmp, tiff, ...) when -o names no file. Every format "
                   "with a lossless mode is written losslessly (WebP too); JPEG at quality 95, 4:4:4; AVIF at "
                   "quality 100.")
@click.option("--enhance", type=str, default=NONE, show_default=True,
              help=f"Learned filter after decoding: {ENHANCE_HELP}. srunet and tinypssr-x2/x4 enlarge the image "
                   "(or restore the size of a --downscale file).")
@click.option("--partial", is_flag=True, help="Decode a truncated file from what arrived whole: its bit-plane "
              "segments (TinyCompress files written with tcenc --progressive; a default file only its whole "
              "tiles) or its coarse-to-fine latent grids (pyramid family).")
@click.option("--max-pixels", type=click.IntRange(min=0), default=DEFAULT_LIMITS.max_pixels, show_default=True,
              help="Refuse images with more pixels than this (0: no limit).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help=_JOBS_HELP)
@click.option("--strip", is_flag=True, help="Do not write the ICC profile and EXIF orientation into the output.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success (no progress bar, no summary).")
@click.version_option(__version__, "-V", "--version", prog_name="tcdec")
@_backend_options("tcdec")
@_user_errors("tcdec")
@_batch_options
def tcdec(files: tuple[str, ...], output: str | None, fmt: str, enhance: str, partial: bool, max_pixels: int,
          jobs: int, strip: bool, force: bool, quiet: bool, run: dict, opts: _BatchOptions) -> None:
    """Decode .tcz FILES (folders: the .tcz files in them; '-' for stdin) to images."""
    files = opts.inputs(files, "FILES")  # a usage error answers before the codec is imported
    from . import batch
    from .codec import decode_with_info
    from .enhance import parse_filter
    from .files import format_for_suffix, read_tcz, save_image, save_image_to

    parse_filter(enhance)  # an unknown name fails before any reading or decoding
    suffix = "." + fmt.lower().lstrip(".")
    format_for_suffix(suffix)  # an unknown format fails here, before any work
    limits = dataclasses.replace(DEFAULT_LIMITS, max_pixels=max_pixels or None)
    if _is_batch(files, opts):
        settings = batch.DecodeSettings(partial=partial, keep_metadata=not strip, force=force, limits=limits,
                                        enhance=enhance, run=run, resume=opts.engine == "ray")
        jobs_list, problems = opts.plan(files, output, {batch.TCZ_SUFFIX}, suffix)
        _run_batch("tcdec", jobs_list, functools.partial(batch.decode_job, settings=settings), jobs, quiet, problems,
                   opts)
        return
    file = files[0]
    data = read_tcz(sys.stdin.buffer if file == "-" else file, limits=limits)
    output = _single_output(file, output, suffix)
    _check_output(output, force, file)
    with _notes("tcdec", quiet):
        start = time.perf_counter()
        image, info = decode_with_info(data, partial=partial, limits=limits, workers=jobs,
                                       enhance=enhance, **run)
        elapsed = time.perf_counter() - start
    del data
    if output == "-":
        buf = io.BytesIO()
        save_image_to(buf, image, "PNG", keep_metadata=not strip)
        _write_output("-", buf.getvalue(), force)
    else:
        save_image(image, output, keep_metadata=not strip, overwrite=force)
    if not quiet:
        if info.quality is not None:
            what = f"{info.family}, quality {info.quality}"
            what += f", {info.decoded_part}" if partial else ""
        else:
            planes = f"{info.planes} planes"
            if partial:
                planes = info.decoded_part
                if info.tiles_refined:
                    planes += f" (plane {info.planes_decoded + 1} in {info.tiles_refined} of {info.tiles} tiles)"
            what = f"scale {info.scale}, {planes}"
        extra = f", {info.enhance}" if info.enhance != NONE else ""
        _say(f"{file} -> {output}: {info.width}x{info.height} {info.mode}, {what}{extra}, "
             f"{elapsed * 1000:.0f} ms")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="tinycodec")
def main() -> None:
    """tinycodec: a learned image codec small enough for edge devices (see also tcenc, tcdec)."""


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@main.command()
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Image to use instead of the bundled photograph.")
@click.option("-o", "--outdir", type=click.Path(file_okay=False), default=None,
              help="Also write the .tcz files and decoded PNGs here.")
@_user_errors("tinycodec demo")
def demo(image: str | None, outdir: str | None) -> None:
    """Round-trip a photograph with each family and print bpp and PSNR, with JPEG's PSNR at the same bpp."""
    import numpy as np

    from .codec import decode_with_info, encode
    from .files import read_image, save_image, write_atomic

    if image is None:
        from matplotlib import cbook  # matplotlib ships this photograph (Grace Hopper, 512x600)

        image = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    im = read_image(image).convert("RGB")
    ref = np.asarray(im)
    jpeg = _jpeg_curve(im, ref)
    click.echo(f"{Path(image).name}: {im.width}x{im.height}; JPEG: Pillow, 4:2:0, the same bpp (interpolated)")
    click.echo(f"{'setting':>14} {'bytes':>8} {'bpp':>7} {'PSNR dB':>8} {'JPEG dB':>8} {'enc ms':>7} {'dec ms':>7}")
    settings = [("tinycompress", {"scale": s, "planes": p}, f"s{s} p{p}") for s, p in
                [(4, 8), (16, 8), (16, 6), (64, 8), (256, 8)]]
    settings += [(family, {"quality": q, "family": family}, f"{family} Q{q}") for family in RD_FAMILIES
                 for q in (10, 40, 70, 95)]
    for _, kwargs, label in settings:
        t0 = time.perf_counter()
        try:
            data = encode(im, **kwargs)
        except TinyCodecError as exc:  # e.g. no weights of that family in this install
            click.echo(f"{label:>14} skipped: {exc}")
            continue
        t1 = time.perf_counter()
        out, _ = decode_with_info(data)
        t2 = time.perf_counter()
        bpp = 8 * len(data) / (im.width * im.height)
        jpeg_db = float(np.interp(bpp, *jpeg)) if jpeg[0][0] <= bpp <= jpeg[0][-1] else float("nan")
        click.echo(f"{label:>14} {len(data):>8} {bpp:>7.3f} {_psnr(ref, np.asarray(out)):>8.2f} {jpeg_db:>8.2f} "
                   f"{(t1 - t0) * 1000:>7.0f} {(t2 - t1) * 1000:>7.0f}")
        if outdir:
            Path(outdir).mkdir(parents=True, exist_ok=True)
            stem = Path(outdir) / f"demo-{label.replace(' ', '-')}"
            write_atomic(stem.with_suffix(".tcz"), data)
            save_image(out, stem.with_suffix(".png"))


def _jpeg_curve(im, ref: np.ndarray) -> tuple[list[float], list[float]]:
    """(bpp, PSNR) of Pillow JPEG at qualities 5..100 on this image, sorted by bpp."""
    import numpy as np

    from .files import read_image

    points = []
    for q in [*range(5, 100, 5), 98, 100]:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        out = np.asarray(read_image(io.BytesIO(buf.getvalue())).convert("RGB"))
        points.append((8 * buf.tell() / (im.width * im.height), _psnr(ref, out)))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


@main.command("enhance")
@click.argument("image", type=str)
@click.option("-o", "--output", type=str, required=True, help="Output image; the format follows the extension.")
@click.option("--filter", "filter_name", type=str, required=True, help=f"One of {ENHANCE_HELP}.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@_backend_options("tinycodec enhance")
@_user_errors("tinycodec enhance")
def enhance_command(image: str, output: str, filter_name: str, force: bool, quiet: bool, run: dict) -> None:
    """Run a learned filter on any IMAGE: upscale a photograph (tinypssr-x2/x4, srunet) or clean one (unet)."""
    from .enhance import enhance, parse_filter
    from .files import read_image, save_image

    if parse_filter(filter_name) is None:
        raise TinyCodecError("--filter none does nothing: choose a filter")
    if run.pop("precision") != "fp32":
        raise TinyCodecError("the filter's precision is part of its name: --filter srunet-int8")
    im = read_image(image)
    _check_output(output, force, image)
    with _notes("tinycodec enhance", quiet):
        start = time.perf_counter()
        out = enhance(im, filter_name, **run)
        elapsed = time.perf_counter() - start
    save_image(out, output, overwrite=force)
    if not quiet:
        _say(f"{image} -> {output}: {im.width}x{im.height} -> {out.width}x{out.height}, {filter_name}, "
                   f"{elapsed * 1000:.0f} ms")


@main.command("rd")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the JSON per codec, the per-image CSV, the plots and bd_table.md (default: a new "
                   "folder rd-DATASET-DATE-TIME here). An existing folder with results is not overwritten without -f.")
@click.option("--codecs", type=str, default=None,
              help="Comma-separated: jpeg, webp, avif, jxl, tinycodec, tinycodec-refined, shallow, shallow-refine, "
                   "pyramid, pyramid-refine, pyramid-overfit. Default: jpeg, webp, avif, jxl, tinycodec, shallow, "
                   "pyramid, leaving out (and naming) those that cannot run here.")
@click.option("-f", "--force", is_flag=True, help="Overwrite the results in an existing --out folder.")
@click.option("--quick", is_flag=True, help="A small sweep: 4 settings per codec (tinycodec: 8 planes at each scale). "
              "Its BD-rates span fewer qualities, so they are not comparable with a full sweep's.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (each runs single-threaded; timings are per core).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images (by name).")
@_user_errors("tinycodec rd")
def rd_command(data_dir: str, out: str | None, codecs: str | None, force: bool, quick: bool, jobs: int,
               limit: int | None) -> None:
    """Rate-distortion comparison on the images of DATA_DIR: tinycodec against JPEG, WebP, AVIF and JPEG XL.

    Writes rd_<codec>.json (CompressAI's results format), rd_per_image.csv, rd_psnr.png, rd_psnr_y.png,
    rd_msssim.png and bd_table.md (Bjontegaard deltas, PCHIP interpolation) to --out.
    """
    try:
        from . import rd  # imported here: tcenc and tcdec need none of it
    except ImportError as exc:
        raise TinyCodecError(f"tinycodec rd needs the evaluation extra ({exc.name} is missing): "
                             "pip install 'tinycodec[compare]' (from a checkout: pip install '.[compare]')") from None

    if out is None:
        out = f"rd-{Path(data_dir).resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}"
    elif not force and Path(out).is_dir() and any(Path(out).glob("rd_*.json")):
        raise TinyCodecError(f"{out} already holds rate-distortion results (use -f to overwrite, or another --out)")
    report = rd.run_rd(data_dir, out, codecs=codecs, quick=quick, jobs=jobs, limit=limit)
    if quick:
        click.echo("note: --quick sweeps 4 settings per codec; its BD-rates cover fewer qualities and are not "
                   "comparable with a full sweep's", err=True)
    click.echo(report.table)
    click.echo(f"{report.measurements} measurements on {report.images} images; wrote "
               + ", ".join(str(p) for p in report.files), err=True)
