"""Build static/js/embed.min.js, the file the server ships, from static/js/embed.js.

    .venv/bin/python scripts/build_embed.py

Minifies with terser (from the npm registry, through npx; Node.js is needed here only, not
to run or test the server). The first line records a hash of the source, and a test fails
when the built file is older than the source, so the two cannot drift apart.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "static", "js", "embed.js")
TARGET = os.path.join(ROOT, "static", "js", "embed.min.js")
TERSER = ["npx", "--yes", "terser@5.46"]


def source_hash() -> str:
    with open(SOURCE, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def main() -> None:
    result = subprocess.run(
        [*TERSER, SOURCE, "--compress", "passes=2", "--mangle", "--ecma", "2020"],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        sys.exit(f"terser failed:\n{result.stderr}")
    minified = f"/*!reactions {source_hash()}*/{result.stdout.strip()}\n"
    with open(TARGET, "w", encoding="utf-8") as handle:
        handle.write(minified)
    size = len(minified.encode())
    print(f"wrote {os.path.relpath(TARGET, ROOT)}: {size} bytes, "
          f"{len(gzip.compress(minified.encode(), 9))} gzipped")  # fmt: skip


if __name__ == "__main__":
    main()
