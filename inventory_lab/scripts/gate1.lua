-- Gate 1 in one atomic step: check the anti-repeat code, check stock >= qty, decrement, record.
-- KEYS[1] = anti-repeat key, KEYS[2] = stock hash; both carry the SKU's hash tag (one slot).
-- ARGV[1] = qty (> 0), ARGV[2] = anti-repeat TTL in milliseconds.
-- Returns {left, epoch}: left >= 0 on success (the stock after), -1 duplicate, -2 sold out,
-- -3 not warm (no epoch in the stock hash: Redis lost its data, or was never warmed); epoch is
-- the generation of the stock copy the decision was made on (gate 2 checks it).
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  return {-3, 0}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {-1, epoch}
end
local qty = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[2], 'inStock')) < qty then
  return {-2, epoch}
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return {redis.call('HINCRBY', KEYS[2], 'inStock', -qty), epoch}
