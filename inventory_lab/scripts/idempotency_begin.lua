-- Begin a request under an idempotency key, atomically: decide whether it runs.
-- KEYS[1] = the key's record (a hash); ARGV[1] = the payload's fingerprint, ARGV[2] = this
-- request's lease token, ARGV[3] = the lease in milliseconds.
-- Returns {'go'} (the record is created in flight, held by the token, expiring with the lease),
-- {'mismatch'} (the key was used with another payload, whatever its state),
-- {'in_progress'} (the first request with this payload still holds the lease), or
-- {'replay', outcome, detail} (the first request's stored answer).
local fingerprint = redis.call('HGET', KEYS[1], 'fingerprint')
if not fingerprint then
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', 'in_flight', 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'go'}
end
if fingerprint ~= ARGV[1] then
  return {'mismatch'}
end
local stored = redis.call('HMGET', KEYS[1], 'state', 'outcome', 'detail')
if stored[1] == 'done' then
  return {'replay', stored[2], stored[3]}
end
return {'in_progress'}
