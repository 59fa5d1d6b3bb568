"""Joining a Ray cluster: what `pip install 'gifsent[ray]'` installs covers Ray Client; an address
where nobody listens fails fast with exit 2 and one line; a port that accepts and never
answers (Ray's native connect hangs there) exits 2 within the connect timeout + 5 s; token
authentication is passed through; actors and decoding tasks are planned to fit the cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gifsent_infer.scaleout.ray_cluster import (
    ClusterError,
    _auth_hint,
    _host_port,
    plan_actors,
    resolve_address,
    use_auth_token_file,
)

REPO = Path(__file__).resolve().parents[2]


def _ray_requirement():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["optional-dependencies"]["ray"]]
    assert {r.name for r in reqs} == {"ray", "deltalake"}  # scores go to a Delta table
    (req,) = [r for r in reqs if r.name == "ray"]
    return req


def test_the_ray_extra_installs_ray_client():
    req = _ray_requirement()
    assert req.name == "ray" and {"data", "client"} <= req.extras
    pytest.importorskip("ray")
    from importlib.metadata import metadata

    from ray._private.utils import get_ray_client_dependency_error

    # the installed Ray offers both extras, and what `client` needs is importable
    assert {"data", "client"} <= set(metadata("ray").get_all("Provides-Extra"))
    assert get_ray_client_dependency_error() is None
    import ray.util.client.worker  # noqa: F401  (needs grpcio)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we leave: nobody listens there


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_nobody_listens_fails_fast_with_one_line(scheme, tmp_path):
    pytest.importorskip("ray")
    from infer_support import build_model, write_gifs

    model = build_model(tmp_path / "m.onnx")
    write_gifs(tmp_path / "gifs", 2)
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    args = [sys.executable, "-c", "from gifsent_infer.cli import main; main()", "ray"]
    args += [str(tmp_path / "gifs"), "--out", str(tmp_path / "out"), "--model", str(model)]
    args += ["--address", address, "--connect-timeout", "3"]
    t = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=90, cwd=tmp_path)
    took = time.monotonic() - t
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # the model's provenance line comes first (every run prints it); the failure is one line
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("trained on: ")]
    assert len(lines) == 1, lines
    assert address in lines[0] and "connect" in lines[0] and "refused" in lines[0].lower()
    # 3 s of retries, plus starting Python and importing Ray on a loaded machine
    assert 3 <= took < 60, took
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("part-*"))


class SilentListener:
    """A TCP port that accepts connections and never answers; records when it first accepted."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.first: float | None = None
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.first is None:
                self.first = time.monotonic()
            self.conns.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_silent_listener_exits_2_within_the_connect_timeout(scheme, tmp_path):
    """Ray's native GCS connect never returns from such a port (a Python alarm cannot stop
    it); the join runs on a watchdog thread, so the deadline holds. Timed from the listener's
    first accepted connection (the driver's own start-up, imports included, is not part of
    the connect timeout), to the exit."""
    pytest.importorskip("ray")
    from infer_support import build_model, write_gifs

    model = build_model(tmp_path / "m.onnx")
    write_gifs(tmp_path / "gifs", 2)
    listener = SilentListener()
    address = f"{scheme}127.0.0.1:{listener.port}"
    args = [sys.executable, "-c", "from gifsent_infer.cli import main; main()", "ray"]
    args += [str(tmp_path / "gifs"), "--out", str(tmp_path / "out"), "--model", str(model)]
    args += ["--address", address, "--connect-timeout", "5"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        ended = time.monotonic()
    finally:
        listener.close()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert listener.first is not None, "the driver never connected"
    assert ended - listener.first < 5 + 5, ended - listener.first
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("trained on: ")]
    assert len(lines) == 1, lines
    assert address in lines[0] and "within 5 s" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_addresses_parse_with_ray_default_ports(monkeypatch):
    assert _host_port("ray://head:10001") == ("head", 10001)
    assert _host_port("ray://head") == ("head", 10001)
    assert _host_port("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert _host_port("head") == ("head", 6379)
    assert _host_port("[::1]:6379") == ("::1", 6379)
    with pytest.raises(ClusterError, match="port"):
        _host_port("head:abc")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) == "local"  # never someone's `ray start` cluster by accident
    monkeypatch.setenv("RAY_ADDRESS", "ray://h:10001")
    assert resolve_address(None) == "ray://h:10001" and resolve_address("auto") == "auto"


