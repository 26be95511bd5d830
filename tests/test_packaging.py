"""environment.yml mirrors pyproject.toml, so conda users get the same lab as pip users."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# conda-forge spells a few packages differently from PyPI
CONDA_NAMES = {"redis": "redis-py", "duckdb": "python-duckdb", "psycopg[binary]": "psycopg"}


def _names(requirements):
    return {re.split(r"[<>=!~ ]", req, maxsplit=1)[0] for req in requirements}


def test_environment_yml_names_every_dependency_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= _names(extra)
    listed = set(
        re.findall(r"^\s*-\s+([A-Za-z0-9_.\-\[\]]+)", (ROOT / "environment.yml").read_text(), re.M)
    )
    missing = {CONDA_NAMES.get(name, name) for name in wanted} - listed
    assert not missing, f"environment.yml lacks {sorted(missing)}"
