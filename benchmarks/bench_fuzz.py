"""Fuzz and abuse gifsent-infer: malformed GIFs, special paths, a hostile HTTP server, memory.

    .venv/bin/python benchmarks/bench_fuzz.py                 # ~3-5 min on 2 busy cores
    .venv/bin/python benchmarks/bench_fuzz.py --seeds 4 --skip-memory   # a quick look

1. Corpus: regenerated each run from ../shared/gifs (the smallest real GIFs and edge
   cases as seeds), with mutations of every kind: truncation at block and sub-block
   boundaries, bit flips, LZW minimum code size abuse, logical screen and frame rectangle
   abuse, palette flags without tables, extension and frame storms, and non-GIF bytes
   named .gif. Nothing is committed; the corpus lives in a temporary folder.
2. Special paths named on the command line: a FIFO, a socket, a symlink loop, a dangling
   symlink, /dev/null and /dev/zero, a folder named .gif, an over-long name, names with
   bytes that are not UTF-8, a carriage return, a newline, quotes and commas.
3. A hostile HTTP server on 127.0.0.1 (tests/hostile_http.py): a stalled server, headers and
   body dripped a byte at a time, an endless body, an over-limit length, a redirect loop,
   a gzip bomb, an SSH banner, a garbage status line; plus the SSRF policy without
   --allow-private-urls (loopback, localhost, 169.254.169.254 are refused before connecting).
4. Memory: 16 large-but-legal GIFs scored with 8 workers, without a budget and with the
   default one, peak RSS of each CLI process.

The CLI runs in a subprocess with a wall-clock limit: a crash is an exit code other than
0/1 or a traceback on stderr, a hang is the limit passing, a lost row is an input without
a row. Per-file seconds (p50/p99/max) come from scoring every malformed file once,
sequentially, in this process (library, workers=0). Timings are on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile_http import SECRET, HostileServer  # noqa: E402
from infer_support import build_model  # noqa: E402
from machine import cpu_line  # noqa: E402

from gifsent_infer.contract import SamplingSpec  # noqa: E402
from gifsent_infer.writing.outputs import read_rows  # noqa: E402


def shared_gifs() -> Path | None:
    for cand in (REPO.parent / "shared" / "gifs", REPO.parents[1] / "shared" / "gifs"):
        if cand.is_dir():
            return cand
    return None


# --- GIF structure and mutations -------------------------------------------------------------


def _sub_blocks(data: bytes, pos: int, marks: list[int]) -> int:
    while pos < len(data):
        n = data[pos]
        marks.append(pos)
        pos += 1 + n
        if n == 0:
            break
    return pos


def gif_layout(data: bytes) -> tuple[list[int], list[int]]:
    """(block boundaries incl. sub-blocks, offsets of image descriptors), parsed leniently."""
    marks = [0, 6, 13]
    descriptors: list[int] = []
    if len(data) < 13:
        return marks, descriptors
    pos = 13
    if data[10] & 0x80:
        pos += 3 * (2 ** ((data[10] & 7) + 1))
    marks.append(pos)
    while pos < len(data):
        b = data[pos]
        if b == 0x21:
            pos = _sub_blocks(data, pos + 2, marks)
        elif b == 0x2C:
            descriptors.append(pos)
            if pos + 10 > len(data):
                break
            packed = data[pos + 9]
            pos += 10
            if packed & 0x80:
                pos += 3 * (2 ** ((packed & 7) + 1))
            marks.append(pos)  # the LZW minimum code size byte
            pos = _sub_blocks(data, pos + 1, marks)
        else:
            break
        marks.append(pos)
    return sorted(set(m for m in marks if m <= len(data))), descriptors


def mutations(data: bytes, rng: random.Random, max_truncations: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    marks, descs = gif_layout(data)
    cuts = marks if len(marks) <= max_truncations else rng.sample(marks, max_truncations)
    for m in sorted(cuts):
        out[f"trunc-at-{m}"] = data[:m]
        if m + 1 < len(data):
            out[f"trunc-after-{m}"] = data[: m + 1]
    for k in (1, 4, 16, 64, 256):
        b = bytearray(data)
        for _ in range(k):
            i = rng.randrange(6, len(b)) if len(b) > 6 else 0
            if b:
                b[i] ^= 1 << rng.randrange(8)
        out[f"flip-{k}"] = bytes(b)
    for j, d in enumerate(descs[:3]):
        packed = data[d + 9] if d + 9 < len(data) else 0
        lzw_at = d + 10 + (3 * (2 ** ((packed & 7) + 1)) if packed & 0x80 else 0)
        if lzw_at < len(data):
            for v in (0, 1, 9, 12, 255):
                b = bytearray(data)
                b[lzw_at] = v
                out[f"lzw{j}-{v}"] = bytes(b)
        if d + 9 <= len(data):
            for name, rect in {
                "frame-huge": (0, 0, 65535, 65535),
                "frame-offscreen": (65000, 65000, 10, 10),
                "frame-zero": (0, 0, 0, 0),
                "frame-wide": (0, 0, 65535, 1),
            }.items():
                b = bytearray(data)
                b[d + 1 : d + 9] = struct.pack("<4H", *rect)
                out[f"{name}{j}"] = bytes(b)
            b = bytearray(data)
            b[d + 9] |= 0x87  # a local palette flag without the table
            out[f"lct-missing{j}"] = bytes(b)
    for name, (w, h) in {
        "screen-zero": (0, 0),
        "screen-huge": (65535, 65535),
        "screen-1x1": (1, 1),
        "screen-wide": (65535, 1),
    }.items():
        b = bytearray(data)
        if len(b) >= 10:
            b[6:10] = struct.pack("<HH", w, h)
            out[name] = bytes(b)
    if len(data) > 13:
        b = bytearray(data)
        b[10] |= 0x87  # a 256-colour global palette flag, the real table (if any) left short
        out["gct-flag-lie"] = bytes(b)
        b = bytearray(data)
        b[10] &= 0x7F  # no global palette: the table's bytes become garbage blocks
        out["gct-dropped"] = bytes(b)
    first = descs[0] if descs else len(data)
    storms = {
        "storm-gce": b"!\xf9\x04\x00\x00\x00\x00\x00" * 20000,
        "storm-comment": b"!\xfe\x01a\x00" * 50000,
        "storm-subblocks": b"!\xffNETSCAPE" + b"\x01x" * 100000 + b"\x00",
        "storm-unknown-ext": b"!\x42\x03abc\x00" * 20000,
    }
    for name, blob in storms.items():
        out[name] = data[:first] + blob + data[first:]
    if descs:
        d = descs[0]
        tiny_frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00"
        out["storm-frames"] = data[:d] + tiny_frame * 20000 + data[d:]
    return out


NON_GIFS = {
    "empty": b"",
    "magic-only": b"GIF89a",
    "header-only": b"GIF89a\x10\x00\x10\x00\x00\x00\x00",
    "png": b"\x89PNG\r\n\x1a\n" + bytes(100),
    "jpeg": b"\xff\xd8\xff\xe0" + bytes(100),
    "html": b"<!DOCTYPE html><title>" + SECRET + b"</title>",
    "zip": b"PK\x03\x04" + bytes(100),
    "text": b"just some text\n" * 10,
    "random": random.Random(7).randbytes(4096),
    "gif87-garbage": b"GIF87a" + random.Random(8).randbytes(4096),
}


def build_corpus(seeds: list[Path], folder: Path, max_truncations: int) -> dict[str, int]:
    rng = random.Random(12)
    kinds: dict[str, int] = {}
    for s, seed in enumerate(seeds):
        data = seed.read_bytes()
        for name, blob in mutations(data, rng, max_truncations).items():
            (folder / f"s{s:02d}-{name}.gif").write_bytes(blob)
            kind = name.split("-")[0].rstrip("0123456789")
            kinds[kind] = kinds.get(kind, 0) + 1
    for name, blob in NON_GIFS.items():
        (folder / f"nongif-{name}.gif").write_bytes(blob)
    kinds["nongif"] = len(NON_GIFS)
    return kinds


def special_paths(folder: Path) -> list[str]:
    folder.mkdir()
    os.mkfifo(folder / "fifo.gif")
    os.mkfifo(folder / "fifo-no-suffix")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(folder / "socket.gif"))
    s.close()
    os.symlink("loop.gif", folder / "loop.gif")
    os.symlink("nowhere.gif", folder / "dangling.gif")
    (folder / "folder.gif").mkdir()
    names = [b"bad\xff\xfe.gif", b"cr\r.gif", b"lf\n.gif", b'q",;.gif']
    paths = [str(folder / n) for n in ("fifo.gif", "fifo-no-suffix", "socket.gif", "loop.gif")]
    paths += [str(folder / "dangling.gif"), "/dev/null", "/dev/zero", str(folder / "folder.gif")]
    paths.append(str(folder / ("x" * 300 + ".gif")))
    for n in names:
        p = os.fsencode(folder) + b"/" + n
        with open(p, "wb") as f:
            f.write(
                b"GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
            )
        paths.append(os.fsdecode(p))
    return paths


# --- running the CLI ---------------------------------------------------------------------------

_RUN = """
import resource, sys
from gifsent_infer.cli import main
try:
    main(sys.argv[2:])
