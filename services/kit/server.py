"""Start and stop a service: pool → migrations → NATS → relay and consumers →
gRPC server with health, reflection and the interceptor → the readiness
watcher (kit/readiness.py) and the metrics port (kit/metrics.py).

`run(definition)` is a service's whole `__main__`. Tests use `start(...)`,
which returns a running service on a free port, the same code path.

Shutdown (SIGTERM/SIGINT): health turns NOT_SERVING, the server stops taking
calls and finishes in-flight ones within the grace period, the consumers stop
after their current event, the relay publishes what was committed, then NATS
drains and the pool closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import nats
from cocreate.ops.v1 import dead_letter_service_pb2, dead_letter_service_pb2_grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api

from services.kit import collector, db, events, jetstream, log, tracing
from services.kit import config as config_module
from services.kit.deadletters import DeadLetterServicer
from services.kit.errors import INFRASTRUCTURE_ERRORS
from services.kit.inbox import Delivery, InboxConsumer
from services.kit.interceptor import ServiceInterceptor
from services.kit.metrics import ServiceMetrics, metrics_address, watch_backbone
from services.kit.outbox import Outbox, OutboxRelay
from services.kit.pagination import PageTokens
from services.kit.readiness import CHECK_SETTING, DEFAULT_CHECK_SECONDS, ReadinessWatcher

_log = log.get("server")
T = TypeVar("T")

# How long JetStream remembers a Nats-Msg-Id to drop a re-publish. The inbox
# makes handling idempotent beyond it.
DUPLICATE_WINDOW_SECONDS = 600
# How long a client connection lives before the server asks it to reconnect
# (gRPC adds ±10% jitter); streams open on it are not cut.
MAX_CONNECTION_AGE_SECONDS = 300
# How long the NATS client waits before it tries a server again.
RECONNECT_WAIT_SECONDS = 0.5


BackgroundLoop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Runtime:
    """What a service's handlers get: the pool, the outbox and the settings."""

    config: config_module.Config
    pool: asyncpg.Pool
    outbox: Outbox
    page_tokens: PageTokens
    nats: NatsClient
    js: JetStreamContext
    # This instance's Prometheus metrics (its own registry; see kit/metrics.py).
    metrics: ServiceMetrics
    # Set when the service starts to shut down: long-lived streams end on it
    # instead of holding the shutdown for its whole grace period.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ServiceDefinition:
    name: str
    # Full names of the gRPC services, for health and reflection.
    service_names: Sequence[str]
    # Adds the servicers to the server; returns the loops they need running
    # beside them (a live feed's listener), if any.
    register: Callable[[grpc.aio.Server, Runtime], Sequence[BackgroundLoop] | None]
    migrations: Path | None = None
    # The service's consumers of other services' events.
    consumers: Callable[[Runtime], Sequence[InboxConsumer]] = field(default=lambda _rt: ())
    # Other background loops; each runs until the event it is given is set.
    background: Callable[[Runtime], Sequence[BackgroundLoop]] = field(default=lambda _rt: ())


async def ensure_stream(js: JetStreamContext, name: str, replicas: int = 1) -> None:
    stream = api.StreamConfig(
        name=name,
        num_replicas=replicas,
        subjects=[events.ALL_SUBJECTS],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )

    async def create_unless_there() -> None:
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # another replica won
                await js.add_stream(stream)

    await jetstream.while_electing(f"create the stream {name}", create_unless_there)


