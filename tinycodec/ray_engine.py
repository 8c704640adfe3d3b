"""Batch mode on Ray (``tcenc``/``tcdec --engine ray``): each file is a Ray task, on a local cluster or a remote one.

The tasks run the job functions of :mod:`tinycodec.batch`, as the local pool's
workers do (PyTorch on one thread each, so the files are byte for byte the
same), and write their outputs themselves, atomically. On a cluster, inputs and
outputs must therefore be on a file system that every node mounts at the same
path; only each file's :class:`~tinycodec.batch.Outcome` (a few hundred bytes)
travels back to the driver, which keeps the progress bar and the manifest.

A worker that dies (killed, out of memory, its node lost) has its file retried
on another worker up to ``MAX_RETRIES`` times; a file that still fails is
reported by name and the others complete. Ray is an optional extra:
``pip install 'tinycodec[ray]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from . import parallel
from .batch import Job, Outcome
from .errors import TinyCodecError
from .options import RAY_INSTALL as INSTALL

MAX_RETRIES = 3
# Tasks submitted ahead of the free CPUs: no worker waits for the driver, and a list of
# millions of paths never goes up to the cluster at once.
IN_FLIGHT_PER_CPU = 2
WAIT_SECONDS = 0.5  # ray.wait returns this often, so that Ctrl-C and SIGTERM reach the driver
# Ray's own INFO lines (cluster started, connected) would break "quiet in pipelines"
_QUIET = {"logging_level": logging.ERROR, "log_to_driver": False}


def import_ray():
    """The ray module, or a TinyCodecError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise TinyCodecError(f"--engine ray needs Ray: {INSTALL} (from a checkout: pip install '.[ray]')") from None
    return ray


def _run_job(work: Callable[[Job], Outcome], job: Job) -> Outcome:
    parallel.single_threaded()  # as the local pool's workers: one core each, and the same bytes
    return work(job)


class RayEngine:
    """Runs batch jobs as Ray tasks on the cluster this process is connected to (a batch.Executor)."""

    def __init__(self, ray) -> None:
        self._ray = ray
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def __call__(self, jobs: Sequence[Job], work: Callable[[Job], Outcome]) -> Iterator[Outcome]:
        """Outcomes in completion order, each with its job as given; at most IN_FLIGHT_PER_CPU tasks per CPU
        submitted at a time. Workers get absolute paths: their working folder is not the driver's."""
        ray = self._ray
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_run_job)
        work_ref = ray.put(work)  # the settings go up once, not with every file
        queue = iter(jobs)
        pending: dict = {}
        # Stopped early (Ctrl-C), the tasks in flight are not cancelled (ray.cancel racing with their replies
        # can abort the driver): they end with the cluster or the job, and leave hidden temporaries at most.
        while True:
            for job in itertools.islice(queue, IN_FLIGHT_PER_CPU * self.cpus - len(pending)):
                pending[task.remote(work_ref, Job(job.src.absolute(), job.dst.absolute()))] = job
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
            for ref in done:
                job = pending.pop(ref)
                try:
                    yield dataclasses.replace(ray.get(ref), job=job)
                except ray.exceptions.RayTaskError as exc:  # raised in the task: an import failure, or a bug
                    cause = exc.cause if exc.cause is not None else exc
                    if "failed to import on the worker" in str(cause):
                        raise TinyCodecError("the Ray workers cannot import this tinycodec "
                                             f"({_last_line(cause)}): install it, the same version, on every "
                                             f"node ({INSTALL})") from None
                    yield Outcome(job, f"worker failed: {_last_line(cause) or type(cause).__name__}")
                except ray.exceptions.RayError as exc:  # the worker died on every try: this file fails
                    yield Outcome(job, f"worker died ({type(exc).__name__}), {MAX_RETRIES} retries: "
                                       f"{_first_line(exc)}")


def _lines(exc: BaseException) -> list[str]:
    return [line.strip()[:200] for line in str(exc).splitlines() if line.strip()]


def _first_line(exc: BaseException) -> str:
    return (_lines(exc) or [""])[0]


def _last_line(exc: BaseException) -> str:
    return (_lines(exc) or [""])[-1]


@contextlib.contextmanager
def connect(address: str | None = None, cpus: int | None = None) -> Iterator[RayEngine]:
    """A :class:`RayEngine` on the cluster at ``address`` (else $RAY_ADDRESS), else on a new local
    cluster of ``cpus`` CPUs (None: all of this machine's), shut down on the way out.

    A process already connected to Ray (``ray.init`` called before) keeps its connection.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        try:
            if address in (None, "local"):  # "local": a new cluster, even where `ray start` left one running
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, **_QUIET)
            else:
                ray.init(address=address, **_QUIET)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            if address in (None, "local"):
                raise TinyCodecError(f"cannot start a local Ray cluster: {_first_line(exc)}") from None
            raise TinyCodecError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)} (is it running, and "
                                 "reachable from here? A cluster with Ray's token authentication also needs "
                                 "RAY_AUTH_MODE=token here)") from None
        started = True
    try:
        yield RayEngine(ray)
    finally:
        if started:
            ray.shutdown()
