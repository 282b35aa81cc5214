-- GCRA over every limit of one request, atomically and on Redis's own clock: the same arithmetic as
-- host/src/store/gcra.rs (read its comment first). Every replica's calls meet here, so there is no
-- per-replica skew, and a refused request writes nothing.
--
-- KEYS[i]: limit i's key, holding its theoretical arrival time (microseconds on this server's clock).
-- ARGV[1]: the cost; ARGV[2i], ARGV[2i+1]: limit i's emission interval (µs) and capacity (units).
-- Returns five integers per limit: fits (1 or 0), remaining, next, reset, retry-after (the last three µs).
-- Lua numbers are doubles, exact up to 2^53; the host keeps every sum below that.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local cost = tonumber(ARGV[1])

local starts, all = {}, true
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local window = interval * tonumber(ARGV[2 * i + 1])
  local start = tonumber(redis.call('GET', KEYS[i])) or now
  if start < now then start = now end
  starts[i] = start
  if start + cost * interval > now + window then all = false end
end

local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local window = interval * capacity
  local start = starts[i]
  local tat = start
  if all then tat = start + cost * interval end
  if all and cost > 0 then
    local ttl = math.max(1, math.ceil((tat - now) / 1000))
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', ttl)
  end
  local remaining = math.floor((now + window - tat) / interval)
  local next = 0
  if remaining < capacity then
    next = (tat - now) - (capacity - remaining - 1) * interval
  end
  local fits = 0
  if start + cost * interval <= now + window then fits = 1 end
  out[#out + 1] = fits
  out[#out + 1] = remaining
  out[#out + 1] = next
  out[#out + 1] = tat - now
  out[#out + 1] = math.max(0, start + cost * interval - now - window)
end
return out
