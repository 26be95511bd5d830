"""The design review as a document: a review's JSON, a live run beside the reference, HTML.

`review_document` is the one shape a review matrix is written in — `inventory-lab review --json`,
the reference files `data/reference/review_*.json` and the live run of a report all use it.
`beside_reference` puts a live review's cells next to the same cells of the reference matrices.
`write_report` is `inventory-lab report`: it runs notebook 09 with papermill, its parameters set
to the servers, rows, faults and seeds asked for (the notebook then runs the review matrix live,
beside the reference), and exports the executed notebook to one standalone HTML file, inputs
left out and outputs kept, to attach to a design document. The URLs reach the notebook's kernel
as parameters; the report never shows them unmasked: the cell papermill injects is dropped before
the export, and any raw URL left in an output is replaced by its masked form.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from inventory_lab.backends import mask_url
from inventory_lab.errors import LabError

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "09_design_review.ipynb"
INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it adds
_LOCATION = ("redis", "db", "machine")


def review_document(frame: pd.DataFrame, seeds: int) -> dict[str, Any]:
    """A review (`review.review`'s frame) as one JSON-ready dict: where it ran, its cells, and
    how many cells were not as expected."""
    unexpected = int((frame["verdict"] != "as expected").sum())
    return {
        **{name: frame[name].iloc[0] for name in _LOCATION},
        "seeds": seeds,
        "seconds": frame.attrs.get("seconds"),
        "cells": frame.drop(columns=list(_LOCATION)).to_dict(orient="records"),
        "unexpected": unexpected,
    }


def describe(document: dict[str, Any]) -> str:
    """One line saying which backends and machine produced a review document, with how many
    seeds per cell."""
    return (
        f"redis {document['redis']} + {document['db']}, {document['machine']}, "
        f"{document['seeds']} seed{'s' if document['seeds'] != 1 else ''} per cell"
    )


def beside_reference(live: pd.DataFrame, references: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each live cell's broken invariants and verdict, next to the invariants the same (row,
    fault) cell broke in each reference matrix ("–" where the fault did not apply there)."""
    key = ["row", "fault"]

    def shown(cells: pd.DataFrame) -> pd.Series:
        text = cells["broken"].map(lambda names: ", ".join(names) or "none")
        return text.where(cells["applies"], "–")

    table = live[key].copy()
    table["this run"] = shown(live).to_numpy()
    table["verdict"] = live["verdict"].to_numpy()
    for name, cells in references.items():
        column = cells.assign(shown=shown(cells)).set_index(key)["shown"]
        table[name] = column.reindex(pd.MultiIndex.from_frame(live[key])).to_numpy()
    return table.set_index(key)


def write_report(
    out: Path,
    *,
    redis_url: str,
    db_url: str | None,
    rows: Sequence[str] | None,
    faults: Sequence[str] | None,
    seeds: int,
    notebook: Path = NOTEBOOK,
    progress: bool = True,
) -> dict[str, Any]:
    """Run `notebook` with a live review on the given servers and write it to `out` as HTML.

    Returns the live review's document (`review_document`). A notebook that fails still leaves
    its report, up to the failing cell, at `out`; then LabError says where it stopped.
    """
    try:
        import nbformat
        import papermill
    except ImportError as exc:
        raise LabError(
            f"report needs papermill and nbconvert ({exc.name} is missing): "
            "pip install 'inventory_lab[notebooks]'"
        ) from None
    if not notebook.is_file():
        raise LabError(f"no review notebook at {notebook}: run report from a checkout of the lab")
    urls = [url for url in (redis_url, db_url) if url]
    with tempfile.TemporaryDirectory(prefix="inventory_lab_report_") as tmp:
        executed, document = Path(tmp) / notebook.name, Path(tmp) / "review.json"
        parameters = {
            "redis_url": redis_url,
            "db_url": db_url,
            "rows": list(rows) if rows else None,
            "faults": list(faults) if faults else None,
            "seeds": seeds,
            "review_json": str(document),
        }
        failure = None
        try:
            papermill.execute_notebook(
                str(notebook),
                str(executed),
                parameters=parameters,
                cwd=str(notebook.parent),  # the notebook reads ../data/reference
                progress_bar=progress,
            )
        except papermill.PapermillExecutionError as exc:
            failure = f"{exc.ename}: {exc.evalue}".splitlines()[0]
            failure = f"the review notebook failed in cell [{exc.exec_count}]: {failure}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(export_html(nbformat.read(executed, as_version=4), urls), encoding="utf-8")
        if failure is not None:
            raise LabError(_masked(f"{failure} (the report up to there: {out})", urls))
        return json.loads(document.read_text())


def export_html(notebook: Any, urls: Sequence[str] = ()) -> str:
    """An executed notebook (nbformat node) as one standalone HTML page: prose and outputs, no
    code; without papermill's injected parameters; every URL of `urls` masked."""
    from nbconvert import HTMLExporter

    notebook.cells = [
        cell for cell in notebook.cells if INJECTED_TAG not in cell.metadata.get("tags", [])
    ]
    notebook.metadata.get("papermill", {}).pop("parameters", None)
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    html, _ = exporter.from_notebook_node(
        notebook, resources={"metadata": {"name": "Design review"}}
    )
    return _masked(html, urls)


def _masked(text: str, urls: Sequence[str]) -> str:
    for url in urls:
        if mask_url(url) != url:
            text = text.replace(url, mask_url(url))
    return text
