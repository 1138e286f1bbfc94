#!/usr/bin/env python3
"""The README's two commands, on any machine with Python 3.11+:

    python3 dev.py serve [reactions serve options]   # install if needed, run the server
    python3 dev.py test  [pytest options]            # install if needed, lint, run all tests

Both keep a virtual environment in .venv with the exact versions of requirements-lock.txt
(plain pip, hash-checked) and reinstall only when that file or pyproject.toml changes.

    python3 dev.py lock [uv pip compile options]     # refresh requirements-lock.txt

re-resolves the lock from pyproject.toml's ranges, every package to its newest release unless
options are given (`--upgrade-package redis` moves only that one); run the tests on it before
committing it.
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
LOCK = "requirements-lock.txt"
# The lock is resolved for every platform and every Python from 3.11 on; uv is needed only to
# refresh it, never to install it.
LOCK_TOOL = "uv==0.13.9"
LINTED = ["widget", "tests", "bench", "scripts", "dev.py"]


def tool(name: str) -> str:
    return os.path.join(BIN, name)


def run(*args: str) -> None:
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode:
        sys.exit(result.returncode)


def ensure_environment() -> None:
    if not os.path.exists(tool("python")):
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256()
    for name in ("pyproject.toml", LOCK):
        with open(os.path.join(ROOT, name), "rb") as handle:
            digest.update(handle.read())
    wanted = digest.hexdigest()
    installed = ""
    if os.path.exists(STAMP):
        with open(STAMP) as handle:
            installed = handle.read()
    if installed != wanted:
        print("Installing reactions and its test tools into .venv ...", flush=True)
        run(tool("python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        # Exactly the locked versions first, then the project itself on top of them: an
        # editable install has no hash, so it cannot be part of the hash-checked step.
        run(tool("python"), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", LOCK)
        run(tool("python"), "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
        with open(STAMP, "w") as handle:
            handle.write(wanted)


def refresh_lock(options: list[str]) -> None:
    """Rewrite the lock from pyproject.toml with uv, kept in its own environment so that the
    project's .venv holds nothing but the locked set."""
    tools = os.path.join(VENV, "lock-tools")
    uv = os.path.join(tools, "Scripts" if os.name == "nt" else "bin", "uv")
    if not os.path.exists(uv):
        venv.create(tools, with_pip=True)
        run(os.path.join(os.path.dirname(uv), "python"), "-m", "pip", "install", "-q", LOCK_TOOL)
    compile_ = [uv, "pip", "compile", "pyproject.toml", "--extra", "test", "--universal"]
    compile_ += ["--generate-hashes", "--custom-compile-command", "python3 dev.py lock"]
    run(*compile_, "--quiet", "--output-file", LOCK, *(options or ["--upgrade"]))


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("serve", "test", "lock"):
        sys.exit(__doc__)
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by any python3
        sys.exit(f"reactions needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    command, rest = argv[0], argv[1:]
    if command == "lock":
        refresh_lock(rest)
        return
    ensure_environment()
    if command == "serve":
        os.execv(tool("reactions"), [tool("reactions"), "serve", *rest])
    linted = [path for path in LINTED if os.path.exists(os.path.join(ROOT, path))]
    run(tool("ruff"), "check", *linted)
    run(tool("ruff"), "format", "--check", *linted)
    run(tool("python"), "-m", "pytest", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
