"""The architecture picture is read from the package, so it cannot fall behind: a design
registered now appears in it, and so do every finding of the checker's report and every fault
the review strikes."""

import dataclasses

import matplotlib.pyplot as plt

from inventory_lab import nemesis, plots, review
from inventory_lab.backends import SQL_DRIVERS
from inventory_lab.checker import CheckReport
from inventory_lab.designs import REGISTRY, design_names
from inventory_lab.designs.db_only import DbOnly
from inventory_lab.plots.architecture import architecture_parts


def _texts(ax) -> str:
    return "\n".join(text.get_text() for text in ax.texts)


def test_a_newly_registered_design_appears_in_the_picture(monkeypatch):
    class Newcomer(DbOnly):
        name = "newcomer"
        summary = "a design registered after the picture was written"
        uses_redis = True

    monkeypatch.setitem(REGISTRY, Newcomer.name, Newcomer)  # registered for this test only
    assert "newcomer" in design_names()
    assert "newcomer (Redis)" in architecture_parts()["designs"]
    ax = plots.lab_architecture()
    assert "newcomer (Redis)" in _texts(ax)
    plt.close("all")


def test_every_design_backend_finding_and_fault_is_drawn():
    ax = plots.lab_architecture()
    drawn = _texts(ax)
    for name in design_names():
        assert name in drawn
    for driver in SQL_DRIVERS:
        assert f"{driver}://" in drawn
    for field in dataclasses.fields(CheckReport):
        if field.name not in {"per_sku", "pending"}:
            assert field.name in drawn
    for fault in [*nemesis.FAULTS, *review.WORKLOAD_FAULTS]:
        if fault != "none":
            assert f"{fault}:" in drawn
    plt.close("all")


def test_the_breaches_marked_are_the_findings_that_break_ok():
    """`!` marks a finding that alone makes CheckReport.ok false, read from `ok` itself."""
    marked = {line.removesuffix(" !") for line in architecture_parts()["checker"] if "!" in line}
    assert marked == {"oversold", "double_deducted", "lost", "unaccounted", "partial", "converged"}
