"""Inference backends: interchangeable runners of the same networks.

One interface, :class:`Runner` (``run(x)``: float32 (N, C, H, W) in, float32
out), and :func:`get_runner`, which looks a runner up by network, backend,
device and precision:

| backend    | device | precisions         | needs                                      |
|------------|--------|--------------------|--------------------------------------------|
| torch      | cpu    | fp32               | (always there)                             |
| torch      | cuda   | fp32, fp16         | a CUDA build of PyTorch and a GPU          |
| onnx       | cpu    | fp32, int8         | onnx + onnxruntime (installed with tinycodec) |
| tensorrt   | cuda   | fp32, fp16, int8   | tensorrt 10 and a CUDA build of PyTorch    |
| numpy      | cpu    | fp32               | (always there; the codec's networks only)  |

``auto`` takes the first available backend of :data:`AUTO_ORDER` for the
device and precision (orders measured by tools/bench_backends.py, see
docs/results/); asked for int8 on the CPU, it runs the networks that int8 makes
slower there in fp32 (:data:`AUTO_FP32_INSTEAD_OF_INT8_ON_CPU`), and the codec's networks in numpy
where PyTorch is not loaded (:data:`AUTO_TORCH_ON_CPU`). Asking for a backend, device or precision that is not there is
a :class:`BackendError`, never a silent fallback. With logging at INFO
(``-v`` on the command lines) every choice is reported once.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .errors import TinyCodecError
from .options import BACKENDS, DEVICES, PRECISIONS

if TYPE_CHECKING:
    import torch

    from .networks import Network

log = logging.getLogger("tinycodec")

# What each backend can run, per device.
SUPPORTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "cpu"): ("fp32",),
    ("torch", "cuda"): ("fp32", "fp16"),
    ("onnx", "cpu"): ("fp32", "int8"),
    ("tensorrt", "cuda"): ("fp32", "fp16", "int8"),
    ("numpy", "cpu"): ("fp32",),
}
CODEC_ONLY = ("numpy",)  # backends that run the codec's networks but not the enhancement filters

# ``auto``: fastest first. On this project's 2-core x86 CPU, ONNX Runtime ran every network faster
# than PyTorch in fp32 except the codec's tiny networks, where the two are close (see
# docs/results/bench_backends_cpu.json); on a GPU, TensorRT engines are the usual winner (unmeasured here).
AUTO_ORDER: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "fp32"): ("onnx", "torch"),
    ("cpu", "int8"): ("onnx",),
    ("cuda", "fp32"): ("tensorrt", "torch"),
    ("cuda", "fp16"): ("tensorrt", "torch"),
    ("cuda", "int8"): ("tensorrt",),
}


# Networks whose int8 graph ran *slower* than fp32 on ONNX Runtime on this project's x86 CPU (and lost
# quality): the codec's tiny iterated blocks (PReLU stays float, so every block pays quantise/dequantise
# steps) and TinyPSSR (one-channel convolutions too narrow for the int8 kernels); see
# docs/results/bench_backends_cpu.json (an AVX2 CPU without VNNI, onnxruntime 1.32). ``auto`` asked for
# int8 on the CPU runs them in fp32 (faster, and exact); an explicit backend (``--backend onnx
# --precision int8``) runs int8 as asked. UNet and SRUNet run int8 (1.8-2.0x their fp32 graphs there,
# within 0.04 dB, since their bodies run at half the output resolution; the full-resolution v3 UNet
# had reached only 1.15-1.23x). On an AVX-512 VNNI CPU (docs/results/bench_backends_cpu_avx512vnni.json)
# UNet and SRUNet gain more (2.2-2.6x) and the networks listed here are still slower in int8 (codec
# networks 0.76-0.98x and one row at 1.07x, TinyPSSR 0.70-0.80x) and worse.
AUTO_FP32_INSTEAD_OF_INT8_ON_CPU = ("tinycompress-", "tinypssr-")

# Networks ``auto`` runs in PyTorch on the CPU although ONNX Runtime comes first in AUTO_ORDER: the
# codec's blocks since their convolutions pad by replicating edges (codec v2). ONNX Runtime pays a
# copy per convolution for that padding, PyTorch does not: on kodim23, 2 threads, the scale-4 decoder
# took 31 ms in ONNX Runtime against 18 ms in PyTorch, the encoder 67 against 59 ms (zero padding,
# before: 26 against 25 and 52 against 71 ms). docs/results/bench_backends_cpu.json has the figures.
# Where PyTorch is not loaded yet, ``auto`` runs them in numpy instead (numpy_backend.py): importing
# PyTorch takes longer than a Kodak-size decode or encode in numpy (tools/bench_startup.py), so a
# command-line run is several times faster; a process that has loaded PyTorch keeps it.
AUTO_TORCH_ON_CPU = ("tinycompress-",)


class BackendError(TinyCodecError):
    """A backend, device or precision that was asked for is not available here."""


@runtime_checkable
class Runner(Protocol):
    """Runs one network: ``run(x)`` with x float32 (N, C, H, W), returns float32 (N, C', H', W')."""

    network: str
    backend: str
    device: str
    precision: str

    def run(self, x: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------ availability


@lru_cache(maxsize=None)
def _has_module(name: str) -> bool:
    # Cached: every network run asks (through get_runner), and a find_spec walk of sys.path
    # cost about 0.5 ms a call, 1 ms of a 40 ms scale-256 decode of a Kodak image.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    import torch  # only a CUDA request asks

    return torch.cuda.is_available()


def backend_problem(backend: str, device: str = "cpu", precision: str = "fp32") -> str | None:
    """Why (backend, device, precision) cannot run here, or None if it can. backend must not be 'auto'."""
    if backend not in BACKENDS[1:]:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    offered = SUPPORTED.get((backend, device))
    if offered is None:
        devices = [d for (b, d) in SUPPORTED if b == backend]
        return f"backend '{backend}' does not run on {device} (it runs on {', '.join(devices)})"
    if precision not in offered:
        others = [f"{b} on {d}" for (b, d), ps in SUPPORTED.items() if precision in ps]
        return (f"backend '{backend}' has no {precision} on {device} (it has {', '.join(offered)}); "
                f"{precision} runs with {' or '.join(others)}")
    if device == "cuda" and not cuda_available():
        return "device 'cuda' is not available: this PyTorch has no CUDA support or no GPU is visible"
    if backend == "onnx" and not (_has_module("onnxruntime") and _has_module("onnx")):
        return "backend 'onnx' needs onnx and onnxruntime: pip install onnx onnxruntime (tinycodec's own dependencies)"
    if backend == "tensorrt" and not _has_module("tensorrt"):
        return "backend 'tensorrt' needs the tensorrt package (TensorRT 10) and an NVIDIA GPU: pip install tensorrt"
    return None


def available(backend: str, device: str = "cpu", precision: str = "fp32") -> bool:
    return backend_problem(backend, device, precision) is None


def resolve_backend(backend: str = "auto", device: str = "cpu", precision: str = "fp32") -> str:
    """The concrete backend for a request: ``auto`` picks the fastest available; BackendError if none."""
    if backend == "auto":
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        problems = []
        for candidate in AUTO_ORDER.get((device, precision), ()):
            problem = backend_problem(candidate, device, precision)
            if problem is None:
                return candidate
            problems.append(problem)
        if not AUTO_ORDER.get((device, precision)):
            problems.append(f"no backend runs {precision} on {device}")
        raise BackendError(f"no backend can run {precision} on {device}: " + "; ".join(problems))
    problem = backend_problem(backend, device, precision)
    if problem:
        raise BackendError(problem)
    return backend


def check_request(backend: str = "auto", device: str = "cpu", precision: str = "fp32", *,
                  filters: bool = False) -> None:
    """Fail early (before any decoding work) for a request that cannot run here; ``filters``: for an
    enhancement filter, which the codec-only backends do not run."""
    resolve_backend(backend, device, precision)
    if filters and backend in CODEC_ONLY:
        raise BackendError(f"backend '{backend}' runs the codec's networks only, not the enhancement filters")


def threads() -> int:
    """Threads each runner uses: PyTorch's setting (OMP_NUM_THREADS / torch.set_num_threads), for every backend."""
    import torch

    return max(1, torch.get_num_threads())


# ---------------------------------------------------------------------------------------------- runners


class TorchRunner:
    """PyTorch eager: CPU fp32 (channels-last), CUDA fp32 or fp16."""

    backend = "torch"

    def __init__(self, net: Network, device: str = "cpu", precision: str = "fp32") -> None:
        import torch

        self.network, self.device, self.precision = net.name, device, precision
        module = net.build()
        # channels_last runs these few-channel convolutions about 3x faster on CPU; not TinyPSSR's one channel.
        self._channels_last = net.in_channels > 1
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        module = module.to(device=device, dtype=self._dtype)
        self.module = module.to(memory_format=torch.channels_last) if self._channels_last else module

    @classmethod
    def from_module(cls, module: torch.nn.Module, name: str = "module", channels_last: bool = True) -> "TorchRunner":
        """Wrap an already built fp32 CPU module (tests, training tools)."""
        import torch

        runner = cls.__new__(cls)
        runner.network, runner.device, runner.precision = name, "cpu", "fp32"
        runner._channels_last, runner._dtype, runner.module = channels_last, torch.float32, module.eval()
        return runner

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device, self._dtype)
            if self._channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            y = self.module(t)
            return np.ascontiguousarray(y.float().cpu().numpy())


class OnnxRunner:
    """ONNX Runtime on the CPU: the exported fp32 graph or its int8 QDQ quantisation."""

    backend = "onnx"

    def __init__(self, net: Network, device: str = "cpu", precision: str = "fp32") -> None:
        import onnxruntime as ort

        from . import graphs

        self.network, self.device, self.precision = net.name, device, precision
        path = graphs.graph_path(net, precision, "ort")
        self.session = ort.InferenceSession(str(path), graphs._session_options(threads()),
                                            providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def _make_runner(net: Network, backend: str, device: str, precision: str) -> Runner:
    if backend == "torch":
        return TorchRunner(net, device, precision)
    if backend == "onnx":
        return OnnxRunner(net, device, precision)
    if backend == "numpy":
        from .numpy_backend import NumpyRunner

        return NumpyRunner(net, device, precision)
    from .tensorrt_backend import TensorRTRunner

    return TensorRTRunner(net, device, precision)


_reported: set[tuple] = set()


@lru_cache(maxsize=32)
def _cached_runner(net: Network, backend: str, device: str, precision: str) -> Runner:
    return _make_runner(net, backend, device, precision)


def _auto_choice(net: Network, fastest: str, device: str, precision: str) -> tuple[str, str, str]:
    """``auto``'s (backend, precision, why) for one network: ``fastest`` (AUTO_ORDER's pick for the
    request) unless this CPU's measurements (the two per-network tables above) say otherwise."""
    why = []
    if device == "cpu" and precision == "int8" and net.name.startswith(AUTO_FP32_INSTEAD_OF_INT8_ON_CPU):
        fastest, precision = resolve_backend("auto", device, "fp32"), "fp32"
        why.append("int8 was asked, but fp32 runs this network faster here, and exactly")
    if device == "cpu" and precision == "fp32" and net.name.startswith(AUTO_TORCH_ON_CPU):
        if "torch" in sys.modules:
            fastest = "torch"
            why.append("PyTorch runs this network faster than ONNX Runtime here")
        else:
            fastest = "numpy"
            why.append("PyTorch is not loaded, and numpy runs this network in less time than loading it takes")
    return fastest, precision, "auto: " + ("; ".join(why) or f"fastest available for {precision} on {device}")


def get_runner(net: Network, backend: str = "auto", device: str = "cpu", precision: str = "fp32") -> Runner:
    """The runner of a network for a request (built once per process and cached).

    BackendError if the request cannot run here; ``auto`` picks the fastest
    available backend. Reported at INFO level on the ``tinycodec`` logger.
    """
    concrete = resolve_backend(backend, device, precision)  # BackendError if the request cannot run here
    if backend == "auto":
        concrete, run_precision, how = _auto_choice(net, concrete, device, precision)
    else:
        run_precision, how = precision, "as asked"
    runner = _cached_runner(net, concrete, device, run_precision)
    if (net, backend, device, precision, concrete) not in _reported:  # first use in this process: say what runs it
        _reported.add((net, backend, device, precision, concrete))
        log.info("%s: %s on %s, %s (%s)", net.name, concrete, device, run_precision, how)
    return runner


def clear_cache() -> None:
    """Forget built runners (tests; after new weights are registered)."""
    _cached_runner.cache_clear()
    _reported.clear()
