"""`gifsent-infer` end to end: bad inputs, formats, devices, missing model, URLs, search, info, stdin."""

from __future__ import annotations

import contextlib
import csv
import http.server
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from infer_support import build_model, gif_bytes, write_bad_inputs_folder, write_gifs

from gifsent_infer.cli import main
from gifsent_infer.contract import EMOTIONS
from gifsent_infer.running.readable import Readable
from gifsent_infer.writing.outputs import COLUMNS, read_rows


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def script() -> str:
    found = shutil.which("gifsent-infer", path=str(Path(sys.executable).parent))
    assert found, "gifsent-infer console script is not installed"
    return found


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "m.onnx")


@pytest.fixture
def folder(tmp_path) -> Path:
    gifs = write_bad_inputs_folder(tmp_path / "gifs", 4)
    (gifs / "README.txt").write_text("ignored: not a GIF and not named .gif")
    return gifs


def test_folder_with_bad_inputs_gives_a_row_each_and_exit_1(model, folder, tmp_path):
    out = tmp_path / "scores.csv"
    # the console script, as a user runs it, with `score` as the default command
    proc = subprocess.run(
        [script(), str(folder), "--out", str(out), "--model", str(model), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""  # results went to the file; messages to stderr
    # backend, device, precision and provider are printed at start
    assert "backend " in proc.stderr and "precision fp32" in proc.stderr
    assert "provider " in proc.stderr
    assert "scored 5, failed 3" in proc.stderr and "GIFs/s" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no progress bar / colours when stderr is not a terminal
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        # the info columns, the default `top` column (3 emotions), the 17 scores
        assert tuple(reader.fieldnames) == Readable(top=3).columns(COLUMNS)
        rows = {Path(r["path"]).name: r for r in reader}
    assert set(rows) == {
        "g00000.gif",
        "g00001.gif",
        "g00002.gif",
        "g00003.gif",
        "deep.gif",
        "truncated.gif",
        "zero.gif",
        "text.gif",
    }
    assert "truncated" in rows["truncated.gif"]["error"]
    assert "empty file" in rows["zero.gif"]["error"]
    assert "not a GIF" in rows["text.gif"]["error"]
    for name, r in rows.items():
        bad = name in ("truncated.gif", "zero.gif", "text.gif")
        assert r["status"] == ("error" if bad else "ok")
        assert len(r["model_id"]) == 64 and len(r["sha256"]) == 64
        if not bad:
            assert 0.0 < float(r["happiness"]) < 1.0 and r["frames"] == "4" and r["segments"] == "2"
            assert r["error"] == ""
    assert not Path(str(out) + ".partial").exists()


def test_all_good_exits_0_and_formats_agree(model, tmp_path, capsys):
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 5)
    results = {}
    for ext in ("csv", "jsonl", "json"):
        out = tmp_path / f"s.{ext}"
        code, stdout, err = cli(
            capsys, "score", gifs, "-o", out, "-m", model, "--workers", "2", "-b", "2"
        )
        assert code == 0, err
        results[ext] = sorted(read_rows(out).rows, key=lambda r: r["path"])
    assert results["csv"] == results["jsonl"] == results["json"]
    assert len(results["csv"]) == 5
    assert isinstance(json.loads((tmp_path / "s.json").read_text()), list)
    # stdout, CSV by default; --format overrides
    code, stdout, _ = cli(capsys, gifs, "-o", "-", "-m", model, "-q")
    assert code == 0
    assert sorted(csv.DictReader(io.StringIO(stdout)), key=lambda r: r["path"])[0][
        "happiness"
    ] == repr(results["csv"][0]["happiness"])
    code, stdout, _ = cli(capsys, "-m", model, gifs, "--format", "jsonl", "-q")
    assert (
        code == 0
        and len(stdout.splitlines()) == 5
        and json.loads(stdout.splitlines()[0])["status"] == "ok"
    )


def test_quiet_prints_nothing_on_stderr(model, tmp_path, capsys):
    write_gifs(tmp_path / "g", 2)
    code, _, err = cli(capsys, tmp_path / "g", "-o", tmp_path / "o.csv", "-m", model, "--quiet")
    assert code == 0 and err == ""


def test_cuda_on_this_machine_exits_2_with_reason_and_fix(model, tmp_path, capsys):
    write_gifs(tmp_path / "g", 1)
    code, stdout, err = cli(capsys, tmp_path / "g", "-m", model, "--device", "cuda")
    assert code == 2 and stdout == ""
    assert "--device cuda is not usable" in err and "no CUDA provider" in err
    assert "onnxruntime-gpu" in err and "--device cpu" in err


def test_missing_model_exits_2_and_says_how_to_get_one(tmp_path, capsys):
    write_gifs(tmp_path / "g", 1)
    code, _, err = cli(capsys, tmp_path / "g", "-o", tmp_path / "o.csv")
    assert code == 2
    assert "gifsent-export --model rnn" in err and "make demo" in err
    code, _, err = cli(capsys, tmp_path / "g", "-m", tmp_path / "nope.onnx")
    assert code == 2 and "does not exist" in err


def test_model_from_environment(model, tmp_path, capsys, monkeypatch):
    write_gifs(tmp_path / "g", 1)
    monkeypatch.setenv("GIFSENT_MODEL", str(model))
    code, _, err = cli(capsys, tmp_path / "g", "-o", tmp_path / "o.csv")
    assert code == 0, err


def test_usage_errors_exit_2(model, tmp_path, capsys):
    write_gifs(tmp_path / "g", 1)
    assert cli(capsys, tmp_path / "nothing-here", "-m", model)[0] == 2
    code, _, err = cli(capsys, tmp_path / "g", "-m", model, "-o", tmp_path / "x.txt")
    assert code == 2 and "--format" in err
    code, _, err = cli(capsys, tmp_path / "g", "-m", model, "--resume")
    assert code == 2 and "--resume needs an output file" in err
    assert cli(capsys, tmp_path / "g", "-m", model, "--batch-size", "0")[0] == 2
    assert cli(capsys, tmp_path / "g", "-m", model, "--device", "tpu")[0] == 2


def test_options_may_come_before_the_paths_and_help_works(model, tmp_path, capsys):
    write_gifs(tmp_path / "g", 2)
    out = tmp_path / "o.jsonl"
    code, _, err = cli(capsys, "--out", out, "--model", model, tmp_path / "g")
    assert code == 0, err
    assert len(read_rows(out).rows) == 2
    code, stdout, _ = cli(capsys, "-h")
    assert code == 0 and "score" in stdout and "search" in stdout and "info" in stdout
    code, stdout, _ = cli(capsys, "score", "--help")
    assert code == 0 and "--resume" in stdout


def test_a_model_failing_mid_run_stops_with_exit_2_and_keeps_the_partial_file(tmp_path, capsys):
    broken = build_model(tmp_path / "broken.onnx", n_out=16)  # loads, but its scores are [B, 16]
    write_gifs(tmp_path / "g", 3)
    out = tmp_path / "o.csv"
    code, _, err = cli(capsys, tmp_path / "g", "-o", out, "-m", broken)
    assert code == 2 and "scoring stopped" in err and "expected [" in err and "--resume" in err
    assert not out.exists() and Path(str(out) + ".partial").exists()


def test_stdin_list(model, tmp_path, capsys, monkeypatch):
    paths = write_gifs(tmp_path / "g", 3)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(map(str, paths[:2])) + "\n"))
    code, stdout, _ = cli(capsys, "-", "-m", model, "-q")
    assert code == 0
    assert [r["path"] for r in csv.DictReader(io.StringIO(stdout))] == [str(p) for p in paths[:2]]


