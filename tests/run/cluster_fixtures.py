"""Real Ray nodes and a real S3 server for the cluster tests, each in its own process group.

A node is `ray start ... --block` in a new session: SIGTERM to its group stops the raylet and
the processes it started, SIGKILL ends what is left. `ray stop` is never used: it would end
every Ray process of the machine, other people's runs included. Each node gets its own free
GCS port, a short --temp-dir (Ray's socket paths are limited to ~107 characters), one CPU and a
100 MB object store (trials exchange only metrics). Every cluster has its own auth token
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH): the nodes and the driver are given the same one,
as docs/cluster.md tells users to do.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
OBJECT_STORE_BYTES = 100 * 1000**2
READY_S = 180.0  # a loaded 2-core machine takes 10-60 s to bring a node up
GRACE_S = 5.0  # SIGTERM to SIGKILL when a test ends a process group (end_groups)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """An environment whose Ray workers import this checkout; no inherited Ray address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env["RAY_DEDUP_LOGS"] = "0"
    env.update(extra)
    return env


def end_groups(procs: list[subprocess.Popen], grace: float = GRACE_S) -> None:
    """SIGTERM every process group at once, SIGKILL what is left after `grace`, reap leaders.

    `ray start --block` answers SIGTERM by stopping its processes one at a time, and its GCS
    outlived 25 s of that here; a test's cluster holds nothing worth a graceful end. Ray's
    dashboard and runtime-env agents outlive a SIGKILLed driver: they stay in its group too.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for proc in procs:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(group_alive(p.pid) for p in procs):
            time.sleep(0.2)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def end_group(proc: subprocess.Popen, grace: float = GRACE_S) -> None:
    """end_groups for one process group."""
    end_groups([proc], grace)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Cluster:
    """A head and its worker nodes; `env` is what a driver needs to join (token included)."""

    address: str
    env: dict[str, str]
    workdir: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def add_node(self, *, num_cpus: int = 1, num_gpus: int = 0, **env: str) -> None:
        """A worker node joining the head; `env` overrides the node's environment (its
        workers inherit it, e.g. HALBENCH_DATA)."""
        self._start(["--address", self.address], num_cpus, num_gpus, env)

    def _start(self, args: list[str], num_cpus: int, num_gpus: int, env: dict[str, str]) -> None:
        n = len(self.nodes)
        temp = self.workdir / f"n{n}"
        log = self.workdir / f"node{n}.log"
        cmd = [RAY, "start", "--block", *args, "--node-ip-address", "127.0.0.1"]
        cmd += ["--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus)]
        cmd += ["--object-store-memory", str(OBJECT_STORE_BYTES), "--temp-dir", str(temp)]
        with log.open("w") as out:
            proc = subprocess.Popen(
                cmd,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.nodes.append(proc)
        self.logs.append(log)
        deadline = time.monotonic() + READY_S
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        end_groups(self.nodes[::-1])  # workers first: the head outlives its nodes


@contextmanager
def ray_cluster(
    *, num_cpus: int = 1, num_gpus: int = 0, dashboard: bool = False, **head_env: str
) -> Iterator[Cluster]:
    """A Ray head on 127.0.0.1 (own port, temp dir and token); add nodes with add_node."""
    workdir = Path(tempfile.mkdtemp(prefix="hbc-", dir="/tmp"))
    token = workdir / "token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex())
    env = base_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    port = free_port()
    cluster = Cluster(address=f"127.0.0.1:{port}", env=env, workdir=workdir)
    args = ["--head", "--port", str(port), f"--include-dashboard={str(dashboard).lower()}"]
    if dashboard:
        args += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(free_port())]
    try:
        cluster._start(args, num_cpus, num_gpus, head_env)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def tiny_suite(
    path: Path,
    name: str,
    *,
    losses: tuple[str, ...] = ("hal",),
    seeds: tuple[int, ...] = (0,),
    epochs: int = 1,
    **overrides: dict,
) -> Path:
    """A smoke-style suite (synthetic data, tiny CNN, seconds per trial) written to `path`;
    each keyword replaces or updates that section of the suite."""
    doc = yaml.safe_load((ROOT / "suites/smoke.yaml").read_text())
    doc["name"] = name
    doc["dataset"].update(train_size=256, test_size=128)
    doc["losses"] = [{"name": n} for n in losses]
    doc["grid"]["seed"] = list(seeds)
    doc["train"].update(epochs=epochs)
    doc["probes"] = {"enabled": False}
    doc["resources"] = {"cpus_per_trial": 1}
    for key, value in overrides.items():
        if isinstance(doc.get(key), dict) and isinstance(value, dict):
            doc[key].update(value)
        else:
            doc[key] = value
    file = path / f"{name}.yaml"
    file.write_text(yaml.safe_dump(doc))
    return file


def halbench(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "halbench.cli", "run", *map(str, args)]


def run_cli(
    cmd: list[str], env: dict[str, str], timeout: float, *, ok: bool = True
) -> subprocess.CompletedProcess:
    """A halbench command run to its end, output captured; `ok`: it must exit 0."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


