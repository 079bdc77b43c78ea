"""The CPU's ISA, read from /proc/cpuinfo flags: pure functions over a flags string."""

from __future__ import annotations

from pathlib import Path

from models.cpu import cpu_flags, isa_features, quantization_target

# Abridged flags lines of real machines.
ZEN1 = "fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni"
ZEN4 = "fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni avx512_bitalg"
SAPPHIRE = "avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
SKYLAKE_SP = "avx2 avx512f avx512dq avx512cd avx512bw"
GRAVITON3 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve i8mm bf16"


def test_features_per_machine() -> None:
    assert isa_features(ZEN1) == ("AVX2",)
    assert isa_features(ZEN4) == ("AVX2", "AVX-512", "VNNI", "BF16")
    assert isa_features(SAPPHIRE) == ("AVX2", "AVX-512", "VNNI", "BF16", "AMX")
    assert isa_features(SKYLAKE_SP) == ("AVX2", "AVX-512")
    assert isa_features(GRAVITON3) == ("NEON", "DOTPROD", "I8MM")
    assert isa_features("") == ()
    # whole flags only: "avx2" inside another word does not count
    assert isa_features("xavx2 avx512fx") == ()


def test_quantization_target_follows_the_isa() -> None:
    assert quantization_target(isa_features(ZEN1), "x86_64") == "avx2"
    assert quantization_target(isa_features(SKYLAKE_SP), "x86_64") == "avx512"
    assert quantization_target(isa_features(ZEN4), "x86_64") == "avx512_vnni"
    assert quantization_target(isa_features(GRAVITON3), "aarch64") == "arm64"
    assert quantization_target((), "x86_64") == "avx2"


def test_cpu_flags_reads_the_x86_or_arm_line(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f\n\nflags\t: other\n")
    assert cpu_flags(x86) == "fpu avx2 avx512f"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n")
    assert cpu_flags(arm) == "fp asimd asimddp"
    assert cpu_flags(tmp_path / "missing") == ""
