-- A cluster-wide sliding-window limiter: at most ARGV[2] admissions in any ARGV[1] milliseconds.
-- KEYS[1] = a sorted set of admission times (microseconds) for one limited key.
-- ARGV[1] = window in ms, ARGV[2] = limit, ARGV[3] = a unique member for this request.
-- The clock is the Redis server's (TIME), so every process agrees on it.
-- Returns the admission's time in microseconds on that clock when admitted, 0 when throttled.
-- Times are kept in microseconds: whole milliseconds would let 2K through within one window
-- across a millisecond boundary.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window_us = tonumber(ARGV[1]) * 1000
-- Scores go over as strings: Lua numbers this large would be sent as floats.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now_us - window_us))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now_us), ARGV[3])
-- The set may go once this admission has left the window, not before: an expiry of W from the
-- script's start (PEXPIRE W, in whole ms, on the time the server took when the script began)
-- can come before now_us + W and drop admissions still in the window, letting a K+1st through.
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.floor((now_us + window_us) / 1000) + 1))
return now_us
