"""The Lambda bundle: requirements.txt covers what the projector and console handlers import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"eventstore", "projections", "stream_handlers", "convlog"}
# The console handler builds its app on the first call: import what that call imports.
HANDLERS = {
    "stream_handlers.projector": "import stream_handlers.projector",
    "stream_handlers.console": "import stream_handlers.console, convlog.console.app, mangum",
    "stream_handlers.sweeper": "import stream_handlers.sweeper",
}
# The python3.12 Lambda runtime ships the AWS SDK and its dependencies.
LAMBDA_RUNTIME = {"boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    return pins


def test_requirements_pins_follow_constraints() -> None:
    bundle = _pins(ROOT / "requirements.txt")
    constraints = _pins(ROOT / "constraints.txt")
    assert "aws-lambda-powertools" in bundle
    assert {name: constraints.get(name) for name in bundle} == bundle


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_requirements_cover_every_module_the_handler_imports(handler: str) -> None:
    probe = (
        f"import json, sys; before = set(sys.modules); {HANDLERS[handler]}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    imported = set(json.loads(done.stdout))
    third_party = {
        m for m in imported
        if m not in sys.stdlib_module_names and not m.startswith("_") and m not in OUR_PACKAGES
    }
    assert ("fastapi" if handler.endswith("console") else "aws_lambda_powertools") \
        in third_party
    dists = packages_distributions()
    bundle = set(_pins(ROOT / "requirements.txt"))
    missing = {
        module for module in third_party - LAMBDA_RUNTIME
        if not {_norm(d) for d in dists.get(module, [])} & bundle
    }
    assert missing == set(), f"add the distributions of {missing} to requirements.txt"
