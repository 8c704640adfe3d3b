"""Inference backends: selection, ONNX export and int8 quantisation, the graph cache, cross-backend bitstreams.

Everything here runs on the CPU with PyTorch and ONNX Runtime; the TensorRT and
CUDA tests at the end skip cleanly where those are absent (as on the machines
this was written on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

import tinycodec
from tinycodec import backends, graphs, zoo
from tinycodec.backends import BackendError, OnnxRunner, Runner, TorchRunner, get_runner
from tinycodec.filters import FILTERS, bicubic_upsample
from tinycodec.networks import network, network_names

from .conftest import photo_like, psnr

onnxruntime = pytest.importorskip("onnxruntime")

CODEC_NETS = [n for n in network_names() if n.startswith("tinycompress-")]


# ------------------------------------------------------------------------------------------- selection


def test_auto_picks_an_available_backend_and_says_so(caplog):
    assert backends.resolve_backend("auto", "cpu", "fp32") == "onnx"
    assert backends.resolve_backend("auto", "cpu", "int8") == "onnx"
    backends.clear_cache()
    with caplog.at_level("INFO", logger="tinycodec"):
        runner = get_runner(network("unet"))
        codec = get_runner(network("tinycompress-s16.decoder"))
    assert isinstance(runner, Runner) and runner.backend == "onnx"
    assert "unet: onnx on cpu, fp32 (auto" in caplog.text
    # The codec's edge-padded blocks run faster in PyTorch (backends.AUTO_TORCH_ON_CPU).
    assert codec.backend == "torch" and "tinycompress-s16.decoder: torch on cpu, fp32 (auto: PyTorch" in caplog.text


def test_auto_int8_runs_fp32_where_int8_is_slower_but_explicit_int8_is_honoured(caplog):
    backends.clear_cache()
    net = network("tinycompress-s16.decoder")
    with caplog.at_level("INFO", logger="tinycodec"):
        assert get_runner(net, "auto", "cpu", "int8").precision == "fp32"
    assert "fp32 runs this network faster here" in caplog.text
    assert get_runner(net, "onnx", "cpu", "int8").precision == "int8"


def test_auto_runs_the_codec_in_numpy_where_pytorch_is_not_loaded(monkeypatch, caplog):
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh tcdec process (tests/test_startup.py runs one)
    backends.clear_cache()
    with caplog.at_level("INFO", logger="tinycodec"):
        assert get_runner(network("tinycompress-s16.decoder")).backend == "numpy"
        assert get_runner(network("tinycompress-s4.encoder"), "auto", "cpu", "int8").backend == "numpy"
    assert "tinycompress-s16.decoder: numpy on cpu, fp32 (auto: PyTorch is not loaded" in caplog.text
    backends.clear_cache()


@pytest.mark.parametrize("name", CODEC_NETS)
def test_numpy_backend_matches_pytorch(name):
    net = network(name)
    rng = np.random.default_rng(1)
    for side in (8, 64):  # odd latent sizes included (example_shape: 1.5 x side)
        n, c, h, w = net.example_shape(side)
        x = rng.random((2, c, h, w), dtype=np.float32)
        if net.part == "decoder":
            x = x * 40 - 20  # latents are not confined to [0, 1]
        y_numpy = get_runner(net, "numpy").run(x)
        y_torch = get_runner(net, "torch").run(x)
        assert y_numpy.shape == y_torch.shape and y_numpy.dtype == np.float32
        assert np.abs(y_numpy - y_torch).max() <= 1e-4 * max(1.0, np.abs(y_torch).max())


def test_numpy_backend_decodes_as_pytorch_does():
    rgb = photo_like(72, 104, seed=5)
    for scale in (4, 256):
        data = tinycodec.encode(rgb, scale=scale, backend="numpy")  # a valid file, as another backend's
        assert psnr(np.asarray(tinycodec.decode(data)), rgb) > 20
        a = np.asarray(tinycodec.decode(data, backend="numpy"), dtype=int)
        b = np.asarray(tinycodec.decode(data, backend="torch"), dtype=int)
        assert np.abs(a - b).max() <= 1


def test_numpy_backend_runs_no_filter():
    data = tinycodec.encode(photo_like(16, 16), scale=4, backend="torch")
    with pytest.raises(BackendError, match="codec's networks only"):
        tinycodec.decode(data, backend="numpy", enhance="unet")  # refused before any decoding
    with pytest.raises(BackendError, match="codec's networks only"):
        tinycodec.enhance(photo_like(16, 16), "tinypssr-x2", backend="numpy")
    with pytest.raises(BackendError, match="codec's networks only"):
        get_runner(network("unet"), "numpy")
    with pytest.raises(BackendError, match="does not run on cuda"):
        backends.resolve_backend("numpy", "cuda")


@pytest.mark.parametrize("request_, message", [
    (("tensorrt", "cpu", "fp32"), "does not run on cpu"),
    (("torch", "cpu", "int8"), "has no int8 on cpu"),
    (("torch", "cpu", "fp16"), "has no fp16 on cpu"),
    (("onnx", "cpu", "fp16"), "has no fp16 on cpu"),
    (("auto", "cpu", "fp16"), "no backend can run fp16 on cpu"),
])
def test_unavailable_requests_are_clear_errors(request_, message):
    with pytest.raises(BackendError, match=message):
        backends.resolve_backend(*request_)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_an_error_not_a_fallback():
    for backend in ("auto", "torch"):
        with pytest.raises(BackendError, match="'cuda' is not available"):
            tinycodec.encode(photo_like(16, 16), backend=backend, device="cuda")


@pytest.mark.skipif(backends.available("tensorrt", "cuda"), reason="TensorRT is installed here")
def test_asking_for_tensorrt_where_it_is_absent_fails_before_any_work():
    data = tinycodec.encode(photo_like(16, 16), scale=4, backend="torch")
    with pytest.raises(BackendError, match="cuda|tensorrt"):
        tinycodec.decode(data, backend="tensorrt", device="cuda")


def test_bad_names_are_value_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.resolve_backend("openvino")
    with pytest.raises(ValueError, match="device must be one of"):
        backends.resolve_backend("torch", "tpu")
    with pytest.raises(ValueError, match="unknown network"):
        network("tinycompress-s8.encoder")


# --------------------------------------------------------------------------------------- ONNX export


def test_bicubic_convolution_equals_pytorch_bicubic():
    x = torch.rand(2, 3, 13, 7)
    for r in (2, 4):
        ref = F.interpolate(x, scale_factor=float(r), mode="bicubic", align_corners=False)
        assert torch.allclose(bicubic_upsample(x, r), ref, atol=1e-5)


@pytest.mark.parametrize("name", CODEC_NETS)
def test_codec_networks_export_and_match_pytorch(name):
    net = network(name)
    path = graphs.fp32_graph(net)  # checked against PyTorch at two sizes on the way into the cache
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert manifest["weights"] == net.entry.sha256 and manifest["max_rel_diff_vs_torch"] < 1e-4
    assert graphs.cache_valid(path)
    # dynamic height and width: a size neither check used, through the backend interface
    n, c, h, w = net.example_shape(64)
    x = np.random.default_rng(0).random((1, c, h, w), dtype=np.float32)
    y_onnx = get_runner(net, "onnx").run(x)
    y_torch = get_runner(net, "torch").run(x)
    assert y_onnx.shape == y_torch.shape
    assert np.abs(y_onnx - y_torch).max() <= 1e-4 * max(1.0, np.abs(y_torch).max())


@contextlib.contextmanager
def private_weights(folder):
    """A copy of the package's weights folder that the zoo reads instead; caches cleared in and out."""
    shutil.copytree(zoo.weights_dir(), folder, dirs_exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "weights_dir", lambda: folder)
        zoo.registry.cache_clear()
        backends.clear_cache()
        try:
            yield folder
        finally:
            zoo.registry.cache_clear()
            zoo.load_tensors.cache_clear()
            backends.clear_cache()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-blocks", "per-iteration-blocks"])
