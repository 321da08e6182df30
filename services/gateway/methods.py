"""Every RPC of cocreate, found in the generated protobuf code.

Imports each `*_pb2` module under the `cocreate` package (gen/cocreate), so the
default descriptor pool holds every service, and indexes their methods by full
name. Request and response classes come from the pool through
`message_factory`, never from hand-written per-method code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor, message, message_factory
from google.rpc import error_details_pb2  # noqa: F401  (puts google.rpc details in the pool)

ROOT_PACKAGE = "cocreate"


@dataclass(frozen=True)
class Method:
    full_name: str  # cocreate.ideas.v1.IdeaService.SubmitIdea
    path: str  # /cocreate.ideas.v1.IdeaService/SubmitIdea
    package: str  # cocreate.ideas.v1
    request_class: type[message.Message]
    response_class: type[message.Message]
    server_streaming: bool
    client_streaming: bool

    @property
    def endless(self) -> bool:
        """A server stream that only ends when the caller leaves (by convention
        its name starts with Watch): served on /rpc/stream only."""
        return self.server_streaming and self.full_name.rpartition(".")[2].startswith("Watch")

    @property
    def area(self) -> str:
        """The second part of the package (`ideas`, `votes`, `rewards`, `ops`)."""
        parts = self.package.split(".")
        return parts[1] if len(parts) > 1 else self.package


def import_generated_modules(root: str = ROOT_PACKAGE) -> list[str]:
    """Import every generated message module under `root`; return their names."""
    package = importlib.import_module(root)
    names: set[str] = set()
    for folder in package.__path__:
        base = Path(folder)
        for file in sorted(base.rglob("*_pb2.py")):
            relative = file.relative_to(base).with_suffix("")
            names.add(".".join([root, *relative.parts]))
    for name in sorted(names):
        importlib.import_module(name)
    return sorted(names)


def _services(module_names: list[str]) -> list[descriptor.ServiceDescriptor]:
    services: list[descriptor.ServiceDescriptor] = []
    for name in module_names:
        file_descriptor = importlib.import_module(name).DESCRIPTOR
        services.extend(file_descriptor.services_by_name.values())
    return services


class Registry:
    """Methods by every name a caller may use for them."""

    def __init__(self, methods: list[Method]) -> None:
        self.methods = sorted(methods, key=lambda m: m.full_name)
        self._by_name: dict[str, Method] = {}
        for method in self.methods:
            service, _, short = method.full_name.rpartition(".")
            self._by_name[method.full_name] = method
            self._by_name[f"{service}/{short}"] = method
            self._by_name[method.path] = method

    def describe(self) -> list[dict[str, object]]:
        """Every method a JSON-RPC caller can call (GET /methods)."""
        return [
            {
                "method": m.full_name,
                "serverStreaming": m.server_streaming,
                "request": m.request_class.DESCRIPTOR.full_name,
                "response": m.response_class.DESCRIPTOR.full_name,
            }
            for m in self.methods
            if not m.client_streaming
        ]

    def find(self, name: str) -> Method | None:
        return self._by_name.get(name)

    @classmethod
    def load(cls, root: str = ROOT_PACKAGE) -> Registry:
        methods = []
        for service in _services(import_generated_modules(root)):
            for rpc in service.methods:
                methods.append(
                    Method(
                        full_name=rpc.full_name,
                        path=f"/{service.full_name}/{rpc.name}",
                        package=service.file.package,
                        request_class=message_factory.GetMessageClass(rpc.input_type),
                        response_class=message_factory.GetMessageClass(rpc.output_type),
                        server_streaming=rpc.server_streaming,
                        client_streaming=rpc.client_streaming,
                    )
                )
        return cls(methods)
