"""TensorRT engines of the networks (TensorRT 10 Python API): fp32, fp16 and int8, on CUDA.

UNVERIFIED: the ``tensorrt`` package cannot be installed on the machines this
was written on (no GPU); this follows the documented TensorRT 10 API and its
tests skip when ``tensorrt`` is absent. Everything it builds on (the ONNX
graphs, the int8 QDQ quantisation, the engine cache) is tested.

Engines are built from the same ONNX graphs as the onnx backend: the fp32
graph (with the FP16 builder flag for fp16) or the symmetric int8 QDQ graph
(explicit quantisation: the Q/DQ scales come from our calibration, so no
TensorRT calibrator is needed; INT8 and FP16 flags let TensorRT pick kernels for
the layers left in float). Engines depend on the GPU and the TensorRT version,
so both are part of their cache key; they are cached next to the graphs and
only ever loaded from there. Device buffers are PyTorch CUDA tensors (no pycuda).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from . import graphs
from .backends import BackendError
from .networks import Network

log = logging.getLogger("tinycodec")

WORKSPACE_BYTES = 1 << 30
# Optimisation profile: the largest input side an engine accepts. Filters run in tiles of at most
# 512 + 2 * 64 input pixels (runtime.filter_halo); the codec networks run on whole images.
MAX_SIDE_FILTER = 1024
MAX_SIDE_CODEC = 4096
MAX_BATCH = 4


def _profile_shapes(net: Network) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    c, m = net.in_channels, max(net.multiple, 1)
    side = MAX_SIDE_CODEC if net.is_codec else MAX_SIDE_FILTER
    if net.part == "decoder":
        side = MAX_SIDE_CODEC >> 1
    batch = 3 if not net.is_codec and net.filter_spec.per_channel else 1  # TinyPSSR: one channel per item
    return (1, c, m, m), (batch, c, 256, 256), (max(batch, MAX_BATCH), c, side, side)


class TensorRTRunner:
    """A deserialised engine and its execution context; inputs and outputs go through torch CUDA tensors."""

    backend = "tensorrt"

    def __init__(self, net: Network, device: str = "cuda", precision: str = "fp32") -> None:
        import tensorrt as trt

        if device != "cuda":
            raise BackendError("the tensorrt backend runs on cuda only")
        self.network, self.device, self.precision = net.name, device, precision
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        engine_bytes = self._engine_bytes(net, precision)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BackendError(f"TensorRT could not load the engine of {net.name}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._min, _, self._max = _profile_shapes(net)

    def _engine_bytes(self, net: Network, precision: str) -> bytes:
        trt = self._trt
        onnx_path = graphs.fp32_graph(net) if precision != "int8" else graphs.int8_graph(net, "trt")
        props = torch.cuda.get_device_properties(0)
        key = graphs.key_of({"graph": graphs._file_digest(onnx_path), "precision": precision,
                             "tensorrt": trt.__version__, "gpu": props.name,
                             "sm": f"{props.major}.{props.minor}", "profile": _profile_shapes(net),
                             "workspace": WORKSPACE_BYTES})
        path = graphs.cached("tensorrt", net.name, key, f".{precision}.engine")
        if graphs.cache_valid(path):
            return path.read_bytes()
        start = time.perf_counter()
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse the ONNX graph of {net.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation: scales from the QDQ graph
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, *_profile_shapes(net))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT could not build a {precision} engine of {net.name}")
        data = bytes(serialized)
        graphs.cache_write(path, data, {"network": net.name, "precision": precision, "tensorrt": trt.__version__,
                                        "gpu": props.name})
        log.info("%s: built a TensorRT %s engine in %.1f s: %s", net.name, precision, time.perf_counter() - start, path)
        return data

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> np.ndarray:
        shape = tuple(x.shape)
        if any(s < lo or s > hi for s, lo, hi in zip(shape, self._min, self._max)):
            raise BackendError(f"{self.network}: input {shape} outside the TensorRT engine's range "
                               f"{self._min}..{self._max}")
        dtype = self._torch_dtype(self._input)
        inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to("cuda").to(dtype).contiguous()
        self.context.set_input_shape(self._input, shape)
        out_shape = tuple(self.context.get_tensor_shape(self._output))
        out = torch.empty(out_shape, dtype=self._torch_dtype(self._output), device="cuda")
        self.context.set_tensor_address(self._input, inp.data_ptr())
        self.context.set_tensor_address(self._output, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"TensorRT failed to run {self.network}")
        stream.synchronize()
        return out.float().cpu().numpy()

    def _torch_dtype(self, name: str) -> torch.dtype:
        trt = self._trt
        kind = self.engine.get_tensor_dtype(name)
        return {trt.float32: torch.float32, trt.float16: torch.float16}.get(kind, torch.float32)
