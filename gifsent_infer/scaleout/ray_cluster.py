"""Ray cluster plumbing shared by scoring (distributed.py) and training's feature stage
(train/ray_features.py): importing Ray, joining a cluster (address, connect timeout, token
authentication), laying model actors and decoding tasks on its CPUs, and the fault hooks
the tests and benchmarks use to kill a driver or a worker at a chosen point.

Ray is optional (the `ray` extra) and imported inside functions only.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gifsent_infer.errors import USAGE, GifsentError

RAY_INSTALL_HINT = (
    "Ray is not installed; install the optional extra with `pip install 'gifsent[ray]'` "
    "(Ray Data and Ray Client, with pyarrow)"
)
DEFAULT_CONNECT_TIMEOUT_S = 30.0

# --- fault hooks (tests and benchmarks; internal, not for applications) -------------------------
#
# A deterministic fault at a stage boundary of the driver: GIFSENT_RAY_FAULT=STAGE:N makes
# the driver exit hard (os._exit, no clean-up, like SIGKILL) at the Nth boundary named
# STAGE of a run; `fault_hook(stage, n)`, if set (a module attribute), is called at every
# boundary. Stages: recovered, received, commit, committed, scored (see
# the fault_point calls in distributed.py and delta_table.py). GIFSENT_RAY_FAULT=STAGE:N@S
# instead SIGKILLs the driver S seconds after that boundary (inside a commit, say).
# A worker dying mid-run: GIFSENT_RAY_WORKER_FAULT=<marker file> makes the first model or
# encoder actor that gets a batch exit hard (like an OOM kill), once per marker file. The
# driver reads it when a run starts and hands it to the actors (whose processes do not
# see the driver's environment).
FAULT_ENV = "GIFSENT_RAY_FAULT"
WORKER_FAULT_ENV = "GIFSENT_RAY_WORKER_FAULT"
fault_hook: Callable[[str, int], None] | None = None
_fault_counts: dict[str, int] = {}


def reset_faults() -> None:
    """Start counting boundaries afresh (at the start of a run)."""
    _fault_counts.clear()


def fault_point(stage: str) -> None:
    """A stage boundary of the driver: calls fault_hook, and exits if GIFSENT_RAY_FAULT says so."""
    n = _fault_counts[stage] = _fault_counts.get(stage, 0) + 1
    if fault_hook is not None:
        fault_hook(stage, n)
    want, _, delay = os.environ.get(FAULT_ENV, "").partition("@")
    if want != f"{stage}:{n}":
        return
    if not delay:
        from gifsent_infer.scaleout.phases import mark

        mark("fault_exit", stage=stage, n=n)
        os._exit(137)
    # STAGE:N@SECONDS: SIGKILL this process that long after the boundary, from a timer
    # thread, so that it lands inside what follows (a table commit in native code)
    timer = threading.Timer(float(delay), os.kill, (os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()


def worker_fault_marker() -> str | None:
    """The marker file of GIFSENT_RAY_WORKER_FAULT (read on the driver), or None."""
    return os.environ.get(WORKER_FAULT_ENV) or None


def crash_once(marker: str | None) -> None:
    """In an actor: the first process to get here exits hard (like an OOM kill), once per marker."""
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


class ClusterError(GifsentError, RuntimeError):
    """The Ray cluster cannot be reached, or refused this driver (the CLI exits 2).

    stuck: joining outlived the connect timeout and was abandoned inside Ray's native code;
    Ray cannot be used again in this process, which should exit (the CLI does, at once)."""

    exit_code = USAGE

    def __init__(self, message: str, *, stuck: bool = False) -> None:
        super().__init__(message)
        self.stuck = stuck


def import_ray(data: bool = True):
    """`ray` and `ray.data`, or ImportError with the install hint. data=False: import Ray's
    core only and check that Ray Data is there without importing it (its import costs about
    a second, which a driver spends better while the cluster starts its workers)."""
    import importlib.util

    try:
        import ray

        if data:
            import ray.data  # Ray Data is the `data` extra of ray
        elif importlib.util.find_spec("ray.data") is None:
            raise ImportError("No module named 'ray.data'")
    except ImportError as e:
        raise ImportError(f"{RAY_INSTALL_HINT} ({e})") from None
    return ray


# --- connecting to Ray --------------------------------------------------------------------------


def resolve_address(address: str | None) -> str:
    """The address to use: `address`, else $RAY_ADDRESS, else "local" (a new local instance;
    unlike plain `ray.init()`, never a cluster that `ray start` left on this machine)."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def _host_port(address: str) -> tuple[str, int]:
    """ "ray://h:10001" / "h:6379" / "[::1]:6379" -> (host, port); Ray's default ports."""
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").split("/", 1)[0]
    if rest.startswith("["):  # IPv6 literal
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not port:
        return host, 10001 if client else 6379
    try:
        return host, int(port)
    except ValueError:
        raise ClusterError(f"--address {address!r}: the port is not a number") from None


