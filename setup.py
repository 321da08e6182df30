"""The one build step pyproject.toml cannot declare: a built package (`pip
install .`, a wheel) carries the protobuf and gRPC code generated from
protos/, so the `cocreate` command and `import cocreate.ideas.v1...` work
without this checkout. Development (`make install`, an editable install)
generates into gen/ instead, which the Makefile puts on the path.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROTOS = Path(__file__).resolve().parent / "protos"


class BuildPyWithGeneratedCode(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the Makefile's gen/ serves an editable install
        import grpc_tools
        from grpc_tools import protoc

        well_known = Path(grpc_tools.__file__).parent / "_proto"
        out = Path(self.build_lib)
        out.mkdir(parents=True, exist_ok=True)
        sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"-I{well_known}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                *sources,
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed ({status}) generating the code of {PROTOS}")


setup(cmdclass={"build_py": BuildPyWithGeneratedCode})
