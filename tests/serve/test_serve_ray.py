"""The service as a Ray Serve deployment on a local multi-node cluster
(ray.cluster_utils.Cluster: a head and one worker node): two replicas serve the same app;
one replica's process is killed under load. Requests either get the right rows (200) or a
5xx, never a wrong answer, and the deployment recovers with a new replica."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from infer_support import build_model
from serve_support import Server, cli_rows, free_port, without_path
from support import gif_bytes

pytest.importorskip("fastapi")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

pytestmark = pytest.mark.slow

CLUSTER_DEADLINE_S = 300  # the machine is shared and loaded: Ray starts slowly there


@pytest.fixture
def cluster(monkeypatch):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    tmp = tempfile.mkdtemp(prefix="gss-", dir="/tmp")  # short: it holds Unix sockets
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes(timeout=CLUSTER_DEADLINE_S)
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    try:
        yield c, tmp
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        c.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def replica_pids(s: Server, want: int, deadline_s: float) -> set[int]:
    pids: set[int] = set()
    deadline = time.monotonic() + deadline_s
    while len(pids) < want and time.monotonic() < deadline:
        try:
            r = s.request("GET", "/v1/info", timeout=30)
            if r.status == 200:
                pids.add(r.json()["pid"])
        except OSError:
            pass
    return pids


def test_a_replica_killed_under_load_fails_only_its_requests(cluster):
    from gifsent_infer.options import ScoreOptions
    from gifsent_infer.serve.ray_app import deploy
    from gifsent_infer.serve.settings import ServeOptions

    _, tmp = cluster
    model = build_model(Path(tmp) / "m.onnx")
    port = free_port()
    opts = ScoreOptions(model=str(model), backend="onnxruntime", workers=1, threads=1)
    deploy(opts, ServeOptions(), replicas=2, replica_cpus=0.5, port=port)
    s = Server(None, port, None)  # type: ignore[arg-type]
    gif = gif_bytes(7)
    first = s.post("/v1/score", gif, "image/gif", timeout=120)
    assert first.status == 200, first.body
    want = first.json()

    pids = replica_pids(s, 2, 120)
    assert len(pids) == 2, "requests did not reach both replicas"
    victim = min(pids)

    statuses: list[int] = []
    wrong: list[bytes] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                r = s.post("/v1/score", gif, "image/gif", timeout=60)
            except OSError:
                statuses.append(-1)  # the connection broke: not a wrong answer either
                continue
            statuses.append(r.status)
            if r.status == 200 and r.json() != want:
                wrong.append(r.body)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)
    os.kill(victim, signal.SIGKILL)  # a process the cluster we started runs
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(90)

    assert not wrong, "a request got a wrong answer"
    assert statuses and all(st == 200 or st >= 500 or st == -1 for st in statuses), statuses
    assert statuses.count(200) > 0

    # recovery: Ray Serve replaces the dead replica, and both serve again
    deadline = time.monotonic() + CLUSTER_DEADLINE_S
    new: set[int] = set()
    while time.monotonic() < deadline and not (new - pids):
        new |= replica_pids(s, 2, 20)
        time.sleep(1)
    assert new - pids, "no replacement replica came up"
    assert victim not in new
    after = s.post("/v1/score", gif, "image/gif", timeout=120)
    assert after.status == 200 and after.json() == want


def _processes_under(folder: str) -> list[int]:
    """Processes whose command line names `folder` (Ray's raylet, GCS and workers of an
    instance started with RAY_TMPDIR=folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if folder.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_the_serve_ray_command_scores_over_http_and_stops_cleanly(tmp_path):
    """`gifsent-infer serve --ray --replicas 1` in a subprocess, on a new local Ray instance
    (RAY_ADDRESS unset, a private RAY_TMPDIR): one GIF scored over HTTP with the CLI's rows,
    then SIGTERM: the command exits 0 and leaves no Ray process behind."""
    model = build_model(tmp_path / "m.onnx")
    gif = tmp_path / "one.gif"
    gif.write_bytes(gif_bytes(5))
    want = cli_rows(model, [gif], tmp_path)
    ray_tmp = tempfile.mkdtemp(prefix="gsc-", dir="/tmp")  # short: it holds Unix sockets
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    cmd = [sys.executable, "-m", "gifsent_infer.cli", "serve", "--ray", "--replicas", "1"]
    cmd += ["--model", str(model), "--port", str(port), "--backend", "onnxruntime"]
    cmd += ["--workers", "1", "--threads", "1"]
    log = tmp_path / "serve-ray.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    s = Server(proc, port, log)
    try:
        deadline, ready = time.monotonic() + CLUSTER_DEADLINE_S, False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            # refused until Ray Serve's proxy listens, 404/503 until the app is up
            with contextlib.suppress(OSError):
                ready = s.request("GET", "/readyz", timeout=10).status == 200
            time.sleep(0.5)
        why = f"not ready in {CLUSTER_DEADLINE_S} s (exit {proc.poll()})"
        assert ready, f"{why}:\n{log.read_text()}"

        r = s.post("/v1/score", gif.read_bytes(), "image/gif", timeout=120)
        assert r.status == 200, r.body
        [row] = r.json()
        assert without_path(row) == without_path(want[0])  # the CLI's rows, bit for bit

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
        deadline = time.monotonic() + 60
        while _processes_under(ray_tmp) and time.monotonic() < deadline:
            time.sleep(1)
        assert not _processes_under(ray_tmp), "Ray processes left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for pid in _processes_under(ray_tmp):  # only what this test's Ray instance started
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_serve_ray_with_an_address_where_nobody_listens_exits_2_in_one_line(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "gifsent_infer.cli", "serve", "--ray", "--model", str(model)]
    cmd += ["--address", f"127.0.0.1:{port}", "--connect-timeout", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=CLUSTER_DEADLINE_S)
    assert run.returncode == 2, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert "cannot reach the Ray cluster" in lines[-1] and "Traceback" not in run.stderr
