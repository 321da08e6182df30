"""A built package works without this checkout: the wheel carries the code
generated from protos/, the migrations and the web app's files, and its
`cocreate` command starts with nothing of gen/ on the path."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from services.kit.db import KIT_MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built as `pip install .` builds it (offline: the
    build requirements are already installed) and installed into a folder."""
    work = tmp_path_factory.mktemp("package")
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("cocreate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cocreate/ideas/v1/ideas_service_pb2_grpc.py" in names
    assert "services/votes/migrations/0001_init.sql" in names
    assert "services/gateway/web/index.html" in names
    assert "services/gateway/html/console.html" in names
    target = work / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    return target


def run_isolated(installed: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Python without site (so no .pth: neither gen/ nor the editable
    checkout), seeing only the installed package and the dependencies."""
    dependencies = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{installed}{os.pathsep}{dependencies}"}
    return subprocess.run(
        [sys.executable, "-S", *argv],
        env=env,
        cwd=installed.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_installed_command_starts_and_knows_every_method(installed: Path) -> None:
    script = installed / "bin" / "cocreate"
    helped = run_isolated(installed, str(script), "--help")
    assert helped.returncode == 0, helped.stderr
    assert "export" in helped.stdout
    listed = run_isolated(
        installed,
        "-c",
        "import cocreate, cli, services\n"
        "from services.gateway.methods import Registry\n"
        "from services.kit import db\n"
        "from services.gateway.web import WEB_ROOT\n"
        "print(cocreate.__path__[0]); print(cli.__file__); print(services.__file__)\n"
        "print(len(Registry.load().find('cocreate.votes.v1.VoteService.CastVote').path))\n"
        "print(len(list(db.KIT_MIGRATIONS.glob('*.sql'))), (WEB_ROOT / 'app.js').is_file())\n",
    )
    assert listed.returncode == 0, listed.stderr
    package_dir, cli_file, services_file, path_length, found = listed.stdout.splitlines()
    for located in (package_dir, cli_file, services_file):
        assert located.startswith(str(installed)), located
    assert int(path_length) > 0
    # Every kit migration of the checkout ships with the package.
    assert found == f"{len(list(KIT_MIGRATIONS.glob('*.sql')))} True"


def test_a_client_can_call_with_the_installed_stubs(installed: Path) -> None:
    """The SDK example of the README, against no server: the stubs import and
    a call fails as a gRPC call does (UNAVAILABLE), not as an import does."""
    example = (
        "import grpc\n"
        "from cocreate.ideas.v1 import ideas_service_pb2 as ideas, ideas_service_pb2_grpc\n"
        "channel = grpc.insecure_channel('127.0.0.1:1')\n"
        "api = ideas_service_pb2_grpc.IdeaServiceStub(channel)\n"
        "try:\n"
        "    api.ListIdeas(ideas.ListIdeasRequest(page_size=5), timeout=2)\n"
        "except grpc.RpcError as err:\n"
        "    print(err.code().name)\n"
    )
    called = run_isolated(installed, "-c", example)
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "UNAVAILABLE"
