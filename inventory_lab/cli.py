"""`inventory-lab`: designs, run, bench, growth, review, report, runs. Thin over the package.

Every expected failure (bad arguments, a bad URL, a server that does not answer) is one line on
stderr and exit code 2; a traceback means a bug. `run --fail-on-violation`, `review` and `report`
exit 1 when the checker's findings are not what they should be. `cluster up|down|status` starts,
stops and shows a local Redis Cluster (`redis_cluster`); `status` exits 1 when it is not healthy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import duckdb
import pandas as pd
from rich.console import Console
from rich.table import Table

from inventory_lab import history
from inventory_lab.backends import (
    FAKE_REDIS,
    REDIS_CLUSTER_URL_VARIABLE,
    configured_redis_cluster_url,
    mask_url,
)
from inventory_lab.bench import SCENARIOS, bench_session, ratio_table, run_bench, run_targets
from inventory_lab.beyond import PARTS as BEYOND_PARTS
from inventory_lab.beyond import TABLES as BEYOND_TABLES
from inventory_lab.beyond import run_parts
from inventory_lab.checkout import MAX_LINES
from inventory_lab.designs import BEYOND_THE_ARTICLE, TEACHING_ORDER, design_class, design_names
from inventory_lab.errors import LabError
from inventory_lab.experiment import RunReport, machine, run_experiment, source_commit
from inventory_lab.explorer import (
    DEFAULT_FIND,
    FINDINGS,
    Exploration,
    Spec,
    explore,
    format_schedule,
)
from inventory_lab.explorer import FAULTS as EXPLORE_FAULTS
from inventory_lab.growth import GROWTH_KINDS, run_growth
from inventory_lab.lab import open_lab
from inventory_lab.redis_cluster import DEFAULT_BASE_PORT, LocalCluster
from inventory_lab.results import DEFAULT_PATH, json_records, load_runs, save_run
from inventory_lab.review import FAULTS, ROWS, review, row_named, save_review
from inventory_lab.review_report import review_document, write_report
from inventory_lab.senders import RAW_KINDS
from inventory_lab.stored_outcome import IDEMPOTENCY_MODES
from inventory_lab.workload import Workload

EXIT_USAGE = 2
# naive oversells; the designs beyond the article are measured against the article's
BENCH_DESIGNS = (*(name for name in TEACHING_ORDER if name != "naive"), *BEYOND_THE_ARTICLE)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"inventory-lab: error: {message}\n")


def _int_in(low: int, high: int):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {high}]")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return value


def _bounded(high: float):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, {high:g}]")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inventory-lab", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("designs", help="list the designs")

    run = commands.add_parser("run", help="run one experiment and report the checker's findings")
    run.add_argument("--design", required=True, help="a name from `inventory-lab designs`")
    run.add_argument("--redis", default=FAKE_REDIS, help="'fake' (default) or redis://host:port/db")
    run.add_argument(
        "--db", default=None, help="SQLAlchemy URL (default: a SQLite file of its own)"
    )
    run.add_argument("--skus", type=_int_in(1, 100_000), default=10)
    run.add_argument("--stock", type=_int_in(0, 1_000_000_000), default=100, help="units per SKU")
    run.add_argument("--orders", type=_int_in(1, 10_000_000), default=1000)
    run.add_argument("--concurrency", type=_int_in(1, 256), default=8, help="client threads")
    run.add_argument("--retries", type=_fraction, default=0.0, help="P(a client resends)")
    run.add_argument(
        "--lost-replies", type=_fraction, default=0.0, help="P(a reply is lost; client resends)"
    )
    run.add_argument("--skew", type=_bounded(10), default=1.1, help="Zipf exponent; 0 = uniform")
    run.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=42)
    run.add_argument(
        "--race-window-ms",
        type=_bounded(1000),
        default=None,
        help="naive only: sleep between read and write, to widen the race",
    )
    run.add_argument(
        "--lockstep",
        type=_int_in(2, 256),
        default=None,
        help="naive only: clients read and write in rounds of N (forces the race)",
    )
    run.add_argument(
        "--lines",
        type=_int_in(1, MAX_LINES),
        default=1,
        help="SKUs per order: > 1 sends checkouts, all-or-nothing (db_only, two_gate_lua, "
        "task_engine); the counts are then of order lines",
    )
    run.add_argument(
        "--idempotency",
        choices=IDEMPOTENCY_MODES,
        default="set_nx",
        help="set_nx: the article's anti-repeat code; stored: keys that store the outcome "
        "(replay, in progress, mismatch) in front of the design",
    )
    run.add_argument(
        "--reserve-ttl",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="reservation only: how long a checkout holds its stock before it expires",
    )
    run.add_argument(
        "--fail-on-violation",
        action="store_true",
        help="exit 1 when the checker finds an invariant violated (for scripts)",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument(
        "--save",
        nargs="?",
        const=str(DEFAULT_PATH),
        default=None,
        metavar="PATH",
        help=f"append the run to a DuckDB file (default {DEFAULT_PATH})",
    )
    run.add_argument("--progress", action="store_true", help="show a progress bar")
    run.add_argument(
        "--history",
        default=None,
        metavar="PATH",
        help="write the run's history (invoke/ok/fail/info per client): .jsonl or .edn",
    )

    bench = commands.add_parser(
        "bench",
        help="designs under a scenario from P processes x C clients, next to raw ceilings, "
        "with the saturated resource and the lab's target ratios",
    )
    bench.add_argument(
        "--scenario", default="flash-sale", help=f"comma-separated: {', '.join(SCENARIOS)}"
    )
    bench.add_argument("--designs", default=",".join(BENCH_DESIGNS), help="comma-separated")
    bench.add_argument(
        "--ceilings",
        default=",".join(RAW_KINDS),
        help="raw loops run by the same processes (comma-separated, or 'none')",
    )
    bench.add_argument("--concurrency", default="16", help="comma-separated total client counts")
    bench.add_argument(
        "--processes", type=_int_in(1, 64), default=os.cpu_count() or 1, help="load processes"
    )
    bench.add_argument("--orders", type=_int_in(1, 10_000_000), default=5000, help="per cell")
    bench.add_argument(
        "--rate", type=_positive, default=None, help="open-loop peak orders/s (default: 1.5x raw)"
    )
    bench.add_argument("--pgbench-seconds", type=_int_in(1, 600), default=3)
    bench.add_argument(
        "--no-targets", action="store_true", help="skip the cells behind the target ratios"
    )
    bench.add_argument("--redis", default=FAKE_REDIS)
    bench.add_argument("--db", default=None)
    bench.add_argument("--json", action="store_true", help="print one JSON object")

    beyond = commands.add_parser(
        "beyond",
        help="techniques beyond the article, each against the article's design in one run: "
        "local sold-out flag, merging at gate 1 (and the window's latency), merging at gate 2, "
        "stock buckets, one to three cluster masters, task shards in two databases",
    )
    beyond.add_argument(
        "--parts",
        default=",".join(BEYOND_PARTS),
        help=f"comma-separated: {', '.join(BEYOND_PARTS)}",
    )
    beyond.add_argument("--clients", type=_int_in(1, 1024), default=32, help="merging: clients")
    beyond.add_argument(
        "--orders", type=_int_in(100, 10_000_000), default=20_000, help="merging: orders per cell"
    )
    beyond.add_argument(
        "--batch", type=_int_in(1, 1024), default=16, help="merging: orders per batch / -P"
    )
    beyond.add_argument(
        "--drain-tasks", type=_int_in(100, 10_000_000), default=20_000, help="drain: tasks"
    )
    beyond.add_argument(
        "--bucket-orders",
        type=_int_in(100, 10_000_000),
        default=4000,
        help="buckets: orders per one-row cell",
    )
    beyond.add_argument(
        "--processes", type=_int_in(1, 64), default=os.cpu_count() or 1, help="load processes"
    )
    beyond.add_argument(
        "--cluster",
        default=None,
        help="cluster: a redis+cluster:// URL (default: $INVENTORY_LAB_REDIS_CLUSTER_URL)",
    )
    beyond.add_argument(
        "--shard-tasks", type=_int_in(100, 10_000_000), default=10_000, help="shards: tasks"
    )
    beyond.add_argument(
        "--second-db", default=None, help="shards: a database on a second server (URL)"
    )
    beyond.add_argument("--redis", default=FAKE_REDIS)
    beyond.add_argument("--db", default=None)
    beyond.add_argument("--json", action="store_true", help="print one JSON object")

    growth = commands.add_parser(
        "growth", help="time and peak memory of `run` as orders or SKUs grow (child processes)"
    )
    growth.add_argument("--kind", choices=GROWTH_KINDS, default="orders")
    growth.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated")
    growth.add_argument("--design", default="two_gate_lua")
    growth.add_argument("--orders", type=_int_in(1, 10_000_000), default=20_000, help="for skus")
    growth.add_argument("--concurrency", type=_int_in(1, 256), default=16)
    growth.add_argument("--redis", default=FAKE_REDIS)
    growth.add_argument("--db", default=None)
    growth.add_argument("--json", action="store_true", help="print one JSON object")

    review_cmd = commands.add_parser(
        "review", help="every design under every fault, checked against written expectations"
    )
    _review_options(review_cmd)
    review_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    review_cmd.add_argument(
        "--save", nargs="?", const=str(DEFAULT_PATH), default=None, metavar="PATH"
    )

    report = commands.add_parser(
        "report",
        help="the design review (notebook 09) with the review run live on these servers, "
        "as one standalone HTML file",
    )
    _review_options(report)
    report.add_argument("--out", default="review.html", help="the HTML file (default %(default)s)")

    explore_cmd = commands.add_parser(
        "explore",
        help="run every interleaving of a few orders (and faults) on the embedded backends, "
        "check each, print the smallest failing schedule",
    )
    explore_cmd.add_argument("--design", required=True, help="a name from `inventory-lab designs`")
    explore_cmd.add_argument("--orders", type=_int_in(1, 8), default=2)
    explore_cmd.add_argument("--stock", type=_int_in(0, 1000), default=1)
    explore_cmd.add_argument(
        "--qty", default="1", help="comma-separated quantities, cycled over the orders"
    )
    explore_cmd.add_argument(
        "--resends", type=_int_in(0, 8), default=0, help="the first N orders are sent twice"
    )
    explore_cmd.add_argument(
        "--faults", default="", help=f"comma-separated: {', '.join(EXPLORE_FAULTS)}"
    )
    explore_cmd.add_argument(
        "--as-written", action="store_true", help="the article's handling, not the lab's fixes"
    )
    explore_cmd.add_argument(
        "--find",
        default=",".join(DEFAULT_FIND),
        help=f"comma-separated findings that count as failures, from: {', '.join(FINDINGS)}",
    )
    explore_cmd.add_argument("--max-schedules", type=_int_in(1, 10_000_000), default=20_000)
    explore_cmd.add_argument("--seconds", type=_positive, default=60.0, help="time budget")
    explore_cmd.add_argument(
        "--preemptions", type=_int_in(0, 100), default=None, help="context-switch bound"
    )
    explore_cmd.add_argument(
        "--random", type=_int_in(1, 10_000_000), default=0, help="N random schedules instead"
    )
    explore_cmd.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=0)
    explore_cmd.add_argument("--no-shrink", action="store_true", help="print the first failure")
    explore_cmd.add_argument(
        "--history", default=None, help="write the failing schedule's history (.jsonl or .edn)"
    )
    explore_cmd.add_argument(
        "--diagram", default=None, help="draw the failing schedule (.png, .svg or .pdf)"
    )
    explore_cmd.add_argument("--json", action="store_true", help="print one JSON object")

    cluster = commands.add_parser(
        "cluster",
        help="a local Redis Cluster (3 masters, each with a replica) for the Redis designs",
    )
    cluster.add_argument("action", choices=("up", "down", "status"))
    cluster.add_argument(
        "--port",
        type=_int_in(1024, 65535),
        default=DEFAULT_BASE_PORT,
        help="the first of its 6 consecutive ports (default %(default)s)",
    )
    cluster.add_argument("--json", action="store_true", help="print one JSON object")

    runs = commands.add_parser("runs", help="show runs stored in a DuckDB file")
    runs.add_argument("--path", default=str(DEFAULT_PATH))
    runs.add_argument("--last", type=_int_in(1, 10_000), default=20)
    return parser


def _review_options(command: argparse.ArgumentParser) -> None:
    """What `review` and `report` both take: which cells, how many seeds, which servers."""
    command.add_argument(
        "--designs", default=None, help="comma-separated design names: their every row"
    )
    command.add_argument(
        "--rows", default=None, help="comma-separated row labels, e.g. 'two_gate_lua +guard'"
    )
    command.add_argument("--faults", default=None, help="comma-separated (default: all)")
    command.add_argument(
        "--seeds", type=_int_in(1, 100), default=1, help="runs per cell; the worst counts"
    )
    command.add_argument(
        "--redis", default=FAKE_REDIS, help="'fake' (default) or redis://host:port/db"
    )
    command.add_argument("--db", default=None, help="a database of the review's own")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "designs":
            return _designs()
        if args.command == "run":
            return _run(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "growth":
            return _growth(args)
        if args.command == "beyond":
            return _beyond(args)
        if args.command == "review":
            return _review(args)
        if args.command == "report":
            return _report(args)
        if args.command == "explore":
            return _explore(args)
        if args.command == "cluster":
            return _cluster(args)
        return _runs(args)
    except LabError as exc:
        print(f"inventory-lab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _draw_schedule(result: Exploration, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, no window
    import matplotlib.pyplot as plt

    from inventory_lab.plots import schedule_diagram

    assert result.shrunk is not None and result.shrunk_spec is not None
    ax = schedule_diagram(
        result.shrunk,
        title=f"{result.shrunk_spec.describe()}: {', '.join(result.shrunk.findings)}",
        source=f"inventory-lab explore, fakeredis + SQLite, {machine()}",
    )
    ax.figure.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(ax.figure)


def _check_history_path(path: str) -> None:
    history.export_format(path)
    if not Path(path).parent.is_dir():
        raise LabError(f"--history: no directory {str(Path(path).parent)!r}")


def _explore(args: argparse.Namespace) -> int:
    try:
        spec = Spec(
            args.design,
            orders=args.orders,
            stock=args.stock,
            qty=tuple(int(q) for q in args.qty.split(",")),
            resends=args.resends,
            faults=tuple(f for f in args.faults.split(",") if f),
            as_written=args.as_written,
        )
        find = tuple(f for f in args.find.split(",") if f)
        if not set(find) <= set(FINDINGS):
            raise ValueError(f"--find: choose from {', '.join(FINDINGS)}")
    except ValueError as exc:
        raise LabError(str(exc)) from None
    if args.history is not None:  # a name it cannot write is refused before the search
        _check_history_path(args.history)
    if args.diagram is not None:
        diagram = Path(args.diagram)
        if diagram.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise LabError("--diagram: the file must end in .png, .svg or .pdf")
        if not diagram.parent.is_dir():
            raise LabError(f"--diagram: no directory {str(diagram.parent)!r}")
    result = explore(
        spec,
        find=find,
        max_schedules=args.max_schedules,
        time_limit_s=args.seconds,
        preemption_bound=args.preemptions,
        random_runs=args.random,
        seed=args.seed,
        shrink=not args.no_shrink,
    )
    if args.history is not None and result.shrunk is not None:
        history.export(result.shrunk.events(), args.history)
    if args.diagram is not None and result.shrunk is not None:
        _draw_schedule(result, args.diagram)
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    summary = result.summary()
    search = result.search
    if search.complete:
        how = "every schedule"
    elif search.failure is not None:
        how = "stopped at the first failure"
    else:
        how = "the budget ran out"
    print(
        f"{summary['spec']}: {search.schedules} schedules run, {search.pruned} pruned "
        f"({how}) in {search.elapsed_s:.2f} s, {search.per_second:.0f} per second "
        f"[embedded default: fakeredis + SQLite, {machine()}]"
    )
    if result.shrunk is None:
        print(f"no failure found ({', '.join(find)})")
        return 0
    assert result.shrunk_spec is not None
    print(
        f"first failure after {search.first_failure_s:.2f} s; shrunk to "
        f"{result.shrunk_spec.describe()}, {result.shrunk.switches} context switches:"
    )
    print(format_schedule(result.shrunk))
    return 0


def _cluster(args: argparse.Namespace) -> int:
    """up (idempotent), down, or status: exit 0 when the cluster is healthy (down: stopped)."""
    cluster = LocalCluster(args.port)
    if args.action == "down":
        stopped = cluster.down()
        if args.json:
            print(json.dumps({"stopped": stopped}))
        else:
            print(
                f"stopped {len(stopped)} node(s) of the cluster on ports "
                f"{cluster.ports[0]}-{cluster.ports[-1]}"
            )
        return 0
    was_up = args.action == "up" and cluster.status().healthy
    status = cluster.up() if args.action == "up" else cluster.status()
    if args.json:
        print(json.dumps({**status.to_dict(), "url": cluster.url, "was_up": was_up}))
    else:
        if args.action == "up":
            print("already up and healthy: left alone" if was_up else "started")
        print(status.describe())
        print(f"url: {cluster.url}  (export {REDIS_CLUSTER_URL_VARIABLE}={cluster.url})")
    return 0 if status.healthy else 1


def _designs() -> int:
    table = Table("design", "what it is")
    for name in design_names():
        table.add_row(name, design_class(name).summary)
    Console().print(table)
    return 0


def _run(args: argparse.Namespace) -> int:
    design_class(args.design)  # unknown names fail before any connection is made
    options: dict[str, object] = {}
    naive_only = args.race_window_ms is not None or args.lockstep is not None
    if naive_only and args.design != "naive":
        raise LabError("--race-window-ms and --lockstep apply to the naive design only")
    if args.race_window_ms is not None:
        options["race_window_s"] = args.race_window_ms / 1000.0
    if args.lockstep is not None:
        options["lockstep"] = args.lockstep
    if args.reserve_ttl is not None:
        if args.design != "reservation":
            raise LabError("--reserve-ttl applies to the reservation design only")
        options["ttl_s"] = args.reserve_ttl
    if args.lines > args.skus:
        raise LabError(f"--lines {args.lines} needs at least as many SKUs (--skus {args.skus})")
    if args.history is not None:  # a name it cannot write is refused before the run, not after
        _check_history_path(args.history)
    workload = Workload(
        orders=args.orders,
        skus=args.skus,
        stock=args.stock,
        skew=args.skew,
        retries=args.retries,
        lost_replies=args.lost_replies,
        seed=args.seed,
        lines=args.lines,
    )
    with open_lab(args.redis, args.db, pool_size=min(args.concurrency, 64)) as lab:
        experiment = run_experiment(
            lab,
            args.design,
            workload,
            concurrency=args.concurrency,
            options=options,
            progress=args.progress,
            idempotency=args.idempotency,
        )
    report = experiment.report
    if args.save:
        save_run(report, Path(args.save))
    if args.history is not None:
        history.export(experiment.events(), args.history)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print_report(report, experiment.check.ok)
    return 1 if args.fail_on_violation and not experiment.check.ok else 0


def _bench(args: argparse.Namespace) -> int:
    scenarios = _names(args.scenario, list(SCENARIOS), "scenario")
    targets = _names(args.designs, design_names(), "design")
    if args.ceilings.strip() != "none":
        targets = _names(args.ceilings, list(RAW_KINDS), "ceiling") + targets
    concurrencies = _int_list(args.concurrency, "--concurrency", 1, 1024)
    show = not args.json
    with bench_session(args.redis, args.db, processes=args.processes) as session:
        where = session.describe()
        frame, ceilings = run_bench(
            session,
            scenarios,
            targets,
            concurrencies,
            orders=args.orders,
            rate=args.rate,
            pgbench_s=args.pgbench_seconds,
            progress=show,
        )
        found: list = []
        target_cells = frame.iloc[0:0]
        if not args.no_targets:
            target_cells, target_ceilings, found = run_targets(
                session,
                orders=args.orders,
                rate=args.rate,
                pgbench_s=args.pgbench_seconds,
                progress=show,
            )
            ceilings += target_ceilings
    if args.json:
        print(
            json.dumps(
                {
                    **where,
                    "commit": source_commit(),
                    "processes": args.processes,
                    "orders": args.orders,
                    "cells": _records(frame),
                    "ceilings": [vars(c) for c in ceilings],
                    "target_cells": _records(target_cells),
                    "targets": _records(ratio_table(found)),
                },
                default=str,
            )
        )
        return 0
    print(f"{where['redis']} + {where['db']} on {where['machine']}, {args.processes} processes")
    columns = [
        "scenario",
        "target",
        "clients",
        "layout",
        "decisions_per_s",
        "accepted_per_s",
        "p50_ms",
        "p99_ms",
        "p99.9_ms",
        "max_ms",
        "oversold",
        "saturated",
    ]
    print(frame[columns].to_string(index=False))
    for ceiling in ceilings:
        rate = f"{ceiling.rate:,.0f}/s" if ceiling.rate else f"not measured: {ceiling.note}"
        print(f"{ceiling.tool} at {ceiling.clients} clients: {rate}")
    if found:
        print(ratio_table(found).to_string(index=False))
    return 0


def _beyond(args: argparse.Namespace) -> int:
    parts = _names(args.parts, list(BEYOND_PARTS), "part")
    with bench_session(args.redis, args.db, processes=args.processes) as session:
        body = run_parts(
            session,
            parts,
            clients=args.clients,
            orders=args.orders,
            batch=args.batch,
            drain_tasks=args.drain_tasks,
            bucket_orders=args.bucket_orders,
            cluster_url=args.cluster or configured_redis_cluster_url(),
            shard_tasks=args.shard_tasks,
            second_server_url=args.second_db,
            progress=not args.json,
        )
    if args.json:
        print(json.dumps(body, default=str))
        return 0
    print(f"{body['redis']} + {body['db']} on {body['machine']}, {body['processes']} processes")
    for table in BEYOND_TABLES:
        if table in body:
            print(f"\n{table}:")
            print(pd.DataFrame(body[table]).to_string(index=False))
    for ratios in ("merging_ratios", "drain_ratios", "shard_ratios"):
        if ratios in body:
            print(json.dumps(body[ratios]))
    return 0


def _growth(args: argparse.Namespace) -> int:
    design_class(args.design)
    sizes = _int_list(args.sizes, "--sizes", 1, 10_000_000)
    if args.kind == "skus" and max(sizes) > 100_000:
        raise LabError("--sizes: at most 100000 SKUs")
    frame = run_growth(
        args.kind,
        sizes,
        design=args.design,
        orders=args.orders,
        concurrency=args.concurrency,
        redis_url=args.redis,
        db_url=args.db,
        progress=not args.json,
    )
    if args.json:
        where = {"redis": mask_url(args.redis), "db": mask_url(args.db or "a SQLite file")}
        body = {**where, "machine": machine(), "commit": source_commit()}
        body.update(design=args.design, rows=_records(frame))
        print(json.dumps(body))
    else:
        where = f"{mask_url(args.redis)} + {mask_url(args.db or 'a SQLite file')}"
        print(f"{args.design} on {where}, {machine()}")
        print(frame.to_string(index=False))
    return 0


_records = json_records


def _review_cells(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The row labels and faults that `--designs`, `--rows` and `--faults` select."""
    rows = _names(args.rows, [row.label for row in ROWS], "row")
    if args.designs is not None:
        designs = _names(args.designs, design_names(), "design")
        rows = [label for label in rows if row_named(label).design in designs]
    if not rows:
        raise LabError("--designs and --rows select no row together")
    return rows, _names(args.faults, list(FAULTS), "fault")