def test_info_prints_the_contract(model, capsys):
    code, stdout, _ = cli(capsys, "info", model)
    assert code == 0
    for word in (
        "mean-colour-test",
        "rnn",
        "2 segment(s) x 2 frame(s)",
        "fp32",
        "rmse",
        "happiness",
    ):
        assert word in stdout
    code, stdout, _ = cli(capsys, "info", model, "--json")
    assert code == 0 and json.loads(stdout)["emotions"] == list(EMOTIONS)
    code, _, err = cli(capsys, "info")
    assert code == 2 and "gifsent-export" in err


def test_search_command(tmp_path, capsys):
    scores = tmp_path / "scores.jsonl"
    rows = []
    for name, h, s in (
        ("a.gif", 0.2, 0.9),
        ("b.gif", 0.9, 0.6),
        ("c.gif", 0.6, 0.1),
        ("d.gif", 0.95, 0.0),
    ):
        r = {c: None for c in COLUMNS} | {
            "path": name,
            "status": "ok",
            "error": "",
            "sha256": "x" + name,
        }
        r.update({e: 0.3 for e in EMOTIONS} | {"happiness": h, "surprise": s})
        rows.append(json.dumps(r))
    rows.append(
        json.dumps(
            {c: None for c in COLUMNS} | {"path": "e.gif", "status": "error", "error": "bad"}
        )
    )
    scores.write_text("\n".join(rows) + "\n")
    code, stdout, _ = cli(
        capsys, "search", scores, "--emotion", "happiness", "--top", "3", "-f", "csv"
    )
    assert code == 0
    assert [r["path"] for r in csv.DictReader(io.StringIO(stdout))] == ["d.gif", "b.gif", "c.gif"]
    header = stdout.splitlines()[0].split(",")
    # the ranked emotion once, first, then the other 16 in GIFGIF order
    assert header == [
        "rank",
        "path",
        "sha256",
        "happiness",
        *(e for e in EMOTIONS if e != "happiness"),
    ]
    code, stdout, _ = cli(
        capsys, "search", scores, "--like", "happiness=0.9,surprise=0.6", "-f", "json"
    )
    assert code == 0
    # squared distances: b 0, c .34, d .3625, a .58
    assert [h["path"] for h in json.loads(stdout)] == ["b.gif", "c.gif", "d.gif", "a.gif"]
    code, stdout, _ = cli(capsys, "search", scores, "--emotion", "surprise", "--top", "2")
    assert code == 0 and stdout.index("a.gif") < stdout.index("b.gif") and "d.gif" not in stdout
    assert cli(capsys, "search", scores, "--emotion", "joy")[0] == 2
    assert cli(capsys, "search", tmp_path / "none.csv", "--emotion", "fear")[0] == 2


