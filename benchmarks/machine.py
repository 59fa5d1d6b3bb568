"""What every benchmark records and how it times: the CPU line and interleaved timing.

Machines differ between sessions, so each result names the CPU and the flags that change
int8/bf16 speed (AVX-512 VNNI, AVX-512 BF16, AMX); and background load moves, so variants
are timed interleaved (round r runs every variant once before round r+1) and compared as
ratios within one process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

# The CPU features that change int8/bf16/fp32 speed, as /proc/cpuinfo names them.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> set[str]:
    """The CPU's flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[1].split()) if ":" in line else set()


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    line = next((ln for ln in text.splitlines() if ln.startswith("model name")), "")
    return line.split(":", 1)[1].strip() if ":" in line else "unknown CPU"


def cpu_line() -> str:
    """'<model>, <n> cores; avx2=yes avx512f=yes avx512_vnni=yes ...' for a result's header."""
    have = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = " ".join(f"{f}={'yes' if f in have else 'no'}" for f in SPEED_FLAGS)
    return f"{cpu_model()}, {cores} cores; {flags}"


def interleaved(variants: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Seconds per call of each variant: one warm-up each, then `runs` rounds in which every
    variant runs once, so background load hits all variants alike."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


# Above this 1-minute load average (per machine, not per core) other jobs share the cores and a
# figure is not a quiet-machine figure: benchmarks print the load beside every figure and warn.
QUIET_LOAD = 1.5
_warned = False


def load_average() -> float:
    """The 1-minute load average (nan where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def load_tag() -> str:
    """'[load 0.42]' to print beside a figure; warns once on stderr when above QUIET_LOAD."""
    global _warned
    load = load_average()
    if load > QUIET_LOAD and not _warned:
        _warned = True
        import sys

        print(
            f"warning: load average {load:.2f} > {QUIET_LOAD}: other jobs share the cores, so "
            "these are not quiet-machine figures (rerun with nothing else running)",
            file=sys.stderr,
            flush=True,
        )
    return f"[load {load:.2f}{' LOADED' if load > QUIET_LOAD else ''}]"
