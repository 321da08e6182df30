"""gRPC channels to a service that may run as several replicas.

A target names every replica of one service:
- a DNS name that resolves to each of them (`dns:///votes:50052`, a headless
  Service in Kubernetes);
- or a list of addresses separated by commas (`127.0.0.1:50052,127.0.0.1:50062`,
  or already as gRPC's `ipv4:` target), as `make run` with replicas and the
  replica test start them;
- or one address, which is one replica.

The channel keeps a connection to each replica and spreads the calls over
those that are up (gRPC's round_robin policy; pick_first would send every call
down one connection). When a replica dies its calls in flight fail
UNAVAILABLE, which callers retry, and new calls go to the others; the channel
tries the dead one again after a short backoff (at most 2 s, where gRPC's
default grows to two minutes), so a restarted replica is back in rotation
within seconds.

The gateway and the `cocreate` command build their channels here.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

OPTIONS: tuple[tuple[str, object], ...] = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
# gRPC's name schemes: a target that names one is gRPC's own already.
_SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock")


def target(spec: str) -> str:
    """The gRPC target for `spec`: a list of addresses becomes an `ipv4:` (or
    `ipv6:`, for bracketed addresses) target; anything else is used as it is."""
    spec = spec.strip()
    if "," not in spec or spec.split(":", 1)[0] in _SCHEMES:
        return spec
    addresses = [address.strip() for address in spec.split(",") if address.strip()]
    scheme = "ipv6" if addresses[0].startswith("[") else "ipv4"
    return f"{scheme}:{','.join(addresses)}"


def aio_channel(
    spec: str, interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None
) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target(spec), options=list(OPTIONS), interceptors=interceptors)


def channel(spec: str) -> grpc.Channel:
    return grpc.insecure_channel(target(spec), options=list(OPTIONS))
