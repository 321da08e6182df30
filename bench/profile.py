"""BENCH_PROFILE=1: where the votes and rewards processes spend the
CastVote @64 phase, sampled by py-spy (from PyPI: it attaches to a running
process without changing it, and reads native frames such as gRPC's Cython).

Each figure is the share of samples whose stack passes through a part of the
code (inclusive: a socket write made by the writer counts for both).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Part → markers of its frames in py-spy's raw output ("function (file:line)").
PARTS: dict[str, tuple[str, ...]] = {
    "socket writes (asyncpg, NATS)": ("_SelectorSocketTransport.write",),
    "vote writer": ("votes/writer.py",),
    "interceptor (token, call log)": ("kit/interceptor.py",),
    "event consumers": ("kit/inbox.py",),
    "outbox relay": ("kit/outbox.py",),
    "tally folder": ("votes/tallies.py",),
    "idle (waiting for I/O)": ("EpollSelector.select",),
}
# Samples whose innermost Python frame is the event loop running a callback
# are in native code called from it: mostly gRPC's Cython core (receiving,
# parsing and answering calls), and asyncio's C tasks and futures.
NATIVE = ("native code run by the event loop (gRPC core)", "Handle._run (asyncio/events.py")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
        "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
        "--output", str(out), "--nonblocking",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(raw: Path) -> dict[str, float]:
    """The share (0..1) of samples in each part."""
    counts = dict.fromkeys([*PARTS, NATIVE[0]], 0)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        samples = int(number)
        total += samples
        for part, markers in PARTS.items():
            if any(marker in stack for marker in markers):
                counts[part] += samples
        if stack.rsplit(";", 1)[-1].startswith(NATIVE[1]):
            counts[NATIVE[0]] += samples
    return {part: round(count / max(total, 1), 2) for part, count in counts.items()}
