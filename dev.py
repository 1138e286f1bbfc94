#!/usr/bin/env python3
"""The README's two commands, on any machine with Python 3.11+:

    python3 dev.py serve [reactions serve options]   # install if needed, run the server
    python3 dev.py test  [pytest options]            # install if needed, lint, run all tests

Both keep a virtual environment in .venv and reinstall only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
BIN = os.path.join(VENV, "Scripts" if os.name == "nt" else "bin")
STAMP = os.path.join(VENV, ".reactions-installed")
LINTED = ["widget", "tests", "bench", "scripts", "dev.py"]


def tool(name: str) -> str:
    return os.path.join(BIN, name)


def run(*args: str) -> None:
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode:
        sys.exit(result.returncode)


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by any python3
        sys.exit(f"reactions needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not os.path.exists(tool("python")):
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        wanted = hashlib.sha256(handle.read()).hexdigest()
    installed = ""
    if os.path.exists(STAMP):
        with open(STAMP) as handle:
            installed = handle.read()
    if installed != wanted:
        print("Installing reactions and its test tools into .venv ...", flush=True)
        run(tool("python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(tool("python"), "-m", "pip", "install", "--quiet", "-e", ".[test]")
        with open(STAMP, "w") as handle:
            handle.write(wanted)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("serve", "test"):
        sys.exit(__doc__)
    ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "serve":
        os.execv(tool("reactions"), [tool("reactions"), "serve", *rest])
    linted = [path for path in LINTED if os.path.exists(os.path.join(ROOT, path))]
    run(tool("ruff"), "check", *linted)
    run(tool("ruff"), "format", "--check", *linted)
    run(tool("python"), "-m", "pytest", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
