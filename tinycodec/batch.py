"""Batch mode of tcenc and tcdec: many files, optionally on worker processes, one outcome per file.

A failing file never stops the others: each job ends in an :class:`Outcome`
that carries either its figures or its one-line error, and the caller
reports the failures by name and exits non-zero. Job functions are
module-level so that worker processes can run them, on the local pool
(:func:`run`) or as Ray tasks (:mod:`tinycodec.ray_engine`). With
``resume``, a job whose output is already there and valid skips the work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import parallel
from .codec import DEFAULT_PLANES, DEFAULT_SCALE, decode, decode_with_info, encode_planar, encode_rd
from .errors import TinyCodecError, describe_os_error
from .files import SourceImage, format_for_suffix, output_target, read_source, read_tcz, save_image, write_atomic
from .image import to_planar
from .limits import DEFAULT_LIMITS, Limits

TCZ_SUFFIX = ".tcz"


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


@dataclass(frozen=True)
class Outcome:
    """How one job ended: ``error`` is None on success."""

    job: Job
    error: str | None = None
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    tcz_bytes: int = 0  # the coded size, for bits per pixel
    notes: tuple[str, ...] = ()  # warnings for the user (16-bit input reduced, partial alpha, ...)
    seconds: float = 0.0  # this file's own time, on the process that ran it
    skipped: bool = False  # resume: a valid output was already there, and nothing was coded
    psnr: float | None = None  # dB, the source against the decoded output (EncodeSettings.psnr)

    @property
    def bpp(self) -> float:
        return 8 * self.tcz_bytes / self.pixels if self.pixels else 0.0

    @property
    def status(self) -> str:
        return "failed" if self.error is not None else "skipped" if self.skipped else "done"


@dataclass(frozen=True)
class EncodeSettings:
    scale: int = DEFAULT_SCALE
    planes: int = DEFAULT_PLANES
    keep_metadata: bool = True
    force: bool = False
    downscale: int = 1
    refine: int = 0  # latent refinement steps (tinycodec.refine)
    run: dict[str, str] = field(default_factory=dict)  # backend, device, precision
    quality: int | None = None  # set: a rate-distortion family at this quality (scale, planes, downscale unused)
    family: str | None = None  # which (None: the default, families.RD_FAMILIES[0])
    effort: str = "fast"
    progressive: bool = False  # entropy coder 3: any prefix of the file decodes (codec.encode)
    resume: bool = False  # skip files whose output exists and is valid (check_output), unless force
    psnr: bool = False  # measure each file's PSNR (one more decode per file)


@dataclass(frozen=True)
class DecodeSettings:
    partial: bool = False
    keep_metadata: bool = True
    force: bool = False
    limits: Limits = DEFAULT_LIMITS
    enhance: str = "none"
    run: dict[str, str] = field(default_factory=dict)  # backend, device, precision
    resume: bool = False  # skip files whose output exists and is valid (check_output), unless force


@dataclass
class Summary:
    files: int = 0
    failed: list[Outcome] = field(default_factory=list)
    skipped: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    bpp_sum: float = 0.0
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.files += 1
        if outcome.error is not None:
            self.failed.append(outcome)
            return
        self.skipped += outcome.skipped
        self.in_bytes += outcome.in_bytes
        self.out_bytes += outcome.out_bytes
        self.bpp_sum += outcome.bpp

    @property
    def succeeded(self) -> int:
        return self.files - len(self.failed)

    def line(self, workers: int, engine: str = "") -> str:
        """One line: files, total input and output bytes, mean bpp over the files, elapsed time.

        Files skipped by a resumed run count as succeeded, with the figures of their outputs.
        """
        mean = self.bpp_sum / self.succeeded if self.succeeded else 0.0
        failed = f", {len(self.failed)} failed" if self.failed else ""
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"{self.succeeded} of {self.files} files{failed}{skipped}, {_size(self.in_bytes)} in, "
                f"{_size(self.out_bytes)} out, mean {mean:.4f} bpp, {self.seconds:.1f} s "
                f"({workers} worker{'s' if workers > 1 else ''}{', ' + engine if engine else ''})")


class Manifest:
    """One JSON line per file, written as its outcome arrives and flushed at once, so that a killed
    run keeps the lines of the files it finished: input, output, status (done, skipped or failed),
    bytes (of the output), bpp, psnr (with ``psnr``), seconds (the file's own) and error.

    Each run rewrites the file; a resumed run lists the files it skipped with their outputs' figures.
    """

    def __init__(self, path: str | os.PathLike, psnr: bool = False) -> None:
        self._file = open(path, "w", encoding="utf-8")
        self._psnr = psnr

    def add(self, outcome: Outcome) -> None:
        ok = outcome.error is None
        record = {"input": str(outcome.job.src), "output": str(outcome.job.dst), "status": outcome.status,
                  "bytes": outcome.out_bytes if ok else None, "bpp": round(outcome.bpp, 6) if ok else None}
        if self._psnr:
            record["psnr"] = None if outcome.psnr is None else round(outcome.psnr, 4)
        record |= {"seconds": round(outcome.seconds, 4), "error": outcome.error}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def image_suffixes() -> set[str]:
    """Extensions of the formats Pillow can read, .tcz excluded (what tcenc takes from a folder)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN} - {TCZ_SUFFIX}