# --- an S3 server ---------------------------------------------------------------------------


@dataclass
class S3:
    endpoint: str
    bucket: str
    env: dict[str, str]  # the standard AWS variables that point boto3 and pyarrow here
    pid: int = 0  # the server's process group (SIGSTOP/SIGKILL it to stall or end the store)

    def keys(self, prefix: str = "") -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups on a test machine
}


@contextmanager
def s3_server(bucket: str = "halbench-test") -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 in its own process group, with one empty bucket."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": endpoint}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not come up") from None
                time.sleep(0.3)
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # boto3 in this process
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        yield S3(endpoint=endpoint, bucket=bucket, env=env, pid=server.pid)
    finally:
        try:
            os.killpg(server.pid, signal.SIGCONT)  # a stopped server would ignore SIGTERM
        except ProcessLookupError:
            pass
        end_group(server, grace=5.0)


# --- listening sockets ----------------------------------------------------------------------


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state owned by one of `pids`.

    Read from /proc (Linux): /proc/net/tcp{,6} list the sockets by inode, /proc/<pid>/fd
    links name the inodes each process holds.
    """
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue  # the process ended meanwhile
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in inodes:  # 0A: TCP_LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            found.append((_ip(hex_ip, v6), int(hex_port, 16), inodes[inode]))
    return found


def wait_for_listeners(pids: Callable[[], set[int]], timeout: float = READY_S) -> list:
    """The run's listening sockets once its GCS, raylet and a trial worker all listen."""
    deadline = time.monotonic() + timeout
    while True:
        sockets = listening_sockets(pids())
        names = set()
        for _, _, pid in sockets:
            try:
                names.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                continue
        if {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names):
            return sockets
        assert time.monotonic() < deadline, f"Ray's services not all seen: {sockets} {names}"
        time.sleep(2)


def _ip(hex_ip: str, v6: bool) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_ip)
    # /proc stores each 32-bit word in host (little-endian) byte order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words) if v6 else ipaddress.ip_address(raw[::-1])
    if v6 and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def session_pids(pgid: int | None = None, marker: str | None = None) -> set[int]:
    """Processes of one run: those in process group `pgid`, and those whose command line
    names `marker` (the run's Ray temp dir: Ray starts some of its agents in other groups)."""
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if pgid is not None and os.getpgid(pid) == pgid:
                out.add(pid)
                continue
            if marker and marker in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                out.add(pid)
        except (OSError, ProcessLookupError):
            continue
    return out


# --- a local run, watched while it runs -----------------------------------------------------


@dataclass
class LiveRun:
    """`halbench run` in its own process group (its local Ray with it), stderr in `log`."""

    proc: subprocess.Popen
    log: Path
    temp_dir: Path  # the run's --ray-temp-dir

    def wait_for(self, text: str, timeout: float = READY_S) -> str:
        """The first stderr line containing `text`, once it is there."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log.read_text(errors="replace").splitlines():
                if text in line:
                    return line
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the run's output:\n{self.output()[-3000:]}")
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> set[int]:
        return session_pids(self.proc.pid, str(self.temp_dir))


@contextmanager
def live_run(suite: Path, out: Path, home: Path, *extra: str) -> Iterator[LiveRun]:
    """A local run with HOME=`home` (so its Ray token is the test's), ended by its group."""
    temp = Path(tempfile.mkdtemp(prefix="hbl-", dir="/tmp"))
    log = out.parent / f"{out.name}.log"
    env = base_env(HOME=str(home))
    with log.open("w") as err:
        proc = subprocess.Popen(
            halbench(suite, "--output", out, "--ray-temp-dir", temp, "--no-report", *extra),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield LiveRun(proc=proc, log=log, temp_dir=temp)
    finally:
        end_group(proc)
        shutil.rmtree(temp, ignore_errors=True)