def test_codec_weights_of_either_block_layout_load_export_and_round_trip(tmp_path, shared):
    """A weights file says by its keys whether blocks are shared; loading, export and coding follow it."""
    from tinycodec.models import TinyCompress, init_as_resampler

    with private_weights(tmp_path / "weights") as folder:
        model = init_as_resampler(TinyCompress(16, shared=shared), seed=1)
        zoo.save_weights(model, folder / "tinycompress-s16.safetensors", {"model": "tinycompress-s16"})
        for part in ("encoder", "decoder"):
            net = network(f"tinycompress-s16.{part}")
            assert net.build().shared == shared
            graphs.fp32_graph(net)  # raises if the export disagrees with PyTorch
        img = photo_like(64, 96)
        for backend in ("torch", "onnx"):
            out = np.asarray(tinycodec.decode(tinycodec.encode(img, scale=16, backend=backend)))
            assert out.shape == img.shape and psnr(img, out) > 20


# Random filter weights, registered in a private copy of the weights folder: the tests do not depend on
# training having finished, and see networks that do something (a fresh UNet's head is zero).
@pytest.fixture(scope="module")
def random_filters(tmp_path_factory):
    with private_weights(tmp_path_factory.mktemp("weights")) as folder:
        torch.manual_seed(0)
        for name, spec in FILTERS.items():
            model = spec.build()
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            zoo.save_weights(model, folder / f"{name}.safetensors", {"model": name})
        backends.clear_cache()
        yield folder


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_export_reparameterised_and_match_pytorch(random_filters, name):
    net = network(name)
    assert not any(k.endswith("conv3.weight") for k in net.build().state_dict())  # folded blocks
    graphs.fp32_graph(net)
    spec = FILTERS[name]
    rgb = photo_like(45, 70, seed=4)  # odd sizes: padded to the network's multiple and cropped back
    a = tinycodec.enhance(rgb, name, backend="torch")
    b = tinycodec.enhance(rgb, name, backend="onnx")
    assert a.size == b.size == (70 * spec.upscale, 45 * spec.upscale)
    assert np.abs(np.asarray(a, int) - np.asarray(b)).max() <= 1


