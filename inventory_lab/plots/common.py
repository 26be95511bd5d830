"""What every chart of the lab shares: one colour per outcome, a short name for a backend, and
the title and source line every chart carries.

An outcome looks the same in every notebook because its colour is fixed here; `_label` puts the
title above a chart and the `source` line (backend and machine the numbers came from) below its
x-axis, so that a saved or pasted chart keeps its provenance.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import pandas as pd
from matplotlib.axes import Axes

from inventory_lab.orders import Outcome

OUTCOME_COLOURS: dict[str, str] = {
    Outcome.ACCEPTED.value: "#2a9d8f",
    Outcome.SOLD_OUT.value: "#b0b7bf",
    Outcome.DUPLICATE.value: "#457b9d",
    Outcome.REJECTED.value: "#e9c46a",
    Outcome.THROTTLED.value: "#f4a261",
    Outcome.ERROR.value: "#d62828",
    Outcome.UNKNOWN.value: "#7b2cbf",
    Outcome.IN_PROGRESS.value: "#a8dadc",
    Outcome.MISMATCH.value: "#6d597a",
}
# The report's count column for each outcome, in the order bars are stacked.
OUTCOME_COLUMNS: dict[str, str] = {
    Outcome.ACCEPTED.value: "accepted",
    Outcome.SOLD_OUT.value: "sold_out",
    Outcome.DUPLICATE.value: "duplicates",
    Outcome.REJECTED.value: "rejected",
    Outcome.THROTTLED.value: "throttled",
    Outcome.ERROR.value: "errors",
    Outcome.UNKNOWN.value: "unknown",
    Outcome.IN_PROGRESS.value: "in_progress",
    Outcome.MISMATCH.value: "mismatch",
}
_MARKERS = ["o", "s", "^", "D", "v", "P"]
_LINESTYLES = ["-", "--", ":", "-."]


def backend_label(url: str) -> str:
    """A short name for a (masked) database URL: 'sqlite', 'postgresql @127.0.0.1:5432', …"""
    parts = urlsplit(url)
    dialect = parts.scheme.split("+")[0] or url
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname:
        return dialect
    return f"{dialect} @{parts.hostname}" + (f":{port}" if port is not None else "")


def _present(order: Iterable[str], values: pd.Series) -> list[str]:
    """The known values that occur, in the known order, then any unknown ones."""
    seen = set(values)
    known = [value for value in order if value in seen]
    return known + sorted(seen - set(known))


def _label(ax: Axes, title: str | None, source: str | None) -> None:
    if title:
        ax.set_title(title, loc="left")
    if source:
        # Below the x-axis label, so that a saved or pasted chart keeps its provenance.
        ax.annotate(
            source,
            xy=(0.0, 0.0),
            xycoords="axes fraction",
            xytext=(0, -38),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="0.35",
        )