def _probe(host: str, port: int, deadline: float, address: str) -> None:
    """Wait until something accepts TCP connections at host:port, or raise ClusterError at
    `deadline` (time.monotonic()). Retries, so a cluster that is still starting is found."""
    reason = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClusterError(
                f"cannot reach the Ray cluster at {address} ({reason}) within the connect "
                "timeout; check --address / $RAY_ADDRESS and that the cluster is running "
                "(`ray start --head`; Ray Client listens on port 10001), or raise "
                "--connect-timeout"
            )
        try:
            with socket.create_connection((host, port), timeout=min(left, 2.0)):
                return
        except socket.gaierror as e:
            raise ClusterError(f"--address {address}: unknown host {host!r} ({e})") from None
        except OSError as e:
            reason = e.strerror or type(e).__name__
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


class _Join:
    """ray.init on a watchdog thread: the caller waits at most until the deadline, whatever
    Ray's native code does (a C++ connect that never returns cannot be interrupted by a
    Python signal handler, and does not hold the GIL, so the waiting thread keeps running).
    A join that outlives the deadline is abandoned: the thread stays blocked in Ray, which
    this process can no longer use (see ClusterError.stuck)."""

    def __init__(self, ray, address: str, kwargs: dict) -> None:
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run() -> None:
            try:
                ray.init(address=address, **kwargs)
            except BaseException as e:  # handed to the waiting thread
                self.error = e
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, name="gifsent-ray-join", daemon=True)

    def wait(self, seconds: float) -> bool:
        """Start and wait; True when ray.init returned (or raised: see .error) in time."""
        self.thread.start()
        return self.done.wait(max(seconds, 0.01))


def _auth_hint(message: str, always: bool = False) -> str:
    if always or re.search(r"auth|token|unauthenticated", message, re.IGNORECASE):
        return (
            "; if the cluster uses token authentication (Ray's default for new clusters), "
            "set RAY_AUTH_MODE=token and the "
            "cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (or --auth-token-file; "
            "`ray get-auth-token` prints it on the head node)"
        )
    return ""


def use_auth_token_file(path: str | os.PathLike) -> None:
    """Token authentication for this process (and the Ray processes it starts): sets
    RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH, as Ray reads them."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ClusterError(f"--auth-token-file {path}: no such file")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(p.resolve())
    os.environ.pop("RAY_AUTH_TOKEN", None)  # Ray prefers RAY_AUTH_TOKEN over the file
    refresh_ray_auth()


def refresh_ray_auth() -> None:
    """Make an already imported Ray see RAY_AUTH_* as they are now: Ray caches its config
    and the token when first imported (as its own token set-up does on `ray start`)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # not installed, or a Ray without token authentication
        return
    with suppress(Exception):
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def connect_ray(
    ray,
    address: str | None,
    *,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    init_kwargs: dict | None = None,
) -> None:
    """ray.init for `address` (see resolve_address), within `timeout` seconds, or ClusterError
    with a one-line reason. A remote address is first probed over TCP (retried until the
    timeout), so an address where nobody listens fails fast instead of hanging."""
    addr = resolve_address(address)
    deadline = time.monotonic() + timeout
    # Ray's own INFO lines ("Connecting to existing Ray cluster...") are not ours to print
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if addr == "local":
        kwargs["include_dashboard"] = False
    elif addr.startswith("ray://"):  # Ray Client would pass these on to the server's ray.init
        kwargs = {}
    elif addr == "auto":  # the cluster `ray start` made on this machine: probe its address
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except Exception as e:
            raise ClusterError(
                f"--address auto: no Ray cluster found on this machine ({str(e).splitlines()[0]}); "
                "start one with `ray start --head` or give its address"
            ) from None
        if found:
            addr = found
    if addr != "local":
        host, port = _host_port(addr)
        _probe(host, port, deadline, addr)
        if addr.startswith("ray://"):
            _check_client_token(addr, host, port, deadline)
    kwargs.update(init_kwargs or {})
    if addr == "local":  # starting a local instance: no deadline, and nothing to capture
        ray.init(address=addr, **kwargs)
        return
    _join(ray, addr, kwargs, deadline, timeout)