def test_int8_quantisation_is_per_channel_and_keeps_output_layers_in_float(random_filters):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(graphs.int8_graph(network("unet"), "ort"))).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    conv_inputs = {n.name: list(n.input) for n in graph.node if n.op_type == "Conv"}
    # every quantised conv's weight is dequantised with one scale per output channel
    dq_scales = [inits[n.input[1]] for n in graph.node if n.op_type == "DequantizeLinear"
                 and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4]
    assert dq_scales and all(s.ndim == 1 and s.size > 1 for s in dq_scales)
    # UNet: the head and the pixel unshuffle (a one-hot convolution) stay float; its first conv reads the
    # 12-channel unshuffled image and is int8
    float_convs = {name for name, inputs in conv_inputs.items() if inits.get(inputs[1]) is not None}
    assert float_convs == {"/head/Conv", "/Conv"}
    # ... and that image is quantised on the 8-bit grid itself (scale 1/255, zero point 0): it passes exactly
    producer = {o: n for n in graph.node for o in n.output}
    dq = producer[conv_inputs["/enc0/enc0.0/fused/Conv"][0]]
    assert dq.op_type == "DequantizeLinear"
    assert inits[dq.input[1]] == np.float32(1 / 255) and inits[dq.input[2]] == 0
    # The float skip adds the image as it came in, not that quantised copy (on the trt flavour's
    # symmetric grid the copy would be off by a step on every odd grey level)
    for flavour in ("ort", "trt"):
        g = onnx.load(str(graphs.int8_graph(network("unet"), flavour))).graph
        made_by = {o: n.op_type for n in g.node for o in n.output}
        last_add = [n for n in g.node if n.op_type == "Add"][-1]
        assert not any(made_by.get(i) == "DequantizeLinear" for i in last_add.input), flavour
    # SRUNet: the head, the first conv (it reads the 3-channel image) and the bicubic skip (the only conv
    # not inside a named stage) stay float
    graph = onnx.load(str(graphs.int8_graph(network("srunet"), "ort"))).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    float_convs = {n.name for n in graph.node if n.op_type == "Conv" and n.input[1] in inits}
    assert float_convs == {"/Conv", "/head/Conv", "/enc0/enc0.0/fused/Conv"}


