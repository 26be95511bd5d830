"""Flash-sale experiments: a stream replayed through a limiter on a hand-moved clock, the sliding
count of admissions, and app instances kept as processes across measurements, with the cluster
limiter's admissions on Redis's clock (where its limit holds exactly)."""

import math

import pytest

from inventory_lab.backends import serve_fake_redis
from inventory_lab.flash_sale import (
    AppInstances,
    LimiterSpec,
    admitted_at,
    max_in_any_window,
    measure_admission,
)
from inventory_lab.throttle import ManualClock, TokenBucket, WindowLimiter


def test_a_replay_admits_what_the_limiter_admits_at_each_instant():
    clock = ManualClock()
    times = [0.0095, 0.0096, 0.0097, 0.0101, 0.0102, 0.0103]
    kept = admitted_at(WindowLimiter(10, 2, clock=clock), clock, times)
    assert list(kept) == [0.0095, 0.0096, 0.0101, 0.0102]  # 2K across the boundary
    assert max_in_any_window(kept, 0.010) == 4
    clock = ManualClock()
    assert list(admitted_at(TokenBucket(200, 2, clock=clock), clock, times)) == [0.0095, 0.0096]
    assert admitted_at(WindowLimiter(clock=clock), clock, []).empty


def test_the_sliding_count_is_over_half_open_windows():
    assert max_in_any_window([0, 10_000, 20_000], 10_000) == 1  # exactly W apart: apart
    assert max_in_any_window([0, 9_999, 10_000], 10_000) == 2
    assert max_in_any_window([], 10_000) == 0


def test_the_most_a_limiter_can_admit_grows_with_instances_only_per_process():
    window = LimiterSpec(kind="window", window_ms=10, limit=2)
    bucket = LimiterSpec(kind="bucket", rate=200.0, burst=2)
    cluster = LimiterSpec(kind="cluster", window_ms=10, limit=2)
    assert window.most_admitted(0.5) == 2 * (50 + 2) and window.most_admitted(0.5, 4) == 416
    assert bucket.most_admitted(0.5) == 102 and bucket.most_admitted(0.5, 4) == 408
    assert cluster.most_admitted(0.5) == cluster.most_admitted(0.5, 4) == 2 * (50 + 1)
    with pytest.raises(ValueError, match="instances"):
        window.most_admitted(1.0, 0)
    # a replay on a hand-moved clock never beats it
    clock = ManualClock()
    times = [i * 1e-4 for i in range(5000)]  # 10 000/s for half a second
    kept = admitted_at(WindowLimiter(10, 2, clock=clock), clock, times)
    assert len(kept) <= window.most_admitted(times[-1])
    clock = ManualClock()
    kept = admitted_at(TokenBucket(200, 2, clock=clock), clock, times)
    assert len(kept) <= bucket.most_admitted(times[-1])


def test_app_instances_are_spawned_once_and_reused():
    window = LimiterSpec(kind="window", window_ms=10, limit=2)
    with AppInstances(2) as apps, serve_fake_redis() as url:
        first, one = measure_admission(window, instances=1, duration_s=0.2, apps=apps)
        second, two = measure_admission(window, instances=2, duration_s=0.2, apps=apps)
        cluster = LimiterSpec(kind="cluster", window_ms=10, limit=2, redis_url=url)
        shared, summary = measure_admission(cluster, instances=2, duration_s=0.3, apps=apps)
        with pytest.raises(ValueError, match="2 processes"):
            measure_admission(window, instances=3, apps=apps)
    assert set(first["instance"]) == {0} and set(second["instance"]) == {0, 1}
    assert one["admitted"] > 0 and two["admitted"] > 0
    assert first["redis_us"].isna().all()  # a per-process limiter has no Redis clock
    # on Redis's clock the cluster limiter's limit holds exactly, whatever the clients' clocks
    assert summary["admitted"] > 0 and summary["admitted"] <= summary["cluster_bound"]
    assert summary["bound"] == summary["cluster_bound"]
    assert one["admitted"] <= one["bound"] and two["admitted"] <= two["bound"]
    assert max_in_any_window(shared["redis_us"], 10_000) <= 2
    assert shared["redis_us"].min() == 0 and not math.isnan(shared["redis_us"].max())


def test_bad_app_instances_are_clear_errors():
    with pytest.raises(ValueError, match="positive integer"):
        AppInstances(0)
    with pytest.raises(RuntimeError, match="with block"):
        AppInstances(1).run([])
    window = LimiterSpec(kind="window")
    with pytest.raises(ValueError, match="threads"):
        measure_admission(window, processes=False, apps=AppInstances(1))


def test_an_instance_that_fails_is_reported_not_waited_for():
    nowhere = LimiterSpec(kind="cluster", redis_url="redis://127.0.0.1:1/0")
    with AppInstances(1) as apps, pytest.raises(RuntimeError, match="app instance failed"):
        measure_admission(nowhere, duration_s=0.1, apps=apps)
