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


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


# the instruction sets that decide which backend is fastest (a speed-up on one may be a slow-down on another)
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "fma")


def cpu_summary() -> dict:
    """What every benchmark number is recorded with: model, cores, and the vector instruction sets present."""
    import os

    flags = cpu_flags()
    return {"model": cpu_model(), "cores": os.cpu_count(), "flags": [f for f in VECTOR_FLAGS if f in flags]}


def gpu_summary() -> dict | None:
    """The NVIDIA GPUs present (names, memory, driver) from nvidia-smi, so that a benchmark's record says where it
    ran without importing torch; with torch's view (its CUDA runtime, compute capability) when the caller has
    imported torch already. None where there is no GPU or no nvidia-smi."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[c.strip() for c in line.split(",")] for line in out.stdout.splitlines() if line.count(",") >= 2]
    if not rows:
        return None
    info: dict = {"devices": [{"name": r[0], "memory_mib": int(r[1]) if r[1].isdigit() else r[1]} for r in rows],
                  "driver": rows[0][2]}
    torch = sys.modules.get("torch")  # only when already imported: commands that need no model never pay for it
    if torch is not None and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        info.update(cuda_runtime=torch.version.cuda, capability=f"{major}.{minor}", torch=torch.__version__)
    return info
