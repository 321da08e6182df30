"""Prometheus metrics: one registry per running service, served on its own HTTP port.

Why a registry per service and not prometheus_client's global one: the tests
run several services in one process (each in the test's event loop, on free
ports), and the global registry refuses a second metric of the same name. So
each running service owns a `ServiceMetrics` with its own `CollectorRegistry`
and its own port (`COCREATE_<SVC>_METRICS_ADDR`); nothing is registered
globally, and two services in one process never share a series.

Two kinds of numbers:
- counted where they happen: the duration of every call (by the interceptor,
  `RpcMetrics.observe`), redelivered events (by the inbox consumer,
  `ServiceMetrics.fetched`);
- read when Prometheus scrapes, by probes: the outbox backlog, the dead
  letters, the pool's connections in use, each consumer's pending events in
  JetStream, and what a service adds (the votes service's tally lag). Each
  probe has PROBE_TIMEOUT_SECONDS: one whose backend is away sets its gauges
  to NaN (unknown, not a stale number) and counts a probe failure; the scrape
  still answers, and the service never waits on it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import grpc
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from services.kit import log

if TYPE_CHECKING:
    import asyncpg
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from services.kit.config import Config
    from services.kit.inbox import InboxConsumer

_log = log.get("metrics")

# Where each service serves its metrics unless COCREATE_<SVC>_METRICS_ADDR says
# otherwise (an empty value turns them off). Other names (test services) have none.
DEFAULT_METRICS_PORTS = {"ideas": 9101, "votes": 9102, "rewards": 9103}
METRICS_PATH = "/metrics"
# What generate_latest writes: the text format every Prometheus reads.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# A probe that takes longer is given up for this scrape.
PROBE_TIMEOUT_SECONDS = 1.0
# Calls take from a fraction of a millisecond (a cached read) to seconds (an
# export); streams last until the caller leaves (the last bucket and +Inf).
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Probe = Callable[[], Awaitable[None]]

# No `<name>_created` series beside every counter and histogram child: in the
# text format each one is a series of its own, doubling what Prometheus stores
# for a timestamp nobody reads here. (A process-wide switch of prometheus_client.)
disable_created_metrics()  # type: ignore[no-untyped-call]


def metrics_address(config: Config) -> str:
    """`COCREATE_<SVC>_METRICS_ADDR`, else the service's default; "" is off."""
    port = DEFAULT_METRICS_PORTS.get(config.service)
    default = f"127.0.0.1:{port}" if port else ""
    return config.get_str(f"COCREATE_{config.service.upper()}_METRICS_ADDR", default).strip()


