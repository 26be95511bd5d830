"""Property-based tests (hypothesis): hostile input to the API and the CLI, and the invariants.

Three families. Hostile order lines (ids, SKUs, quantities of every wrong shape, mixed with valid
ones): `Order` accepts exactly the valid values and names the first bad field otherwise, and every
design refuses what it cannot take with `InvalidOrder` before it touches the stock, the anti-repeat
codes, the ledger, the task tables or Redis. Hostile command lines: a bad value for any flag of
`inventory-lab run` is one line on stderr and exit code 2, and a password in a URL never shows.
Random workloads under random faults: the recommended design (and the DB-only baseline) never
oversells, deducts twice, loses an order or drifts after reconciliation.

Examples are few, so the file stays fast; hypothesis keeps its example database in
`.hypothesis/`, which it git-ignores itself. The inputs that once escaped `main()` or leaked a
password are kept below as explicit regression cases (`ESCAPING`).
"""

from __future__ import annotations

import os
import string
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from inventory_lab import InvalidOrder, Order, Outcome, Workload, keys, run_workload, schema
from inventory_lab.cli import main
from inventory_lab.designs import design_class, design_names
from inventory_lab.designs.task_engine import TaskEngineDesign
from inventory_lab.orders import MAX_ID_LENGTH, MAX_QTY
from inventory_lab.redis_stock import read_redis_stock
from inventory_lab.review import FAULTS, RECOMMENDED, applies, row_named, run_cell
from inventory_lab.workload import Attempt

# The fixtures are function-scoped on purpose (one lab per test, shared by its examples): each
# example leaves the lab as it found it, or resets it itself.
FAST = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# `./lab deep` (INVENTORY_LAB_DEEP=1) tries twelve times as many hostile inputs: over 10,000.
DEPTH = 12 if os.environ.get("INVENTORY_LAB_DEEP", "") not in ("", "0") else 1


def hostile(examples: int):  # type: ignore[no-untyped-def]
    """A test of hostile input: `examples` of them, times DEPTH, marked `hostile`."""

    def mark(test):  # type: ignore[no-untyped-def]
        return pytest.mark.hostile(settings(FAST, max_examples=examples * DEPTH)(test))

    return mark


# --- strategies: order lines ---------------------------------------------------------------------

ID_ALPHABET = string.ascii_letters + string.digits + "_.-"
HOSTILE_FRAGMENTS = (
    *"*?[]{}",  # Redis glob characters
    "{sku}",  # a hash tag
    *"'\";%",  # SQL meta characters
    "--",
    "/*",
    "*/",
    "' OR '1'='1",
    "'; DROP TABLE stock; --",
    ":",  # the anti-repeat code's separator
    "\\",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\x00",
    "\u200b",  # zero-width space
    "\u212a",  # Kelvin sign: lower-cases to an ASCII 'k'
    "é",
    "ß",
    "İ",
    "٣",  # an Arabic-Indic digit: int() takes it, the id pattern must not
    "🛒",
)
CATALOG = {"sku-1": 5, "Sku.2": 3}

valid_ids = st.text(ID_ALPHABET, min_size=1, max_size=MAX_ID_LENGTH)
hostile_texts = st.one_of(
    st.just(""),
    st.text(ID_ALPHABET, min_size=MAX_ID_LENGTH + 1, max_size=3 * MAX_ID_LENGTH),
    st.builds(
        lambda head, bad, tail: head + bad + tail,
        st.text(ID_ALPHABET, max_size=12),
        st.sampled_from(HOSTILE_FRAGMENTS),
        st.text(ID_ALPHABET, max_size=12),
    ),
    st.text(max_size=80),
)
not_texts = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.just(["sku-1"]),
)
identifiers = st.one_of(valid_ids, hostile_texts, not_texts)
# Unknown SKUs that look like known ones: another case, one character more or less.
near_miss_skus = st.sampled_from(sorted(CATALOG)).flatmap(
    lambda sku: st.sampled_from([sku.upper(), sku.lower(), sku.swapcase(), sku + "0", sku[:-1]])
)
quantities = st.one_of(
    st.integers(1, MAX_QTY),
    st.integers(max_value=0),
    st.integers(min_value=MAX_QTY + 1),
    st.integers(min_value=2**63 - 1, max_value=2**200),  # beyond any SQL or Redis integer
    st.floats(),  # 1.0, -0.0, nan, inf
    st.booleans(),
    st.none(),
    st.integers(-3, MAX_QTY + 3).map(str),  # "1": a number as text
    st.text(max_size=10),
)


