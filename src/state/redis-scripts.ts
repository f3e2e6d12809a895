// Lua for the Redis store. Each script runs atomically inside Redis, which is what makes the slot
// limit and the waiting limit hold across instances. Times always come in as ARGV (epoch ms from
// the caller's clock) so that expiry follows the injected clock, never Redis' own.
//
// Stored shapes (prefix omitted):
//   slots:<account>  ZSET   member "<instanceId>|<leaseId>", score = lease expiry
//   wait:<account>   HASH   field <instanceId>, value "<count>:<expiry>"
//   acct:<account>   HASH   cooldownUntil, cooldownReason, disabled, wsUnsupportedUntil
//   sess:<group>:<hash>, resp:<group>:<id>   STRING "<expiry>|<accountId>" with PX

/** KEYS[1] slots · ARGV now, expiresAt, member, max, backstopMs → 1 granted / 0 full. */
export const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
`;

/**
 * KEYS: nSlot slot keys, then wait keys.
 * ARGV now, expiresAt, backstopMs, instanceId, nSlot, then per slot key: max, count, members…,
 * then per wait key: this instance's local count.
 * Re-scores own live leases; re-asserts a lapsed own lease while the account has room; returns
 * the leases that could not be kept as a flat list {slotKeyIndex, member, …}. Own waiting counts
 * get a new expiry (restored from the local count when they lapsed, e.g. after a Redis restart).
 */
export const RENEW = `
local now = tonumber(ARGV[1])
local nslot = tonumber(ARGV[5])
local a = 6
local lost = {}
for k = 1, nslot do
  local key = KEYS[k]
  local max = tonumber(ARGV[a])
  local count = tonumber(ARGV[a + 1])
  a = a + 2
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  for i = 1, count do
    local m = ARGV[a]
    a = a + 1
    if redis.call('ZSCORE', key, m) or redis.call('ZCARD', key) < max then
      redis.call('ZADD', key, ARGV[2], m)
    else
      lost[#lost + 1] = k
      lost[#lost + 1] = m
    end
  end
  redis.call('PEXPIRE', key, ARGV[3])
end
for k = nslot + 1, #KEYS do
  local key = KEYS[k]
  local n = ARGV[a]
  a = a + 1
  local v = redis.call('HGET', key, ARGV[4])
  if v then
    local c, e = string.match(v, '^(%d+):(%d+)$')
    if c and tonumber(e) > now then n = c end
  end
  redis.call('HSET', key, ARGV[4], n .. ':' .. ARGV[2])
  redis.call('PEXPIRE', key, ARGV[3])
end
return lost
`;

/** KEYS: nSlot slot keys, then wait keys · ARGV instanceId, nSlot, then per slot key: count, members…. */
export const RELEASE_OWN = `
local nslot = tonumber(ARGV[2])
local a = 3
for k = 1, nslot do
  local count = tonumber(ARGV[a])
  a = a + 1
  for i = 1, count do
    redis.call('ZREM', KEYS[k], ARGV[a])
    a = a + 1
  end
end
for k = nslot + 1, #KEYS do
  redis.call('HDEL', KEYS[k], ARGV[1])
end
return 1
`;

/**
 * KEYS[1] wait · ARGV now, expiresAt, instanceId, max, backstopMs → 1 counted / 0 full.
 * Expired per-instance counts (an instance that stopped renewing) are dropped before summing.
 */
export const INCR_WAITING = `
local now = tonumber(ARGV[1])
local total, own = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local c, e = string.match(all[i + 1], '^(%d+):(%d+)$')
  if not c or tonumber(e) <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    total = total + tonumber(c)
    if all[i] == ARGV[3] then own = tonumber(c) end
  end
end
if total >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], (own + 1) .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

/** KEYS[1] wait · ARGV now, expiresAt, instanceId → this instance's count afterwards (never < 0). */
export const DECR_WAITING = `
local v = redis.call('HGET', KEYS[1], ARGV[3])
if not v then return 0 end
local c, e = string.match(v, '^(%d+):(%d+)$')
local n = tonumber(c)
if not n or tonumber(e) <= tonumber(ARGV[1]) or n <= 1 then
  redis.call('HDEL', KEYS[1], ARGV[3])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[3], (n - 1) .. ':' .. ARGV[2])
return n - 1
`;

/** KEYS[1] binding · ARGV now, newExpiresAt, ttlMs → 1 extended / 0 absent or expired. */
export const REFRESH_BINDING = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local sep = string.find(v, '|', 1, true)
local e = sep and tonumber(string.sub(v, 1, sep - 1))
if not e or e <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, sep), 'PX', ARGV[3])
return 1
`;

/**
 * KEYS: per account slots, wait, acct · ARGV now, "(now" → flat list, per account:
 * inflight, waiting, cooldownUntil, cooldownReason, disabled, wsUnsupportedUntil.
 * Read-only, so the scheduler's whole candidate set costs one round trip.
 */
export const SNAPSHOT = `
local now = tonumber(ARGV[1])
local out = {}
for k = 1, #KEYS, 3 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[k], ARGV[2], '+inf')
  local waiting = 0
  local w = redis.call('HVALS', KEYS[k + 1])
  for i = 1, #w do
    local c, e = string.match(w[i], '^(%d+):(%d+)$')
    if c and tonumber(e) > now then waiting = waiting + tonumber(c) end
  end
  out[#out + 1] = waiting
  local f = redis.call('HMGET', KEYS[k + 2], 'cooldownUntil', 'cooldownReason', 'disabled', 'wsUnsupportedUntil')
  for i = 1, 4 do out[#out + 1] = f[i] end
end
return out
`;
