-- Finish a request under an idempotency key: only the request holding the lease may.
-- KEYS[1] = the key's record; ARGV[1] = the lease token, ARGV[2] = 'store' or 'release',
-- ARGV[3] = outcome, ARGV[4] = detail, ARGV[5] = the retention in milliseconds ('store' only).
-- 'store' keeps the final answer (state done, retained ARGV[5] ms) for replays; 'release'
-- deletes the record, so that a retry runs again (the order did not happen, or nobody knows).
-- Returns 1 when it landed, 0 when the token does not hold the lease (the lease expired and
-- another request took the key, or the record is done or gone): nothing changes then.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', 'done', 'outcome', ARGV[3], 'detail', ARGV[4])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
