"""What this CPU can do for int8 and fp32 arithmetic, read from the kernel's flags.

The same model runs at very different speeds on CPUs of one family: int8 GEMM is no faster than
fp32 without VNNI (Zen 1 measured 1.0x) and several times faster with it (Zen 4 measured 4.8x).
Benchmark figures and the int8 export both depend on it, so both read it from here.
"""

from __future__ import annotations

import platform
from pathlib import Path

# (name shown, any one of these /proc/cpuinfo flags), in the order they are printed.
ISA_FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx512vnni", "avx_vnni")),
    ("BF16", ("avx512_bf16", "amx_bf16")),
    ("AMX", ("amx_int8", "amx_tile")),
    # aarch64: NEON, the int8 dot product (sdot/udot) and the int8 matrix multiply (smmla)
    ("NEON", ("asimd",)),
    ("DOTPROD", ("asimddp",)),
    ("I8MM", ("i8mm",)),
)


def isa_features(flags: str) -> tuple[str, ...]:
    """The features of `ISA_FEATURES` present in a whitespace-separated flags string (the `flags` line
    of x86 /proc/cpuinfo, or the `Features` line on aarch64)."""
    have = set(flags.lower().split())
    return tuple(name for name, any_of in ISA_FEATURES if have.intersection(any_of))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first `flags` (x86) or `Features` (aarch64) line of /proc/cpuinfo; "" where unreadable."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return value.strip()
    except OSError:
        pass
    return ""


# The targets optimum's `AutoQuantizationConfig` has for CPUs, and "auto": the machine at hand.
INT8_TARGETS = ("avx512_vnni", "avx512", "avx2", "arm64")


def resolve_int8_target(target: str) -> str:
    """`target` itself, or for "auto" this machine's (`quantization_target`)."""
    return quantization_target(isa_features(cpu_flags())) if target == "auto" else target


def quantization_target(features: tuple[str, ...], machine: str | None = None) -> str:
    """The ISA name optimum's `AutoQuantizationConfig` takes for these features: arm64, avx512_vnni,
    avx512 or avx2 (the last also for a CPU with none of them: the most portable)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine in ("aarch64", "arm64") or "NEON" in features:
        return "arm64"
    if "VNNI" in features and "AVX-512" in features:
        return "avx512_vnni"
    if "AVX-512" in features:
        return "avx512"
    return "avx2"
