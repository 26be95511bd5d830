"""What the anti-repeat code remembers and forgets: a retry past the TTL drifts Redis as written
and not with the give-back; a retry racing its refused order is told "duplicate"; the search
for such lies finds exactly the checker's false duplicates."""

import pytest

from inventory_lab import Outcome, Workload
from inventory_lab.errors import LabError
from inventory_lab.experiment import run_experiment
from inventory_lab.idempotency import (
    late_retry,
    retry_during_refusal,
    told_duplicate_never_done,
)


def test_a_retry_after_the_ttl_drifts_redis_as_written_and_not_with_the_give_back(redis_lab):
    written = late_retry(redis_lab, "two_gate", ttl_ms=20)
    assert written.code_pttl == -2 and written.first == Outcome.ACCEPTED.value
    assert written.resend == Outcome.DUPLICATE.value
    assert written.summary()["resend detail"].startswith("gate 2")
    assert written.report.double_deducted == 0 and written.report.drift == {"sku-0001": -1}
    fixed = late_retry(redis_lab, "two_gate", ttl_ms=20, options={"give_back_duplicates": True})
    assert fixed.report.converged is True
    lua = late_retry(redis_lab, "two_gate_lua", ttl_ms=20)
    assert lua.resend == Outcome.DUPLICATE.value and lua.report.converged is True


def test_a_retry_inside_the_ttl_is_answered_by_gate_one(redis_lab):
    early = late_retry(redis_lab, "two_gate", ttl_ms=10_000, wait_ms=0)
    assert early.code_pttl > 0
    assert early.summary()["resend detail"].startswith("gate 1")
    assert early.report.converged is True


def test_bad_input_is_refused_before_anything_runs(redis_lab):
    with pytest.raises(LabError, match="wait_ms"):
        late_retry(redis_lab, "two_gate", wait_ms=-1)
    with pytest.raises(LabError, match="no anti-repeat code in Redis"):
        late_retry(redis_lab, "db_only")
    assert list(redis_lab.redis.scan_iter(match=f"{redis_lab.namespace}:*")) == []


def test_a_retry_during_the_refusal_hears_duplicate_only_from_the_decrement_first_gate(redis_lab):
    article = retry_during_refusal(redis_lab, "two_gate")
    assert article.second.outcome is Outcome.DUPLICATE and article.report.false_duplicates == 1
    lua = retry_during_refusal(redis_lab, "two_gate_lua")
    assert lua.second.outcome is Outcome.SOLD_OUT and lua.report.false_duplicates == 0


@pytest.mark.parametrize("name", ["two_gate", "two_gate_lua", "task_engine"])
def test_the_search_finds_exactly_the_checkers_false_duplicates(default_lab, name):
    hot = Workload(orders=120, skus=1, stock=30, skew=0, retries=0.3, seed=3)
    run = run_experiment(default_lab, name, hot, concurrency=8)
    found = told_duplicate_never_done(default_lab, run.records)
    lines = set(zip(found["order_id"], found["sku"], strict=True))
    assert len(lines) == run.report.false_duplicates
    assert Outcome.ACCEPTED.value not in set(found["outcome"])
    # every attempt of such a line is listed, the "duplicate" answer among them
    for order_id in {order_id for order_id, _ in lines}:
        attempts = run.records[run.records["order_id"] == order_id]
        assert len(found[found["order_id"] == order_id]) == len(attempts)
        assert Outcome.DUPLICATE.value in set(attempts["outcome"])
