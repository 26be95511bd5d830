"""The package reads in the order the data flows: no module imports one from a higher layer.

Every module's imports (at the top, inside functions, under TYPE_CHECKING: all of them) are read
with `ast`, without importing anything, and each side is placed in a layer. A module may import
from its own layer or the ones below, never from above. A module that no layer names fails the
test: a new module must be placed, which is the moment to ask where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "inventory_lab"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Bottom to top. Names are dotted paths under the package; "designs.*" is every module of the
# designs package (adding a design is adding a file); "" is the package itself, its public face.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "ground",  # errors, values, keys, tables, backend handles, Lua sources, outcomes
        {
            "errors",
            "orders",
            "checkout",
            "keys",
            "schema",
            "backends",
            "lab",
            "scripts",
            "resolve",
            "redis_server",
            "redis_cluster",
            "shard_databases",
            "stock_buckets",
        },
    ),
    (
        "designs",  # the designs and what they are built of; redis_stock reads the task tables
        # (Redis holds DB stock minus the tasks not yet applied), so it sits beside the store
        {
            "designs",
            "designs.*",
            "tasks",
            "tasks.store",
            "tasks.workers",
            "throttle",
            "redis_stock",
            "restock",
            "sold_out_flag",
            "gate_one_merging",
            "tasks.merging",
        },
    ),
    (
        "drive and judge",
        {
            "workload",
            "faults",
            "failover",
            "checker",
            "reconcile",
            "history",
            "linearizability",
        },
    ),
    (
        "experiments",
        {
            "experiment",
            "buckets_bench",
            "scenarios",
            "task_runs",
            "review",
            "review_report",
            "nemesis",
            "flash_sale",
            "bench",
            "bench_in_process",
            "measuring",
            "loadgen",
            "senders",
            "ceilings",
            "saturation",
            "stalls",
            "redis_meter",
            "db_meter",
            "compensation_window",
            "idempotency",
            "gate_one_variants",
            "order_profile",
            "growth",
            "results",
            "schedule",
            "explorer",
            "lock_order",
            "stored_outcome",
            "saga",
            "reservations",
            "flag_sale",
            "merging_bench",
            "beyond",
            "drain_bench",
            "cluster_bench",
            "cluster_layout",
        },
    ),
    ("faces", {"", "__main__", "plots", "plots.*", "cli"}),
]


def module_name(path: Path) -> str:
    """'designs.two_gate' for inventory_lab/designs/two_gate.py, '' for the package itself."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    for index, (_, names) in enumerate(LAYERS):
        if module in names:
            return index
        parent = module.rpartition(".")[0]
        if parent and f"{parent}.*" in names:
            return index
    return None


def _is_package(module: str) -> bool:
    return MODULES.get(module) is not None and MODULES[module].name == "__init__.py"


def imported_modules(module: str, source: str | None = None) -> set[str]:
    """The package's modules that `module` imports (names as in MODULES); `source`: its text,
    read from its file unless given."""
    if source is None:
        source = MODULES[module].read_text(encoding="utf-8")
    tree = ast.parse(source)
    here = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()

    def add(dotted: str) -> None:
        if dotted == PACKAGE or dotted.startswith(PACKAGE + "."):
            found.add(dotted.removeprefix(PACKAGE).removeprefix("."))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, up `level - 1` steps
                base = here.split(".") if here else []
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                # `from inventory_lab import keys` imports the module keys; `from
                # inventory_lab import open_lab` imports the package's face
                known = submodule.removeprefix(PACKAGE).removeprefix(".") in MODULES
                add(submodule if known else source)
    found.discard(module)
    return found


def test_the_layers_name_only_modules_that_exist():
    stale = {
        name
        for _, names in LAYERS
        for name in names
        if not name.endswith(".*") and name not in MODULES
    }
    assert not stale, f"layers name modules that are gone: {sorted(stale)}"


def test_every_module_is_placed_in_a_layer():
    unplaced = sorted(name or PACKAGE for name in MODULES if layer_of(name) is None)
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py: {unplaced}"


@pytest.mark.parametrize("module", sorted(MODULES), ids=lambda name: name or PACKAGE)
def test_no_module_imports_from_a_higher_layer(module):
    mine = layer_of(module)
    if mine is None:
        pytest.skip("not placed (see test_every_module_is_placed_in_a_layer)")
    upward = []
    for imported in sorted(imported_modules(module)):
        theirs = layer_of(imported)
        if theirs is None or theirs > mine:
            where = "no layer" if theirs is None else LAYERS[theirs][0]
            upward.append(f"{imported or PACKAGE} ({where})")
    assert not upward, f"{module or PACKAGE} ({LAYERS[mine][0]}) imports upward: {upward}"


def test_the_reader_resolves_relative_imports_and_the_package_face():
    """A relative import resolves against the module's package; a name that is not a module
    (`from inventory_lab import open_lab`) is the package's face."""
    source = (
        "from . import base\n"
        "from .. import keys\n"
        "from ..tasks.store import Status\n"
        "from inventory_lab import open_lab, schema\n"
        "import inventory_lab.checker\n"
        "def later():\n"
        "    from inventory_lab.workload import run_workload\n"
    )
    assert imported_modules("designs.two_gate", source) == {
        "designs.base",
        "keys",
        "tasks.store",
        "",
        "schema",
        "checker",
        "workload",
    }


def test_the_faults_depend_on_no_design():
    """They hook what a design with two gates has (faults.Gated), whichever design it is."""
    assert not {m for m in imported_modules("faults") if m.partition(".")[0] == "designs"}
