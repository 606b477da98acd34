"""Build the projector's Lambda bundle for LocalStack: ``localstack/build/``.

The bundle is what ``sam build`` would produce for ``template.yaml``: a copy of the
template and, under its ``CodeUri`` (``lambda/``), the functions' code and nothing else:
the ``eventstore``, ``projections``, ``stream_handlers`` and ``convlog`` packages
(``lambda/`` in the checkout holds links to them; the console functions run
``convlog.console``) with ``requirements.txt`` installed next to them as Linux wheels for
Python 3.12 (the functions' runtime). No tests, benchmarks, LocalStack files or earlier
builds. When the init script runs ``awslocal cloudformation package``, the
template's ``CodeUri`` resolves to that directory of the bundle. Wheels are chosen for
this machine's CPU (LocalStack runs with ``LAMBDA_IGNORE_ARCHITECTURE=1``, i.e. natively).

Example:
    ```bash
    python localstack/build_bundle.py            # before: docker compose ... up
    python localstack/build_bundle.py --no-deps  # code only (tests)
    ```
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "localstack" / "build"
CODE_DIR = "lambda"
"""The function's ``CodeUri`` in ``template.yaml``, relative to the template."""
PACKAGES = ("eventstore", "projections", "stream_handlers", "convlog")
PYTHON_VERSION = "3.12"


def wheel_platform(machine: str | None = None) -> str:
    """The manylinux platform tag of the Lambda containers LocalStack starts here."""
    arch = (machine or platform.machine()).lower()
    return "manylinux2014_aarch64" if arch in ("arm64", "aarch64") else "manylinux2014_x86_64"


def build(dest: Path = DEFAULT_DEST, *, install: bool = True) -> Path:
    """Write the bundle to ``dest`` (replacing it) and return ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    code = dest / CODE_DIR
    code.mkdir(parents=True)
    for package in PACKAGES:  # real copies (the links in lambda/ are followed)
        shutil.copytree(
            ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    shutil.copy2(ROOT / "requirements.txt", code / "requirements.txt")
    shutil.copy2(ROOT / "template.yaml", dest / "template.yaml")
    if install:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
             "--target", str(code), "--requirement", str(ROOT / "requirements.txt"),
             "--platform", wheel_platform(), "--python-version", PYTHON_VERSION,
             "--implementation", "cp", "--only-binary=:all:", "--upgrade"],
            check=True,
        )
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--no-deps", action="store_true", help="copy the code only")
    args = parser.parse_args(argv)
    dest = build(args.dest, install=not args.no_deps)
    print(f"bundle ready in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
