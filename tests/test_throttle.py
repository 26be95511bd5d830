"""Limiters: limits hold under threads and across processes; cross-checked against `limits`."""

import threading

import pytest
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from inventory_lab import InvalidOrder, Order, Outcome
from inventory_lab.backends import configured_redis_url, serve_fake_redis
from inventory_lab.designs import design_class
from inventory_lab.flash_sale import LimiterSpec, flash_sale, max_in_any_window, measure_admission
from inventory_lab.throttle import (
    HotSkuDetector,
    ManualClock,
    RedisSlidingWindow,
    Throttled,
    TokenBucket,
    WindowLimiter,
)


def _hammer(limiter, threads=16, each=50, key="hot"):
    admitted = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def client():
        barrier.wait()
        for _ in range(each):
            if limiter.try_acquire(key):
                with lock:
                    admitted.append(1)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(admitted)


def test_window_limiter_admits_k_per_window_under_threads():
    clock = ManualClock(1000.0)
    limiter = WindowLimiter(10, 2, clock=clock)
    assert _hammer(limiter) == 2  # 800 requests inside one window
    clock.now += 0.010
    assert _hammer(limiter) == 2
    assert limiter.try_acquire("other-sku") is True  # keys are limited separately


def test_a_fixed_window_admits_2k_across_a_boundary():
    clock = ManualClock(1000.0095)  # 0.5 ms before a window boundary
    limiter = WindowLimiter(10, 2, clock=clock)
    first = [limiter.try_acquire() for _ in range(2)]
    clock.now += 0.001  # 1 ms later: a new window
    second = [limiter.try_acquire() for _ in range(2)]
    assert first + second == [True] * 4  # four admissions within 1 ms: twice the limit


def test_token_bucket_allows_a_burst_then_its_rate_under_threads():
    clock = ManualClock(0.0)  # exact binary fractions: 0.05 s at 100/s is exactly 5 tokens
    bucket = TokenBucket(rate=100, burst=5, clock=clock)
    assert _hammer(bucket) == 5
    clock.now += 0.05  # 5 tokens at 100/s
    assert _hammer(bucket) == 5
    clock.now += 10  # the bucket holds no more than `burst`
    assert _hammer(bucket) == 5


def test_redis_sliding_window_holds_under_threads(redis_lab):
    limiter = RedisSlidingWindow(redis_lab.redis, redis_lab.namespace, window_ms=60_000, limit=3)
    assert _hammer(limiter, threads=8, each=10) == 3
    assert limiter.try_acquire("another") is True


def test_the_sliding_window_says_when_on_redis_clock_it_admitted(redis_lab):
    """An admission's time is the script's score, in microseconds on Redis's clock; on that
    clock no window of W holds more than K admissions, whatever the clients' clocks say."""
    limiter = RedisSlidingWindow(redis_lab.redis, redis_lab.namespace, window_ms=2, limit=2)
    times = []
    lock = threading.Lock()

    def client():
        for _ in range(200):
            admitted = limiter.admitted_at_us("hot")
            if admitted is not None:
                with lock:
                    times.append(admitted)

    workers = [threading.Thread(target=client) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds, micros = redis_lab.redis.time()
    assert times and max(times) <= seconds * 1_000_000 + micros  # Redis's clock, in µs
    assert max_in_any_window(times, 2_000) <= 2
    refused = RedisSlidingWindow(redis_lab.redis, redis_lab.namespace, window_ms=60_000, limit=1)
    assert refused.admitted_at_us("k") is not None and refused.admitted_at_us("k") is None


def test_a_manual_clock_reads_what_it_was_set_to():
    clock = ManualClock()
    assert clock() == 0.0
    clock.now = 0.0095
    assert clock() == 0.0095


@pytest.mark.parametrize(
    "bad",
    [
        lambda: WindowLimiter(10, 0),
        lambda: WindowLimiter(0, 2),
        lambda: WindowLimiter(-5, 2),
        lambda: WindowLimiter(10, 1.5),
        lambda: TokenBucket(0, 1),
        lambda: TokenBucket(10, 0),
        lambda: HotSkuDetector(0),
        lambda: LimiterSpec(kind="leaky"),
    ],
)
def test_bad_configuration_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"must be|kind"):
        bad()


def test_bad_redis_limiter_configuration_is_a_clear_error(redis_lab):
    with pytest.raises(ValueError, match="limit"):
        RedisSlidingWindow(redis_lab.redis, redis_lab.namespace, window_ms=10, limit=0)
    with pytest.raises(ValueError, match="window_ms"):
        RedisSlidingWindow(redis_lab.redis, redis_lab.namespace, window_ms=0, limit=2)


