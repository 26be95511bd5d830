"""Hot-item throttling's chart (notebook 07): admissions over time, stacked by app instance,
against the configured limit.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from inventory_lab.plots.common import _label


def admitted_rate(
    admissions: pd.DataFrame,
    configured_per_s: float,
    ax: Axes | None = None,
    *,
    bucket_ms: float = 50,
    title: str | None = None,
    source: str | None = None,
) -> Axes:
    """Admissions per `bucket_ms` over time, stacked by app instance, against the configured limit.

    `admissions` is what `flash_sale.measure_admission` returns: one row per admission, with t_s
    (seconds since the instances started) and, optionally, instance. The dashed line is the
    configured limit per bucket: a per-process limiter's stack reaches about P times it, a
    cluster-wide one's stays at it whatever P is.
    """
    if bucket_ms <= 0 or configured_per_s <= 0:
        raise ValueError("bucket_ms and configured_per_s must be positive")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
    bucket = (admissions["t_s"] * 1000.0 // bucket_ms).astype(int)
    instance = admissions["instance"] if "instance" in admissions else pd.Series(0, bucket.index)
    buckets = int(bucket.max()) + 1 if len(bucket) else 1
    counts = pd.crosstab(bucket, instance).reindex(range(buckets), fill_value=0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lefts = [b * bucket_ms for b in counts.index]
    bottom = pd.Series(0, index=counts.index)
    for i, column in enumerate(counts.columns):
        ax.bar(
            lefts,
            counts[column].to_numpy(),
            width=bucket_ms,
            bottom=bottom.to_numpy(),
            align="edge",
            color=colours[i % len(colours)],
            edgecolor="white",
            linewidth=0.4,
            label=f"instance {column}",
        )
        bottom = bottom + counts[column]
    per_bucket = configured_per_s * bucket_ms / 1000.0
    ax.axhline(
        per_bucket,
        color="black",
        linestyle="--",
        linewidth=1.2,
        label=f"configured limit\n{configured_per_s:g}/s = {per_bucket:g} per {bucket_ms:g} ms",
    )
    ax.set_xlabel("time since the instances started (ms)")
    ax.set_ylabel(f"admissions per {bucket_ms:g} ms")
    ax.set_xlim(0, buckets * bucket_ms)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    _label(ax, title, source)
    return ax
