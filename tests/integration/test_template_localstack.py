"""localstack/: compose file, READY hook and bundle builder agree with the template.

Docker is not available in CI, so LocalStack itself never runs here; these tests check
what can be checked without it, and tests/e2e runs the same end-to-end tests against the
embedded endpoint on the LocalStack port.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

from convlog import templatecheck as tc

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK = ROOT / "localstack"
HOOK = LOCALSTACK / "init" / "ready.d" / "10-deploy-convlog.sh"
SERVICES = {"dynamodb", "dynamodbstreams", "lambda", "cloudformation", "sqs", "cloudwatch",
            "iam", "sts", "logs", "s3"}


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_bundle", LOCALSTACK / "build_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_file_runs_the_needed_services_and_mounts_the_hook_and_bundle() -> None:
    compose = yaml.safe_load((LOCALSTACK / "docker-compose.yml").read_text(encoding="utf-8"))
    service = compose["services"]["localstack"]
    assert service["image"].startswith("localstack/localstack")
    env = service["environment"]
    assert set(env["SERVICES"].split(",")) == SERVICES
    assert "LOCALSTACK_AUTH_TOKEN" in env and env["LAMBDA_IGNORE_ARCHITECTURE"] == "1"
    assert "127.0.0.1:4566:4566" in service["ports"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
    assert (LOCALSTACK / mounts["/etc/localstack/init/ready.d"]).resolve() == HOOK.parent
    bundle_dir = mounts["/opt/convlog/build"]
    assert (LOCALSTACK / bundle_dir).resolve() == LOCALSTACK / "build"
    assert "/_localstack/init/ready" in " ".join(service["healthcheck"]["test"])


def test_ready_hook_is_an_executable_bash_script_that_deploys_the_bundle() -> None:
    assert HOOK.stat().st_mode & 0o111
    text = HOOK.read_text(encoding="utf-8")
    assert text.startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n", str(HOOK)], check=True)
    assert "BUNDLE=/opt/convlog/build" in text
    assert 'cloudformation package \\\n  --template-file "$BUNDLE/template.yaml"' in text
    assert "cloudformation deploy" in text and "CAPABILITY_AUTO_EXPAND" in text
    template = tc.load_template(ROOT / "template.yaml")
    overrides = set(re.findall(r'"(\w+)=\$', text))
    assert overrides == set(template["Parameters"])


def test_bundle_holds_the_handler_and_the_template_next_to_it(tmp_path: Path) -> None:
    builder = _builder()
    dest = builder.build(tmp_path / "build", install=False)
    assert (dest / "template.yaml").read_bytes() == (ROOT / "template.yaml").read_bytes()
    template = tc.load_template(dest / "template.yaml")
    function = template["Resources"]["ProjectorFunction"]["Properties"]
    code = dest / function["CodeUri"]  # resolves inside the bundle when packaged
    assert code.is_dir() and code.parent == dest
    module = function["Handler"].rpartition(".")[0].replace(".", "/") + ".py"
    assert (code / module).is_file()
    assert (code / "requirements.txt").exists()
    assert not list(dest.rglob("__pycache__"))
    # The handler imports from the bundle alone (plus the SDK the Lambda runtime has).
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import importlib; "
             "m = importlib.import_module('stream_handlers.projector'); "
             "print(m.__file__)")
    done = subprocess.run([sys.executable, "-c", probe, str(code)], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    assert done.stdout.strip().startswith(str(code))


def test_wheels_are_chosen_for_the_host_cpu() -> None:
    builder = _builder()
    assert builder.wheel_platform("x86_64") == "manylinux2014_x86_64"
    assert builder.wheel_platform("arm64") == "manylinux2014_aarch64"
    assert builder.wheel_platform("aarch64") == "manylinux2014_aarch64"
