-- Give back what gate 1 took, only to the stock copy that took it.
-- KEYS[1] = stock hash; ARGV[1] = qty, ARGV[2] = the epoch gate 1 saw.
-- Returns the stock after, or false when Redis was re-warmed since (a new copy, computed from the
-- database, never counted this decrement: giving it back there would create stock).
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then
  return false
end
return redis.call('HINCRBY', KEYS[1], 'inStock', ARGV[1])
