-- Gate 1 for a whole checkout in one atomic step: every line passes, or none is touched.
-- KEYS = anti-repeat key and stock hash of each line, in pairs: code1, stock1, code2, stock2, ...
-- (on a cluster they would have to share one slot; the keys of different SKUs do not, which is
-- why a cluster needs the per-line gate with compensation instead).
-- ARGV[1] = anti-repeat TTL in milliseconds, ARGV[1 + i] = the quantity of line i (> 0).
-- Returns {status, line, epoch1, epoch2, ...}: status 0 = admitted (every line decremented and
-- its code set), -1 duplicate, -2 sold out, -3 not warm; `line` is the 1-based line that refused
-- (0 when admitted); the epochs are those of the stock copies the decision was made on.
local lines = #KEYS / 2
local epochs = {}
for i = 1, lines do
  local epoch = redis.call('HGET', KEYS[2 * i], 'epoch')
  if not epoch then
    return {-3, i}
  end
  epochs[i] = epoch
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then
    return {-1, i}
  end
  if tonumber(redis.call('HGET', KEYS[2 * i], 'inStock')) < tonumber(ARGV[1 + i]) then
    return {-2, i}
  end
end
local reply = {0, 0}
for i = 1, lines do
  redis.call('HINCRBY', KEYS[2 * i], 'inStock', -tonumber(ARGV[1 + i]))
  redis.call('SET', KEYS[2 * i - 1], '1', 'PX', ARGV[1])
  reply[2 + i] = epochs[i]
end
return reply
