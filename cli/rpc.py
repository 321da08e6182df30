"""Calls any cocreate RPC by its full name, with params and results in
protobuf's JSON mapping, over a blocking gRPC channel per service.

The methods come from the generated descriptors (the gateway's registry), so
the commands stay small: build a dict, call, print.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import json_format, message

from cli.errors import USAGE, CliError, from_rpc_error
from services.gateway.methods import Method, Registry
from services.gateway.settings import UPSTREAMS, upstream_target
from services.kit import channels

_registry: Registry | None = None


def registry() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry.load()
    return _registry


def targets_from(
    flags: Mapping[str, str | None], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = os.environ if env is None else env
    return {s: flags.get(s) or upstream_target(env, s) for s in UPSTREAMS}


class Client:
    def __init__(self, targets: Mapping[str, str], token: str | None, timeout: float) -> None:
        self.targets = dict(targets)
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = ()
        if token:
            value = token if token.lower().startswith("bearer ") else f"Bearer {token}"
            self._metadata = (("authorization", value),)
        self._channels: dict[str, grpc.Channel] = {}

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def _method(self, name: str) -> Method:
        method = registry().find(name)
        if method is None:
            raise CliError(f"no such method {name!r} (expected package.Service.Method)", USAGE)
        return method

    def _service(self, method: Method, service: str | None) -> str:
        if method.area in UPSTREAMS:
            return method.area
        if service in UPSTREAMS:
            return service
        raise CliError(
            f"{method.full_name} is served by every service; choose one with --service "
            f"({', '.join(UPSTREAMS)})",
            USAGE,
        )

    def _channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            self._channels[service] = channels.channel(self.targets[service])
        return self._channels[service]

    def _request(self, method: Method, params: Mapping[str, Any]) -> message.Message:
        request = method.request_class()
        try:
            json_format.ParseDict(dict(params), request)
        except json_format.ParseError as exc:
            raise CliError(f"{method.full_name}: bad parameters: {exc}", USAGE) from None
        return request

    def call(
        self, name: str, params: Mapping[str, Any] | None = None, *, service: str | None = None
    ) -> dict[str, Any]:
        """The response of a unary method as a dict in protobuf's JSON mapping."""
        method = self._method(name)
        where = self._service(method, service)
        request = self._request(method, params or {})
        stub = self._channel(where).unary_unary(
            method.path,
            request_serializer=_serialize,
            response_deserializer=method.response_class.FromString,
        )
        try:
            response = stub(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise from_rpc_error(
                err, service=where, target=self.targets[where], method=method.full_name
            ) from None
        return to_json(response)

    def stream(
        self, name: str, params: Mapping[str, Any] | None = None, *, service: str | None = None
    ) -> Iterator[message.Message]:
        """The messages of a server-streaming method, as they arrive (no deadline)."""
        method = self._method(name)
        where = self._service(method, service)
        request = self._request(method, params or {})
        stub = self._channel(where).unary_stream(
            method.path,
            request_serializer=_serialize,
            response_deserializer=method.response_class.FromString,
        )
        call = stub(request, metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as err:
            raise from_rpc_error(
                err, service=where, target=self.targets[where], method=method.full_name
            ) from None
        finally:
            call.cancel()

    def is_streaming(self, name: str) -> bool:
        return self._method(name).server_streaming


def to_json(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString()