class RunningService:
    def __init__(
        self,
        definition: ServiceDefinition,
        runtime: Runtime,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        port: int,
        tasks: list[asyncio.Task[None]],
        stop_background: asyncio.Event,
    ) -> None:
        self.definition = definition
        self.runtime = runtime
        self.server = server
        self.port = port
        self.address = f"127.0.0.1:{port}"
        # Where GET /metrics answers, when metrics are on.
        self.metrics_port = runtime.metrics.port
        self._health = health_servicer
        self._tasks = tasks
        self._stop_background = stop_background
        self._stopped = False

    async def stop(self, grace: float | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        self.runtime.stopping.set()
        await self.server.stop(
            self.runtime.config.shutdown_grace_seconds if grace is None else grace
        )
        self._stop_background.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        with contextlib.suppress(Exception):
            await self.runtime.nats.drain()
        await self.runtime.pool.close()
        await self.runtime.metrics.close()
        _log.info("stopped", extra={"service": self.definition.name})


STARTUP_WAIT_SETTING = "COCREATE_STARTUP_WAIT_SECONDS"
DEFAULT_STARTUP_WAIT_SECONDS = 60.0


async def _when_reachable(
    what: str, connect: Callable[[], Coroutine[Any, Any, T]], wait_seconds: float, service: str
) -> T:
    """`connect()`, tried again while the backend is away — restarting after a
    crash, or still recovering — for up to `wait_seconds`; then its error. A
    service started beside its database need not be started again by hand."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.1
    while True:
        try:
            return await connect()
        except (*INFRASTRUCTURE_ERRORS, nats.errors.NoServersError) as exc:
            if loop.time() + delay > deadline:
                raise
            _log.warning(
                f"waiting for {what}",
                extra={"service": service, "error": f"{type(exc).__name__}: {exc}"},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _migrated_pool(
    definition: ServiceDefinition, config: config_module.Config
) -> asyncpg.Pool:
    """The service's pool once its migrations (the kit's, then its own) are
    applied, waiting for Postgres as a starting service does."""
    components = [("kit", db.KIT_MIGRATIONS)]
    if definition.migrations is not None:
        components.append((definition.name, definition.migrations))

    async def connect_and_migrate() -> asyncpg.Pool:
        pool = await db.create_pool(config.database_url)
        try:
            await db.migrate(pool, components)
        except BaseException:
            await pool.close()
            raise
        return pool

    wait = config.get_float(STARTUP_WAIT_SETTING, DEFAULT_STARTUP_WAIT_SECONDS)
    return await _when_reachable("PostgreSQL", connect_and_migrate, wait, definition.name)


async def start(definition: ServiceDefinition, config: config_module.Config) -> RunningService:
    tracing.setup(definition.name)
    if config.environment != config_module.PRODUCTION:
        _log.warning(
            "development mode (COCREATE_ENV=development): development secrets are accepted",
            extra={"service": definition.name},
        )
    wait = config.get_float(STARTUP_WAIT_SETTING, DEFAULT_STARTUP_WAIT_SECONDS)
    pool = await _migrated_pool(definition, config)
    nc = await _when_reachable(
        "NATS",
        lambda: nats.connect(
            servers=config.nats_servers,
            name=f"cocreate-{definition.name}",
            max_reconnect_attempts=-1,
            # A cluster node gone: on to the next one soon, not after 2 s.
            reconnect_time_wait=RECONNECT_WAIT_SECONDS,
        ),
        wait,
        definition.name,
    )
    js = nc.jetstream()
    await ensure_stream(js, config.stream, config.stream_replicas)

    runtime = Runtime(
        config=config,
        pool=pool,
        outbox=Outbox(definition.name),
        page_tokens=PageTokens(config.jwt_secret),
        nats=nc,
        js=js,
        metrics=ServiceMetrics(definition.name),
    )
    consumers = list(definition.consumers(runtime))
    for consumer in consumers:  # each: the configured delivery rule, and this replica's name
        consumer.delivery = Delivery(config.consumer_max_deliver, config.consumer_backoff_seconds)
        consumer.handled_by = config.instance
    stop_background = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    if config.does_event_work:
        relay = OutboxRelay(
            pool,
            js,
            dsn=config.database_url,
            stream=config.stream,
            poll_seconds=config.relay_poll_seconds,
            gather_seconds=config.relay_gather_seconds,
            keep_published_hours=config.get_float("COCREATE_OUTBOX_KEEP_HOURS", 168.0),
        )
        tasks.append(
            asyncio.create_task(relay.run(stop_background), name=f"{definition.name}-relay")
        )
        for consumer in consumers:
            tasks.append(
                asyncio.create_task(
                    consumer.run(pool, js, config.stream, stop_background, metrics=runtime.metrics),
                    name=consumer.name,
                )
            )
        for loop in definition.background(runtime):
            tasks.append(asyncio.create_task(loop(stop_background)))

    server = grpc.aio.server(
        interceptors=[
            ServiceInterceptor(
                service=definition.name,
                jwt_secret=config.jwt_secret,
                token_policy=config.token_policy,
                metrics=runtime.metrics.rpc,
            )
        ],
        # gRPC turns away calls beyond this many waiting to be taken (1,000 by
        # default): a burst of members voting at once must not be cancelled.
        options=[
            ("grpc.server.max_pending_requests", config.max_pending_calls),
            # Clients are asked to reconnect now and then (calls in flight
            # finish first), so a client spreading calls over the replicas
            # resolves the name again and finds replicas added since.
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_SECONDS * 1000),
        ],
    )
    if config.serves_calls:
        for loop in definition.register(server, runtime) or ():
            tasks.append(asyncio.create_task(loop(stop_background)))
    dead_letter_service_pb2_grpc.add_DeadLetterServiceServicer_to_server(
        DeadLetterServicer(runtime, consumers), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [
        *(definition.service_names if config.serves_calls else ()),
        dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"].full_name,
    ]
    reflection.enable_server_reflection(
        [*names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
    )
    port = server.add_insecure_port(config.listen_addr)
    await server.start()
    readiness = ReadinessWatcher(
        health_servicer,
        names,
        service=definition.name,
        dsn=config.database_url,
        nats=nc,
        every_seconds=config.get_float(CHECK_SETTING, DEFAULT_CHECK_SECONDS),
    )
    await readiness.serving()
    tasks.append(asyncio.create_task(readiness.run(stop_background), name="readiness"))
    watch_backbone(runtime.metrics, pool=pool, js=js, stream=config.stream, consumers=consumers)
    await runtime.metrics.serve(metrics_address(config))
    _log.info(
        "serving",
        extra={
            "service": definition.name,
            "instance": config.instance,
            "role": config.role,
            "address": f"{config.listen_addr.rsplit(':', 1)[0]}:{port}",
        },
    )
    return RunningService(
        definition, runtime, server, health_servicer, port, tasks, stop_background
    )


def run(definition: ServiceDefinition, argv: Sequence[str] | None = None) -> None:
    """The `python -m services.<name>` entry point; with `--migrate-only` it
    applies the migrations and exits (a deployment's migrations step)."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{definition.name}")
    parser.add_argument(
        "--migrate-only",
        action="store_true",
        help="apply the database migrations, then exit without serving",
    )
    args = parser.parse_args(argv)
    log.setup()
    try:
        config = config_module.load(definition.name)
        tracing.setup(definition.name)
    except config_module.ConfigError as exc:
        raise SystemExit(f"cocreate-{definition.name}: {exc}") from None
    if args.migrate_only:
        asyncio.run(_migrate_only(definition, config))
    else:
        asyncio.run(_serve_until_signal(definition, config))


async def _migrate_only(definition: ServiceDefinition, config: config_module.Config) -> None:
    pool = await _migrated_pool(definition, config)
    await pool.close()
    _log.info("migrated", extra={"service": definition.name})


async def _serve_until_signal(definition: ServiceDefinition, config: config_module.Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = await start(definition, config)
    collector.tune_after_start()
    try:
        await stop.wait()
    finally:
        await service.stop()
