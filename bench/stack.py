"""The benchmarked platform: `python -m deploy.localstack` (what `make run`
starts) on free ports in a folder of its own, durable — Postgres with fsync
on, nats-server fsyncing every acknowledged message — with the per-member
rate limits off, so the figures measure the write path, not the limiter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.localstack import ROOT, free_port
from services.kit.config import ROLE_EVENTS

SERVICES = ("ideas", "votes", "rewards", "gateway")


@dataclass
class Stack:
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None

    def start(self) -> Stack:
        self.env = dict(
            os.environ,
            COCREATE_DEV_DIR=str(self.folder),
            COCREATE_ENV="development",
            COCREATE_PG_PORT=str(free_port()),
            COCREATE_NATS_PORT=str(free_port()),
            COCREATE_NATS_SYNC_ALWAYS="1",
            # Loaded, and counting only while the profile phase asks it to
            # (sections.StatementCounts): which statements a vote costs.
            COCREATE_PG_SETTINGS="shared_preload_libraries=pg_stat_statements",
            COCREATE_IDEAS_IDEAS_PER_HOUR="0",
            COCREATE_VOTES_CAST_LIMIT="0",
            # The bench sends as fast as it can; the gateway's per-client limit
            # would measure itself.
            COCREATE_GATEWAY_RATE_LIMIT_PER_SECOND="0",
            COCREATE_GATEWAY_MAX_CALLS_PER_CLIENT="1024",
        )
        for name in SERVICES:
            self.env[f"COCREATE_{name.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
            self.env[f"COCREATE_{name.upper()}_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
        log = open(self.folder.parent / "stack.log", "w")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.localstack"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "running" in line:
                return self
        raise RuntimeError(f"the stack did not start; see {self.folder.parent / 'stack.log'}")

    def addr(self, name: str) -> str:
        return self.env[f"COCREATE_{name.upper()}_ADDR"]

    def database_url(self, service: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.env['COCREATE_PG_PORT']}/cocreate_{service}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.env['COCREATE_NATS_PORT']}"

    def pids(self) -> dict[str, list[int]]:
        """The processes of each part: a service, postgres (all backends), nats."""
        found: dict[str, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            name = None
            if "-m services." in cmd:
                name = cmd.split("-m services.")[1].split()[0]
                if _role(entry) == ROLE_EVENTS:
                    name += "-events"
            elif ("postgres" in cmd and str(self.folder) in cmd) or cmd.startswith("postgres:"):
                name = "postgres"
            elif "nats-server" in cmd and str(self.folder) in cmd:
                name = "nats"
            if name:
                found.setdefault(name, []).append(int(entry.name))
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _role(process: Path) -> str:
    """A service process's COCREATE_ROLE (its event work may run apart)."""
    try:
        variables = (process / "environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    for variable in variables:
        if variable.startswith(b"COCREATE_ROLE="):
            return variable.split(b"=", 1)[1].decode()
    return ""