def expand_inputs(inputs: Sequence[str], suffixes: set[str],
                  recursive: bool = False) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Files named on the command line as they are; folders replaced by their files with ``suffixes``
    (with ``recursive``, those of their subfolders too).

    Returns (sources, problems). A source is (path, subfolder): where a recursive search found the
    file, relative to the folder named, which plan_jobs keeps under ``-o`` (``.`` for the rest). A
    folder that holds no such file, or cannot be listed, is a problem (name, message) that the batch
    reports by name while the other inputs still run. Hidden files and folders (a leading dot, such as
    our own ``.name.part`` temporaries) are skipped. ``file://`` URIs name files; other URIs are problems.
    """
    sources: list[tuple[Path, Path]] = []
    problems: list[tuple[str, str]] = []
    what = " or ".join(sorted(suffixes)) if len(suffixes) < 4 else "image"
    for name in inputs:
        try:
            path = _local_path(name)
        except TinyCodecError as exc:
            problems.append((name, str(exc)))
            continue
        if not path.is_dir():
            sources.append((path, Path()))
            continue
        errors = len(problems)
        found = _folder_files(path, suffixes, recursive, problems)
        if not found and len(problems) == errors:
            problems.append((name, f"no {what} files in this folder"))
        sources += [(p, p.parent.relative_to(path)) for p in found]
    return sources, problems


def _local_path(name: str) -> Path:
    """The path a command-line input names: itself, or the path of a ``file://`` URI."""
    parts = urllib.parse.urlsplit(name)
    if "://" not in name or len(parts.scheme) < 2:  # a plain path (or a Windows drive letter)
        return Path(name)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(urllib.parse.unquote(parts.path))
    raise TinyCodecError(f"{parts.scheme}:// is not read here: inputs and outputs are files (mount the store "
                         "where every worker sees it)")


def _folder_files(folder: Path, suffixes: set[str], recursive: bool, problems: list[tuple[str, str]]) -> list[Path]:
    """The files with ``suffixes`` in ``folder`` (and its subfolders), sorted; hidden ones left out.
    A folder that cannot be listed is added to ``problems``."""
    found = []

    def unreadable(exc: OSError) -> None:
        problems.append((str(exc.filename or folder), describe_os_error(exc)))

    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [Path(root, n) for n in sorted(names)
                  if Path(n).suffix.lower() in suffixes and not n.startswith(".") and Path(root, n).is_file()]
    return found


def read_list(path: str) -> list[str]:
    """The inputs listed in a file (``-``: stdin), one path, folder or file:// URI per line; blank lines skipped."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except FileNotFoundError:
        raise TinyCodecError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise TinyCodecError(f"{path}: not a list of paths (UTF-8 text, one per line)") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def is_directory_target(output: str) -> bool:
    """``-o`` names a folder: it ends with a slash or is an existing folder."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def plan_jobs(sources: Sequence[tuple[Path, Path]], output: str | None, suffix: str) -> list[Job]:
    """Output path of every (source, subfolder) of expand_inputs: beside the source, or in the folder
    ``output`` (in its subfolder there), named stem + ``suffix``.

    The folders are created if missing. Several sources need a folder (or no ``-o``).
    """
    if output is None:
        return [Job(src, src.parent / (src.stem + suffix)) for src, _ in sources]
    outdir = Path(output)
    if outdir.exists() and not outdir.is_dir():
        raise TinyCodecError(f"-o {output} is not a folder: several inputs, or a folder of them, need a folder")
    for folder in sorted({outdir / sub for _, sub in sources} | {outdir}):
        folder.mkdir(parents=True, exist_ok=True)
    return [Job(src, outdir / sub / (src.stem + suffix)) for src, sub in sources]


Executor = Callable[[Sequence[Job], Callable[[Job], Outcome]], Iterator[Outcome]]


