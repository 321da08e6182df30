"""`make bench`: the platform's figures, each beside a baseline taken in the
same run on the same servers, written to bench/RESULTS.md and results.json.

The stack is `make run`'s (deploy/localstack.py), durable, in a temporary
folder on free ports. Sizes (environment variables):

  BENCH_SECONDS            each throughput phase (10)
  BENCH_IDEAS              ideas submitted through the API (7,100)
  BENCH_FRESHNESS_SECONDS  the paced load of the freshness section (60)
  BENCH_HOT_MEMBERS        members in the hot-idea burst (5,000)
  BENCH_SUPPORTERS         supporters of the idea that ships (10,000)
  BENCH_RANKING_IDEAS      ideas COPYed for ranking and export (1,000,000)
  BENCH_QUICK=1            small sizes and short phases, for development
  BENCH_ONLY               comma-separated sections to run (e.g. "throughput")
  BENCH_PROFILE=0          skip the extra CastVote @64 phase in which py-spy
                           samples the votes and rewards processes (profile.py)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import probes, report, sections
from bench.stack import Stack


def _size(name: str, default: int, quick: int) -> int:
    return int(os.environ.get(name, quick if os.environ.get("BENCH_QUICK") else default))


async def _run(stack: Stack, work: Path) -> sections.Run:
    run = sections.Run(stack)
    hot = _size("BENCH_HOT_MEMBERS", 5000, 500)
    await sections.set_up(run, _size("BENCH_IDEAS", 2051 + hot + 1, 2051 + hot + 1))
    seconds = _size("BENCH_SECONDS", 10, 4)
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("throughput", lambda: sections.throughput(run, seconds)),
        ("gateway", lambda: sections.gateway(run, seconds)),
        ("freshness", lambda: sections.freshness(run, _size("BENCH_FRESHNESS_SECONDS", 60, 10))),
        ("hot idea", lambda: sections.hot_idea(run, hot)),
        ("reward lag", lambda: sections.reward_lag(run, _size("BENCH_SUPPORTERS", 10000, 500))),
        ("ranking and export", lambda: sections.ranking_and_export(
            run, _size("BENCH_RANKING_IDEAS", 1_000_000, 20_000), work)),
    ]  # fmt: skip
    only = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
    for name, step in steps:
        if only and name not in only:
            continue
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            await step()
        except Exception as failure:  # report what ran; name what did not
            run.add(sections.Row(name, "section failed", repr(failure)[:300]))
        print(f"   ({time.monotonic() - started:.0f}s)", flush=True)
    run.data["rss_end"] = probes.rss_mib(stack.pids())
    for label in ("rss_idle", "rss_under_load"):
        if label in run.data:
            run.add(sections.Row("memory", label.replace("_", " "), str(run.data[label])))
    return run


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cocreate-bench-"))
    started = time.monotonic()
    try:
        stack = Stack(work / "stack").start()
        try:
            run = asyncio.run(_run(stack, work))
        finally:
            stack.stop()
    finally:
        # The databases of a million ideas and the exports: about 2.4 GB a run.
        if os.environ.get("BENCH_KEEP"):
            print(f"kept the run's servers' data and exports in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    note = (
        f"One run of `make bench` ({'quick' if os.environ.get('BENCH_QUICK') else 'default'} "
        f"sizes) in {time.monotonic() - started:.0f} s. Every service, Postgres, nats-server "
        "and the load generator share the machine's cores."
    )
    report.write(run.rows, run.data, report.machine(), note)
    print((report.HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
