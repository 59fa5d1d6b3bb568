"""A phase log for Ray runs: where a driver's start-up time goes (benchmarks, diagnosis).

With GIFSENT_RAY_PHASES=<file> set, the driver appends one JSON line per phase it reaches
(`{"phase": "ray_joined", "t": <epoch seconds>, "pid": ..., "role": "driver"}`), and hands
the file to the model actors and decoding tasks, which add theirs (model loaded, first
batch decoded, ...) when the file is on a disk they share with the driver (one machine, or
a shared folder; elsewhere their lines are simply lost). The first line of a driver is
`process_start`, the time the kernel started its process (Linux; elsewhere the time this
module was imported), so every phase can be read as seconds from process start, imports
included. Without the variable nothing is written and each call costs one dict look-up.

    GIFSENT_RAY_PHASES=/tmp/phases.jsonl gifsent-infer ray gifs/ --out scores
    python -m gifsent_infer.scaleout.phases /tmp/phases.jsonl   # the timeline, per pid

Internal (tests and benchmarks use it); the line format may change.
"""

from __future__ import annotations

import json
import os
import sys
import time

PHASES_ENV = "GIFSENT_RAY_PHASES"
_IMPORTED = time.time()
_seen: set[tuple[str, str]] = set()  # (file, phase) pairs logged once per process


def phase_file() -> str | None:
    """The phase log this process writes to (None: off)."""
    return os.environ.get(PHASES_ENV) or None


def process_start() -> float:
    """Epoch seconds when the kernel started this process (Linux), else this module's import."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        ticks = int(fields[19])  # starttime, field 22 of stat(5), in clock ticks since boot
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])  # seconds since boot, to 0.01 s
        # the process's age from the two (/proc/stat's btime is whole seconds: too coarse)
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def mark(
    phase: str,
    *,
    role: str = "driver",
    file: str | None = None,
    once: bool = False,
    t: float | None = None,
    **info,
) -> None:
    """Append `phase` (now, or at epoch `t`) to the phase log, if there is one; `file`: the
    driver's log (workers get it passed in, their environment is not the driver's); once:
    only the first time this process reaches `phase`."""
    path = file or phase_file()
    if not path:
        return
    if once:
        if (path, phase) in _seen:
            return
        _seen.add((path, phase))
    line = {
        "phase": phase,
        "t": time.time() if t is None else t,
        "pid": os.getpid(),
        "role": role,
        **info,
    }
    data = (json.dumps(line) + "\n").encode()
    try:  # one write of a short line with O_APPEND: lines of several processes never mix
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError:
        pass  # a diagnostic: never fail a run over it


def start_driver() -> None:
    """The driver's first lines: its process start and now (the run begins)."""
    if phase_file():
        mark("process_start", t=process_start(), once=True)
        mark("run_start")


def read_phases(path: str | os.PathLike) -> list[dict]:
    """The log's lines, in time order."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for ln in f:
            text = ln.strip()
            if text:
                try:
                    rows.append(json.loads(text))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
    return sorted(rows, key=lambda r: r["t"])


def timeline(rows: list[dict], origin: float | None = None) -> list[tuple[float, str, str]]:
    """(seconds from `origin` (default: the first process_start), role, phase) per line, with
    each phase of the workers kept once: its first occurrence."""
    if origin is None:
        starts = [r["t"] for r in rows if r["phase"] == "process_start"]
        origin = min(starts) if starts else (rows[0]["t"] if rows else 0.0)
    out, seen = [], set()
    for r in rows:
        key = (r["role"], r["phase"]) if r["role"] != "driver" else (r["pid"], r["phase"])
        if key in seen:
            continue
        seen.add(key)
        out.append((r["t"] - origin, r["role"], r["phase"]))
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m gifsent_infer.scaleout.phases PHASES.jsonl")
    for sec, role, phase in timeline(read_phases(args[0])):
        print(f"{sec:8.3f} s  {role:7} {phase}")


if __name__ == "__main__":
    main()