def run(jobs: Sequence[Job], work: Callable[[Job], Outcome], workers: int = 1,
        execute: Executor | None = None) -> Iterator[Outcome]:
    """Run every job, yielding outcomes as they complete (in completion order with workers).

    ``work`` must be picklable (a module-level function or a partial of one)
    when ``workers`` > 1 or with ``execute``, which runs the jobs elsewhere
    instead of the local pool (:class:`tinycodec.ray_engine.RayEngine`). Two
    jobs writing the same output: the second fails.
    """
    seen: dict[Path, Path] = {}
    runnable = []
    for job in jobs:
        key = job.dst.resolve()
        if key in seen:
            yield Outcome(job, f"would overwrite {job.dst}, the output of {seen[key]}")
        else:
            seen[key] = job.src
            runnable.append(job)
    if execute is not None:
        yield from execute(runnable, work)
        return
    if workers == 1 or len(runnable) < 2:
        for job in runnable:
            yield work(job)
        return
    pool = parallel.process_pool(min(workers, len(runnable)))
    try:
        pending = {pool.submit(work, job): job for job in runnable}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    yield future.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker fails its file, not the batch
                    yield Outcome(job, f"worker failed: {exc or type(exc).__name__}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_target(job: Job, force: bool, resume: bool = False) -> bool:
    """Refuse what must not be written; True when ``resume`` finds a file already at the output."""
    if job.dst.resolve() == job.src.resolve():
        raise TinyCodecError("output and input are the same file")
    if resume and not force and job.dst.is_file():
        return True
    output_target(job.dst, force)  # early; write_atomic checks again when it puts the file in place
    return False


def check_output(path: Path) -> tuple[int, int]:
    """The size of the complete output at ``path``, or a TinyCodecError saying why it is not one.

    A .tcz file is verified whole (header and every checksum, without decoding); an image must
    open as the format of its suffix. Outputs are written atomically, so a file that fails here
    was not written by a finished job: it is reported, not replaced (-f replaces it).
    """
    try:
        with Image.open(path) as im:
            size = im.size
            if path.suffix.lower() == TCZ_SUFFIX:
                im.verify()
            elif im.format != format_for_suffix(path.suffix):
                raise TinyCodecError(f"a {im.format} file, not {path.suffix}")
    except (OSError, SyntaxError, ValueError, TinyCodecError, Image.DecompressionBombError) as exc:
        raise TinyCodecError(f"{path} exists but is not a valid output ({exc}): use -f to replace it") from None
    return size


def _resumed(job: Job, tcz: Path) -> Outcome:
    """The outcome of a job whose output is already there: its figures, read from the files."""
    width, height = check_output(job.dst)
    if tcz != job.dst:  # decoding: the coded size is the source's
        with Image.open(tcz) as im:
            width, height = im.size
    in_bytes = job.src.stat().st_size if job.src.is_file() else 0
    return Outcome(job, None, in_bytes, job.dst.stat().st_size, width * height, tcz.stat().st_size, skipped=True)


def _failure(job: Job, exc: BaseException) -> Outcome:
    return Outcome(job, describe_os_error(exc) if isinstance(exc, OSError) else str(exc))


def _notes(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    return tuple(str(w.message) for w in caught if issubclass(w.category, UserWarning))


def _psnr(data: bytes, source: SourceImage, run: dict[str, str]) -> float | None:
    """PSNR of the decoded ``data`` against the source's RGB; None where the sizes differ (--downscale)."""
    from .rd import psnr  # numpy only; rd's codecs are imported when used

    decoded = to_planar(decode(data, **run)).rgb
    return psnr(source.planar.rgb, decoded) if decoded.shape == source.planar.rgb.shape else None


def encode_job(job: Job, settings: EncodeSettings) -> Outcome:
    """Encode one file; never raises for a problem with that file."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if _check_target(job, settings.force, settings.resume):
                outcome = _resumed(job, job.dst)
                if settings.psnr:
                    source = read_source(job.src, keep_metadata=settings.keep_metadata)
                    outcome = dataclasses.replace(outcome, psnr=_psnr(job.dst.read_bytes(), source, settings.run))
            else:
                source = read_source(job.src, keep_metadata=settings.keep_metadata)
                if settings.quality is not None:
                    data = encode_rd(source.planar, settings.quality, settings.effort, settings.refine,
                                     source.metadata, settings.family)
                else:
                    data = encode_planar(source.planar, settings.scale, settings.planes, metadata=source.metadata,
                                         downscale=settings.downscale, refine=settings.refine,
                                         progressive=settings.progressive, **settings.run)
                write_atomic(job.dst, data, overwrite=settings.force)
                pixels = source.width * source.height
                outcome = Outcome(job, None, job.src.stat().st_size, len(data), pixels, len(data), _notes(caught),
                                  psnr=_psnr(data, source, settings.run) if settings.psnr else None)
        except (TinyCodecError, OSError, MemoryError) as exc:
            outcome = _failure(job, exc)
    return dataclasses.replace(outcome, seconds=time.perf_counter() - start)


def decode_job(job: Job, settings: DecodeSettings) -> Outcome:
    """Decode one file to the format of its output suffix; never raises for a problem with that file."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if _check_target(job, settings.force, settings.resume):
                outcome = _resumed(job, job.src)
            else:
                data = read_tcz(job.src, limits=settings.limits)
                image, info = decode_with_info(data, partial=settings.partial, limits=settings.limits,
                                               enhance=settings.enhance, **settings.run)
                save_image(image, job.dst, keep_metadata=settings.keep_metadata, overwrite=settings.force)
                notes = _notes(caught)
                if not info.complete:
                    notes += (f"partial: {info.decoded_part}",)
                outcome = Outcome(job, None, len(data), job.dst.stat().st_size, info.width * info.height, len(data),
                                  notes)
        except (TinyCodecError, OSError, MemoryError) as exc:
            outcome = _failure(job, exc)
    return dataclasses.replace(outcome, seconds=time.perf_counter() - start)
