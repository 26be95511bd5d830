-- A cluster-wide sliding-window limiter: at most ARGV[2] admissions in any ARGV[1] milliseconds.
-- KEYS[1] = a sorted set of admission times (ms) for one limited key.
-- ARGV[1] = window in ms, ARGV[2] = limit, ARGV[3] = a unique member for this request.
-- The clock is the Redis server's (TIME), so every process agrees on it.
-- Returns 1 when admitted, 0 when throttled.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 1
