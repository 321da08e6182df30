"""A stack of separate processes that a crash schedule may kill: its own
Postgres and nats-server, and each service started as `make run` starts it
(`python -m services.<name>`), on free ports in a test's folder.

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

from deploy.localstack import ROOT, LocalNats, LocalPostgres, _serving, free_port

SERVICES = ("ideas", "votes", "rewards")


class CrashStack:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.postgres = LocalPostgres(folder / "pg", free_port(), durable=True)
        self.nats = LocalNats(folder / "js", free_port(), sync_always=True)
        self.addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
        self.database_urls: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # Exits nobody caused: a service must survive its backends' outages.
        self.unplanned_exits: list[str] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            COCREATE_ENV="development",
            COCREATE_NATS_URL=self.nats.url,
            COCREATE_RELAY_POLL_SECONDS="0.2",
            COCREATE_SHUTDOWN_GRACE_SECONDS="1",
            COCREATE_IDEAS_IDEAS_PER_HOUR="0",
            COCREATE_IDEAS_COMMENTS_PER_MINUTE="0",
            COCREATE_VOTES_CAST_LIMIT="0",
        )
        for name in SERVICES:
            env[f"COCREATE_{name.upper()}_DATABASE_URL"] = self.database_urls[name]
            env[f"COCREATE_{name.upper()}_ADDR"] = self.addresses[name]
            env[f"COCREATE_{name.upper()}_METRICS_ADDR"] = "127.0.0.1:0"
        return env

    async def start(self) -> None:
        await asyncio.to_thread(self.postgres.start)
        await asyncio.to_thread(self.nats.start)
        for name in SERVICES:
            self.database_urls[name] = await asyncio.to_thread(
                self.postgres.create_database, f"crash_{name}"
            )
        for name in SERVICES:
            self.spawn(name)
        for name in SERVICES:
            await self.wait_serving(name)

    def spawn(self, name: str) -> None:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=self.env(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_serving(self, name: str, within: float = 120.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not await asyncio.to_thread(_serving, self.addresses[name]):
            process = self.processes[name]
            if process.poll() is not None:
                # It could not start (its database or broker away): a
                # supervisor starts it again.
                self.spawn(name)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{name} did not serve within {within}s")
            await asyncio.sleep(0.1)

    def kill(self, target: str) -> None:
        """Crash one part: a service, `nats`, `postgres` (SIGKILL of the
        postmaster and its backends) or `postgres-immediate` (its immediate
        shutdown: no checkpoint, crash recovery at the next start)."""
        if target == "nats":
            self.nats.kill()
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
        if target == "nats":
            await asyncio.to_thread(self.nats.start)
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