def test_trt_flavour_is_symmetric_int8(random_filters):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(graphs.int8_graph(network("tinypssr-x2"), "trt", crops=graphs.calibration_crops()[:4]))).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_int8_cache_key_follows_the_codec_weights_unet_is_calibrated_on(monkeypatch):
    """UNet/SRUNet are calibrated on tinycodec decodes: new codec weights must not reuse their int8 graph."""
    crops = np.zeros((2, 16, 16, 3), np.uint8)
    before = {name: graphs.int8_key(network(name), "ort", crops)
              for name in ("unet", "srunet", "tinypssr-x2", "tinycompress-s16.decoder")}
    real = zoo.current_entry

    def retrained(model):
        entry = real(model)
        return dataclasses.replace(entry, sha256="0" * 64) if model == "tinycompress-s64" else entry

    monkeypatch.setattr(zoo, "current_entry", retrained)
    after = {name: graphs.int8_key(network(name), "ort", crops) for name in before}
    assert after["unet"] != before["unet"] and after["srunet"] != before["srunet"]
    assert after["tinypssr-x2"] == before["tinypssr-x2"]  # calibrated on photographs only
    assert after["tinycompress-s16.decoder"] == before["tinycompress-s16.decoder"]


def test_calibration_data_ships_with_the_package():
    crops = graphs.calibration_crops()
    assert crops.dtype == np.uint8 and crops.ndim == 4 and crops.shape[3] == 3 and len(crops) >= 16
    assert crops.nbytes < 4_000_000


# --------------------------------------------------------------------------------------------- cache


def test_onnx_sessions_do_not_spin_after_a_run():
    """Spinning worker threads would take the cores from the work that follows a run (graphs._session_options)."""
    so = graphs._session_options(2)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 2


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYCODEC_CACHE", str(tmp_path / "c"))
    assert graphs.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TINYCODEC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert graphs.cache_dir() == tmp_path / "xdg" / "tinycodec"


def test_cache_is_keyed_checked_and_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYCODEC_CACHE", str(tmp_path))
    net = network("tinycompress-s4.decoder")
    path = graphs.fp32_graph(net)
    assert path.is_relative_to(tmp_path) and net.name in path.name
    stamp = path.stat().st_mtime_ns
    assert graphs.fp32_graph(net) == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # damaged (or replaced) behind our back
    assert not graphs.cache_valid(path)
    assert graphs.fp32_graph(net) == path and graphs.cache_valid(path)  # rebuilt
    assert not list(tmp_path.rglob("*.part"))  # no temporary files left


def test_cached_graph_never_replaces_the_weights_check(monkeypatch, tmp_path):
    net = network("tinycompress-s64.encoder")
    graphs.fp32_graph(net)
    copy = tmp_path / "weights"
    shutil.copytree(zoo.weights_dir(), copy)
    (copy / "tinycompress-s64.safetensors").unlink()
    monkeypatch.setattr(zoo, "weights_dir", lambda: copy)
    zoo.load_tensors.cache_clear()
    try:
        with pytest.raises(tinycodec.TinyCodecError, match="weights file missing"):
            graphs.fp32_graph(net)
    finally:
        zoo.load_tensors.cache_clear()


# ---------------------------------------------------------------------------------- cross-backend files

VARIANTS = {"torch": {"backend": "torch"}, "onnx": {"backend": "onnx"},
            "onnx-int8": {"backend": "onnx", "precision": "int8"}}


