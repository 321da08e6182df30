"""A stack of separate processes that a crash schedule may kill: its own
Postgres and nats-server, and each service started as `make run` starts it
(`python -m services.<name>`), on free ports in a test's folder.

The replica test runs the scaled-out shape instead: a 3-node JetStream
cluster, each service as several replicas (`ideas-1`, `ideas-2` … each on its
own port against the same database), and a gateway spreading its calls over
them. `addresses[service]` then lists every replica of the service, and the
clients' channels spread their calls too (services/kit/channels.py).

Every kill is what a crash looks like (SIGKILL, or Postgres's immediate
shutdown); every restart is what a supervisor does: the same program again
on the same port with the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from deploy.localstack import (
    ROOT,
    LocalNats,
    LocalNatsCluster,
    LocalPostgres,
    _serving,
    free_port,
)

SERVICES = ("ideas", "votes", "rewards")


class CrashStack:
    def __init__(
        self, folder: Path, *, replicas: int = 1, nats_nodes: int = 1, gateway: bool = False
    ) -> None:
        self.folder = folder
        self.postgres = LocalPostgres(folder / "pg", free_port(), durable=True)
        self.nats: LocalNats | LocalNatsCluster = (
            LocalNats(folder / "js", free_port(), sync_always=True)
            if nats_nodes == 1
            else LocalNatsCluster(folder / "js", nats_nodes, sync_always=True)
        )
        self.stream_replicas = min(3, nats_nodes)
        # The processes of each service: the service's name alone, or one
        # name per replica (also its COCREATE_INSTANCE).
        self.instances = {
            name: [name] if replicas == 1 else [f"{name}-{n}" for n in range(1, replicas + 1)]
            for name in SERVICES
        }
        self.service_of = {i: name for name, group in self.instances.items() for i in group}
        self.listen = {instance: f"127.0.0.1:{free_port()}" for instance in self.service_of}
        # Each replica's metrics, where the replica test reads them (else any free port).
        self.metrics = {
            instance: f"127.0.0.1:{free_port() if replicas > 1 else 0}"
            for instance in self.service_of
        }
        # What a client dials for each service: every replica's address.
        self.addresses = {
            name: ",".join(self.listen[i] for i in group) for name, group in self.instances.items()
        }
        self.gateway = f"127.0.0.1:{free_port()}" if gateway else ""
        self.database_urls: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # Exits nobody caused: a service must survive its backends' outages.
        self.unplanned_exits: list[str] = []

    def env(self, instance: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            COCREATE_ENV="development",
            COCREATE_NATS_URL=self.nats.url,
            COCREATE_STREAM_REPLICAS=str(self.stream_replicas),
            COCREATE_INSTANCE=instance,
            COCREATE_RELAY_POLL_SECONDS="0.2",
            COCREATE_SHUTDOWN_GRACE_SECONDS="1",
            COCREATE_IDEAS_IDEAS_PER_HOUR="0",
            COCREATE_IDEAS_COMMENTS_PER_MINUTE="0",
            COCREATE_VOTES_CAST_LIMIT="0",
        )
        for name in SERVICES:
            env[f"COCREATE_{name.upper()}_DATABASE_URL"] = self.database_urls[name]
            env[f"COCREATE_{name.upper()}_TARGET"] = self.addresses[name]
        service = self.service_of.get(instance)
        if service is not None:
            env[f"COCREATE_{service.upper()}_ADDR"] = self.listen[instance]
            env[f"COCREATE_{service.upper()}_METRICS_ADDR"] = self.metrics[instance]
        else:  # the gateway
            env.update(
                COCREATE_GATEWAY_ADDR=self.gateway, COCREATE_GATEWAY_RATE_LIMIT_PER_SECOND="0"
            )
        return env

    async def start(self) -> None:
        await asyncio.to_thread(self.postgres.start)
        await asyncio.to_thread(self.nats.start)
        for name in SERVICES:
            self.database_urls[name] = await asyncio.to_thread(
                self.postgres.create_database, f"crash_{name}"
            )
        # Every replica at once, as a deployment starts them: their
        # migrations race, and must still run once.
        for instance in self.service_of:
            self.spawn(instance)
        if self.gateway:
            self.spawn("gateway")
        for name in SERVICES:
            await self.wait_serving(name)

    def spawn(self, instance: str) -> None:
        """Start a service's process (its name, or one replica's), or the gateway."""
        program = self.service_of.get(instance, instance)
        log = open(self.folder / f"{instance}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.processes[instance] = subprocess.Popen(
            [sys.executable, "-m", f"services.{program}"],
            env=self.env(instance),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_serving(self, name: str, within: float = 120.0) -> None:
        """Until the service (every replica of it) or one replica serves."""
        for instance in self.instances.get(name, [name]):
            await self._wait_serving(instance, within)

    async def _wait_serving(self, instance: str, within: float) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not await asyncio.to_thread(_serving, self.listen[instance]):
            process = self.processes[instance]
            if process.poll() is not None:
                # It could not start (its database or broker away): a
                # supervisor starts it again.
                self.spawn(instance)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{instance} did not serve within {within}s")
            await asyncio.sleep(0.1)

    def nats_node(self, target: str) -> LocalNats:
        """`nats` (the one server), or `nats-<n>` (node n of the cluster)."""
        if isinstance(self.nats, LocalNats):
            assert target == "nats", target
            return self.nats
        return self.nats.nodes[int(target.removeprefix("nats-"))]

    def kill(self, target: str) -> None:
        """Crash one part: a service or replica, `nats` (or `nats-<n>`, a node
        of the cluster), `postgres` (SIGKILL of the postmaster and its
        backends) or `postgres-immediate` (its immediate shutdown: no
        checkpoint, crash recovery at the next start)."""
        if target.startswith("nats"):
            self.nats_node(target).kill()
        elif target == "postgres":
            self.postgres.kill()
        elif target == "postgres-immediate":
            process = self.postgres.process
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGQUIT)
                process.wait(timeout=60)
        else:
            process = self.processes[target]
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    async def restart(self, target: str) -> None:
        if target.startswith("nats"):
            await asyncio.to_thread(self.nats_node(target).start)
        elif target.startswith("postgres"):
            await self._start_postgres()
        else:
            self.spawn(target)

    async def _start_postgres(self, attempts: int = 3) -> None:
        """As a supervisor does: a postmaster that exits while it starts
        (seen once here after a kill, with signal 11) is started again."""
        for attempt in range(attempts):
            try:
                await asyncio.to_thread(self.postgres.start)
                return
            except RuntimeError as failure:
                self.unplanned_exits.append(f"postgres at start: {failure}")
                if attempt == attempts - 1:
                    raise

    def check_unplanned_exits(self, down: set[str]) -> None:
        """Note (and restart) a service that exited while nobody killed it."""
        for name, process in self.processes.items():
            if name not in down and process.poll() is not None:
                self.unplanned_exits.append(f"{name} exited with {process.returncode}")
                self.spawn(name)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.nats.stop()
        self.postgres.stop()