# Ray Client's server failing to start this driver's server process (it starts one per
# driver, which a loaded head can fail to do): worth another try while the deadline allows
_TRANSIENT_CLIENT = "Initialization failure from server"
_RETRY_LEFT_S = 10.0  # a retry needs at least this much of the deadline left


def _join(ray, addr: str, kwargs: dict, deadline: float, timeout: float) -> None:
    """ray.init(address=addr) within the deadline (a watchdog thread, see _Join), its native
    log captured; ClusterError with a one-line reason otherwise. Ray Client's transient
    server start-up failure is retried while at least _RETRY_LEFT_S of the deadline is left."""
    while True:
        log = _CapturedStderr()
        join = _Join(ray, addr, kwargs)
        with log:
            finished = join.wait(deadline - time.monotonic())
            if not finished:
                # Ray's native code goes on writing to fd 2 from the abandoned thread: keep
                # it captured, and give Python's stderr the real one for the error line
                log.detach()
        e = join.error
        if not finished or e is None or _TRANSIENT_CLIENT not in str(e):
            break
        if deadline - time.monotonic() < _RETRY_LEFT_S:
            break
        _quiet_shutdown(ray)
        time.sleep(1.0)
    if not finished:
        raise ClusterError(
            f"the Ray cluster at {addr} accepted a connection but did not let this driver "
            f"join within {timeout:g} s (is it a Ray port? does it expect token "
            f"authentication?); raise --connect-timeout or check the address"
            f"{_auth_hint(log.text, always=True)}",
            stuck=True,
        )
    if join.error is not None:
        e = join.error
        _quiet_shutdown(ray)
        first = _reason_line(e)
        # Ray reports a refused token only in its C++ log (captured); its exception just
        # says that it failed to connect
        refused = re.search(r"InvalidAuthToken|Unauthenticated|UNAUTHENTICATED", log.text)
        reason = "the cluster refused this driver's token (InvalidAuthToken)" if refused else ""
        raise ClusterError(
            f"cannot join the Ray cluster at {addr}: {reason or f'{type(e).__name__}: {first}'}"
            f"{_auth_hint(f'{e} {log.text}')}"
        )
    log.replay()


