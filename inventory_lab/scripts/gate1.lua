-- Gate 1 in one atomic step: check the anti-repeat code, check stock >= qty, decrement, record.
-- KEYS[1] = anti-repeat key, KEYS[2] = stock hash; both carry the SKU's hash tag (one slot).
-- ARGV[1] = qty (> 0), ARGV[2] = anti-repeat TTL in milliseconds.
-- Returns the stock left (>= 0) on success, -1 duplicate, -2 sold out, -3 unknown SKU.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local left = redis.call('HGET', KEYS[2], 'inStock')
if not left then
  return -3
end
local qty = tonumber(ARGV[1])
if tonumber(left) < qty then
  return -2
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return redis.call('HINCRBY', KEYS[2], 'inStock', -qty)
