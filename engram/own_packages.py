"""engram's top-level packages, and the check that the ones Python finds are engram's.

The repository keeps one folder per room at its top (``agents/``, ``envs/``, ``actors/``,
``learners/``, ``benchmarks/``) and ``pip install`` installs each as a top-level package of
that name. Putting them under ``engram.`` instead would change every import in the project
and in users' scripts, and an editable install would then hold two copies of each module
(``agents.x`` from the checkout's folder and ``engram.agents.x`` from the install). So the
names stay, and this check makes a clash loud: if another installed package (or a folder
in the working directory) of one of these names comes first on ``sys.path``, importing
engram fails at once with the path of the intruder, instead of later with an
``AttributeError`` deep inside a run. docs/architecture.md, "Packaging", says the same.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

OWN_PACKAGES = ("agents", "envs", "actors", "learners", "benchmarks")


class ShadowedPackageError(ImportError):
    """A top-level package of one of engram's names is not engram's."""


def _location(name: str) -> Path | None:
    module = sys.modules.get(name)
    spec = module.__spec__ if module is not None else importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve().parent if spec.origin else None


def check_own_packages(root: Path | None = None) -> None:
    """Raise :class:`ShadowedPackageError` if ``agents``, ``envs``, ``actors``, ``learners``
    or ``benchmarks`` would import from anywhere but beside the ``engram`` package (``root``)."""
    root = (root or Path(__file__).resolve().parent.parent).resolve()
    for name in OWN_PACKAGES:
        found = _location(name)
        if found is not None and found != root / name:
            raise ShadowedPackageError(
                f"'import {name}' finds {found}, not engram's {root / name}: another package or folder "
                f"named '{name}' comes first on sys.path. Uninstall or rename it, or run from a directory "
                "without it (docs/architecture.md, 'Packaging')"
            )