# --- URLs ------------------------------------------------------------------------------------


class _GifServer(http.server.BaseHTTPRequestHandler):
    bodies: dict = {}  # noqa: RUF012 - set by the test

    def do_GET(self):
        body = self.bodies.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_url_inputs(model, tmp_path, capsys):
    good = gif_bytes(11)
    _GifServer.bodies = {"/good.gif": good, "/huge.gif": b"GIF89a" + b"\0" * 50_000}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GifServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    local = tmp_path / "local.gif"
    local.write_bytes(good)
    try:
        out = tmp_path / "u.jsonl"
        code, _, err = cli(
            capsys,
            f"{base}/good.gif",
            f"{base}/missing.gif",
            f"{base}/huge.gif",
            local,
            "-o",
            out,
            "-m",
            model,
            "--max-bytes",
            "20000",
            "--timeout",
            "10",
            "--allow-private-urls",  # the test server is on 127.0.0.1
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert code == 1, err
    rows = {r["path"]: r for r in read_rows(out).rows}
    assert rows[f"{base}/good.gif"]["status"] == "ok"
    assert rows[f"{base}/good.gif"]["happiness"] == rows[str(local)]["happiness"]
    assert rows[f"{base}/good.gif"]["sha256"] == rows[str(local)]["sha256"]
    assert "HTTP 404" in rows[f"{base}/missing.gif"]["error"]
    assert "limit" in rows[f"{base}/huge.gif"]["error"]


def test_shared_edge_corpus_gets_a_row_per_file(model, edge_gifs, tmp_path, capsys):
    out = tmp_path / "edge.csv"
    code, _, _ = cli(capsys, edge_gifs, "-o", out, "-m", model, "-q")
    rows = {Path(r["path"]).name: r for r in read_rows(out).rows}
    assert set(rows) == {p.name for p in edge_gifs.iterdir() if p.is_file()}
    assert rows["decompression_bomb.gif"]["status"] == "error"
    assert "over the limit" in rows["decompression_bomb.gif"]["error"]
    assert code == (1 if any(r["status"] == "error" for r in rows.values()) else 0)
    assert sum(r["status"] == "ok" for r in rows.values()) >= len(rows) - 3


def test_missing_onnxruntime_exits_2_with_the_install_hint(model, tmp_path, capsys, monkeypatch):
    write_gifs(tmp_path / "g", 1)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = cli(capsys, tmp_path / "g", "-m", model, "--backend", "onnxruntime")
    assert code == 2 and "gifsent[cpu]" in err and "gifsent[gpu]" in err
    assert cli(capsys, "info", model)[0] == 0  # the contract is readable without onnxruntime
    monkeypatch.setitem(sys.modules, "openvino", None)  # no backend at all
    code, _, err = cli(capsys, tmp_path / "g", "-m", model)
    assert code == 2 and "no inference backend is installed" in err and "gifsent[" in err
    assert cli(capsys, "info", model)[0] == 0


def test_missing_openvino_exits_2_with_the_install_line(model, tmp_path, capsys, monkeypatch):
    write_gifs(tmp_path / "g", 1)
    monkeypatch.setitem(sys.modules, "openvino", None)
    code, _, err = cli(capsys, tmp_path / "g", "-m", model, "--backend", "openvino")
    assert code == 2 and "pip install 'gifsent[openvino]'" in err
    # auto falls back to onnxruntime, and says what openvino would buy
    code, _, err = cli(capsys, tmp_path / "g", "-m", model)
    assert code == 0 and "backend onnxruntime" in err and "openvino extra" in err


def test_bad_backend_or_precision_is_a_usage_error(model, tmp_path, capsys):
    write_gifs(tmp_path / "g", 1)
    code, _, err = cli(capsys, tmp_path / "g", "-m", model, "--backend", "tensorrt")
    assert code == 2 and "--backend must be one of auto, onnxruntime, openvino" in err
    code, _, err = cli(capsys, tmp_path / "g", "-m", model, "--precision", "fp8")
    assert code == 2 and "--precision must be one of auto, fp32, bf16" in err
    # bf16 is an OpenVINO option: asking onnxruntime for it is refused with the reason
    code, _, err = cli(
        capsys, tmp_path / "g", "-m", model, "--backend", "onnxruntime", "--precision", "bf16"
    )
    assert code == 2 and "only available with --backend openvino" in err
