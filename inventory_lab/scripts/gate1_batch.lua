-- Gate 1 for a batch of orders of one SKU in one atomic step (request merging): each order is
-- decided as gate1.lua decides it, in arrival order, so the answers are those of n separate
-- calls made one after the other, at the cost of one round trip.
-- KEYS[1] = the SKU's stock hash; KEYS[2..n+1] = the orders' anti-repeat keys, in arrival order;
-- all carry the SKU's hash tag (one slot).
-- ARGV[1] = anti-repeat TTL in milliseconds; ARGV[2..n+1] = the orders' qty (> 0), same order.
-- Returns {epoch, v1, ..., vn}: vi >= 0 when order i passed (the stock after it), -1 duplicate,
-- -2 sold out; {0, -3, ..., -3} when not warm (no epoch in the stock hash: Redis lost its data, or
-- was never warmed). The epoch is the generation of the stock copy the batch was decided on.
local n = #KEYS - 1
if #ARGV ~= n + 1 then
  return redis.error_reply('gate1_batch: expected one qty per anti-repeat key')
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local answer = {epoch}
if not epoch then
  answer[1] = 0
  for i = 1, n do
    answer[i + 1] = -3
  end
  return answer
end
local stock = tonumber(redis.call('HGET', KEYS[1], 'inStock'))
for i = 1, n do
  local code = KEYS[i + 1]
  local qty = tonumber(ARGV[i + 1])
  -- An order admitted earlier in this batch has set its code already: a repeat of it in the same
  -- batch is caught here, as it would be by a later call.
  if redis.call('EXISTS', code) == 1 then
    answer[i + 1] = -1
  elseif stock < qty then
    answer[i + 1] = -2
  else
    redis.call('SET', code, '1', 'PX', ARGV[1])
    stock = redis.call('HINCRBY', KEYS[1], 'inStock', -qty)
    answer[i + 1] = stock
  end
end
return answer
