"""Issue 12, item 5: the projector's Lambda bundle holds the code it runs and nothing else.

``template.yaml``'s ``CodeUri`` is what ``sam build`` copies; ``localstack/build_bundle.py``
writes the same bundle for LocalStack. Neither may carry the tests, the benchmarks,
LocalStack's own files or an earlier build.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from convlog import templatecheck as tc

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_CODE = {"eventstore", "projections", "stream_handlers", "convlog", "requirements.txt"}
NEVER = {"tests", "benchmarks", "localstack", "build", "docs", ".venv", "conftest.py",
         "template.yaml", "pyproject.toml"}


def _code_uri(template_path: Path) -> str:
    """The one ``CodeUri`` every function of the template uses."""
    template = tc.load_template(template_path)
    uris = {props["Properties"]["CodeUri"] for props in template["Resources"].values()
            if props["Type"] == "AWS::Serverless::Function"}
    assert len(uris) == 1, uris
    uri: str = uris.pop()
    return uri


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_bundle", ROOT / "localstack" / "build_bundle.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_templates_code_uri_holds_only_the_lambda_code() -> None:
    code = ROOT / _code_uri(ROOT / "template.yaml")
    assert code.is_dir() and code.resolve() != ROOT
    assert {p.name for p in code.iterdir()} == LAMBDA_CODE
    for entry in code.iterdir():  # links into the checkout: one copy of the code
        assert entry.resolve() == ROOT / entry.name


def test_the_bundle_for_localstack_has_no_tests_or_benchmarks(tmp_path: Path) -> None:
    dest = _builder().build(tmp_path / "build", install=False)
    assert {p.name for p in dest.iterdir()} == {"template.yaml", _code_uri(ROOT / "template.yaml")
                                                .strip("/")}
    code = dest / _code_uri(dest / "template.yaml")
    assert {p.name for p in code.iterdir()} == LAMBDA_CODE
    assert not any(p.is_symlink() for p in code.rglob("*"))  # real files, zipped as they are
    names = {part for p in code.rglob("*") for part in p.relative_to(code).parts}
    assert names.isdisjoint(NEVER), names & NEVER
    assert (code / "stream_handlers" / "projector.py").is_file()
