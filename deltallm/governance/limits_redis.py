"""The Redis limiter backend: one Lua script checks and reserves all of a key's limits atomically."""
import logging

from deltallm.governance.redis_batch import ScriptBatcher

logger = logging.getLogger(__name__)

# KEYS: 1 req log, 2 token log, 3 token sum, 4 model req log, 5 model token log, 6 model token sum,
#       7 parallel leases, 8 period spend, 9 budget reservations, 10 reservation sum
# ARGV: 1 now_ms, 2 window_ms, 3 id, 4 rpm, 5 tpm, 6 model rpm, 7 model tpm, 8 parallel, 9 tokens,
#       10 lease_ms, 11 budget (nano-USD), 12 cost (nano-USD), 13 ms to budget reset
# Limits < 0 are unset. Logs are sorted sets scored by time (exact sliding windows); token and cost
# members are "<id>:<amount>" with a running sum beside them, so nothing is summed per request.
ACQUIRE = """
local now, window, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local rpm, tpm, mrpm, mtpm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local par, need, lease = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local budget, cost, budget_reset = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local cutoff = now - window

local function sum_trim(k, nk, upto)
  local old = redis.call('ZRANGEBYSCORE', k, '-inf', upto)
  if #old > 0 then
    local s = 0
    for _, m in ipairs(old) do s = s + tonumber(string.match(m, ':(%-?%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', k, '-inf', upto)
    redis.call('DECRBY', nk, s)
  end
  if redis.call('EXISTS', k) == 0 then redis.call('DEL', nk) return 0 end
  return tonumber(redis.call('GET', nk) or '0')
end

-- waits are capped at the window: callers read their own clocks, so an entry stamped by one that
-- ran ahead may lie in this caller's future
local function oldest(k)
  local e = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if #e == 0 then return window end
  return math.min(tonumber(e[2]) + window - now, window)
end

if budget >= 0 and redis.call('EXISTS', KEYS[8]) == 0 then return {2} end

local hl, hr, hreset, tl, tr, treset = -1, -1, 0, -1, -1, 0
local function refuse(reason, retry)
  return {0, reason, math.max(retry, 1), hl, hr, hreset, tl, tr, treset}
end

if par >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  if redis.call('ZCARD', KEYS[7]) >= par then return refuse('parallel', 1000) end
end
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[8]))
  local held = sum_trim(KEYS[9], KEYS[10], now)
  if spent + held >= budget then return refuse('budget', budget_reset) end
end

local blocked, retry = nil, 0
for i, spec in ipairs({{KEYS[1], rpm}, {KEYS[4], mrpm}}) do
  local k, limit = spec[1], spec[2]
  if limit >= 0 then
    redis.call('ZREMRANGEBYSCORE', k, '-inf', cutoff)
    local n = redis.call('ZCARD', k)
    if n >= limit then
      local e = redis.call('ZRANGE', k, n - limit, n - limit, 'WITHSCORES')
      local wait = (#e > 0) and math.min(tonumber(e[2]) + window - now, window) or window
      if not blocked or wait > retry then blocked, retry = 'requests', wait end
    end
    local left = math.max(limit - n - 1, -1)
    if hr < 0 or left < hr then hl, hr, hreset = limit, left, oldest(k) end
  end
end

local held = {0, 0}
for i, spec in ipairs({{KEYS[2], KEYS[3], tpm}, {KEYS[5], KEYS[6], mtpm}}) do
  local k, nk, limit = spec[1], spec[2], spec[3]
  if limit >= 0 then
    local used = sum_trim(k, nk, cutoff)
    local take = math.min(need, limit)
    held[i] = take
    if used + take > limit then
      local deficit, freed, wait = used + take - limit, 0, window
      local entries = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[j], ':(%-?%d+)$'))
        if freed >= deficit then wait = math.min(tonumber(entries[j + 1]) + window - now, window) break end
      end
      if not blocked or wait > retry then blocked, retry = 'tokens', wait end
    end
    local left = limit - used - take
    if tr < 0 or left < tr then tl, tr, treset = limit, left, oldest(k) end
  end
end
if blocked then
  hr, tr = math.max(hr, 0), math.max(tr, 0)
  return refuse(blocked, retry)
end

for i, spec in ipairs({{KEYS[1], rpm}, {KEYS[4], mrpm}}) do
  if spec[2] >= 0 then
    redis.call('ZADD', spec[1], now, id)
    redis.call('PEXPIRE', spec[1], window + 1000)
  end
end
for i, spec in ipairs({{KEYS[2], KEYS[3], tpm}, {KEYS[5], KEYS[6], mtpm}}) do
  if spec[3] >= 0 then
    redis.call('ZADD', spec[1], now, id .. ':' .. held[i])
    redis.call('INCRBY', spec[2], held[i])
    redis.call('PEXPIRE', spec[1], window + 1000)
    redis.call('PEXPIRE', spec[2], window + 1000)
  end
end
if par >= 0 then
  redis.call('ZADD', KEYS[7], now + lease, id)
  redis.call('PEXPIRE', KEYS[7], lease + 1000)
end
if budget >= 0 then
  redis.call('ZADD', KEYS[9], now + lease, id .. ':' .. ARGV[12])
  redis.call('INCRBY', KEYS[10], cost)
  redis.call('PEXPIRE', KEYS[9], lease + 1000)
  redis.call('PEXPIRE', KEYS[10], lease + 1000)
end
return {1, '', 0, hl, hr, hreset, tl, tr, treset, held[1], held[2]}
"""

