-- Write one SKU's stock copy, unless Redis already holds a newer one.
-- KEYS[1] = stock hash; ARGV[1] = the stock, ARGV[2] = its epoch.
-- Two warm-ups racing each other: the copy with the higher epoch wins, whichever writes last.
-- Returns 1 if written, 0 if a newer copy was there.
local current = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if current >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'inStock', ARGV[1], 'epoch', ARGV[2])
return 1