@pytest.mark.parametrize("scale", [4, 16])
def test_any_backend_decodes_any_backends_file(scale):
    img = photo_like(96, 128, seed=11)
    files = {k: tinycodec.encode(img, scale=scale, **v) for k, v in VARIANTS.items()}
    decoded = {(e, d): np.asarray(tinycodec.decode(data, **VARIANTS[d])) for e, data in files.items() for d in VARIANTS}
    for image in decoded.values():
        assert image.shape == img.shape
    for e in VARIANTS:
        # the fp32 backends decode any file to the same image, up to one grey level of rounding
        assert np.abs(decoded[(e, "torch")].astype(int) - decoded[(e, "onnx")]).max() <= 1
    # fp32 backends make equally good files; the header (latent range) follows each encoder's output
    assert abs(psnr(decoded[("torch", "torch")], img) - psnr(decoded[("onnx", "torch")], img)) < 0.05
    # int8 on the codec networks loses quality (measured, reported in the README), but the files are sound
    assert psnr(decoded[("onnx-int8", "torch")], img) > psnr(decoded[("torch", "torch")], img) - 6


def test_entropy_coding_does_not_depend_on_the_backend():
    from tinycodec import container, entropy

    data = tinycodec.encode(photo_like(64, 64, seed=12), scale=16, backend="onnx", precision="int8")
    unpacked = container.unpack(data)
    header = unpacked.header
    symbols = [entropy.decode_tile([g[0] for g in unpacked.groups[: header.planes]], header.planes,
                                   (3, *header.latent_size))]
    # re-encoding the decoded symbols gives the same payload, whatever network made them
    assert entropy.encode_tile(np.ascontiguousarray(symbols[0]), header.planes) == [g[0] for g in
                                                                                    unpacked.groups[: header.planes]]


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_backend_options_and_verbose(tmp_path):
    from tinycodec.cli import tcdec, tcenc

    src = tmp_path / "in.png"
    Image.fromarray(photo_like(40, 56, seed=13)).save(src)
    backends.clear_cache()
    r = CliRunner().invoke(tcenc, [str(src), "-o", str(tmp_path / "a.tcz"), "--backend", "onnx",
                                   "--precision", "int8", "-v"])
    assert r.exit_code == 0, r.output
    assert "tcenc: tinycompress-s16.encoder: onnx on cpu, int8 (as asked)" in r.output
    backends.clear_cache()  # -v reports each network's runner once per process: one per command in real use
    r = CliRunner().invoke(tcdec, [str(tmp_path / "a.tcz"), "-o", str(tmp_path / "a.png"), "-v"])
    assert r.exit_code == 0, r.output
    assert "tinycompress-s16.decoder: torch on cpu, fp32 (auto" in r.output
    r = CliRunner().invoke(tcdec, [str(tmp_path / "a.tcz"), "-o", str(tmp_path / "b.png"), "--backend", "torch",
                                   "--precision", "int8"])
    assert r.exit_code == 1 and r.output.startswith("tcdec: error: backend 'torch' has no int8 on cpu")
    assert not (tmp_path / "b.png").exists()


# ------------------------------------------------------------------------------ GPU (skipped without one)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_matches_cpu(precision):
    net = network("tinycompress-s16.decoder")
    x = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
    ref = get_runner(net, "torch").run(x)
    out = get_runner(net, "torch", "cuda", precision).run(x)
    # CUDA fp32 convolutions use TF32 (PyTorch's default): ~1e-3, below half a grey level (measured on an H100)
    assert np.abs(out - ref).max() < (2e-3 if precision == "fp32" else 1e-2)


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engines(precision):
    pytest.importorskip("tensorrt")
    img = photo_like(96, 128, seed=14)
    ref = np.asarray(tinycodec.decode(tinycodec.encode(img, backend="torch"), backend="torch"))
    data = tinycodec.encode(img, backend="tensorrt", device="cuda", precision=precision)
    out = np.asarray(tinycodec.decode(data, backend="tensorrt", device="cuda", precision=precision))
    assert psnr(out, ref) > (40 if precision != "int8" else 20)


def test_runners_implement_the_interface():
    net = network("tinycompress-s4.decoder")
    for runner in (TorchRunner(net), OnnxRunner(net)):
        assert isinstance(runner, Runner)
        assert runner.run(np.zeros((2, 3, 4, 5), np.float32)).shape == (2, 3, 8, 10)
