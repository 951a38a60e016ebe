"""The only place that starts or joins Ray: local or --address, the auth token, resources.

`halbench run` and `halbench profile` both enter Ray through `ray_session`; private Ray APIs
(token authentication, the loopback switch) stay in this file.

Exposure: a local run needs no other machine, yet Ray binds its GCS, raylet, workers and agents
to the node IP (every interface for the gRPC servers) and serves Prometheus metrics there
without a token. Ray keeps everything on the loopback when the node IP is 127.0.0.1, which
`ray.init` picks only when Ray thinks it runs on a laptop OS
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`): `loopback_only` makes it do so for the local start;
tests/run/test_listeners.py catches an upgrade that changes it. Ray writes a new auth token
with the process umask (0644): `ensure_private_token` creates it 0600 first.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from halbench.errors import UserError
from halbench.failures import first_line
from halbench.run import ray_compat, session, signals
from halbench.run.options import RunOptions
from halbench.suite import ResourcesConfig

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # tasks exchange only metrics and rows
GCS_RECONNECT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"  # read by Ray's C++ RayConfig
GCS_RECONNECT_S = 120


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port where nothing listens (ray.init would retry for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto" or a ray:// client address: Ray resolves and reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({err.strerror or err}); "
            "start one with 'ray start --head', or check the host and port"
        ) from None


def use_auth_token_if_present() -> bool:
    """Send the Ray auth token when connecting to a cluster, if this machine has one.

    Ray 2.60's driver sends its token only when RAY_AUTH_MODE=token, even though a token is in
    ~/.ray/auth_token (or $RAY_AUTH_TOKEN / $RAY_AUTH_TOKEN_PATH); without it, connecting to a
    token-protected cluster retries "Unauthenticated" for half a minute and fails. A token sent
    to a cluster without authentication is ignored, so sending it whenever present is safe. An
    explicit RAY_AUTH_MODE is left alone. Returns whether token mode was switched on here.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return False
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    token_file = Path(path).expanduser() if path else Path.home() / ".ray" / "auth_token"
    if not os.environ.get("RAY_AUTH_TOKEN") and not token_file.is_file():
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    ray_compat.enable_token_auth()  # Ray caches its config at import; as ray.init does it
    return True


