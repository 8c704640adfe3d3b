"""tools/_data.cpu_info: the CPU description every benchmark JSON records (int8 speed depends on it)."""

from .conftest import load_tool

AVX512_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
processor\t: 1
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
AVX2_ONLY = "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_cpu_info_reads_model_and_int8_flags():
    data = load_tool("_data")
    info = data.cpu_info(AVX512_VNNI)
    assert info == {"model": "AMD EPYC 9654 96-Core Processor", "int8_flags": ["avx2", "avx512f", "avx512_vnni"]}
    assert data.describe_cpu(info) == "AMD EPYC 9654 96-Core Processor (avx2, avx512f, avx512_vnni)"
    assert data.cpu_info(AVX2_ONLY)["int8_flags"] == ["avx2"]  # no VNNI: the slow int8 dot product


def test_cpu_info_without_cpuinfo_still_names_something():
    data = load_tool("_data")
    info = data.cpu_info("")
    assert info["model"] and info["int8_flags"] == []
    assert "none of" in data.describe_cpu(info)
