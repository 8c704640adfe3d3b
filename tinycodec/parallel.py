"""Worker processes: tiles of one image (``workers=N``) and files of a batch (``-j N``).

Processes rather than threads: the entropy coder is a numpy loop over small
arrays that holds the GIL most of the time, so threads do not run it in
parallel. Workers are *spawned* (not forked: forking a process that has
started PyTorch's thread pool can deadlock) and each runs PyTorch on one
thread, so N workers use N cores. A spawned worker imports tinycodec and
PyTorch first (about 3 s and 220 MB each), which is why a pool is only
started when there are at least two work items.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


PARENT_POLL_SECONDS = 0.5


def single_threaded() -> None:
    """Run PyTorch on one thread in this worker (a pool's, or a Ray task's): N workers use N cores."""
    import torch

    torch.set_num_threads(1)


def _single_threaded_worker(parent: int | None = None) -> None:
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), name="tinycodec-parent-watch", daemon=True).start()
    single_threaded()


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone (a SIGKILL gives the pool no chance to stop it):
    the parent's death re-parents the worker, so ``getppid`` changes."""
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each running PyTorch on one thread.

    The guard every pool goes through: its workers exit within PARENT_POLL_SECONDS of their
    parent's death, and the multiprocessing resource tracker, whose last clients they are, with them.
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_single_threaded_worker, initargs=(os.getpid(),))


def map_in_order(fn: Callable[..., T], arg_tuples: Sequence[tuple[Any, ...]], workers: int = 1) -> list[T]:
    """``[fn(*args) for args in arg_tuples]``, on ``workers`` processes when there is more than one item.

    ``fn`` must be a module-level function (it is pickled by name). An
    exception raised by ``fn`` is raised here, as in the serial loop.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if workers == 1 or len(arg_tuples) < 2:
        return [fn(*args) for args in arg_tuples]
    n = min(workers, len(arg_tuples))
    with process_pool(n) as pool:
        return list(pool.map(_apply, [fn] * len(arg_tuples), arg_tuples, chunksize=_chunksize(len(arg_tuples), n)))


def _apply(fn: Callable[..., T], args: Iterable[Any]) -> T:
    return fn(*args)


def _chunksize(items: int, workers: int) -> int:
    return max(1, items // (4 * workers))  # a few chunks per worker: balance without per-item overhead

