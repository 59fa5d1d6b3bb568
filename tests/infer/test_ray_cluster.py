"""A local multi-node cluster (ray.cluster_utils.Cluster: a head and two workers of 1 CPU,
token authentication on): a worker node killed mid-run loses and duplicates nothing, and the
rows equal the local CLI's; a driver with the wrong token is refused in one line; a driver
through Ray Client (ray://, with the token file) gets the local CLI's rows."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

from infer_support import build_model, write_gifs  # noqa: E402
from ray_support import assert_at_most_once, assert_same_rows, local_rows  # noqa: E402

from gifsent_infer.scaleout import distributed, ray_cluster  # noqa: E402
from gifsent_infer.scaleout.distributed import read_scores, score_with_ray  # noqa: E402

pytestmark = pytest.mark.slow  # a three-node cluster on one machine: about a minute


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # our own temp folder: Cluster records its address in $RAY_TMPDIR/ray/ray_current_cluster,
    # which a plain ray.init() elsewhere on this machine would otherwise pick up
    tmp = tempfile.mkdtemp(prefix="grc-", dir="/tmp")  # short: it holds Unix sockets
    token = Path(tmp) / "token"
    token.write_text("gifsent-test-" + os.urandom(8).hex())
    env = {"RAY_TMPDIR": tmp, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    mp.delenv("RAY_AUTH_TOKEN", raising=False)
    mp.delenv("RAY_ADDRESS", raising=False)
    distributed.refresh_ray_auth()  # this process imported Ray before the variables were set
    with socket.socket() as sock:  # a free port for the Ray Client server
        sock.bind(("127.0.0.1", 0))
        client_port = sock.getsockname()[1]
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "ray_client_server_port": client_port,
        },
    )
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    try:
        yield c, workers, token, client_port
    finally:
        ray.shutdown()
        c.shutdown()
        mp.undo()
        distributed.refresh_ray_auth()
        shutil.rmtree(tmp, ignore_errors=True)


def test_worker_node_killed_mid_run(cluster, tmp_path, monkeypatch):
    c, workers, _, _ = cluster
    model = build_model(tmp_path / "m.onnx")
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 14)
    (gifs / "broken.gif").write_bytes(b"GIF89a broken")
    want = local_rows(model, gifs, tmp_path / "local.jsonl")
    assert len(want) == 15

    victim = workers[0]
    removed: list[float] = []

    def kill_a_worker(stage: str, n: int) -> None:
        if stage == "shard" and n == 1:  # mid-run: after the first shard is on disk
            c.remove_node(victim, allow_graceful=False)  # a node this test created
            removed.append(time.monotonic())

    monkeypatch.setattr(ray_cluster, "fault_hook", kill_a_worker)
    out = tmp_path / "out"
    s = score_with_ray([gifs], model, out, read_batch=2, batch_size=2, shard_rows=2)
    assert removed, "the run ended before its first shard"
    assert (s.scored, s.failed, s.skipped) == (14, 1, 0)
    assert s.actor_cpus == 1.0 and s.threads == 1  # a node has 1 CPU: so has the actor
    rows = assert_at_most_once(out)
    assert_same_rows(rows, want)
    assert_same_rows(read_scores(out), want)


def test_a_driver_with_the_wrong_token_is_refused_in_one_line(cluster, tmp_path):
    c, _, _, _ = cluster
    model = build_model(tmp_path / "m.onnx")
    write_gifs(tmp_path / "gifs", 2)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-cluster-token")
    args = [sys.executable, "-c", "from gifsent_infer.cli import main; main()", "ray"]
    args += [str(tmp_path / "gifs"), "--out", str(tmp_path / "out"), "--model", str(model)]
    args += ["--address", c.address, "--auth-token-file", str(wrong), "--connect-timeout", "20"]
    t = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # the model's provenance line comes first (every run prints it); the refusal is one line
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("trained on: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert c.address in lines[0] and "RAY_AUTH_MODE=token" in lines[0], lines[0]
    assert took < 90


def test_ray_client_address_with_the_token_file(cluster, tmp_path):
    _, _, token, client_port = cluster
    model = build_model(tmp_path / "m.onnx")
    gifs = tmp_path / "gifs"
    write_gifs(gifs, 5)
    want = local_rows(model, gifs, tmp_path / "local.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    args = [sys.executable, "-c", "from gifsent_infer.cli import main; main()", "ray"]
    args += [str(gifs), "--out", str(tmp_path / "out"), "--model", str(model)]
    args += ["--address", f"ray://127.0.0.1:{client_port}", "--auth-token-file", str(token)]
    # generous: joining through Ray Client took over the default 30 s on a loaded machine
    args += ["--connect-timeout", "120"]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=240, env=env, cwd=Path(__file__).parents[2]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scored 5, failed 0" in proc.stderr
    assert_same_rows(assert_at_most_once(tmp_path / "out"), want)