finally:
    open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run_cli(args: list[str], limit_s: float, rss_file: Path) -> dict:
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUN, str(rss_file), *args],
            capture_output=True,
            timeout=limit_s,
        )
        rc, err, hung = proc.returncode, proc.stderr.decode("utf-8", "replace"), False
    except subprocess.TimeoutExpired as e:
        rc, err, hung = None, (e.stderr or b"").decode("utf-8", "replace"), True
    seconds = time.perf_counter() - t
    rss_kib = int(rss_file.read_text()) if rss_file.is_file() and rss_file.read_text() else 0
    return {
        "rc": rc,
        "hung": hung,
        "crashed": (rc not in (0, 1)) or "Traceback" in err,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(rss_kib / 1024, 1),
        "stderr_tail": err[-600:],
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


# --- the parts ---------------------------------------------------------------------------------


def fuzz_files(work: Path, model: Path, shared: Path, n_seeds: int, max_trunc: int) -> dict:
    seeds = sorted((shared / "real").glob("*.gif"), key=lambda p: p.stat().st_size)[:n_seeds]
    seeds += sorted((shared / "edge").glob("*.gif"), key=lambda p: p.stat().st_size)[-n_seeds:]
    corpus = work / "corpus"
    corpus.mkdir()
    kinds = build_corpus(seeds, corpus, max_trunc)
    specials = special_paths(work / "special")
    n_files = len(list(corpus.iterdir()))
    out = work / "fuzz.csv"
    args = [str(corpus), *specials, "-o", str(out), "-m", str(model), "--workers", "8", "-q"]
    res = run_cli(args, 600, work / "rss-fuzz")
    rows = read_rows(out).rows if out.is_file() else []
    paths = {r["path"] for r in rows}
    # every input gets a row, except an empty folder named on the command line (a note)
    specials = [p for p in specials if not p.endswith("folder.gif")]
    expected = {str(p) for p in corpus.iterdir()} | set(specials)
    special_rows = {
        p: next(((r["error"] or "ok") for r in rows if r["path"] == p), "NO ROW") for p in specials
    }
    res.update(
        seeds=len(seeds),
        kinds=kinds,
        inputs=len(expected),
        rows=len(rows),
        lost=len(expected - paths),
        extra=len(paths - expected),
        ok=sum(r["status"] == "ok" for r in rows),
        errors=sum(r["status"] == "error" for r in rows),
        special_rows={os.path.basename(p)[:24]: e for p, e in special_rows.items()},
    )
    # per-file seconds, sequential, in this process
    from gifsent_infer.running.scorer import Scorer

    scorer = Scorer(model, device="cpu", threads=1)
    times, slowest = [], ("", 0.0)
    for p in sorted(corpus.iterdir()):
        t = time.perf_counter()
        scorer.score(str(p))
        dt = time.perf_counter() - t
        times.append(dt)
        if dt > slowest[1]:
            slowest = (p.name, dt)
    res.update(
        files_timed=len(times),
        p50_s=round(pct(times, 0.5), 4),
        p99_s=round(pct(times, 0.99), 4),
        max_s=round(max(times), 4),
        slowest=slowest[0],
    )
    res["n_files"] = n_files
    return res


def fuzz_urls(work: Path, model: Path, gif: bytes) -> dict:
    from gifsent_infer.reading.inputs import InputError, fetch_url

    paths = [
        "/ok.gif",
        "/stall",
        "/drip-headers",
        "/drip-body",
        "/endless",
        "/big",
        "/loop",
        "/chain/3",
        "/gzip-bomb",
        "/banner",
        "/garbage-status",
        "/html",
        "/missing",
    ]
    timeout = 3.0
    res: dict = {"timeout_s": timeout, "urls": {}}
    with HostileServer(gif, drip_s=0.2) as srv:
        for p in paths:
            t = time.perf_counter()
            try:
                fetch_url(srv.base + p, timeout=timeout, max_bytes=1 << 20, allow_private=True)
                outcome = "ok"
            except InputError as e:
                outcome = str(e)
            dt = time.perf_counter() - t
            res["urls"][p] = {"seconds": round(dt, 2), "result": outcome[:90]}
        res["max_s"] = max(v["seconds"] for v in res["urls"].values())
        res["echoed_server_bytes"] = any(
            SECRET.decode() in v["result"] for v in res["urls"].values()
        )
        out = work / "urls.csv"
        args = [srv.base + p for p in paths] + ["-o", str(out), "-m", str(model)]
        args += ["--timeout", str(timeout), "--max-bytes", str(1 << 20), "--allow-private-urls"]
        cli = run_cli([*args, "--workers", "8", "-q"], 120, work / "rss-urls")
        rows = read_rows(out).rows if out.is_file() else []
        cli.update(inputs=len(paths), rows=len(rows), ok=sum(r["status"] == "ok" for r in rows))
        cli["echoed_server_bytes"] = any(SECRET.decode() in (r["error"] or "") for r in rows)
        res["cli"] = cli
        port = srv.server_address[1]
        policy = [
            srv.base + "/ok.gif",
            f"http://localhost:{port}/ok.gif",
            f"http://127.1.2.3:{port}/ok.gif",
            "http://169.254.169.254/latest/meta-data/",
            f"http://[::1]:{port}/ok.gif",
        ]
        out = work / "policy.csv"
        pol = run_cli([*policy, "-o", str(out), "-m", str(model), "-q"], 60, work / "rss-pol")
        rows = read_rows(out).rows if out.is_file() else []
        pol.update(
            inputs=len(policy),
            refused=sum("refused to fetch" in (r["error"] or "") for r in rows),
        )
        res["policy"] = pol
    return res


def memory(work: Path, n: int = 16, side: int = 1024, frames: int = 40) -> dict:
    """n large-but-legal GIFs (side x side, `frames` frames) with a 32-frame model spec."""
    import numpy as np
    from PIL import Image

    spec = SamplingSpec(segments=4, frames_per_segment=8, fps=10.0, size=32, crop=32)
    model = build_model(work / "m32.onnx", spec=spec)
    rng = np.random.default_rng(0)
    images = []
    for i in range(frames):
        arr = np.zeros((side, side), np.uint8)
        arr[:, : side * (i + 1) // frames] = 1 + i % 200
        arr[rng.integers(0, side, 64), rng.integers(0, side, 64)] = 255
        images.append(Image.fromarray(arr, "L").convert("P"))
    big = work / "big"
    big.mkdir()
    first = big / "big00.gif"
    images[0].save(first, save_all=True, append_images=images[1:], duration=100, loop=0)
    for i in range(1, n):
        shutil.copyfile(first, big / f"big{i:02d}.gif")
    res: dict = {
        "gifs": n,
        "canvas": f"{side}x{side}",
        "frames": frames,
        "file_kib": first.stat().st_size // 1024,
    }
    for label, extra in (
        ("workers 0", ["--workers", "0"]),
        ("workers 8, no budget (64G)", ["--workers", "8", "--memory-budget", "64G"]),
        ("workers 8, default budget (1G)", ["--workers", "8"]),
        ("workers 8, budget 256M", ["--workers", "8", "--memory-budget", "256M"]),
    ):
        out = work / "mem.csv"
        r = run_cli(
            [str(big), "-o", str(out), "-m", str(model), "-q", *extra], 600, work / "rss-mem"
        )
        rows = read_rows(out).rows if out.is_file() else []
        res[label] = {
            "peak_rss_mib": r["peak_rss_mib"],
            "seconds": r["seconds"],
            "ok": sum(x["status"] == "ok" for x in rows),
            "rc": r["rc"],
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6, help="real and edge GIFs each used as seeds")
    ap.add_argument("--truncations", type=int, default=24, help="truncation points per seed")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    shared = shared_gifs()
    if shared is None:
        sys.exit("../shared/gifs is absent: the fuzz corpus is made from it")
    results: dict = {"cpu": cpu_line()}
    with tempfile.TemporaryDirectory(prefix="gifsent-fuzz-") as tmp:
        work = Path(tmp)
        model = build_model(work / "m.onnx")
        t = time.perf_counter()
        results["files"] = fuzz_files(work, model, shared, args.seeds, args.truncations)
        gif = sorted((shared / "real").glob("*.gif"), key=lambda p: p.stat().st_size)[
            0
        ].read_bytes()
        results["urls"] = fuzz_urls(work, model, gif)
        if not args.skip_memory:
            results["memory"] = memory(work)
        results["total_s"] = round(time.perf_counter() - t, 1)
        results["bench_peak_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
    text = json.dumps(results, indent=1)  # ASCII: special names hold bytes that are not UTF-8
    if args.json:
        args.json.write_text(text)
    print(text)
    f = results["files"]
    print(
        f"\nfiles: {f['inputs']} inputs, {f['rows']} rows ({f['ok']} ok, {f['errors']} errors), "
        f"lost {f['lost']}, crashed {f['crashed']}, hung {f['hung']}, "
        f"p50/p99/max {f['p50_s']}/{f['p99_s']}/{f['max_s']} s, CLI peak RSS {f['peak_rss_mib']} MiB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
