"""What the machine can do fast, read from the OS without importing torch."""

from __future__ import annotations


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return set(next((line for line in fh if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_has_fast_bf16() -> bool:
    """Whether the CPU has native bfloat16 matrix instructions (avx512_bf16 or amx_bf16)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags
