"""Real Redis topologies for the tests, built from the redis-server and redis-cli binaries.

* :class:`ClusterNodes`: a 6-node Redis Cluster (3 primaries, 3 replicas) made with
  ``redis-cli --cluster create … --cluster-replicas 1``.
* :class:`SentinelSet`: a master, one replica and 3 sentinels (``redis-server --sentinel``)
  watching it as ``pulsemaster``.

Each runs on free ports in a temp dir, without persistence (``--save "" --appendonly no``), is
started once per test session (the ``redis_cluster`` and ``redis_sentinel`` fixtures, made
available to every test module by ``tests/conftest.py``) and stopped by PID at the end. Tests
that kill a node restart it afterwards (:meth:`ClusterNodes.restart`), so the topology stays
whole for the next test. Outside CI a missing binary skips; under ``CI=true`` it fails.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MASTER_NAME = "pulsemaster"
NODE_TIMEOUT_MS = 1000          # cluster-node-timeout: a killed primary is replaced in ~2 s
SENTINEL_DOWN_AFTER_MS = 1000


def require_binaries() -> None:
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not found (Debian: apt-get install redis-server redis-tools)"
    if IN_CI:
        pytest.fail(f"{message}: CI=true requires them for the Cluster and Sentinel tests",
                    pytrace=False)
    pytest.skip(f"{message} (set CI=true to make this a failure)")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, with_bus: bool = False) -> list[int]:
    """``count`` free ports (and, for cluster nodes, their bus port ``+10000`` free too),
    below the kernel's ephemeral range (32768-60999 on Linux), where an outgoing connection
    could take one between this check and the server's bind."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(11000, 20999) if with_bus else random.randint(31000, 32700)
        if port in ports or not _bindable(port) or (with_bus and not _bindable(port + 10000)):
            continue
        ports.append(port)
    return ports


def cli(port: int, *args: str, timeout: float = 5.0) -> str:
    result = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                            capture_output=True, text=True, timeout=timeout)
    return result.stdout.strip()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not after {timeout}s")


def wait_replicated(primary: int, timeout: float = 5.0) -> None:
    """Until the replica(s) of ``primary`` have acknowledged everything it has written."""
    def caught_up() -> bool:
        info = cli(primary, "info", "replication")
        own = [int(line.split(":")[1]) for line in info.splitlines()
               if line.startswith("master_repl_offset:")]
        acked = [int(part.split("=")[1]) for line in info.splitlines()
                 if line.startswith("slave") and "offset=" in line
                 for part in line.split(",") if part.startswith("offset=")]
        return bool(own and acked) and min(acked) >= own[0]
    wait_for(caught_up, timeout, f"the replica of {primary} caught up", interval=0.02)


class _Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[int, subprocess.Popen] = {}

    def _spawn(self, port: int, args: list[str]) -> None:
        log = open(self.workdir / f"{port}.log", "ab")
        self.procs[port] = subprocess.Popen(["redis-server", *args], stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()

    def kill(self, port: int) -> None:
        """SIGKILL the server on ``port`` (a crash: no goodbye to clients or replicas)."""
        proc = self.procs[port]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class ClusterNodes(_Processes):
    """Three primaries with one replica each, on ``ports`` (bus ports ``+10000``)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.ports = free_ports(6, with_bus=True)

    def _node_args(self, port: int) -> list[str]:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        return ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
                "--appendonly", "no", "--dir", str(node_dir), "--repl-diskless-sync-delay", "0",
                # a lone surviving replica may be promoted without waiting for a majority
                # of replicas to agree, and a killed node's slots are retaken quickly
                "--cluster-replica-validity-factor", "0"]

    def start(self) -> "ClusterNodes":
        for port in self.ports:
            self._spawn(port, self._node_args(port))
        wait_for(lambda: all(_ping(p) for p in self.ports), 10, "cluster nodes answering")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Every live node says cluster_state:ok, 3 primaries cover the slots, and every
        primary has a replica whose link is up."""
        def healthy() -> bool:
            live = [p for p in self.ports if self.procs[p].poll() is None]
            if any("cluster_state:ok" not in cli(p, "cluster", "info") for p in live):
                return False
            primaries = self.primaries()
            if len(primaries) != 3:
                return False
            # "online": the replica finished its first sync (until then it has none of the data)
            return all("connected_slaves:1" in info and "state=online" in info
                       for info in (cli(p, "info", "replication") for p in primaries))
        wait_for(healthy, timeout, "cluster healthy")

    def nodes(self) -> list[dict]:
        for port in self.ports:
            if self.procs[port].poll() is None:
                text = cli(port, "cluster", "nodes")
                if text:
                    break
        rows = []
        for line in text.splitlines():
            parts = line.split()
            address, flags = parts[1], parts[2].split(",")
            rows.append({"id": parts[0], "port": int(address.split("@")[0].rsplit(":", 1)[1]),
                         "flags": flags, "master": parts[3], "slots": parts[8:]})
        return rows

    def primaries(self) -> list[int]:
        return sorted(n["port"] for n in self.nodes()
                      if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"])

    def replica_of(self, primary_port: int) -> int:
        by_id = {n["id"]: n for n in self.nodes()}
        primary = next(n for n in by_id.values() if n["port"] == primary_port)
        return next(n["port"] for n in by_id.values()
                    if n["master"] == primary["id"] and "fail" not in n["flags"])

    def owner_of(self, key: str) -> int:
        slot = int(cli(self.ports[0], "cluster", "keyslot", key))
        for node in self.nodes():
            if "master" not in node["flags"] or "fail" in node["flags"]:
                continue
            for span in node["slots"]:
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return node["port"]
        raise LookupError(f"no primary serves slot {slot}")

    def wait_for_primary_gone(self, port: int, timeout: float = 20.0) -> None:
        """After :meth:`kill`: wait until a replica has taken the node's slots over."""
        def promoted() -> bool:
            live = [p for p in self.ports if self.procs[p].poll() is None]
            return port not in self.primaries() and all(
                "cluster_state:ok" in cli(p, "cluster", "info") for p in live)
        wait_for(promoted, timeout, f"a replica promoted in place of {port}")

    def move_slot(self, slot: int, to_port: int) -> None:
        """Reshard one slot to the primary on ``to_port``, as ``redis-cli --cluster reshard``
        does: IMPORTING/MIGRATING, MIGRATE its keys, then every primary learns the new owner."""
        ids = {n["port"]: n["id"] for n in self.nodes()}
        source = next(p for p in self.primaries() if self._serves(p, slot))
        cli(to_port, "cluster", "setslot", str(slot), "importing", ids[source])
        cli(source, "cluster", "setslot", str(slot), "migrating", ids[to_port])
        while True:
            keys = cli(source, "cluster", "getkeysinslot", str(slot), "100").split()
            if not keys:
                break
            cli(source, "migrate", "127.0.0.1", str(to_port), "", "0", "5000", "keys", *keys)
        for port in self.primaries():
            cli(port, "cluster", "setslot", str(slot), "node", ids[to_port])
        self.wait_healthy()

    def _serves(self, port: int, slot: int) -> bool:
        node = next(n for n in self.nodes() if n["port"] == port)
        for span in node["slots"]:
            if not span.startswith("["):
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return True
        return False

    def restart(self, port: int) -> None:
        """Start a killed node again: it rejoins from its nodes.conf, as a replica."""
        if self.procs[port].poll() is None:
            return
        self._spawn(port, self._node_args(port))
        self.wait_healthy(30)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])


class SentinelSet(_Processes):
    """A master, its replica and three sentinels monitoring it as :data:`MASTER_NAME`."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        ports = free_ports(5)
        self.data_ports, self.sentinel_ports = ports[:2], ports[2:]

    def _data_args(self, port: int, replica_of: int | None) -> list[str]:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        return args

    def start(self) -> "SentinelSet":
        master, replica = self.data_ports
        self._spawn(master, self._data_args(master, None))
        wait_for(lambda: _ping(master), 10, "sentinel master answering")
        self._spawn(replica, self._data_args(replica, master))
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            self._spawn(port, [str(conf), "--sentinel"])
        wait_for(lambda: "master_link_status:up" in cli(replica, "info", "replication"), 15,
                 "sentinel replica in sync")
        wait_for(self._sentinels_agree, 15, "sentinels see the replica and each other")
        return self

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            info = cli(port, "sentinel", "master", MASTER_NAME)
            fields = info.splitlines()
            values = dict(zip(fields[::2], fields[1::2]))
            if values.get("num-slaves") != "1" or values.get("num-other-sentinels") != "2":
                return False
        return True

    def master_port(self) -> int:
        return int(cli(self.sentinel_ports[0], "sentinel", "get-master-addr-by-name",
                       MASTER_NAME).split()[1])

    def wait_for_new_master(self, old: int, timeout: float = 30.0) -> None:
        """After :meth:`kill` of the master: wait until the sentinels name another one and it
        takes writes."""
        def promoted() -> bool:
            try:
                port = self.master_port()
            except (IndexError, ValueError):
                return False
            return port != old and "role:master" in cli(port, "info", "replication")
        wait_for(promoted, timeout, f"a new master in place of {old}")

    def restart(self, port: int) -> None:
        """Start a killed data node again as a replica of the current master."""
        if self.procs[port].poll() is None:
            return
        self._spawn(port, self._data_args(port, self.master_port()))
        wait_for(lambda: "master_link_status:up" in cli(port, "info", "replication"), 15,
                 "restarted node in sync")
        wait_for(self._sentinels_agree, 15, "sentinels see the restarted replica")

    @property
    def url(self) -> str:
        return ("redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
                + f"/{MASTER_NAME}/0")


@pytest.fixture(scope="session")
def redis_cluster():
    require_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="pulse-cluster-"))
    nodes = ClusterNodes(workdir)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_sentinel():
    require_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="pulse-sentinel-"))
    topology = SentinelSet(workdir)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
        shutil.rmtree(workdir, ignore_errors=True)
