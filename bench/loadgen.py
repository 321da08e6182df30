"""A load generator that is not the bottleneck: several processes, each a
grpc.aio client sending requests serialized in advance (no protobuf work on
the hot path), each call with its own member token minted in advance, a fixed
number of calls in flight, for a fixed time or a fixed count, optionally
paced to a rate."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass, field

PROCESSES = 2


@dataclass
class Outcome:
    calls: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


@dataclass(frozen=True)
class Plan:
    address: str
    method: str
    payloads: list[bytes]
    tokens: list[str]
    in_flight: int
    seconds: float = 0.0  # run this long …
    count: int = 0  # … or send each payload once
    rate: float = 0.0  # calls per second over all processes; 0: as fast as possible


def _worker(plan: Plan, part: int, parts: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import grpc

    # Each process its share; a single request (the health call) goes to all.
    payloads = plan.payloads[part::parts] or plan.payloads
    tokens = plan.tokens[part::parts] or plan.tokens

    async def run() -> None:
        channel = grpc.aio.insecure_channel(plan.address)
        call = channel.unary_unary(plan.method)
        outcome = Outcome()
        index = 0
        started = time.monotonic()
        stop = started + plan.seconds if plan.seconds else float("inf")
        gap = parts / plan.rate if plan.rate else 0.0

        async def one_caller() -> None:
            nonlocal index
            while time.monotonic() < stop:
                if plan.count and index >= len(payloads):
                    return
                mine = index
                index += 1
                if gap:
                    due = started + mine * gap
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                sent = time.perf_counter()
                try:
                    await call(
                        payloads[mine % len(payloads)],
                        metadata=(("authorization", tokens[mine % len(tokens)]),),
                        timeout=60,
                    )
                except grpc.aio.AioRpcError as error:
                    name = error.code().name
                    outcome.errors[name] = outcome.errors.get(name, 0) + 1
                    continue
                outcome.latencies.append(time.perf_counter() - sent)
                outcome.calls += 1

        cpu = os.times()
        await asyncio.gather(*(one_caller() for _ in range(max(1, plan.in_flight // parts))))
        outcome.seconds = time.monotonic() - started
        after = os.times()
        outcome.client_cpu_seconds = after.user + after.system - cpu.user - cpu.system
        await channel.close()
        results.put(outcome)

    asyncio.run(run())


def run(plan: Plan, processes: int = PROCESSES) -> Outcome:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[Outcome] = context.Queue()
    workers = [
        context.Process(target=_worker, args=(plan, part, processes, results))
        for part in range(processes)
    ]
    for worker in workers:
        worker.start()
    parts: list[Outcome] = []
    while len(parts) < len(workers):
        try:
            parts.append(results.get(timeout=1))
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                raise RuntimeError("a load process died without its results") from None
    for worker in workers:
        worker.join()
    total = Outcome(
        calls=sum(p.calls for p in parts),
        seconds=max(p.seconds for p in parts),
        latencies=[x for p in parts for x in p.latencies],
        client_cpu_seconds=sum(p.client_cpu_seconds for p in parts),
    )
    for part in parts:
        for code, n in part.errors.items():
            total.errors[code] = total.errors.get(code, 0) + n
    return total
