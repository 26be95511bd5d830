"""A round trip is one request sent and waited for: a command, or a whole pipeline or
MULTI/EXEC block; the meter counts from every thread and unhooks the connections afterwards."""

import threading

from inventory_lab.redis_meter import metered


def test_a_command_a_pipeline_and_a_transaction_are_one_round_trip_each(redis_lab):
    r = redis_lab.redis
    key = f"{redis_lab.namespace}:meter"
    with metered(r) as meter:
        r.set(key, 1)
    assert meter.count == 1
    for transaction in (False, True):
        with metered(r) as meter:
            pipe = r.pipeline(transaction=transaction)
            pipe.incr(key)
            pipe.incr(key)
            pipe.get(key)
            pipe.execute()
        assert meter.count == 1
    r.delete(key)


def test_every_thread_is_counted_and_nothing_after_the_block(redis_lab):
    r = redis_lab.redis
    key = f"{redis_lab.namespace}:meter"
    with metered(r) as meter:
        threads = [threading.Thread(target=lambda: r.incr(key)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    r.incr(key)
    assert meter.count == 4 and int(r.get(key)) == 5
    connection = r.connection_pool.get_connection()
    try:
        assert "send_packed_command" not in vars(connection)  # the hook is gone
    finally:
        r.connection_pool.release(connection)
    r.delete(key)
