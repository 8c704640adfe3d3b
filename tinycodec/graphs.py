"""ONNX graphs of the networks: export, int8 quantisation, and the on-disk cache they live in.

Graphs are built at first use, never shipped and never read from anywhere but
the cache: ``$TINYCODEC_CACHE``, else ``$XDG_CACHE_HOME/tinycodec``, else
``~/.cache/tinycodec``. A cached file's name is a hash of everything it was
built from (weights sha256, precision, export and quantisation settings,
calibration data, tinycodec, torch, onnx and onnxruntime versions), so new
weights or new libraries build new graphs; each file has a manifest with its
own sha256, checked on every load (a damaged file is rebuilt). Files are
written to a temporary name and renamed into place, so concurrent processes
never see half a graph.

fp32: ``torch.onnx.export`` of the PyTorch module (dynamic batch, height and
width), checked against PyTorch's output before it is cached.

int8: static post-training quantisation with ``onnxruntime.quantization``:
QDQ format, per-channel int8 weights, calibrated (MinMax) on the crops that
``tools/quantize.py`` ships in ``tinycodec/data/calibration.npz`` (taken from
the training photographs; the product never needs the training data). Two
flavours of the same recipe: ``ort`` (uint8 activations, the fast path of ONNX
Runtime's x86 kernels) and ``trt`` (symmetric int8 activations, which TensorRT
requires of a QDQ graph). The layers that produce the output stay fp32 (see
:func:`fp32_nodes`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import TinyCodecError
from .networks import Network
from .zoo import load_tensors

log = logging.getLogger("tinycodec")

EXPORT_VERSION = 7  # bump when the export recipe or an architecture changes: old cache entries are then ignored
OPSET = 17
QUANT_VERSION = 5
CALIBRATION_FILE = "calibration.npz"
CHECK_TOL = 1e-4  # exported fp32 graph against PyTorch: max |diff| / max(1, max |output|)


class GraphError(TinyCodecError):
    """A graph could not be built (missing onnx/onnxruntime, export or check failure)."""


def cache_dir() -> Path:
    """Where built graphs and engines are kept (created on demand, private to the user)."""
    env = os.environ.get("TINYCODEC_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tinycodec"


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"tinycodec": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise GraphError(f"the onnx backend needs onnx and onnxruntime ({exc.name} is missing): "
                         "pip install onnx onnxruntime (tinycodec's own dependencies)") from None


def key_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached(kind: str, name: str, key: str, suffix: str) -> Path:
    """Path of a cache entry: ``<cache>/<kind>/<name>-<key>.<suffix>``."""
    return cache_dir() / kind / f"{name}-{key[:24]}{suffix}"


def cache_valid(path: Path) -> bool:
    """The file exists and matches the digest its manifest recorded when we wrote it."""
    manifest = path.with_name(path.name + ".json")
    try:
        recorded = json.loads(manifest.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        return path.is_file() and _file_digest(path) == recorded
    except OSError:
        return False


def cache_write(path: Path, data: bytes, info: dict) -> Path:
    """Write data and its manifest atomically (temporary file + rename), manifest last."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for target, payload in ((path, data),
                            (path.with_name(path.name + ".json"),
                             json.dumps({**info, "sha256": hashlib.sha256(data).hexdigest()}, indent=1).encode())):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


@contextmanager
def _quiet_export():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of one needing onnxscript
        yield


