"""What the bench reads beside its load: CPU seconds and resident memory of
each process (from /proc), the databases, and JetStream's consumers."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import nats

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    found = {}
    for name, numbers in pids.items():
        total = 0.0
        for pid in numbers:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime + stime, and cutime + cstime: a Postgres backend that
            # exits hands its time to the postmaster that reaped it.
            total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK
        found[name] = total
    return found


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


def rss_mib(pids: dict[str, list[int]], field: str = "VmRSS") -> dict[str, float]:
    found = {}
    for name, numbers in pids.items():
        total = 0
        for pid in numbers:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            except OSError:
                continue
        found[name] = round(total / 1024, 1)
    return found


async def backlog(urls: dict[str, str], nats_url: str) -> tuple[int, int]:
    """Unpublished outbox rows over every service, and events not yet handled
    (pending or unacknowledged) over every durable consumer."""
    unpublished = 0
    for url in urls.values():
        conn = await asyncpg.connect(url)
        try:
            unpublished += await conn.fetchval(
                "select count(*) from outbox where published_at is null"
            )
        finally:
            await conn.close()
    nc = await nats.connect(nats_url)
    try:
        lag = sum(
            info.num_pending + info.num_ack_pending
            for info in await nc.jetstream().consumers_info("COCREATE")
        )
    finally:
        await nc.close()
    return unpublished, lag
