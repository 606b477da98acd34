"""Layering (DESIGN.md): stream_handlers -> convlog -> projections -> eventstore, imports down only.

``eventstore`` is what an agent app installs: it imports no other layer of this project and
no optional dependency (moto, werkzeug, flask, Powertools, aiobotocore, cfn-lint, ...).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NETWORK = ("boto3", "botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "httpx",
           "s3transfer")


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


def test_projections_load_without_network_libraries() -> None:
    top = loaded_after("import projections, projections.records, projections.session")
    assert "projections" in top
    assert top.isdisjoint(NETWORK), top & set(NETWORK)


def test_the_check_would_notice_botocore() -> None:
    assert "botocore" in loaded_after("import eventstore.client")


UPPER = {
    "eventstore": ("projections", "stream_handlers", "convlog"),
    "projections": ("stream_handlers", "convlog"),
    "convlog": ("stream_handlers",),
}
OPTIONAL = ("moto", "werkzeug", "flask", "aws_lambda_powertools", "aiobotocore", "aiohttp",
            "cfnlint", "samtranslator", "localstack_client", "rich", "matplotlib",
            "fastapi", "mangum", "schemathesis", "playwright")


def imports_of(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [(path.name, n) for n in names]
    return found


def test_each_layer_imports_only_the_layers_below() -> None:
    offenders = [f"{package}/{file}: {name}" for package, upper in UPPER.items()
                 for file, name in imports_of(package) if name.split(".")[0] in upper]
    assert offenders == []


def test_eventstore_imports_no_optional_dependency() -> None:
    offenders = [f"{file}: {name}" for file, name in imports_of("eventstore")
                 if name.split(".")[0] in OPTIONAL]
    assert offenders == []


def test_the_layer_check_would_notice_an_upward_import(tmp_path: Path) -> None:
    assert ("cli.py", "eventstore.errors") in imports_of("convlog")


def test_eventstore_never_imports_the_upper_layers() -> None:
    offenders = []
    for path in sorted((ROOT / "eventstore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("projections", "stream_handlers", "convlog")]
    assert offenders == []


def test_importing_all_of_eventstore_loads_no_upper_layer() -> None:
    modules = [p.stem for p in (ROOT / "eventstore").glob("*.py") if p.stem != "__main__"]
    code = "\n".join(f"import eventstore.{m}" for m in modules)
    top = loaded_after(code)
    assert {"eventstore", "botocore"} <= top
    # aiohttp is left out: the openai package (a core dependency) loads it when present.
    assert top.isdisjoint({"projections", "stream_handlers", "convlog", *OPTIONAL} - {"aiohttp"})


def test_the_lambda_handler_loads_neither_the_agents_sdk_nor_moto() -> None:
    top = loaded_after("import stream_handlers.projector")
    assert {"projections", "eventstore", "aws_lambda_powertools"} <= top
    assert top.isdisjoint({"agents", "openai", "moto", "aiobotocore"})