def _review(args: argparse.Namespace) -> int:
    rows, faults = _review_cells(args)
    with open_lab(args.redis, args.db, pool_size=16) as lab:
        frame = review(lab, rows, faults, seeds=args.seeds, progress=not args.json)
    if args.save:
        save_review(frame, Path(args.save))
    unexpected = frame[frame["verdict"] != "as expected"]
    if args.json:
        print(json.dumps(review_document(frame, args.seeds)))
    else:
        print(f"{frame['redis'].iloc[0]} + {frame['db'].iloc[0]} on {frame['machine'].iloc[0]}")
        columns = [
            "row",
            "fault",
            "accepted",
            "unknown",
            "oversold",
            "double_deducted",
            "lost",
            "drift_before",
            "converged_after",
            "verdict",
        ]
        print(frame[frame["applies"]][columns].to_string(index=False))
        print(f"{len(frame) - len(unexpected)} of {len(frame)} cells as expected")
    return 0 if unexpected.empty else 1


def _report(args: argparse.Namespace) -> int:
    rows, faults = _review_cells(args)
    with open_lab(args.redis, args.db, pool_size=1):
        pass  # a bad URL or a server that does not answer: one line here, not in the notebook
    out = Path(args.out)
    document = write_report(
        out, redis_url=args.redis, db_url=args.db, rows=rows, faults=faults, seeds=args.seeds
    )
    print(f"{document['redis']} + {document['db']} on {document['machine']}: {out}")
    cells = len(document["cells"])
    print(f"{cells - document['unexpected']} of {cells} cells as expected")
    return 0 if document["unexpected"] == 0 else 1