def export_bytes(net: Network) -> bytes:
    """The fp32 ONNX graph of a network (dynamic batch, height and width), as bytes."""
    module = net.build()
    x = torch.rand(net.example_shape(), generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(module, (x,), buf, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "oh", 3: "ow"}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return buf.getvalue()


def check_against_torch(net: Network, graph: bytes, tol: float = CHECK_TOL) -> float:
    """Run the graph with ONNX Runtime and PyTorch on two input sizes; GraphError if they differ.

    Returns the largest difference relative to the output's scale (max(1, max |output|)):
    float rounding gives ~1e-6; an export error gives something of order 1.
    """
    import onnxruntime as ort

    module = net.build()
    session = ort.InferenceSession(graph, _session_options(1), providers=["CPUExecutionProvider"])
    worst = 0.0
    for side in (24, 40):  # two sizes: the graph must not have frozen the export's shape
        n, c, h, w = net.example_shape(side)
        x = torch.rand((2, c, h, w), generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            ref = module(x).numpy()
        out = session.run(None, {"input": x.numpy()})[0]
        if out.shape != ref.shape:
            raise GraphError(f"exported {net.name} gives shape {out.shape}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(out - ref).max()) / max(1.0, float(np.abs(ref).max())))
    if worst > tol:
        raise GraphError(f"exported {net.name} differs from PyTorch by {worst:.2e} (> {tol:.0e}, relative)")
    return worst


def _session_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # No busy-waiting after a run: ONNX Runtime's worker threads otherwise spin for a while, and on a
    # small machine they take the cores from whatever runs next (the entropy coder, a PyTorch network,
    # another session). Interleaved with ONNX Runtime, PyTorch's scale-4 decoder took 68 ms instead of
    # 31 ms on 2 cores (a throwaway timing); ONNX Runtime itself was within a few percent either way.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def fp32_graph(net: Network) -> Path:
    """Cached path of the network's checked fp32 ONNX graph, exported now if needed."""
    require_onnx()
    load_tensors(net.entry)  # the weights file must be there and intact, even when its graph is cached
    key = key_of({"net": net.name, "weights": net.entry.sha256, "precision": "fp32", "export": EXPORT_VERSION,
                  "opset": OPSET, **_versions()})
    path = cached("onnx", net.name, key, ".fp32.onnx")
    if cache_valid(path):
        return path
    start = time.perf_counter()
    graph = export_bytes(net)
    diff = check_against_torch(net, graph)
    cache_write(path, graph, {"network": net.name, "weights": net.entry.sha256, "precision": "fp32",
                              "max_rel_diff_vs_torch": diff, **_versions()})
    log.info("%s: exported the fp32 ONNX graph (max relative diff vs PyTorch %.1e, %.1f s) to %s",
             net.name, diff, time.perf_counter() - start, path)
    return path


# ---------------------------------------------------------------------------------------------- int8

QUANT_FLAVOURS = ("ort", "trt")


def quant_settings(flavour: str, net: Network) -> dict:
    """The quantisation recipe of a flavour for a network; part of the cache key."""
    if flavour == "ort":
        # uint8 activations x int8 weights is ONNX Runtime's fast x86 kernel (U8S8), with 8-bit per-channel
        # weights and MinMax calibration: PSNR of the int8 graph's float output against the fp32 graph's
        # (kodim23 decoded at scale 16, bicubic-halved first for SRUNet; the shipped weights) UNet 63.5 dB
        # and SRUNet 57.8 dB, against 58.0 / 51.0 dB with 7-bit weights
        # (reduce_range, which the filters of codec v2 had needed: 16-bit saturation of VPMADDUBSW on
        # AVX2 CPUs without VNNI, like the machine most of our figures come from), at the same speed; Percentile
        # calibration and symmetric int8 activations (S8S8) were no better or slower
        # (tools/compare_int8_recipes.py). The image a UNet's first int8 convolution reads is pinned
        # to [0, 1] (image_tensors).
        return {"format": "QDQ", "activations": "QUInt8", "weights": "QInt8", "per_channel": True,
                "reduce_range": False, "calibration": "MinMax", "activation_symmetric": False,
                "image_range_exact": True}
    if flavour == "trt":  # TensorRT takes only symmetric int8 Q/DQ
        return {"format": "QDQ", "activations": "QInt8", "weights": "QInt8", "per_channel": True,
                "reduce_range": False, "calibration": "MinMax", "activation_symmetric": True,
                "image_range_exact": False}
    raise ValueError(f"unknown quantisation flavour {flavour!r}")


FIRST_CONV = "/enc0/enc0.0/fused/Conv"  # the UNets' first convolution, as the exporter names it


def fp32_nodes(net: Network, graph) -> list[str]:
    """Nodes left in float (``graph``: the onnx GraphProto about to be quantised).

    Where 8-bit steps would show as grey-level errors, or where ONNX Runtime's
    int8 kernel is slower than the float one (measured with its profiler on a
    512x768 input, 2 threads, AVX2 without VNNI):

    - codec networks: the last convolution and its activation (the encoder's
      latent reaches hundreds at scale 4: 8-bit steps of several units), and
      the decoder's first convolution, whose input is that latent;
    - UNet/SRUNet: a first convolution that reads the 3-channel image
      (SRUNet's: int8 14.6 ms against 3.2 ms in float; UNet's reads the 12
      channels of the pixel-unshuffled image and is int8), the skip path from
      the input (SRUNet's bicubic skip, a grouped convolution, 73 against 17
      ms, and an image whose 8-bit requantisation cost 0.2 dB; UNet's pixel
      unshuffle), and every node from the head convolution on (the
      correction, its local-mean removal, the addition, the pixel shuffle);
    - TinyPSSR: the final 1x1 convolution and pixel shuffle.
    """
    node_names = [n.name for n in graph.node]
    if net.is_codec:
        wanted = node_names[-2:] + (node_names[:1] if net.part == "decoder" else [])
    elif net.filter_spec.per_channel:
        wanted = [n for n in node_names if n.startswith("/body/body.6/")] + [node_names[-1]]
    else:
        tail = node_names[node_names.index("/head/Conv"):] if "/head/Conv" in node_names else ["/head/Conv"]
        first = next((n for n in graph.node if n.name == FIRST_CONV), None)
        reads_image = first is not None and first.input[0] in {i.name for i in graph.input}
        wanted = [FIRST_CONV] * reads_image + _skip_path(graph, "/enc0/") + tail
    missing = [n for n in wanted if n not in node_names]
    if missing or not wanted:
        raise GraphError(f"{net.name}: nodes {missing} not in the exported graph (exporter naming changed?)")
    return list(dict.fromkeys(wanted))


def image_tensors(net: Network, graph, exclude: list[str], image: set[str] | None = None) -> list[str]:
    """Quantised tensors that hold the input image's own values (rearranged, not computed on).

    UNet's first convolution reads the pixel-unshuffled image: values k/255. Calibrated, its uint8
    scale is only close to 1/255 (0.4% off with the shipped crops), and requantising an 8-bit image
    onto a slightly different grid adds up to half a step of noise to every pixel (with 7-bit
    weights, the int8 UNet's loss against the original on a 1080p image went from 0.25 to 0.08 dB
    when pinned); pinned to the range [0, 1] (scale 1/255, zero point 0) the image passes exactly.
    ``image``: :func:`_image_path` of the graph, if already taken.
    """
    if not net.is_unet:
        return []
    image = _image_path(graph) if image is None else image
    quantised_readers = [n for n in graph.node if n.op_type == "Conv" and n.name not in exclude]
    return sorted({n.input[0] for n in quantised_readers if n.input[0] in image})


def _image_path(graph) -> set[str]:
    """The graph input and the tensors that only rearrange it (reshapes, transposes, pixel unshuffle)."""
    from onnx import numpy_helper

    rearranging = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "SpaceToDepth", "DepthToSpace", "Identity"}
    constants = {i.name: i for i in graph.initializer}
    constants.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"})

    def selects_pixels(node) -> bool:  # a convolution with one-hot kernels (filters.unshuffle_kernels), no bias
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in constants:
            return False
        w = numpy_helper.to_array(constants[node.input[1]])
        one_hot = np.isin(w, (0.0, 1.0)).all() and (w.reshape(w.shape[0], -1).sum(1) == 1).all()
        no_bias = len(node.input) < 3 or not node.input[2] or (
            node.input[2] in constants and not numpy_helper.to_array(constants[node.input[2]]).any())
        return bool(one_hot and no_bias)

    image = {i.name for i in graph.input}
    for node in graph.node:  # topologically sorted
        if node.input and node.input[0] in image and (node.op_type in rearranging or selects_pixels(node)):
            image.update(node.output)
    return image


def _float_image_to_float_nodes(model, exclude: list[str], image: set[str]) -> None:
    """Let the float nodes read the image itself, not the copy quantised for an int8 convolution.

    Once UNet's first convolution is int8, onnxruntime quantises the unshuffled image and hands
    every reader the dequantised copy, the float skip included. Exact on the ort flavour's 1/255
    grid, but not on the trt flavour's symmetric one (2/255: every odd grey level would move);
    rewired, the skip adds the image as it came in, whatever the grid. ``image``: :func:`_image_path`
    of the graph before quantisation (quantising keeps the names of the tensors it leaves in float).
    """
    source = {}  # DequantizeLinear output -> the float tensor its QuantizeLinear read
    quantised = {n.output[0]: n.input[0] for n in model.graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] in image}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quantised:
            source[node.output[0]] = quantised[node.input[0]]
    for node in model.graph.node:
        if node.name in exclude:
            for i, name in enumerate(node.input):
                if name in source:
                    node.input[i] = source[name]


def _skip_path(graph, body_prefix: str) -> list[str]:
    """Nodes fed (transitively) by the graph input other than through the nodes named ``body_prefix``*."""
    reached = {i.name for i in graph.input}
    path = []
    for node in graph.node:  # exported graphs are topologically sorted
        if not node.name.startswith(body_prefix) and any(i in reached for i in node.input):
            path.append(node.name)
            reached.update(node.output)
    return path


@lru_cache(maxsize=1)
def calibration_crops() -> np.ndarray:
    """The shipped calibration crops, (N, S, S, 3) uint8 (made by tools/quantize.py from the training photos)."""
    path = resources.files("tinycodec") / "data" / CALIBRATION_FILE
    try:
        with path.open("rb") as f, np.load(f) as data:
            crops = data["crops"]
    except (FileNotFoundError, OSError, KeyError) as exc:
        raise GraphError(f"calibration data missing or unreadable ({path}: {exc}): the installation is incomplete; "
                         "tools/quantize.py DATA/train makes it") from None
    return crops


def calibration_digest(crops: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crops).tobytes()).hexdigest()