# ARGV: 1 id, 2 key tokens held, 3 model tokens held, 4 and 5 their real counts, 6 cost held,
#       7 actual cost, 8 "1" when the key has a tpm, 9 when the model has one, 10 when it has a budget
FINISH = """
local id = ARGV[1]
redis.call('ZREM', KEYS[7], id)
local function resettle(k, nk, held, actual)
  local m = id .. ':' .. held
  local s = redis.call('ZSCORE', k, m)
  if s then
    redis.call('ZREM', k, m)
    redis.call('ZADD', k, s, id .. ':' .. actual)
    redis.call('INCRBY', nk, tonumber(actual) - tonumber(held))
  end
end
if ARGV[8] == '1' then resettle(KEYS[2], KEYS[3], ARGV[2], ARGV[4]) end
if ARGV[9] == '1' then resettle(KEYS[5], KEYS[6], ARGV[3], ARGV[5]) end
if ARGV[10] == '1' then
  if redis.call('ZREM', KEYS[9], id .. ':' .. ARGV[6]) == 1 then redis.call('DECRBY', KEYS[10], ARGV[6]) end
  -- counted once, even when a settle whose reply was lost is sent again
  if redis.call('EXISTS', KEYS[8]) == 1 and redis.call('SET', KEYS[9] .. ':settled:' .. id, '1', 'NX', 'PX', 86400000) then
    redis.call('INCRBY', KEYS[8], ARGV[7])
  end
end
return 1
"""


SEP = "\x1f"  # ASCII unit separator: in no key or argument the limiter builds (checked before use)


def compact(script):
    """The script taking its KEYS and ARGV each as one joined string and answering one joined string:
    two arguments and one reply element instead of twenty-odd, which is most of redis-py's cost per
    call. KEYS[1] is still declared, so a cluster routes the call by the key's hash tag."""
    return f"""
local function split(s)
  local t = {{}}
  for part in string.gmatch(s, '([^{SEP}]*){SEP}') do t[#t + 1] = part end
  return t
end
local KEYS, ARGV = split(ARGV[1]), split(ARGV[2])
local function body()
{script}
end
local reply = body()
if type(reply) ~= 'table' then return reply end
for i = 1, #reply do
  if type(reply[i]) == 'number' then reply[i] = string.format('%.0f', reply[i]) end
end
return table.concat(reply, '{SEP}')
"""


def joined(items):
    text = SEP.join(str(item) for item in items) + SEP
    return text if text.count(SEP) == len(items) else None


def parse_reply(reply):
    """The joined reply as the plain script's list: ints where numeric, strings elsewhere."""
    if not isinstance(reply, (bytes, str)):
        return reply
    text = reply.decode() if isinstance(reply, bytes) else reply
    out = []
    for part in text.split(SEP):
        try:
            out.append(int(part))
        except ValueError:
            out.append(part)
    return out


COMPACT_ACQUIRE, COMPACT_FINISH = compact(ACQUIRE), compact(FINISH)


class RedisBackend:
    """Shared by every worker and instance. A check waits for its reply; a settle does not: it rides
    along with the worker's next round trip (see redis_batch), so a request costs one round trip."""

    def __init__(self, client):
        self.client = client
        self.batch = ScriptBatcher(client)

    def acquire(self, keys, args):
        packed = joined(keys), joined(args)
        if None in packed:  # a separator inside a model name: the plain call
            return self.batch.call(ACQUIRE, keys, args)
        return parse_reply(self.batch.call(COMPACT_ACQUIRE, keys[:1], packed))

    def finish(self, keys, args, wait=False):
        packed = joined(keys), joined(args)
        script, keys, args = (FINISH, keys, args) if None in packed else (COMPACT_FINISH, keys[:1], packed)
        if wait:
            self.batch.call(script, keys, args)
        else:
            self.batch.post(script, keys, args)

    def seed(self, key, nano, ttl_ms, now_ms=0):
        self.client.set(key, int(nano), px=ttl_ms, nx=True)

    def spend(self, key, now_ms=0):
        self.batch.flush()  # the settles still queued count
        value = self.client.get(key)
        return None if value is None else int(value)