class RpcMetrics:
    """`cocreate_rpc_duration_seconds{service, method, code}`, observed by the
    interceptor on every call. The labelled child is kept per (method, code):
    `labels()` costs about as much as the observation itself (timeit on the
    shared 2-core machine: 3.0 µs for this method, 5.5 µs for labels().observe)."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self._service = service
        self._histogram = Histogram(
            "cocreate_rpc_duration_seconds",
            "Time from a call's arrival to its answer, by method and status code",
            ["service", "method", "code"],
            registry=registry,
            buckets=RPC_BUCKETS,
        )
        self._children: dict[tuple[str, grpc.StatusCode], Histogram] = {}

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        child = self._children.get((method, code))
        if child is None:
            child = self._histogram.labels(self._service, method.lstrip("/"), code.name)
            self._children[(method, code)] = child
        child.observe(seconds)


class ServiceMetrics:
    """The metrics of one running service, and the HTTP server that serves them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc = RpcMetrics(service, self.registry)
        self._redeliveries = Counter(
            "cocreate_consumer_redeliveries_total",
            "Events a consumer received again (delivered more than once by JetStream)",
            ["service", "consumer"],
            registry=self.registry,
        )
        self._probe_failures = Counter(
            "cocreate_metrics_probe_failures_total",
            "Scrapes where a probe failed or ran out of time (its gauges read NaN)",
            ["service", "probe"],
            registry=self.registry,
        )
        self._probes: list[tuple[str, Probe, Sequence[Gauge]]] = []
        self._readings: list[Callable[[], None]] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge in this service's registry, labelled with the service first."""
        return Gauge(name, documentation, ["service", *labels], registry=self.registry)

    def on_scrape(self, name: str, probe: Probe, gauges: Sequence[Gauge]) -> None:
        """Run `probe` at every scrape to set `gauges` (labelled children);
        they read NaN when it fails or takes too long."""
        self._probes.append((name, probe, gauges))

    def read_at_scrape(self, read: Callable[[], None]) -> None:
        """Run `read` at every scrape, before the probes: for numbers at hand
        (no I/O), read before a probe takes one of the pool's connections."""
        self._readings.append(read)

    def consumer(self, name: str) -> None:
        """Show the consumer's redeliveries from the start, at 0."""
        self._redeliveries.labels(self.service, name)

    def fetched(self, consumer: str, messages: Sequence[Msg]) -> None:
        """Count the redeliveries in a fetched batch (called by the consumer)."""
        again = sum(1 for msg in messages if (msg.metadata.num_delivered or 1) > 1)
        if again:
            self._redeliveries.labels(self.service, consumer).inc(again)

    async def _run_probe(self, name: str, probe: Probe, gauges: Sequence[Gauge]) -> None:
        try:
            await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT_SECONDS)
        except Exception as exc:
            self._probe_failures.labels(self.service, name).inc()
            for gauge in gauges:
                gauge.set(math.nan)
            _log.debug(
                "metrics probe failed",
                extra={"service": self.service, "probe": name, "error": repr(exc)},
            )

    async def exposition(self) -> bytes:
        """The readings, the probes (together), then every metric in
        Prometheus's text format."""
        for read in self._readings:
            read()
        await asyncio.gather(*(self._run_probe(*entry) for entry in self._probes))
        return generate_latest(self.registry)

    async def serve(self, address: str) -> None:
        """Serve GET /metrics on `address` (host:port; port 0 picks a free one).
        An address that cannot be bound is logged and left off: the service's
        calls matter more than its metrics."""
        if not address:
            return
        host, _, port = address.rpartition(":")
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host or "127.0.0.1", int(port))
            await site.start()
        except (OSError, ValueError) as exc:
            await runner.cleanup()
            _log.error(
                "metrics are off: cannot listen on their address",
                extra={
                    "service": self.service,
                    "setting": f"COCREATE_{self.service.upper()}_METRICS_ADDR",
                    "address": address,
                    "error": str(exc),
                },
            )
            return
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        _log.info(
            "serving metrics",
            extra={"service": self.service, "address": f"{host}:{self.port}{METRICS_PATH}"},
        )

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=await self.exposition(), headers={"Content-Type": TEXT_FORMAT})

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def watch_backbone(
    metrics: ServiceMetrics,
    *,
    pool: asyncpg.Pool,
    js: JetStreamContext,
    stream: str,
    consumers: Sequence[InboxConsumer],
) -> None:
    """The kit's probes: outbox backlog and its oldest event's age, dead
    letters, the pool's connections in use, and each consumer's pending
    events in JetStream."""
    service = metrics.service
    outbox_pending = metrics.gauge(
        "cocreate_outbox_pending", "Events committed to the outbox and not yet published"
    ).labels(service)
    outbox_age = metrics.gauge(
        "cocreate_outbox_oldest_age_seconds",
        "Age of the oldest unpublished outbox event (0 when none waits)",
    ).labels(service)
    dead_letters = metrics.gauge(
        "cocreate_dead_letters", "Events parked after their last delivery, awaiting replay"
    ).labels(service)
    pool_in_use = metrics.gauge(
        "cocreate_db_pool_in_use", "Connections of the service's pool taken by work"
    ).labels(service)

    async def backbone() -> None:
        row = await pool.fetchrow(
            """
            select (select count(*) from outbox where published_at is null) as pending,
                   (select greatest(extract(epoch from clock_timestamp() - created_at), 0)
                      from outbox where published_at is null order by id limit 1) as oldest,
                   (select count(*) from dead_letters) as parked
            """
        )
        outbox_pending.set(row["pending"])
        outbox_age.set(float(row["oldest"] or 0))
        dead_letters.set(row["parked"])

    def pool_usage() -> None:
        pool_in_use.set(pool.get_size() - pool.get_idle_size())

    metrics.read_at_scrape(pool_usage)
    metrics.on_scrape("backbone", backbone, [outbox_pending, outbox_age, dead_letters])

    pending = metrics.gauge(
        "cocreate_consumer_pending",
        "Events in the stream this consumer has not been sent yet",
        ["consumer"],
    )
    ack_pending = metrics.gauge(
        "cocreate_consumer_ack_pending",
        "Events sent to this consumer and not acknowledged yet",
        ["consumer"],
    )
    for consumer in consumers:
        metrics.consumer(consumer.name)
        waiting = pending.labels(service, consumer.name)
        unacked = ack_pending.labels(service, consumer.name)
        metrics.on_scrape(
            f"consumer:{consumer.name}",
            _consumer_probe(js, stream, consumer.name, waiting, unacked),
            [waiting, unacked],
        )


def _consumer_probe(
    js: JetStreamContext, stream: str, name: str, waiting: Gauge, unacked: Gauge
) -> Probe:
    async def probe() -> None:
        info = await js.consumer_info(stream, name, timeout=PROBE_TIMEOUT_SECONDS)
        waiting.set(info.num_pending or 0)
        unacked.set(info.num_ack_pending or 0)

    return probe
