"""Growth: a child's peak memory from the kernel, and `run` measured per size."""

import json
import math
import sys

import pytest

from inventory_lab.cli import main
from inventory_lab.errors import LabError
from inventory_lab.growth import python_child, run_child, run_growth


def test_the_peak_memory_of_a_child_is_its_own_high_water_mark():
    grab = "x = bytearray(300 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); del x"
    # This process holds more than the child ever will: none of it may count as the child's.
    held = bytearray(500 * 1024 * 1024)
    held[::4096] = b"1" * len(held[::4096])
    small = run_child(python_child("pass"))
    big = run_child(python_child(grab))
    del held
    assert small.returncode == 0 and big.returncode == 0
    assert big.peak_rss_mb >= 300 > small.peak_rss_mb  # freed before exit: the peak still shows


def test_a_failing_child_reports_its_exit_code():
    failed = run_child([sys.executable, "-c", "import sys; print('x'); sys.exit(3)"])
    assert failed.returncode == 3 and failed.stdout.strip() == "x"
    assert math.isnan(failed.peak_rss_mb)  # it did not report one


def test_run_is_measured_at_every_size(tmp_path):
    frame = run_growth("orders", [200, 400], progress=False, db_url=f"sqlite:///{tmp_path}/g.db")
    assert list(frame["size"]) == [200, 400] and list(frame["orders"]) == [200, 400]
    assert (frame["peak_rss_mb"] > 0).all() and (frame["oversold"] == 0).all()
    assert (frame["lost"] == 0).all()


def test_an_unknown_growth_is_refused():
    with pytest.raises(LabError, match="growth must be one of"):
        run_growth("customers", [1])


def test_growth_cli_prints_json_rows(capsys, tmp_path):
    args = ["growth", "--kind", "skus", "--sizes", "1,20", "--orders", "100", "--json"]
    assert main([*args, "--db", f"sqlite:///{tmp_path}/g.db"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["skus"] for row in out["rows"]] == [1, 20]
    assert main(["growth", "--kind", "skus", "--sizes", "200000"]) == 2
