"""The folders' import contracts (docs/architecture.md, "The rooms"), read from the source:
agents/ never imports Ray or gymnasium, envs/ never imports torch or Ray. Every import
statement counts, including the ones inside functions."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "agents": {"ray", "gymnasium"},
    "envs": {"torch", "ray"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_reader_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import numpy as np\n\ndef f():\n    from torch.nn import functional\n    import ray.util\n")
    assert imported_packages(source) == {"numpy", "torch", "ray"}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_folder_imports_nothing_it_must_not(folder):
    breaches = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[folder])
        for path in sorted((ROOT / folder).rglob("*.py"))
    }
    assert {path: names for path, names in breaches.items() if names} == {}


def test_validating_every_shipped_config_imports_no_torch_ray_or_planner():
    """Checking a YAML file is cheap: no torch, no Ray, no BPTT planner (issue 20; the names
    of the cores come from agents/core_names.py, the BPTT modes and sizes from
    learners/bptt/budget.py, both torch-free)."""
    import subprocess
    import sys

    script = (
        "import sys, pathlib\n"
        "from engram.config import load_config\n"
        "for path in sorted(pathlib.Path('configs').glob('*.yaml')):\n"
        "    load_config(path)\n"
        "heavy = sorted(name for name in ('torch', 'ray', 'learners.bptt_plan') if name in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_a_package_that_shadows_one_of_engrams_names_stops_the_import_with_its_path(tmp_path):
    """pip installs agents/, envs/, ... as top-level packages; one of those names from
    elsewhere first on sys.path must fail `import engram` loudly, naming where it came from."""
    import subprocess
    import sys

    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "__init__.py").write_text("")
    script = "import engram"
    shadowed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert shadowed.returncode != 0
    assert "ShadowedPackageError" in shadowed.stderr and str(tmp_path / "envs") in shadowed.stderr
    clean = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
