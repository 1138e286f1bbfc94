"""An operator who installs from requirements-lock.txt gets the versions this suite ran on, and
`pip install .` keeps to ranges that the lock satisfies and that stop before the next major of
each dependency whose internals the code touches."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# A locked line: "name==version", maybe "; marker", then the " \" that leads to its hashes.
LOCKED_LINE = re.compile(r"^[A-Za-z0-9][^\s#]*==[^\s]+(?:\s*;[^\\]*)?")


def locked() -> dict[str, Requirement]:
    """The lock's pins that apply to this interpreter and platform, by canonical name."""
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        match = LOCKED_LINE.match(line)
        if match:
            requirement = Requirement(match.group(0).strip())
            if requirement.marker is None or requirement.marker.evaluate():
                pins[canonicalize_name(requirement.name)] = requirement
    return pins


def declared() -> list[Requirement]:
    """pyproject.toml's dependencies and test tools, as `pip install .[test]` reads them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["test"]
    return [Requirement(line) for line in lines]


def pinned_version(requirement: Requirement) -> Version:
    (pin,) = requirement.specifier
    assert pin.operator == "==", f"{requirement} is not an exact pin"
    return Version(pin.version)


def test_the_suite_runs_on_the_locked_versions():
    drifted = {
        name: (str(pinned_version(pin)), metadata.version(name))
        for name, pin in locked().items()
        if Version(metadata.version(name)) != pinned_version(pin)
    }
    assert drifted == {}, "installed versions differ from the lock: run python3 dev.py test"


def test_the_lock_holds_every_declared_dependency_within_its_range():
    pins = locked()
    outside = {}
    for requirement in declared():
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or pinned_version(pin) not in requirement.specifier:
            outside[str(requirement)] = str(pin)
    assert outside == {}, "refresh the lock with python3 dev.py lock"


@pytest.mark.parametrize("name", ["redis", "gunicorn", "gevent"])
def test_a_patched_dependency_stops_before_its_next_major(name):
    """widget/ reaches into these three's internals: a new major must be a deliberate bump."""
    (requirement,) = [r for r in declared() if canonicalize_name(r.name) == name]
    major = pinned_version(locked()[name]).major
    assert requirement.specifier.contains(f"{major}.999", prereleases=True)
    assert not requirement.specifier.contains(f"{major + 1}.0", prereleases=True)
