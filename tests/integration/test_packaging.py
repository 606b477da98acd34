"""The core install is what an agent app needs, and nothing an operator or a test needs.

Builds the wheel, installs it *without extras* into a fresh virtual environment (pinned by
constraints.txt, as the README installs), and checks what came with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


PACKAGES = ("eventstore", "projections", "stream_handlers", "convlog")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True)
    return next(wheels.glob("*.whl"))


@pytest.fixture(scope="module")
def core_env(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    work = tmp_path_factory.mktemp("core")
    env = work / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
                    str(wheel)], check=True, capture_output=True)
    return python


def test_a_plain_install_leaves_out_the_emulator_and_web_stack(core_env: Path) -> None:
    listed = subprocess.run([str(core_env), "-m", "pip", "list", "--format", "json"],
                            check=True, capture_output=True, text=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert {"boto3", "pydantic", "openai-agents"} <= installed
    assert installed.isdisjoint({"moto", "flask", "werkzeug", "docker", "sympy",
                                 "aws-lambda-powertools", "aiobotocore", "cfn-lint"})


def test_eventstore_imports_and_builds_a_session_in_the_core_install(core_env: Path) -> None:
    script = ("import boto3, sys\n"
              "from eventstore import DynamoDBSession, ToolCache, cached_tool, list_sessions,"
              " create_table_if_not_exists\n"
              "import eventstore.errors\n"
              "c = boto3.client('dynamodb', region_name='us-east-1',"
              " aws_access_key_id='x', aws_secret_access_key='x')\n"
              "DynamoDBSession('s1', c, 't')\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in"
              " ('moto', 'werkzeug', 'flask', 'convlog')))\n")
    out = subprocess.run([str(core_env), "-c", script], check=True, capture_output=True,
                         text=True, cwd="/").stdout
    assert out.strip() == "[]"


def test_demo_without_the_local_extra_says_what_to_install(core_env: Path) -> None:
    convlog = core_env.parent / "convlog"
    done = subprocess.run([str(convlog), "demo"], capture_output=True, text=True, cwd="/",
                          timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "pip install" in lines[0] and "[local]" in lines[0]


def test_the_wheel_ships_py_typed_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = archive.read(metadata).decode("utf-8")
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1, sorted(n for n in names if "dist-info" in n)
        license_text = archive.read(licenses[0]).decode("utf-8")
    for package in PACKAGES:
        assert f"{package}/py.typed" in names, package
    assert "License-Expression: MIT" in meta.splitlines()
    assert "License-File: LICENSE" in meta.splitlines()
    assert license_text.startswith("MIT License")
    assert not {n for n in names if n.split("/")[0] in ("tests", "benchmarks", "localstack")}


def test_pyproject_uses_an_spdx_license_with_a_setuptools_that_knows_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    requires = project["build-system"]["requires"]
    assert any(r.startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in requires), requires  # PEP 639 license expressions: setuptools 77


def test_core_install_cli_says_which_extra_it_needs(core_env: Path) -> None:
    convlog = core_env.parent / "convlog"
    version = subprocess.run([str(convlog), "--version"], capture_output=True, text=True,
                             cwd="/", timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("convlog ")
    done = subprocess.run([str(convlog), "verify", "s1"], capture_output=True, text=True,
                          cwd="/", timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "convlog verify: error: the convlog command line needs rich: "
        "pip install 'convlog[cli]'"
    ]