def test_window_limiter_agrees_with_the_limits_library():
    """A burst inside one second: both admit exactly the limit, and both refuse the rest."""
    ours = WindowLimiter(1000, 7, clock=ManualClock(5000.2))
    theirs = FixedWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(7)
    our_answers = [ours.try_acquire("k") for _ in range(20)]
    their_answers = [theirs.hit(item, "k") for _ in range(20)]
    assert our_answers == their_answers == [True] * 7 + [False] * 13


def test_redis_sliding_window_agrees_with_the_limits_moving_window(redis_lab):
    ours = RedisSlidingWindow(redis_lab.redis, redis_lab.namespace, window_ms=60_000, limit=4)
    theirs = MovingWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(4, 60)
    assert [ours.try_acquire("k") for _ in range(9)] == [theirs.hit(item, "k") for _ in range(9)]


def _cluster_bound(spec, duration_s):
    """The most a sliding window of K per W can admit in `duration_s` (plus one window)."""
    return spec.limit * (duration_s * 1000 / spec.window_ms + 1)


@pytest.mark.parametrize("where", ["fake", "real"])
def test_cluster_limit_holds_across_processes(where):
    """Three spawned processes share one limit; three per-process limiters admit far more."""
    duration = 0.5
    window = LimiterSpec(kind="window", window_ms=10, limit=2)
    if where == "real":
        url = configured_redis_url()
        if url is None:
            from conftest import _missing

            _missing("no real Redis configured")
        cluster = LimiterSpec(kind="cluster", window_ms=10, limit=2, redis_url=url)
        _, shared = measure_admission(cluster, instances=3, duration_s=duration)
    else:
        with serve_fake_redis() as url:
            cluster = LimiterSpec(kind="cluster", window_ms=10, limit=2, redis_url=url)
            _, shared = measure_admission(cluster, instances=3, duration_s=duration)
    _, separate = measure_admission(window, instances=3, duration_s=duration)
    assert 0 < shared["admitted"] <= shared["cluster_bound"]
    assert separate["admitted"] > separate["cluster_bound"]  # each process admits its own limit


def test_per_process_windows_multiply_the_limit_in_threads_too():
    spec = LimiterSpec(kind="window", window_ms=10, limit=2)
    admissions, summary = measure_admission(spec, instances=2, duration_s=0.3, processes=False)
    per_instance = admissions.groupby("instance")["t_s"]
    assert per_instance.ngroups == 2
    assert summary["admitted"] > _cluster_bound(spec, 0.3)
    assert max_in_any_window(admissions["t_s"], 0.010) >= 3  # more than one instance's limit


def test_throttled_rejects_only_hot_skus_with_a_distinct_outcome(redis_lab):
    design = design_class("two_gate_lua")(redis_lab)
    design.setup({"sku-hot": 100, "sku-cold": 100})
    front = Throttled(design, WindowLimiter(60_000, 2), hot_skus={"sku-hot"})
    hot = [front.deduct(Order(f"h-{i}", "sku-hot", 1)).outcome for i in range(5)]
    cold = [front.deduct(Order(f"c-{i}", "sku-cold", 1)).outcome for i in range(5)]
    assert hot == [Outcome.ACCEPTED] * 2 + [Outcome.THROTTLED] * 3
    assert cold == [Outcome.ACCEPTED] * 5
    assert design.stock("sku-hot") == 98
    with pytest.raises(InvalidOrder):
        front.deduct(Order("x", "sku-404", 1))  # bad input is rejected, not throttled


def test_a_sku_becomes_hot_when_its_rate_passes_the_threshold():
    clock = ManualClock(1000.0)
    detector = HotSkuDetector(threshold=3, window_s=1.0, clock=clock)
    assert [detector.observe("a") for _ in range(5)] == [False, False, False, True, True]
    clock.now += 2.0
    assert detector.observe("a") is False


def test_throttled_needs_something_to_throttle(redis_lab):
    with pytest.raises(ValueError, match="hot SKUs"):
        Throttled(design_class("db_only")(redis_lab), WindowLimiter())


@pytest.mark.parametrize("kind", [None, "window", "cluster"])
def test_flash_sale_keeps_every_invariant_and_throttles_only_the_hot_sku(redis_lab, kind):
    spec = None if kind is None else LimiterSpec(kind=kind, window_ms=10, limit=2)
    records, summary = flash_sale(
        redis_lab, spec, instances=3, hot_orders=300, background_orders=60, hot_stock=20
    )
    assert summary["oversold"] == 0 and summary["double_deducted"] == 0 and summary["converged"]
    throttled = records[records["outcome"] == "throttled"]
    assert set(throttled["sku"]) <= {"sku-hot"}
    assert (summary["throttled"] > 0) is (kind is not None)
    background = records[records["sku"] != "sku-hot"]
    assert (background["outcome"] == "accepted").all()