def calibration_inputs(net: Network, crops: np.ndarray) -> list[np.ndarray]:
    """What the network sees in the product, made from photo crops: one float32 batch per crop.

    encoder: the crop; decoder: the crop's quantised latent (8 or 6 planes);
    unet: the crop after a tinycodec round trip (every scale, 8 or 6 planes);
    srunet: the same on the crop bicubic-downscaled by 2 (``tcenc --downscale 2``);
    tinypssr-xr: the crop bicubic-downscaled by r, channel by channel.
    """
    from . import quantize, runtime  # runtime imports this module's users: import late
    from .codec import simulate_rgb
    from .image import bicubic_down
    from .models import SCALE_DEPTHS
    from .zoo import current_entry, model_name

    def planar(rgb: np.ndarray) -> np.ndarray:
        return (rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).copy()

    scales = sorted(SCALE_DEPTHS)
    out = []
    for i, crop in enumerate(crops):
        planes = 8 if i % 2 == 0 else 6
        if net.part == "encoder":
            out.append(planar(crop))
        elif net.part == "decoder":
            latent = runtime.run_encoder(net.entry, net.scale, crop, backend="torch")
            lo, hi = quantize.latent_range(latent)
            symbols = quantize.quantize(latent, lo, hi, planes)
            out.append(quantize.dequantize(symbols, np.asarray(lo, np.float32), np.asarray(hi, np.float32),
                                           planes)[None].astype(np.float32))
        elif net.is_unet:
            scale = scales[(i // 2) % len(scales)]
            current_entry(model_name(scale))  # the codec weights must be registered
            source = bicubic_down(crop, 2) if net.filter_spec.upscale == 2 else crop
            out.append(planar(simulate_rgb(source, scale, planes, backend="torch")))
        else:  # TinyPSSR
            small = bicubic_down(crop, net.filter_spec.upscale)
            out.append(planar(small).transpose(1, 0, 2, 3).copy())  # three one-channel images
    return out


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of batches."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._it = iter(batches)

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {"input": x}

    def rewind(self) -> None:  # part of the reader interface in recent onnxruntime
        pass


def quantize_graph(net: Network, fp32_path: Path, flavour: str, crops: np.ndarray) -> bytes:
    """The int8 QDQ graph of a network, as bytes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    s = quant_settings(flavour, net)
    with tempfile.TemporaryDirectory(prefix="tinycodec-quant-") as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # Shape inference and graph clean-up, as the onnxruntime docs advise before quantising
        # (symbolic shape inference cannot follow the dynamic sizes: the ONNX one suffices).
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        exclude = fp32_nodes(net, graph)
        image = _image_path(graph)
        overrides = {}
        if s["image_range_exact"]:
            pinned = image_tensors(net, graph, exclude, image)
            first_conv_int8 = FIRST_CONV not in exclude and any(n.name == FIRST_CONV for n in graph.node)
            if first_conv_int8 and not pinned:
                raise GraphError(f"{net.name}: found no image tensor to pin for its int8 first convolution "
                                 "(exporter output changed?)")
            overrides = {t: [{"rmin": np.float32(0.0), "rmax": np.float32(1.0)}] for t in pinned}
        quantize_static(
            str(prepared), str(out), _Reader(calibration_inputs(net, crops)),
            quant_format=QuantFormat.QDQ, per_channel=s["per_channel"], reduce_range=s["reduce_range"],
            activation_type=getattr(QuantType, s["activations"]), weight_type=getattr(QuantType, s["weights"]),
            calibrate_method=getattr(CalibrationMethod, s["calibration"]),
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": s["activation_symmetric"], "WeightSymmetric": True,
                           "TensorQuantOverrides": overrides},
        )
        model = onnx.load(str(out))
        _float_image_to_float_nodes(model, exclude, image)
        return model.SerializeToString()


def calibration_codecs(net: Network) -> dict[str, str]:
    """Codec models (name -> weights hash) whose decodes make ``net``'s calibration inputs.

    UNet and SRUNet are calibrated on tinycodec round trips at every scale, so
    their int8 graph depends on the codec's weights as well as their own.
    """
    from .models import SCALE_DEPTHS
    from .zoo import current_entry, model_name

    if not net.is_unet:
        return {}
    return {model_name(s): current_entry(model_name(s)).sha256 for s in sorted(SCALE_DEPTHS)}


def int8_key(net: Network, flavour: str, crops: np.ndarray) -> str:
    """Cache key of an int8 graph: everything that decides its bytes."""
    return key_of({"net": net.name, "weights": net.entry.sha256, "precision": "int8", "flavour": flavour,
                   "quant": quant_settings(flavour, net), "quant_version": QUANT_VERSION, "export": EXPORT_VERSION,
                   "opset": OPSET, "calibration": calibration_digest(crops),
                   "calibration_codecs": calibration_codecs(net),
                   **_versions()})


def int8_graph(net: Network, flavour: str = "ort", crops: np.ndarray | None = None) -> Path:
    """Cached path of the network's int8 QDQ graph, quantised now if needed.

    crops: calibration photos (N, S, S, 3) uint8; default the shipped ones.
    """
    require_onnx()
    crops = calibration_crops() if crops is None else crops
    fp32 = fp32_graph(net)
    path = cached("onnx", net.name, int8_key(net, flavour, crops), f".int8-{flavour}.onnx")
    if cache_valid(path):
        return path
    start = time.perf_counter()
    log.info("%s: quantising to int8 (first use; calibrating on %d crops)", net.name, len(crops))
    graph = quantize_graph(net, fp32, flavour, crops)
    cache_write(path, graph, {"network": net.name, "weights": net.entry.sha256, "precision": "int8",
                              "flavour": flavour, "settings": quant_settings(flavour, net), **_versions()})
    log.info("%s: int8 graph built in %.1f s: %s", net.name, time.perf_counter() - start, path)
    return path


def graph_path(net: Network, precision: str, flavour: str = "ort") -> Path:
    if precision == "fp32":
        return fp32_graph(net)
    if precision == "int8":
        return int8_graph(net, flavour)
    raise ValueError(f"no ONNX graph for precision {precision!r}")