def test_token_file_is_passed_to_ray_through_its_environment(tmp_path, monkeypatch):
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "stale")
    token = tmp_path / "token"
    token.write_text("abc123\n")
    use_auth_token_file(token)
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token.resolve())
    assert "RAY_AUTH_TOKEN" not in os.environ  # Ray would prefer it over the file
    with pytest.raises(ClusterError, match="no such file"):
        use_auth_token_file(tmp_path / "missing")
    hint = _auth_hint("InvalidAuthToken: Authentication token is invalid")
    assert "token authentication" in hint
    assert "RAY_AUTH_MODE=token" in hint and "RAY_AUTH_TOKEN_PATH" in hint
    assert _auth_hint("connection reset") == ""


def test_actors_use_the_cpus_they_reserve_and_leave_decoding_room():
    two = plan_actors([2], 0, "cpu")  # one small machine
    assert (two.num_actors, two.actor_cpus, two.threads, two.decode_cpus) == (1, 1.0, 1, 1.0)
    one = plan_actors([1], 0, "cpu")  # a 1-CPU machine: decoding shares the CPU
    assert (one.num_actors, one.actor_cpus, one.decode_cpus, one.decode_tasks) == (1, 1.0, 0, 1)
    big = plan_actors([16], 0, "cpu")
    assert (big.num_actors, big.actor_cpus, big.threads, big.decode_cpus) == (2, 4.0, 4, 1.0)
    nodes = plan_actors([1, 1, 1], 0, "cpu")  # an actor lives on one node: 1 CPU at most
    assert (nodes.num_actors, nodes.actor_cpus, nodes.threads) == (1, 1.0, 1)
    shared = plan_actors([2], 0, "cpu", decode_cpus=0)  # all cores to the model, shared
    assert (shared.actor_cpus, shared.threads, shared.decode_tasks) == (2.0, 2, 2)
    assert plan_actors([2], 0, "cpu", actor_cpus=2, decode_cpus=0, threads=1).threads == 1
    gpu = plan_actors([8], 2, "cuda")
    assert (gpu.num_actors, gpu.actor_cpus, gpu.threads) == (2, 1.0, 1)
    with pytest.raises(ValueError, match="no CPU for decoding"):
        plan_actors([2], 0, "cpu", actor_cpus=2)


class _FlakyClientRay:
    """Stands in for `ray`: Ray Client's server fails to start this driver's server `fails`
    times (as it did on a loaded head), then the join works."""

    SERVER_ERROR = (
        "Initialization failure from server:\nTraceback (most recent call last):\n"
        '  File "proxier.py", line 771\nRuntimeError: Starting Ray client server failed.'
    )

    def __init__(self, fails: int) -> None:
        self.fails, self.inits, self.shutdowns = fails, 0, 0

    def init(self, address: str, **kwargs) -> None:
        self.inits += 1
        if self.inits <= self.fails:
            raise ConnectionAbortedError(self.SERVER_ERROR)

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_ray_client_server_start_failures_are_retried_within_the_deadline():
    from gifsent_infer.scaleout import ray_cluster

    ray = _FlakyClientRay(fails=2)
    deadline = time.monotonic() + 60
    ray_cluster._join(ray, "ray://head:10001", {}, deadline, 60)
    assert (ray.inits, ray.shutdowns) == (3, 2)


def test_a_ray_client_server_failure_past_the_deadline_names_the_server_error():
    from gifsent_infer.scaleout import ray_cluster

    ray = _FlakyClientRay(fails=100)
    deadline = time.monotonic() + 5  # under the 10 s a retry needs: no retry
    with pytest.raises(ClusterError) as info:
        ray_cluster._join(ray, "ray://head:10001", {}, deadline, 5)
    assert ray.inits == 1
    line = str(info.value)
    assert "\n" not in line and "Starting Ray client server failed" in line, line