def _reason_line(e: BaseException) -> str:
    """The first line of an error; where it only introduces what follows ("...from server:"
    and a server-side traceback), with the last line of it (the server's own error)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[-1]}"[:400]
    return lines[0]


def _check_client_token(addr: str, host: str, port: int, deadline: float) -> None:
    """Ray Client (ray://) retries a refused token until its own timeout and then reports a
    connection timeout; one ping with this driver's token tells at once (ClusterError)."""
    try:
        import grpc
        import ray.core.generated.ray_client_pb2 as pb
        import ray.core.generated.ray_client_pb2_grpc as pb_grpc
        from ray._private.grpc_utils import init_grpc_channel
        from ray.util.client.worker import GRPC_OPTIONS
    except ImportError:  # a Ray without these internals: Ray Client's own errors stand
        return
    refresh_ray_auth()
    channel = None
    try:
        channel = init_grpc_channel(f"{host}:{port}", options=GRPC_OPTIONS, asynchronous=False)
        stub = pb_grpc.RayletDriverStub(channel)
        left = max(0.5, deadline - time.monotonic())
        stub.ClusterInfo(pb.ClusterInfoRequest(type=pb.ClusterInfoType.PING), timeout=left)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            given = "a wrong token" if _token_configured() else "no token"
            raise ClusterError(
                f"the Ray cluster at {addr} refused this driver's token ({given}: "
                f"{e.details() or 'unauthenticated'}); pass the cluster's token with "
                "--auth-token-file, or set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or "
                "RAY_AUTH_TOKEN_PATH (`ray get-auth-token` prints it on the head node)"
            ) from None
        # anything else (still starting, a proxy, a deadline): ray.init decides below
    except Exception:
        pass
    finally:
        if channel is not None:
            with suppress(Exception):
                channel.close()


def _token_configured() -> bool:
    return os.environ.get("RAY_AUTH_MODE") == "token" and bool(
        os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    )


class _CapturedStderr:
    """Holds what Ray's C++ core writes to file descriptor 2 while joining a cluster (one
    warning per second per failed attempt); replayed when joining works, read for the reason
    when it fails."""

    def __init__(self, enabled: bool = True) -> None:
        self.text = ""
        self.enabled = enabled
        self._saved: int | None = None
        self._file: Any = None

    def __enter__(self):
        if not self.enabled:
            return self
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile(mode="w+b")
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no real fd 2: capture nothing
            self._saved = None
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        with suppress(Exception):
            sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()

    def detach(self) -> None:
        """Leave fd 2 captured (a thread we gave up on still writes there) and point Python's
        stderr at the real one; read what was captured so far."""
        if self._saved is None:
            return
        with suppress(Exception):
            sys.stderr.flush()
        self._file.flush()
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        real = os.fdopen(self._saved, "w", buffering=1, encoding="utf-8", errors="replace")
        sys.stderr = real
        self._saved = None  # fd 2 stays on the capture file from here on

    def replay(self) -> None:
        if self.text:
            sys.stderr.write(self.text)
            sys.stderr.flush()


def _quiet_shutdown(ray) -> None:
    with suppress(Exception):
        ray.shutdown()


@dataclass(frozen=True)
class ResourcePlan:
    """How the work is laid on the cluster (see plan_actors)."""

    num_actors: int  # model actors
    actor_cpus: float  # CPUs Ray reserves per actor
    threads: int  # onnxruntime intra-op threads per actor (= its CPUs, unless told otherwise)
    decode_cpus: float  # CPUs Ray reserves per decoding task
    decode_tasks: int | None  # most decoding tasks at once (None: as the reservations allow)


def plan_actors(
    node_cpus: Sequence[float],
    gpus: int,
    device: str,
    num_actors: int | None = None,
    actor_cpus: float | None = None,
    decode_cpus: float | None = None,
    threads: int | None = None,
) -> ResourcePlan:
    """Model actors and decoding tasks for a cluster whose alive nodes have `node_cpus` CPUs.

    An actor runs as many onnxruntime threads as the CPUs it reserves (threads=None), and
    lives on one node, so by default it reserves at most the largest node's CPUs.
    - cuda: one actor per GPU, 1 CPU each; decoding tasks 1 CPU each.
    - cpu: about half the CPUs go to actors of up to 4 CPUs each (onnxruntime scales
      sublinearly beyond that), the rest to decoding tasks of 1 CPU each: on 2 CPUs, one
      actor of 1 CPU (1 thread) next to one decoding task (measured in BENCHMARKS.md).
    - decode_cpus=0 ("shared"): decoding tasks reserve no CPU, at most one per CPU at a
      time, so actors may reserve every CPU and model and decoding share the cores as
      the local CLI's threads do. Chosen by default when the cluster has a single CPU.
    Explicit values win; a plan whose actors would leave decoding tasks no CPU is refused.
    """
    cpus = [c for c in node_cpus if c > 0] or [1.0]
    total, largest = sum(cpus), max(cpus)
    if device == "cuda":
        n = num_actors or max(1, gpus)
        each = float(actor_cpus or 1.0)
        dec = 1.0 if decode_cpus is None else float(decode_cpus)
        return ResourcePlan(n, each, threads or max(1, int(each)), dec, None)
    if decode_cpus is None and total < 2:
        decode_cpus = 0.0  # one CPU: the model and the decoding share it
    shared = decode_cpus is not None and decode_cpus == 0
    budget = total if shared else total / 2  # CPUs for all model actors together
    if actor_cpus is None:
        per_actor = budget / (num_actors or 1)
        actor_cpus = float(max(1, min(4, int(largest), int(per_actor))))
    if num_actors is None:
        num_actors = max(1, int(budget // actor_cpus))
    dec = 1.0 if decode_cpus is None else float(decode_cpus)
    if dec > 0 and num_actors * actor_cpus > total - dec:
        raise ValueError(
            f"{num_actors} model actor(s) x {actor_cpus:g} CPUs leave no CPU for decoding on a "
            f"cluster with {total:g} CPUs; lower --num-actors or --actor-cpus, or let decoding "
            "share the cores with --decode-cpus 0"
        )
    return ResourcePlan(
        num_actors,
        float(actor_cpus),
        threads or max(1, int(actor_cpus)),
        dec,
        max(1, int(total)) if dec == 0 else None,
    )


def node_cpus(ray) -> list[float]:
    """CPUs of each alive node of the cluster."""
    return [
        float(n.get("Resources", {}).get("CPU", 0))
        for n in ray.nodes()
        if n.get("Alive", n.get("alive", False))
    ]