def init_ray(
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    dashboard: bool,
    temp_dir: Path | None,
) -> str | None:
    """Connect to a cluster (address) or start a local Ray. Returns the dashboard URL if any."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Tune's new console output prints a configuration box and paths even at verbose=0; our
    # Progress lines are the terminal output.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's default loggers write every reported result again as JSON, CSV and TensorBoard
    # events per trial; our task callback already keeps what we need. Without them the
    # per-trial overhead of benchmarks/ray_overhead.py fell from 0.72 s to 0.43 s here.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Without those files, Tune's ResultGrid warns at the end of fit() that it "failed to fetch
    # metrics" for every trial; halbench never reads them (trials/*.json are the record).
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Tune saves its experiment state after every event it handles; a save that fails (a full
    # disk) ends fit() before a finished trial's result that is already on its way is written.
    # halbench resumes from its trial files, never from Tune's state: Tune saves it once at the
    # start and once at the end (forced), after every result was handled.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(10**9))
    if address:
        check_reachable(address)
        # Ray's C++ driver ends the process after this long without its GCS, with one line of
        # its own; signals.HeadWatch notices first (HEAD_LOST_AFTER_S) and says it halbench's way.
        os.environ.setdefault(GCS_RECONNECT_ENV, str(GCS_RECONNECT_S))
        ensure_private_token(create=False)  # warns if others can read it
        use_auth_token_if_present()
        try:
            ctx = ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as err:
            raise UserError(
                f"--address {address}: cannot connect to a Ray cluster ({first_line(err)})"
            ) from None
    else:
        ensure_private_token(create=True)  # before Ray writes one with mode 644
        # With the token in place, token mode set here, as Ray itself would set it: Ray then
        # takes it as the user's choice and skips the banner it prints on every start when it
        # switches token mode on by itself. An explicit RAY_AUTH_MODE is left alone.
        use_auth_token_if_present()
        ray_temp = session.private_temp_dir(temp_dir) if temp_dir else None
        with loopback_only():  # every service of a local Ray on 127.0.0.1
            ctx = ray.init(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=dashboard,
                dashboard_host="127.0.0.1",  # never on a public interface: it can run code
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                log_to_driver=False,
                configure_logging=False,
                _temp_dir=str(ray_temp) if ray_temp else None,
            )
    url = getattr(ctx, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


@contextmanager
def ray_session(options: RunOptions) -> Iterator[str | None]:
    """Ray for one command: joined or started here and shut down after, or the one running.

    Yields a line naming the dashboard URL when there is one (a local Ray has one only with
    --dashboard), else None. While it lasts, SIGTERM stops the command like Ctrl-C, and on a
    cluster a head that stops answering does too (halbench.run.signals); a local Ray's every
    process is ended after, its agents included.
    """
    import ray

    started_here = not ray.is_initialized()
    url, session_dir, watch = None, None, None
    sigterm_before = signal.getsignal(signal.SIGTERM)
    if started_here:
        url = init_ray(
            options.address,
            options.num_cpus,
            options.num_gpus,
            options.dashboard,
            options.ray_temp_dir,
        )
        session_dir = ray_compat.session_dir()
    signals.install_sigterm()  # after ray.init: Ray's driver installs a handler that aborts
    if options.address and started_here:
        # The address the user gave, when it is host:port; for 'auto', the GCS Ray found.
        given = options.address.rpartition(":")[2].isdigit() and "://" not in options.address
        gcs = options.address if given else ray.get_runtime_context().gcs_address
        watch = signals.HeadWatch(gcs).start()
    try:
        yield _dashboard_line(url) if url else None
    finally:
        if watch is not None:
            watch.stop()
        if started_here and not signals.head_lost():  # without its GCS, shutdown would hang
            ray.shutdown()
        if started_here and not options.address and session_dir:
            session.end_processes(session_dir)
        if threading.current_thread() is threading.main_thread() and sigterm_before is not None:
            signal.signal(signal.SIGTERM, sigterm_before)


def _dashboard_line(url: str) -> str:
    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    hint = (
        " (token authentication: print the token with 'ray get-auth-token'; "
        "scripts send 'Authorization: Bearer <token>')"
        if token
        else ""
    )
    return f"Ray dashboard: {url}{hint}"


def trial_resources(res: ResourcesConfig, *, whole_gpu: bool | None = None) -> dict[str, float]:
    """Ray resources of one task from a suite's `resources` section (cpu, gpu, memory bytes).

    `whole_gpu`: at least one whole GPU (default: `exclusive_gpu` when the task uses a GPU);
    no other task on that GPU disturbs this one's timings.
    """
    gpus = res.gpus_per_trial
    if gpus > 1 and not gpus.is_integer():
        raise UserError(
            f"resources.gpus_per_trial: a fraction (<= 1) or a whole number of GPUs, got {gpus:g}"
        )
    if whole_gpu if whole_gpu is not None else res.exclusive_gpu and gpus > 0:
        gpus = max(1.0, gpus)
    resources = {"cpu": res.cpus_per_trial, "gpu": gpus}
    if res.memory_gb:
        resources["memory"] = res.memory_gb * 1024**3
    return resources


def check_fits(resources: dict[str, float], path: Path | str = "suite") -> None:
    """Refuse a task that no node of the connected Ray can hold instead of waiting forever."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    check_capacity(resources, _largest_node(nodes), path, "the largest node of this Ray")


def ray_task_options(resources: dict[str, float]) -> dict[str, float]:
    """trial_resources' keys as ray.remote's options (num_cpus, num_gpus, memory)."""
    names = {"cpu": "num_cpus", "gpu": "num_gpus", "memory": "memory"}
    return {names[k]: v for k, v in resources.items()}


def local_capacity(num_cpus: int | None, num_gpus: int | None) -> dict[str, float]:
    """What a local Ray started with these options would offer: cpu, gpu, memory (bytes)."""
    import torch

    gpus = num_gpus if num_gpus is not None else torch.cuda.device_count()
    return {
        "cpu": float(num_cpus or ray_detected_cpus()),
        "gpu": float(gpus),
        "memory": float(_machine_memory()),
    }