def _names(text: str | None, known: list[str], what: str) -> list[str]:
    if text is None:
        return list(known)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise LabError(f"unknown {what} {unknown or text!r}; choose from: {', '.join(known)}")
    return names


def _int_list(text: str, flag: str, low: int, high: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LabError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or not all(low <= v <= high for v in values):
        raise LabError(f"{flag} values must be in [{low}, {high}], got {text!r}")
    return values


def _print_report(report: RunReport, ok: bool) -> None:
    table = Table(title=f"{report.design} on {report.redis} + {report.db}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("orders / attempts", f"{report.orders} / {report.attempts}"),
        ("concurrency", str(report.concurrency)),
        ("accepted", str(report.accepted)),
        ("sold out", str(report.sold_out)),
        ("duplicates", str(report.duplicates)),
        ("in progress / mismatch", f"{report.in_progress} / {report.mismatch}"),
        ("rejected / errors", f"{report.rejected} / {report.errors}"),
        (
            "unknown outcomes",
            f"{report.unknown} ({report.unknown_persisted} lines persisted, "
            f"{report.unknown_not_persisted} not)",
        ),
        ("oversold units", str(report.oversold)),
        ("double deducted", str(report.double_deducted)),
        ("lost", str(report.lost)),
        ("unaccounted units", str(report.unaccounted)),
        ("checkouts taken in part", str(report.partial)),
        ("redis = db", "n/a" if report.converged is None else str(report.converged)),
        ("elapsed", f"{report.elapsed_s:.3f} s"),
        ("throughput", f"{report.throughput:,.0f} attempts/s"),
        ("latency p50 / p99", "{p50:.2f} / {p99:.2f} ms".format(**report.latency_ms)),
        ("machine", report.machine),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    verdict = "[green]invariants hold[/]" if ok else "[red]invariants violated[/]"
    console.print(f"checker: {verdict}")


def _runs(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise LabError(f"no results file at {path}; run with --save first")
    try:
        frame = load_runs(path).tail(args.last)
    except duckdb.Error as exc:
        raise LabError(f"{path} is not a results file: {str(exc).splitlines()[0]}") from exc
    columns = [
        "started_at",
        "design",
        "db",
        "concurrency",
        "skus",
        "accepted",
        "oversold",
        "double_deducted",
        "throughput",
        "p99_ms",
    ]
    print(frame[columns].to_string(index=False))
    return 0
