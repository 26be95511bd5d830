"""The review as a document and as a report: JSON shape, live beside reference, HTML, the CLI."""

import json
from pathlib import Path

import nbformat
import pandas as pd
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from inventory_lab.backends import mask_url
from inventory_lab.cli import main
from inventory_lab.review import review
from inventory_lab.review_report import (
    INJECTED_TAG,
    beside_reference,
    describe,
    export_html,
    review_document,
)

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"


def test_report_runs_the_review_live_and_writes_one_html_page(paired_urls, tmp_path, capsys):
    redis, db = paired_urls
    out = tmp_path / "review.html"
    args = ["--rows", "two_gate_lua", "--faults", "none,lost_commit_ack", "--seeds", "1"]
    code = main(["report", "--redis", redis, "--db", db, *args, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "2 of 2 cells as expected" in printed
    html = out.read_text()
    # the backends and machine that ran the live cells, masked, and the cells beside the reference
    assert f"this run: redis {mask_url(redis)} + {mask_url(db)}" in html
    assert "1 seed per cell" in html and "2 of 2 cells as expected" in html
    assert "lost_commit_ack" in html and "redis_postgresql" in html  # a reference column
    # prose and outputs, no code: neither the parameters cell nor the one papermill injects
    assert "Key points" in html
    assert "review_json" not in html and "import pandas" not in html


def test_report_refuses_a_bad_url_in_one_line_without_its_password(capsys, tmp_path):
    out = tmp_path / "review.html"
    url = "redis://:s3cret@127.0.0.1:1/0"
    assert main(["report", "--redis", url, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3cret" not in err and mask_url(url) in err
    assert not out.exists()


def test_export_drops_the_injected_parameters_and_masks_every_url():
    url = "postgresql+psycopg://lab:s3cret@db.example:5432/review"
    injected = new_code_cell(f"db_url = {url!r}", metadata={"tags": [INJECTED_TAG]})
    shown = new_code_cell("print(db_url)")
    shown.outputs = [new_output("stream", name="stdout", text=f"connected to {url}\n")]
    notebook = new_notebook(cells=[new_markdown_cell("# Review"), injected, shown])
    notebook.metadata["papermill"] = {"parameters": {"db_url": url}}
    html = export_html(notebook, [url])
    assert "s3cret" not in html
    assert f"connected to {mask_url(url)}" in html
    assert "print(db_url)" not in html  # inputs are left out


def test_review_document_is_the_shape_of_the_reference_files(default_lab):
    frame = review(default_lab, ["db_only"], ["none", "duplicate"], progress=False)
    document = review_document(frame, 1)
    reference = json.loads((REFERENCE / "review_fake_sqlite.json").read_text())
    assert document.keys() == reference.keys()
    assert document["unexpected"] == 0 and len(document["cells"]) == 2
    assert set(document["cells"][0]) >= set(reference["cells"][0])
    json.dumps(document)  # JSON-ready as it is
    assert describe(document) == (
        f"redis {default_lab.redis_url} + {default_lab.db_url}, {frame['machine'].iloc[0]}, "
        "1 seed per cell"
    )


def test_beside_reference_puts_each_live_cell_next_to_the_same_cell_of_each_reference():
    def cells(*rows):
        return pd.DataFrame(rows, columns=["row", "fault", "applies", "broken", "verdict"])

    live = cells(
        ("two_gate", "none", True, [], "as expected"),
        ("two_gate", "db_kill", True, ["oversold"], "broke ['oversold'], expected []"),
    )
    sqlite = cells(
        ("two_gate", "db_kill", False, [], "as expected"),
        ("two_gate", "none", True, [], "as expected"),
        ("db_only", "none", True, [], "as expected"),
    )
    table = beside_reference(live, {"fake_sqlite": sqlite})
    assert list(table.columns) == ["this run", "verdict", "fake_sqlite"]
    assert table.loc[("two_gate", "none")].tolist() == ["none", "as expected", "none"]
    assert table.loc[("two_gate", "db_kill"), "this run"] == "oversold"
    assert table.loc[("two_gate", "db_kill"), "fake_sqlite"] == "–"  # not run on SQLite


def test_designs_and_rows_that_select_no_row_together_are_refused(capsys):
    # they used to select nothing, and review() took nothing for every row
    assert main(["review", "--designs", "naive", "--rows", "db_only"]) == 2
    assert "select no row" in capsys.readouterr().err


def test_the_review_notebook_takes_papermill_parameters():
    notebook = nbformat.read(
        Path(__file__).resolve().parent.parent / "notebooks" / ("09_design_review.ipynb"),
        as_version=4,
    )
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("redis_url", "db_url", "rows", "faults", "seeds", "review_json"):
        assert f"{name} = " in tagged[0].source