def ray_detected_cpus() -> int:
    """The CPUs a local `ray.init()` registers without --num-cpus: Ray's own count.

    Ray reads the container's CPU quota (cgroups), truncated to a whole number, where
    os.cpu_count() counts the host's CPUs: on a 16-core node with a quota of 15.5 CPUs Ray
    registers 15, and 4-CPU trials then fit 3 at once. Without Ray, os.cpu_count().
    """
    return ray_compat.detected_cpus() or os.cpu_count() or 1


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # unknown: do not refuse on a guess
        return 1 << 60


def cluster_capacity(address: str) -> dict[str, float]:
    """The largest alive node's cpu, gpu and memory on the cluster at `address` (joined here)."""
    import ray

    with ray_session(RunOptions(address=address)):
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return _largest_node(nodes)


def _largest_node(nodes: list[dict[str, float]]) -> dict[str, float]:
    return {
        key: max((n.get(ray_key, 0.0) for n in nodes), default=0.0)
        for key, ray_key in (("cpu", "CPU"), ("gpu", "GPU"), ("memory", "memory"))
    }


def check_capacity(
    resources: dict[str, float],
    capacity: dict[str, float],
    path: Path | str,
    whose: str | None = None,
) -> None:
    """Refuse, before Ray starts, a task that no node can hold: one line naming file and field.

    `whose`: the Ray that was asked (a cluster, a connected Ray); None is the local Ray this
    command would start, which --num-cpus/--num-gpus size (the message says so).
    """
    names = {"cpu": ("cpus_per_trial", "CPU"), "gpu": ("gpus_per_trial", "GPU")}
    names["memory"] = ("memory_gb", "memory")
    for key, (field, unit) in names.items():
        need, have = resources.get(key, 0.0), capacity.get(key, 0.0)
        if need <= have:
            continue
        shown = f"{need / 1024**3:g} GB" if key == "memory" else f"{need:g}"
        have_s = f"{have / 1024**3:.1f} GB" if key == "memory" else f"{have:g}"
        local = whose is None and key != "memory"
        hint = " (set --num-cpus/--num-gpus, or the suite)" if local else ""
        raise UserError(
            f"{path}: resources.{field}: a trial needs {shown} {unit} but "
            f"{whose or 'this machine'} has {have_s}{hint}"
        )


def check_device(device: str, suite_path: Path | str, field: str = "train.device") -> None:
    """`cuda` on a machine where torch sees no CUDA device: refused before anything runs."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"{suite_path}: {field}: cuda, but torch sees no CUDA device on this machine "
            "(use 'auto' or 'cpu', or run on a GPU machine with --address)"
        )


# ----- exposure: a local Ray on 127.0.0.1 only, and a private auth token ------------------

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_warned: set[Path] = set()


@contextmanager
def loopback_only() -> Iterator[None]:
    """Within this block, a local ray.init chooses 127.0.0.1 as its node IP (all services)."""
    before_env = os.environ.get(LOCAL_ONLY_ENV)
    os.environ[LOCAL_ONLY_ENV] = "0"
    try:
        with ray_compat.cluster_mode(False):  # read by services.get_node_ip_address
            yield
    finally:
        if before_env is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        else:
            os.environ[LOCAL_ONLY_ENV] = before_env


def token_path() -> Path:
    """Where Ray reads its auth token: $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).expanduser() if path else Path.home() / ".ray" / "auth_token"


def ensure_private_token(create: bool) -> Path | None:
    """The token file, created 0600 if missing (and `create`); warns once if others can read it.

    Ray itself writes a new token with the process umask (0644 usually), readable by every
    user of the machine, while the token lets its holder run code on the cluster. Nothing is
    done when authentication is off (RAY_AUTH_MODE=disabled) or the token is in
    $RAY_AUTH_TOKEN. Returns the file's path when there is one.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" or os.environ.get(
        "RAY_AUTH_TOKEN"
    ):
        return None
    path = token_path()
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another run created it just now: use theirs
            return path
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # the shape of Ray's own tokens (64 hex digits)
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path not in _warned:
        _warned.add(path)
        print(
            f"[halbench] warning: {path} is readable by other users (mode {mode:o}); "
            f"whoever reads it can run code on your Ray cluster: chmod 600 {path}",
            file=sys.stderr,
            flush=True,
        )
    return path