def _valid_identifier(value: object) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_ID_LENGTH
        and all(ch in ID_ALPHABET for ch in value)
    )


def _valid_qty(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_QTY


def _invalid_fields(order_id: object, sku: object, qty: object) -> list[str]:
    """The fields a valid order could not have, in the order Order checks them."""
    checks = [
        ("order id", _valid_identifier(order_id)),
        ("SKU", _valid_identifier(sku)),
        ("quantity", _valid_qty(qty)),
    ]
    return [field for field, ok in checks if not ok]


hostile_lines = st.tuples(identifiers, st.one_of(identifiers, near_miss_skus), quantities).filter(
    lambda line: bool(_invalid_fields(*line)) or line[1] not in CATALOG
)


# --- 1. hostile input to the API -----------------------------------------------------------------


@hostile(400)
@given(order_id=identifiers, sku=identifiers, qty=quantities)
def test_an_order_is_built_from_valid_values_only_and_names_the_bad_field(order_id, sku, qty):
    invalid = _invalid_fields(order_id, sku, qty)
    if not invalid:
        order = Order(order_id, sku, qty)
        assert (order.order_id, order.sku, order.qty) == (order_id, sku, qty)
        assert Order(order.order_id, order.sku, order.qty) == order
        assert order.anti_repeat_code.split(":") == [order_id, sku]
        return
    with pytest.raises(InvalidOrder) as refused:
        Order(order_id, sku, qty)
    message = str(refused.value)
    assert message.startswith(invalid[0]), message
    assert len(message.splitlines()) == 1, message  # reprs keep newlines out of messages


@pytest.fixture(params=design_names())
def stocked(request, default_lab):
    """Each design on the embedded default, stocked with CATALOG; closed at the end."""
    design = design_class(request.param)(default_lab)
    design.setup(CATALOG)
    yield design
    design.close()


def _snapshot(design) -> dict[str, object]:
    """Everything a deduction could touch: DB rows, task rows, Redis keys and stock."""
    lab = design.lab
    with lab.engine.connect() as conn:
        state: dict[str, object] = {
            "stock": schema.read_stock(conn),
            "anti_repeat": sorted(conn.execute(sa.select(schema.anti_repeat.c.code)).scalars()),
            "orders": conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar(),
        }
    if isinstance(design, TaskEngineDesign):
        state["tasks"] = design.store.frame().to_dict("records")
    state["redis_keys"] = sorted(lab.redis.scan_iter(match=keys.namespace_pattern(lab.namespace)))
    state["redis_stock"] = read_redis_stock(lab, sorted(CATALOG))
    return state


@hostile(25)
@given(line=hostile_lines)
def test_every_design_refuses_a_hostile_order_and_changes_nothing(stocked, line):
    before = _snapshot(stocked)
    try:
        order = Order(*line)
    except InvalidOrder:
        # Malformed values never reach a design: Order is the only way in.
        assert _invalid_fields(*line)
    else:
        assert line[1] not in CATALOG
        with pytest.raises(InvalidOrder, match="unknown SKU"):
            stocked.deduct(order)
        records = run_workload(stocked, [Attempt(order, 0)], concurrency=1)
        assert records["outcome"].tolist() == [Outcome.REJECTED.value]
    assert _snapshot(stocked) == before


not_orders = st.one_of(
    not_texts,
    hostile_texts,
    st.tuples(identifiers, identifiers, quantities),
    st.dictionaries(st.sampled_from(["order_id", "sku", "qty"]), identifiers, max_size=3),
    st.builds(
        lambda line: Order(*line).anti_repeat_code, st.tuples(valid_ids, valid_ids, st.just(1))
    ),
)


@hostile(25)
@given(thing=not_orders)
def test_every_design_refuses_what_is_not_an_order_and_changes_nothing(stocked, thing):
    before = _snapshot(stocked)
    with pytest.raises(InvalidOrder, match="expected an Order"):
        stocked.deduct(thing)
    assert _snapshot(stocked) == before


# Identifiers are case-sensitive ([A-Za-z...]); a database whose collation folds case must not
# merge two of them. MariaDB's default collation (utf8mb4_general_ci) does.
cased_ids = valid_ids.filter(lambda text: any(ch.isalpha() for ch in text))


@pytest.fixture
def any_lab(lab):
    """`lab` on every database: MariaDB included, whose default collation would fold case (the
    lab's key columns use a binary collation there, see schema.key_string)."""
    return lab


# Few examples, no shrinking: each example re-creates the tables on every real database.
CASE_SETTINGS = settings(FAST, max_examples=3, phases=[Phase.explicit, Phase.generate])


@pytest.mark.parametrize("name", design_names())
@CASE_SETTINGS
@given(sku=cased_ids)
@example(sku="sku-a")  # minimal: setup({'sku-a': 1, 'SKU-A': 2}) -> IntegrityError
def test_skus_that_differ_only_in_case_are_two_skus(any_lab, name, sku):
    twin = sku.swapcase()
    design = design_class(name)(any_lab)
    try:
        design.setup({sku: 1, twin: 2})
        assert design.deduct(Order("o-1", sku, 1)).outcome is Outcome.ACCEPTED
        # the twin's two units as two one-unit orders: a design that splits a SKU's stock over
        # buckets (one unit each here) may refuse one order of two (a false sold-out)
        assert design.deduct(Order("o-1", twin, 1)).outcome is Outcome.ACCEPTED
        assert design.deduct(Order("o-2", twin, 1)).outcome is Outcome.ACCEPTED
        design.drain()
        assert design.stock(sku) == design.stock(twin) == 0
    finally:
        design.close()


@pytest.mark.parametrize("name", design_names())
@CASE_SETTINGS
@given(order_id=cased_ids)
@example(order_id="o-a")  # minimal: o-a accepted, then O-A answered "duplicate", never deducted
def test_order_ids_that_differ_only_in_case_are_two_order_lines(any_lab, name, order_id):
    design = design_class(name)(any_lab)
    try:
        design.setup({"sku-1": 2})
        assert design.deduct(Order(order_id, "sku-1", 1)).outcome is Outcome.ACCEPTED
        assert design.deduct(Order(order_id.swapcase(), "sku-1", 1)).outcome is Outcome.ACCEPTED
        design.drain()
        assert design.stock("sku-1") == 0
    finally:
        design.close()


# --- 2. hostile input to the CLI -----------------------------------------------------------------

# Should a hostile value slip through, the run it starts is tiny.
TINY = ["--orders", "3", "--skus", "1", "--stock", "1", "--concurrency", "1"]
INT_FLAGS = {
    "--orders": (1, 10_000_000),
    "--skus": (1, 100_000),
    "--stock": (0, 1_000_000_000),
    "--concurrency": (1, 256),
    "--seed": (0, 2**31 - 1),
}
FRACTION_FLAGS = ("--retries", "--lost-replies")
# Nothing listens on port 1: a connection there is refused at once.
CLOSED = "127.0.0.1:1"


def _exit_code(args: list[str]) -> int | str | None:
    """main() returns 2 for lab errors; argparse exits with 2 for malformed arguments."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def _assert_refused(capsys, args: list[str], *, secret: str | None = None) -> str:
    """Exit code 2, one line on stderr, no password shown, and no state: a SQLite file named
    in the arguments was never even created."""
    files = [arg.removeprefix("sqlite:///") for arg in args if arg.startswith("sqlite:///")]
    code = _exit_code(args)
    out, err = capsys.readouterr()
    for name in files:
        assert not os.path.exists(name), f"{name} was created by a refused command"
    assert code == 2, (args, out, err)
    assert err.startswith("inventory-lab: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in out + err
    if secret is not None:
        assert secret not in out + err and unquote(secret) not in out + err, err
    return err


def _takes_int(text: str, low: int, high: int) -> bool:
    try:
        return low <= int(text) <= high
    except ValueError:
        return False


def _takes_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


hostile_numbers = st.one_of(
    st.integers().map(str),
    st.integers(min_value=2**31).map(str),
    st.floats().map(str),
    st.text(max_size=20),
    st.sampled_from(["", " ", "-1", "1e3", "0x10", "1_000", "٣", "NaN", "-inf", "--orders"]),
    st.builds(
        lambda number, bad: number + bad,
        st.integers(-10, 10).map(str),
        st.sampled_from(HOSTILE_FRAGMENTS),
    ),
)


@hostile(150)
@given(flag=st.sampled_from([*INT_FLAGS, *FRACTION_FLAGS]), value=hostile_numbers)
def test_a_bad_number_is_one_line_and_exit_code_2(capsys, tmp_path, flag, value):
    if flag in INT_FLAGS:
        assume(not _takes_int(value, *INT_FLAGS[flag]))
    else:
        assume(not _takes_fraction(value))
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    _assert_refused(capsys, ["run", "--design", "db_only", *TINY, "--db", db, flag, value])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Text that is no number, and negative numbers ('nan' and 'inf' are in ESCAPING below).
bad_skews = st.one_of(
    st.text(max_size=20).filter(lambda text: not _is_number(text)),
    st.floats(max_value=-1e-9).map(str),
)


@hostile(60)
@given(value=bad_skews)
def test_a_skew_that_is_not_a_non_negative_number_is_refused(capsys, tmp_path, value):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    _assert_refused(capsys, ["run", "--design", "db_only", *TINY, "--db", db, "--skew", value])


design_like = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda name, bad: name + bad,
        st.sampled_from(design_names()),
        st.sampled_from(HOSTILE_FRAGMENTS),
    ),
    st.sampled_from(design_names()).map(str.upper),
)


@hostile(60)
@given(name=design_like)
def test_an_unknown_design_is_refused_before_any_connection(capsys, name):
    assume(name not in design_names())
    # The Redis URL would fail too (and carries a password): the design must be checked first.
    url = f"redis://u:S3cretDesign@{CLOSED}/0"
    err = _assert_refused(
        capsys, ["run", "--design", name, *TINY, "--redis", url], secret="S3cretDesign"
    )
    assert "unknown design" in err or "expected one argument" in err, err


# Passwords from the characters a URL may hold in its userinfo ('%' escapes included). The
# delimiters '#', '?' and '/' have a test of their own below; '@' only in Redis URLs: SQLAlchemy
# ends the password at the first '@' (see ESCAPING for the IPv6 case).
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%: "
passwords = st.text(PASSWORD_ALPHABET, min_size=4, max_size=20).map(lambda tail: "Pw0" + tail)
redis_passwords = st.text(PASSWORD_ALPHABET + "@", min_size=4, max_size=20).map(
    lambda tail: "Pw0" + tail
)
db_names = st.text(ID_ALPHABET + "%;'\" *", max_size=12)
db_urls = st.builds(
    "{}://{}:{}@{}/{}".format,
    st.sampled_from(["postgresql+psycopg", "mysql+pymysql", "postgresql", "oracle", "mssql"]),
    st.sampled_from(["u", "bob", "", "we%20ird"]),
    passwords,
    st.sampled_from([CLOSED, "[::1]:1", "localhost:1"]),
    db_names,
)
redis_urls = st.builds(
    "{}://{}:{}@{}/{}".format,
    st.sampled_from(["redis", "rediss", "http", "unix", "file"]),
    st.sampled_from(["u", "", "default"]),
    redis_passwords,
    st.sampled_from([CLOSED, "[::1]:1", "localhost:1"]),
    st.sampled_from(["0", "9", "", "abc", "%2F"]),
)


def _password(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]


@hostile(40)
@given(url=db_urls)
def test_a_bad_or_unreachable_database_is_one_line_without_its_password(capsys, url):
    err = _assert_refused(
        capsys, ["run", "--design", "db_only", *TINY, "--db", url], secret=_password(url)
    )
    assert "database" in err, err


@hostile(40)
@given(url=redis_urls)
def test_a_bad_or_unreachable_redis_is_one_line_without_its_password(capsys, tmp_path, url):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    args = ["run", "--design", "two_gate_lua", *TINY, "--db", db, "--redis", url]
    err = _assert_refused(capsys, args, secret=_password(url))
    assert "Redis" in err, err


# File names under a regular file; '?' (a query) and '%' (an escape) would change the path, and a
# name of dots only would name the file itself (SQLite opens an empty file as a database).
sqlite_names = st.text(ID_ALPHABET + " *[]{}';\t", min_size=1, max_size=20).filter(
    lambda name: any(ch.isalnum() for ch in name)
)


@hostile(30)
@given(name=sqlite_names)
def test_a_sqlite_file_that_cannot_be_created_is_one_line(capsys, tmp_path, name):
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("")
    db = f"sqlite:///{not_a_directory}/{name}"
    _assert_refused(capsys, ["run", "--design", "db_only", *TINY, "--db", db])


@hostile(10)
@given(
    flag=st.sampled_from(["--db", "--redis"]),
    tail=st.text(ID_ALPHABET, max_size=8),
    newline=st.sampled_from(["\n", "\r\n"]),
)
@example(flag="--redis", tail="", newline="\n")  # --redis 'redis://127.0.0.1:1/0\n'
def test_a_url_holding_a_newline_is_still_one_line(capsys, tmp_path, flag, tail, newline):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    if flag == "--db":
        args = ["--db", f"postgresql+psycopg://u@{CLOSED}/x{newline}{tail}"]
    else:
        args = ["--db", db, "--redis", f"redis://{CLOSED}/0{newline}{tail}"]
    _assert_refused(capsys, ["run", "--design", "two_gate_lua", *TINY, *args])


@hostile(10)
@given(
    flag=st.sampled_from(["--db", "--redis"]),
    head=st.text(string.ascii_letters, max_size=4),
    delimiter=st.sampled_from("#?/"),
)
@example(flag="--db", head="", delimiter="#")  # postgresql+psycopg://u:Pw0#SECRET@127.0.0.1:1/x
def test_a_password_holding_a_url_delimiter_is_masked_too(capsys, tmp_path, flag, head, delimiter):
    password = f"Pw0{head}{delimiter}SECRET"
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    if flag == "--db":
        args = ["--db", f"postgresql+psycopg://u:{password}@{CLOSED}/x"]
    else:
        args = ["--db", db, "--redis", f"redis://u:{password}@{CLOSED}/0"]
    _assert_refused(capsys, ["run", "--design", "two_gate_lua", *TINY, *args], secret=password)


HOST = CLOSED.split(":")[0]
# Minimal examples of inputs that once escaped main() with a traceback (hypothesis found them):
# (id, the exception it was, what raised it, arguments). Now each must be one line and exit 2.
ESCAPING = [
    (
        "skew-nan",
        ValueError,
        "Workload ('skew must be >= 0'): _non_negative takes 'nan'",
        ["--skew", "nan"],
    ),
    (
        "skew-huge",
        OverflowError,
        "rank ** skew in Workload.attempts",
        ["--skus", "3", "--skew", "1000"],
    ),
    (
        "redis-bracket",
        ValueError,
        "urlsplit in redis_client ('Invalid IPv6 URL')",
        ["--redis", "redis://[x"],
    ),
    (
        "db-port-not-a-number",
        ValueError,
        "make_url's int(port) (sql_dialect catches ArgumentError only)",
        ["--db", f"postgresql+psycopg://u:Pw0SECRET@{HOST}:abc/x"],
    ),
    (
        "db-at-sign-in-password-before-ipv6-host",
        ValueError,
        "make_url's int(port): the password ends at the first '@', the rest reads as host:port",
        ["--db", "postgresql+psycopg://u:Pw0SECRET@@[::1]:1/x"],
    ),
    (
        "db-sqlite-in-memory",
        TypeError,
        "create_engine (an in-memory SQLite pool takes no max_overflow)",
        ["--db", "sqlite://"],
    ),
    (
        "db-unknown-query-parameter",
        TypeError,
        "pymysql's connect() (an unknown URL query parameter)",
        ["--db", f"mysql+pymysql://u:Pw0SECRET@{CLOSED}/x?foo=bar"],
    ),
    (
        "redis-unknown-query-parameter",
        TypeError,
        "redis-py's connection (an unknown URL query parameter)",
        ["--redis", f"redis://u:Pw0SECRET@{CLOSED}/0?foo=bar"],
    ),
    (
        "db-sqlite-nul",
        ValueError,
        "sqlite3 ('embedded null byte'; sql_engine catches OSError only)",
        ["--db", "sqlite:///\x00x"],
    ),
]


@pytest.mark.parametrize(
    "args",
    [pytest.param(args, id=name) for name, _raised, _where, args in ESCAPING]
    + [pytest.param(["--design", "naive", "--race-window-ms", "nan"], id="race-window-nan")],
)
def test_malformed_values_found_by_the_properties_are_one_line_and_exit_code_2(capsys, args):
    _assert_refused(capsys, ["run", "--design", "db_only", *TINY, *args], secret="Pw0SECRET")


def test_runs_from_a_file_that_is_not_a_results_file_is_one_line(capsys, tmp_path):
    _assert_refused(capsys, ["runs", "--path", str(tmp_path)])


# --- 3. invariants over random workloads and faults ----------------------------------------------

workloads = st.builds(
    Workload,
    orders=st.integers(20, 120),
    skus=st.integers(1, 3),
    stock=st.integers(0, 60),
    skew=st.floats(0.0, 1.5),
    retries=st.floats(0.0, 0.5),
    lost_replies=st.floats(0.0, 0.3),
    max_qty=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)


def _assert_invariants(lab, design: str, workload: Workload, fault: str) -> None:
    assume(applies(lab, row_named(design), fault))
    cell = run_cell(lab, design, fault, base=workload)
    found = (cell.oversold, cell.double_deducted, cell.lost, cell.unaccounted)
    assert found == (0, 0, 0, 0), cell
    if design_class(design).uses_redis:
        assert cell.converged_after is True, cell
    else:
        assert cell.converged_after is None, cell


@pytest.mark.parametrize("design", [RECOMMENDED, "db_only"])
@settings(FAST, max_examples=12)
@given(workload=workloads, fault=st.sampled_from(FAULTS))
def test_random_workloads_and_faults_never_break_an_invariant(default_lab, design, workload, fault):
    _assert_invariants(default_lab, design, workload, fault)


@pytest.mark.parametrize("design", [RECOMMENDED, "db_only"])
@settings(FAST, max_examples=3)
@given(workload=workloads, fault=st.sampled_from(FAULTS))
def test_random_workloads_and_faults_hold_on_every_database(lab, design, workload, fault):
    _assert_invariants(lab, design, workload, fault)
