//! The Lua scripts that make each multi-key step atomic on the broker.
//!
//! Every script takes the queue stream as `KEYS[1]` (so Redis Cluster routes it to the pool's
//! slot) and the pool's key prefix as `ARGV[1]`; the other keys it touches are derived from that
//! prefix and share its hash tag, hence its slot.
//!
//! Redis does not roll back a script that fails half-way, so a script must not fail on a key some
//! other program broke: bookkeeping (counters, dead letters, the worker list, reply streams, the
//! stored TTL) goes through `redis.pcall` and is skipped when its key holds another type; only
//! the queue itself is allowed to fail a script (then nothing can work, and the worker stops).

/// Publishes an outcome exactly once: the first `SET NX` on the result key wins; only the winner
/// tells the waiting clients. Outcomes are gathered per client and sent as one reply entry per
/// client per call (fields: task id → outcome), which keeps stream writes per batch, not per task.
/// Shared by the completion and the reaper's dead-letter path.
const PUBLISH: &str = r#"
local release_dependents
-- Adds the reply field `field` = `value` for every client waiting in the set `waiters`, to be
-- sent by `send_replies`; returns whether there was any.
local function tell_waiters(waiters, replies, field, value)
  -- pcall: a waiters key of another type (written by something else) must not abort the
  -- script half-way (Redis keeps what a failed script already wrote); nobody is told then.
  local clients = redis.pcall('SMEMBERS', waiters)
  if type(clients) ~= 'table' or clients.err then clients = {} end
  for _, client in ipairs(clients) do
    local fields = replies[client]
    if fields == nil then
      fields = {}
      replies[client] = fields
    end
    fields[#fields + 1] = field
    fields[#fields + 1] = value
  end
  return #clients > 0
end
local function publish(prefix, task_id, outcome, ttl, replies)
  if not redis.call('SET', prefix .. ':result:' .. task_id, outcome, 'NX', 'PX', ttl) then
    return 0
  end
  -- The task's progress ends with it (pcall: a key of another type must not stop the publish).
  redis.pcall('HDEL', prefix .. ':progress', task_id)
  release_dependents(prefix, task_id, outcome, ttl, replies)
  local waiters = prefix .. ':waiters:' .. task_id
  tell_waiters(waiters, replies, task_id, outcome)
  redis.call('DEL', waiters)
  return 1
end
-- A reply stream expires only to collect the streams of clients that are gone: at least a day
-- after its last write, however short `result_ttl` is, so a slow or paused client loses nothing.
local function send_replies(prefix, replies, ttl)
  for client, fields in pairs(replies) do
    local stream = prefix .. ':replies:' .. client
    redis.pcall('XADD', stream, '*', unpack(fields))
    redis.pcall('PEXPIRE', stream, math.max(ttl, 86400000))
  end
end
-- The stored TTL, if it is a valid one: a value another program wrote ("1h", 1e19) must not make
-- every SET PX fail, which would stall the whole pool. Same range as RESULT_TTL_RANGE in Rust.
local function result_ttl(prefix)
  local raw = redis.pcall('HGET', prefix .. ':config', 'result_ttl_ms')
  local ttl = type(raw) == 'string' and tonumber(raw) or nil
  if ttl == nil or ttl ~= math.floor(ttl) or ttl < 1000 or ttl > 31536000000 then
    return 86400000
  end
  return ttl
end
local function fields_of(raw)
  local fields = {}
  for j = 1, #raw - 1, 2 do fields[raw[j]] = raw[j + 1] end
  return fields
end
-- Records a task that will not run again in the dead-letter stream, with the reason, and tells
-- its clients (if the entry names a task id) with `outcome`.
local function dead_letter(prefix, entry, fields, deliveries, worker, reason, outcome, ttl, replies)
  local id = fields['id']
  if type(id) == 'string' and id ~= '' then
    publish(prefix, id, outcome, ttl, replies)
  else
    id = ''
  end
  redis.pcall('XADD', prefix .. ':dead', 'MAXLEN', '~', 10000, '*',
    'id', id, 'fn', fields['fn'] or '', 'deliveries', deliveries, 'worker', worker,
    'entry', entry, 'reason', reason)
end
-- Priority lanes: the queue stream is the normal lane; `QUEUE:high` and `QUEUE:low` (same hash
-- tag, so same slot) exist once a task of that priority was submitted. An entry of another lane
-- than the normal one is known outside the broker as `h:ID` / `l:ID`.
local function lane_of(entry)
  local tag = string.sub(entry, 1, 2)
  if tag == 'h:' then return KEYS[1] .. ':high', string.sub(entry, 3) end
  if tag == 'l:' then return KEYS[1] .. ':low', string.sub(entry, 3) end
  return KEYS[1], entry
end
local function lanes()
  return {{KEYS[1] .. ':high', 'h:'}, {KEYS[1], ''}, {KEYS[1] .. ':low', 'l:'}}
end
-- The stream of a priority ('h', 'l' or normal), created with the workers' group if needed.
local function lane_stream(priority)
  if priority ~= 'h' and priority ~= 'l' then return KEYS[1] end
  local stream = KEYS[1] .. (priority == 'h' and ':high' or ':low')
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
  end
  return stream
end
-- Tasks chained after others (`submit_after`): a chained task waits in `PREFIX:after:ID` (its
-- entry's fields but `arg`, plus `mode`: 'v' for after a plain task, 'r' after a fallible one),
-- listed in the set `PREFIX:dependents:UPSTREAM`; `PREFIX:chained` lists the upstream ids that
-- have some, so a publish in a pool without chains costs one EXISTS per script call.
local has_chains = nil
-- What the other task's published `outcome` makes of chained task `id` (its `fields`): its
-- value becomes the argument and the task is queued in its lane; any other outcome is the
-- chained task's own (rule of `outcome::release_after`).
local function publish_counted(prefix, id, outcome, ttl, replies)
  if publish(prefix, id, outcome, ttl, replies) == 1 then
    redis.pcall('HINCRBY', prefix .. ':stats', 'published', 1)
  end
end
local function release_one(prefix, id, fields, mode, outcome, ttl, replies)
  local inner = outcome
  if string.sub(inner, 1, 1) == 'A' then
    local colon = string.find(inner, ':', 2, true)
    if colon then inner = string.sub(inner, colon + 1) end
  end
  if string.sub(inner, 1, 1) ~= 'V' then
    return publish_counted(prefix, id, inner, ttl, replies)
  end
  local arg = string.sub(inner, 2)
  if mode == 'r' then
    local variant = string.byte(arg, 1)
    if variant == 0 then
      arg = string.sub(arg, 2)
    elseif variant == 1 then
      return publish_counted(prefix, id, 'F' .. string.sub(arg, 2), ttl, replies)
    else
      return publish_counted(prefix, id,
        'Tthe task it was chained after returned a value that is not a Result', ttl, replies)
    end
  end
  local priority = ''
  for j = 1, #fields - 1, 2 do
    if fields[j] == 'pri' then priority = fields[j + 1] end
  end
  fields[#fields + 1] = 'arg'
  fields[#fields + 1] = arg
  redis.call('XADD', lane_stream(priority), '*', unpack(fields))
  return 1
end
release_dependents = function(prefix, up, outcome, ttl, replies)
  if has_chains == nil then
    has_chains = redis.call('EXISTS', prefix .. ':chained') == 1
  end
  if not has_chains or redis.call('SREM', prefix .. ':chained', up) == 0 then return end
  local key = prefix .. ':dependents:' .. up
  local dependents = redis.pcall('SMEMBERS', key)
  redis.call('DEL', key)
  if type(dependents) ~= 'table' or dependents.err then return end
  for _, id in ipairs(dependents) do
    local parked = prefix .. ':after:' .. id
    local raw = redis.pcall('HGETALL', parked)
    redis.call('DEL', parked)
    if type(raw) == 'table' and not raw.err and #raw > 0 then
      redis.pcall('HINCRBY', prefix .. ':stats', 'chained', -1)
      local fields, mode = {}, 'v'
      for j = 1, #raw - 1, 2 do
        if raw[j] == 'mode' then
          mode = raw[j + 1]
        else
          fields[#fields + 1] = raw[j]
          fields[#fields + 1] = raw[j + 1]
        end
      end
      release_one(prefix, id, fields, mode, outcome, ttl, replies)
    end
  end
end
-- Whether the pool has abort records at all (one lookup per script call, so a pool that never
-- aborts pays nothing per task), and whether task `id` is one of them.
local function abort_records(prefix)
  return redis.call('EXISTS', prefix .. ':aborted') == 1
end
local function is_aborted(prefix, id)
  local score = redis.pcall('ZSCORE', prefix .. ':aborted', id)
  if type(score) ~= 'string' then return false end
  local now = redis.call('TIME')
  return tonumber(score) > now[1] * 1000 + math.floor(now[2] / 1000)
end
local function forget_abort(prefix, id)
  redis.pcall('ZREM', prefix .. ':aborted', id)
end
local function owned_by(queue, group, entry, worker)
  local p = redis.call('XPENDING', queue, group, entry, entry, 1)
  return p[1] ~= nil and p[1][2] == worker
end
local function requeue(queue, group, entry)
  local found = redis.call('XRANGE', queue, entry, entry)
  redis.call('XACK', queue, group, entry)
  redis.call('XDEL', queue, entry)
  if found[1] then
    redis.call('XADD', queue, '*', unpack(found[1][2]))
    return 1
  end
  return 0
end
"#;

/// ARGV: prefix, client, then (task id, function, argument, signature fingerprint, retry policy
/// or '', delay in ms or '') per task. A task with a retry policy also gets the `retry` field
/// (and, once retried, `attempt`); one without has none, so the ordinary entry stays as small as
/// before. A task with a delay does not enter the queue: its fields wait in
/// `PREFIX:scheduled:ID`, due at broker time + delay in `PREFIX:scheduled`, like a retry (see
/// `COMPLETE` and `PROMOTE`). The last per-task argument is its priority: '' (normal: the queue
/// itself), 'h' or 'l' (the lane streams, see `lane_of`); a prioritized entry has a `pri` field
/// so that re-queueing and promotion keep its lane. Then its limits ('' for none: the worker's),
/// kept as the `limits` field (which every move of an entry copies with the rest).
/// The waiters set has no expiry: it lives while its task does (publishing deletes it), so a task
/// that waits or runs longer than `result_ttl` still reaches its clients.
/// The ninth per-task argument chains the task after another (`submit_after`): '' for none,
/// else `MODE:UPSTREAM_ID` (see `release_one`); such a task has no `arg` of its own.
/// Returns per task: 0 queued, 1 already queued (now also waited for by this client), or the
/// stored outcome when the task already finished.
const SUBMIT: &str = r#"
local prefix, client = ARGV[1], ARGV[2]
local answers, queued = {}, 0
local now_ms, ttl, replies = nil, nil, {}
for i = 3, #ARGV, 9 do
  local id = ARGV[i]
  local done = redis.call('GET', prefix .. ':result:' .. id)
  if done then
    answers[#answers + 1] = done
  else
    local waiters = prefix .. ':waiters:' .. id
    local fresh = redis.call('EXISTS', waiters) == 0
    redis.call('SADD', waiters, client)
    if fresh then
      local after = ARGV[i + 8]
      local fields = {'id', id, 'fn', ARGV[i + 1], 'sig', ARGV[i + 3]}
      if after == '' then
        fields[#fields + 1] = 'arg'
        fields[#fields + 1] = ARGV[i + 2]
      end
      if ARGV[i + 4] ~= '' then
        fields[#fields + 1] = 'retry'
        fields[#fields + 1] = ARGV[i + 4]
      end
      if ARGV[i + 6] ~= '' then
        fields[#fields + 1] = 'pri'
        fields[#fields + 1] = ARGV[i + 6]
      end
      if ARGV[i + 7] ~= '' then
        fields[#fields + 1] = 'limits'
        fields[#fields + 1] = ARGV[i + 7]
      end
      if after ~= '' then
        -- Chained: runs on the other task's value once that is published (see release_one).
        local mode, up = string.sub(after, 1, 1), string.sub(after, 3)
        if ttl == nil then ttl = result_ttl(prefix) end
        local up_outcome = redis.call('GET', prefix .. ':result:' .. up)
        if up_outcome then
          release_one(prefix, id, fields, mode, up_outcome, ttl, replies)
        elseif redis.call('EXISTS', prefix .. ':waiters:' .. up) == 1 then
          local parked = prefix .. ':after:' .. id
          redis.call('DEL', parked)
          redis.call('HSET', parked, 'mode', mode, unpack(fields))
          redis.call('SADD', prefix .. ':dependents:' .. up, id)
          redis.call('SADD', prefix .. ':chained', up)
          has_chains = true
          redis.pcall('HINCRBY', prefix .. ':stats', 'chained', 1)
        else
          publish_counted(prefix, id, 'Tthe task it was chained after (' .. up .. ') is unknown to ' ..
            'the broker: it was never submitted to this pool, or its result expired ' ..
            '(result_ttl)', ttl, replies)
        end
      elseif ARGV[i + 5] == '' then
        redis.call('XADD', lane_stream(ARGV[i + 6]), '*', unpack(fields))
      else
        if now_ms == nil then
          local now = redis.call('TIME')
          now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
        end
        local task = prefix .. ':scheduled:' .. id
        redis.call('DEL', task)
        redis.call('HSET', task, unpack(fields))
        redis.call('ZADD', prefix .. ':scheduled', now_ms + tonumber(ARGV[i + 5]), id)
      end
      queued = queued + 1
      answers[#answers + 1] = 0
    else
      answers[#answers + 1] = 1
    end
  end
end
if queued > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'submitted', queued) end
if ttl ~= nil then send_replies(prefix, replies, ttl) end
return answers
"#;

/// ARGV: prefix, group, then (entry, task id, outcome, dead-letter reason or '', retry delay in
/// ms or '') per completion.
/// Returns per completion: 1 if it was published (or scheduled for a retry), 0 if it was a late
/// duplicate. A completion with a reason (a task the worker could not run at all) is also
/// recorded in the dead letters.
///
/// A completion with a retry delay is not published: its entry leaves the queue (and the worker's
/// pending list) and its fields, with `attempt` counted up, wait in the hash
/// `PREFIX:scheduled:ID` with the due time (broker clock, ms) as its score in the sorted set
/// `PREFIX:scheduled`, until `PROMOTE` queues it again. Its waiters keep waiting. A retry for a
/// task that already has an outcome, or whose entry is gone (another completion of the same
/// entry came first), is a duplicate. A completion of an aborted task (`ABORT`), retry or not,
/// is published as cancelled (`C`) instead, and publishing a task forgets its abort record.
const COMPLETE: &str = r#"
local prefix, group = ARGV[1], ARGV[2]
local ttl = result_ttl(prefix)
local answers, published, duplicates, entries, replies = {}, 0, 0, {}, {}
local refused, retried, now_ms = 0, 0, nil
local aborts = abort_records(prefix)
for i = 3, #ARGV, 5 do
  -- A task aborted before its outcome is published ends cancelled, whatever its run brought
  -- (the abort reached the broker after the worker last asked): it is never retried either.
  if aborts and is_aborted(prefix, ARGV[i + 1]) then
    ARGV[i + 2] = 'C'
    ARGV[i + 3] = ''
    ARGV[i + 4] = ''
  end
  if ARGV[i + 4] ~= '' then
    local id = ARGV[i + 1]
    local stream, entry = lane_of(ARGV[i])
    local found = redis.call('XRANGE', stream, entry, entry)
    if found[1] and redis.call('EXISTS', prefix .. ':result:' .. id) == 0 then
      if now_ms == nil then
        local now = redis.call('TIME')
        now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
      end
      local raw, fields, attempt = found[1][2], {}, 0
      for j = 1, #raw - 1, 2 do
        if raw[j] == 'attempt' then
          attempt = tonumber(raw[j + 1]) or 0
        elseif raw[j] == 'paid' then
          -- The next run pays for its own rate-limit token.
        else
          fields[#fields + 1] = raw[j]
          fields[#fields + 1] = raw[j + 1]
        end
      end
      fields[#fields + 1] = 'attempt'
      fields[#fields + 1] = attempt + 1
      local task = prefix .. ':scheduled:' .. id
      redis.call('DEL', task)
      redis.call('HSET', task, unpack(fields))
      redis.call('ZADD', prefix .. ':scheduled', now_ms + tonumber(ARGV[i + 4]), id)
      -- This run is over: what it reported does not describe the next one.
      redis.pcall('HDEL', prefix .. ':progress', id)
      retried = retried + 1
      answers[#answers + 1] = 1
    else
      duplicates = duplicates + 1
      answers[#answers + 1] = 0
    end
    entries[#entries + 1] = ARGV[i]
  else
  if ARGV[i + 3] ~= '' then
    local stream, entry = lane_of(ARGV[i])
    local found = redis.call('XRANGE', stream, entry, entry)
    local fields = found[1] and fields_of(found[1][2]) or {}
    redis.pcall('XADD', prefix .. ':dead', 'MAXLEN', '~', 10000, '*',
      'id', ARGV[i + 1], 'fn', fields['fn'] or '', 'deliveries', 1, 'worker', '',
      'entry', ARGV[i], 'reason', ARGV[i + 3])
    refused = refused + 1
  end
  local first = publish(prefix, ARGV[i + 1], ARGV[i + 2], ttl, replies)
  if aborts then forget_abort(prefix, ARGV[i + 1]) end
  answers[#answers + 1] = first
  if first == 1 then published = published + 1 else duplicates = duplicates + 1 end
  entries[#entries + 1] = ARGV[i]
  end
end
if retried > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'retried', retried) end
send_replies(prefix, replies, ttl)
if #entries > 0 then
  local by_lane = {}
  for _, e in ipairs(entries) do
    local stream, entry = lane_of(e)
    by_lane[stream] = by_lane[stream] or {}
    table.insert(by_lane[stream], entry)
  end
  for stream, ids in pairs(by_lane) do
    redis.call('XACK', stream, group, unpack(ids))
    redis.call('XDEL', stream, unpack(ids))
  end
end
if published > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'published', published) end
if duplicates > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'duplicates', duplicates) end
if refused > 0 then
  redis.pcall('HINCRBY', prefix .. ':stats', 'dead_lettered', refused)
  redis.pcall('HINCRBY', prefix .. ':stats', 'malformed', refused)
end
return answers
"#;

/// ARGV: prefix, the progress hash (`PREFIX:progress`), then (task id, `"DONE TOTAL"`) per
/// running task. Stores each as the task's field of the hash and sends it to each client waiting for the task, as a reply field
/// `progress:ID` (one reply entry per client per call, as `publish` does), unless the task
/// already has an outcome: `publish` deletes the field, and a late report must not bring it
/// back. The hash has no expiry; each field lives exactly as long as its task. A hash of
/// another type (written by another program) fails the call before anything is written or
/// sent, so the worker hears of it and sends the same reports again later, when someone has
/// deleted the key: a report is stored and sent, or neither.
const PROGRESS: &str = r#"
local prefix, hash = ARGV[1], ARGV[2]
local kind = redis.call('TYPE', hash)['ok']
if kind ~= 'hash' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE the progress hash ' .. hash .. ' holds a ' .. kind ..
    ', not a hash (written by another program): delete it so progress can be recorded')
end
local replies, any = {}, false
for i = 3, #ARGV - 1, 2 do
  local id, value = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', prefix .. ':result:' .. id) == 0 then
    redis.call('HSET', hash, id, value)
    if tell_waiters(prefix .. ':waiters:' .. id, replies, 'progress:' .. id, value) then
      any = true
    end
  end
end
if any then send_replies(prefix, replies, result_ttl(prefix)) end
return 0
"#;

/// ARGV: prefix, group, worker, then entries. Stamps the worker's heartbeat (broker clock) and
/// resets the idle time of each entry the worker still owns (`XCLAIM ... JUSTID` does not count a
/// delivery). Returns the entries it no longer owns.
const HEARTBEAT: &str = r#"
local prefix, group, worker = ARGV[1], ARGV[2], ARGV[3]
local now = redis.call('TIME')
redis.pcall('HSET', prefix .. ':workers', worker, now[1] * 1000 + math.floor(now[2] / 1000))
local claims, lost = {}, {}
for i = 4, #ARGV do
  local stream, entry = lane_of(ARGV[i])
  if owned_by(stream, group, entry, worker) then
    claims[stream] = claims[stream] or {stream, group, worker, 0}
    table.insert(claims[stream], entry)
  else
    lost[#lost + 1] = ARGV[i]
  end
end
for _, claim in pairs(claims) do
  claim[#claim + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(claim))
end
return lost
"#;

/// ARGV: prefix, group, worker, lease_ms, max_deliveries, max_claims, scan. Also forgets workers
/// silent for [`FORGET_AFTER_LEASES`] leases that hold no task.
/// Entries idle for a whole lease belong to lost workers: those delivered `max_deliveries` times
/// fail with `L<deliveries>` and go to the dead-letter stream; up to `max_claims` others are
/// claimed by `worker` (which counts a delivery). Returns {claimed entries, dead-lettered count}.
const REAP: &str = r#"
local prefix, group, worker, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_deliveries, max_claims = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl = result_ttl(prefix)
local claimed, dead, malformed, replies = {}, 0, 0, {}
for _, lane in ipairs(lanes()) do
local queue, tag = lane[1], lane[2]
if queue == KEYS[1] or redis.call('EXISTS', queue) == 1 then
local idle = redis.call('XPENDING', queue, group, 'IDLE', lease, '-', '+', ARGV[7])
local claim = {}
for _, p in ipairs(idle) do
  local entry, owner, deliveries = p[1], p[2], p[4]
  if deliveries >= max_deliveries then
    local found = redis.call('XRANGE', queue, entry, entry)
    redis.call('XACK', queue, group, entry)
    redis.call('XDEL', queue, entry)
    if found[1] then
      local fields = fields_of(found[1][2])
      local reason = 'lost its worker ' .. deliveries .. (deliveries == 1 and ' time' or ' times')
      for _, name in ipairs({'id', 'fn', 'arg'}) do
        if fields[name] == nil then
          reason = 'malformed entry: it has no `' .. name .. '` field'
          malformed = malformed + 1
          break
        end
      end
      dead_letter(prefix, tag .. entry, fields, deliveries, owner, reason, 'L' .. deliveries, ttl,
        replies)
      dead = dead + 1
    end
  elseif #claimed + #claim < max_claims then
    claim[#claim + 1] = entry
  end
end
if #claim > 0 then
  for _, e in ipairs(redis.call('XCLAIM', queue, group, worker, lease, unpack(claim))) do
    if type(e) == 'table' then
      e[1] = tag .. e[1]
      claimed[#claimed + 1] = e
    end
  end
end
end
end
send_replies(prefix, replies, ttl)
if dead > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'dead_lettered', dead) end
if malformed > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'malformed', malformed) end
-- Forget workers silent for FORGET_AFTER_LEASES leases that hold nothing: long gone (killed, or
-- their machine lost), they would otherwise be listed forever.
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local forget_before = now_ms - tonumber(lease) * FORGET_AFTER_LEASES
local beats = redis.pcall('HGETALL', prefix .. ':workers')
if type(beats) ~= 'table' or beats.err then beats = {} end
for i = 1, #beats, 2 do
  local name = beats[i]
  -- A stamp that is not a number (written by something else) counts as ancient.
  if name ~= worker and (tonumber(beats[i + 1]) or 0) < forget_before then
    local holds = false
    for _, lane in ipairs(lanes()) do
      if (lane[1] == KEYS[1] or redis.call('EXISTS', lane[1]) == 1)
          and redis.call('XPENDING', lane[1], group, '-', '+', 1, name)[1] ~= nil then
        holds = true
      end
    end
    if not holds then
      redis.pcall('HDEL', prefix .. ':workers', name)
      redis.pcall('HDEL', prefix .. ':worker-info', name)
      for _, lane in ipairs(lanes()) do
        if lane[1] == KEYS[1] or redis.call('EXISTS', lane[1]) == 1 then
          redis.call('XGROUP', 'DELCONSUMER', lane[1], group, name)
        end
      end
    end
  end
end
return {claimed, dead}
"#;

/// ARGV: prefix, group, worker, then entries. Re-queues entries the worker still owns as fresh
/// entries (delivery count back to zero: a clean stop is not a lost delivery).
const RELEASE: &str = r#"
local prefix, group, worker = ARGV[1], ARGV[2], ARGV[3]
local released = 0
for i = 4, #ARGV do
  local stream, entry = lane_of(ARGV[i])
  if owned_by(stream, group, entry, worker) then
    released = released + requeue(stream, group, entry)
  end
end
if released > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'released', released) end
return released
"#;

/// ARGV: prefix, group, worker. Forgets a worker that stopped cleanly, after it finished and
/// published everything it ran. Entries still pending under its name were delivered by a read
/// whose answer never reached it (a signal interrupted the read): they go back to the queue as
/// fresh entries. The consumer is deleted only when it holds nothing (deleting a consumer drops
/// its pending entries).
const RETIRE: &str = r#"
local prefix, group, worker = ARGV[1], ARGV[2], ARGV[3]
redis.pcall('HDEL', prefix .. ':workers', worker)
redis.pcall('HDEL', prefix .. ':worker-info', worker)
local released = 0
for _, lane in ipairs(lanes()) do
  local queue = lane[1]
  if queue == KEYS[1] or redis.call('EXISTS', queue) == 1 then
    local orphans = redis.call('XPENDING', queue, group, '-', '+', 1000, worker)
    for _, p in ipairs(orphans) do
      released = released + requeue(queue, group, p[1])
    end
    if #orphans < 1000 then
      redis.call('XGROUP', 'DELCONSUMER', queue, group, worker)
    end
  end
end
if released > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'released', released) end
return released
"#;

/// ARGV: prefix, group, worker, then (entry, reason) per entry. Dead-letters queue entries that
/// are not tasks futurepool can run (missing or non-UTF-8 fields): each is removed from the queue
/// and recorded in `:dead` with its reason, and a client waiting for the task id it names (if any)
/// gets a transfer error. Returns how many were dead-lettered.
const DEAD_LETTER: &str = r#"
local prefix, group, worker = ARGV[1], ARGV[2], ARGV[3]
local ttl = result_ttl(prefix)
local replies, dead = {}, 0
for i = 4, #ARGV - 1, 2 do
  local queue, entry = lane_of(ARGV[i])
  local reason = ARGV[i + 1]
  local pending = redis.call('XPENDING', queue, group, entry, entry, 1)
  local deliveries = pending[1] and pending[1][4] or 0
  local found = redis.call('XRANGE', queue, entry, entry)
  redis.call('XACK', queue, group, entry)
  redis.call('XDEL', queue, entry)
  if found[1] then
    dead_letter(prefix, ARGV[i], fields_of(found[1][2]), deliveries, worker, reason,
      'T' .. 'the worker could not run this task: ' .. reason, ttl, replies)
    dead = dead + 1
  end
end
send_replies(prefix, replies, ttl)
if dead > 0 then
  redis.pcall('HINCRBY', prefix .. ':stats', 'dead_lettered', dead)
  redis.pcall('HINCRBY', prefix .. ':stats', 'malformed', dead)
end
return dead
"#;

/// ARGV: prefix, max. Queues again up to `max` scheduled tasks whose due time (broker clock) has
/// come — each as a fresh entry with the fields it was scheduled with — and forgets those whose
/// task already has an outcome. Returns {tasks queued, ms until the next due time or -1 when
/// nothing is scheduled, how many priority lanes exist, the rate limits (flat function → `RATE
/// BURST`), how many abort records exist}: the caller bounds its blocking read by the wait, reads
/// through `FETCH` while lanes exist, sends tasks of limited functions through `THROTTLE`, and
/// asks `ABORTED` about what it fetched while abort records exist.
const PROMOTE: &str = r#"
local prefix, max = ARGV[1], tonumber(ARGV[2])
local schedule = prefix .. ':scheduled'
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
-- Due strictly before this millisecond: TIME is truncated to it, so a task due within it may
-- not be due yet. pcall: a schedule key of another type (written by something else) must not
-- stop the fetch.
local due = redis.pcall('ZRANGEBYSCORE', schedule, '-inf', '(' .. now_ms, 'LIMIT', 0, max)
local lanes_used = redis.call('EXISTS', KEYS[1] .. ':high', KEYS[1] .. ':low')
local aborts = redis.pcall('ZCARD', prefix .. ':aborted')
if type(aborts) ~= 'number' then aborts = 0 end
if type(due) ~= 'table' or due.err then return {0, -1, lanes_used, {}, aborts} end
local queued = 0
for _, id in ipairs(due) do
  local task = prefix .. ':scheduled:' .. id
  local fields = redis.pcall('HGETALL', task)
  if type(fields) == 'table' and not fields.err and #fields > 0
      and redis.call('EXISTS', prefix .. ':result:' .. id) == 0 then
    local priority = ''
    for j = 1, #fields - 1, 2 do
      if fields[j] == 'pri' then priority = fields[j + 1] end
    end
    redis.call('XADD', lane_stream(priority), '*', unpack(fields))
    queued = queued + 1
  end
  redis.call('DEL', task)
  redis.call('ZREM', schedule, id)
end
local next_due = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
local wait = -1
if next_due[2] then wait = math.max(0, math.floor(tonumber(next_due[2]) - now_ms) + 1) end
if queued > 0 then lanes_used = redis.call('EXISTS', KEYS[1] .. ':high', KEYS[1] .. ':low') end
local limits = redis.pcall('HGETALL', prefix .. ':limits')
if type(limits) ~= 'table' or limits.err then limits = {} end
return {queued, wait, lanes_used, limits, aborts}
"#;

/// ARGV: prefix, group, worker, max, order ('up' on the anti-starvation turn, else 'down').
/// Reads up to `max` new entries for `worker`, highest lane first (`down`: high, normal, low) or
/// lowest first (`up`), without blocking; entries of the lanes come back as `h:ID` / `l:ID`.
const FETCH: &str = r#"
local group, worker, max = ARGV[2], ARGV[3], tonumber(ARGV[4])
local order = lanes()
if ARGV[5] == 'up' then order = {order[3], order[2], order[1]} end
local out = {}
for _, lane in ipairs(order) do
  if #out >= max then break end
  local queue, tag = lane[1], lane[2]
  if queue == KEYS[1] or redis.call('EXISTS', queue) == 1 then
    local read = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', max - #out,
      'STREAMS', queue, '>')
    if type(read) == 'table' and read[1] then
      for _, e in ipairs(read[1][2]) do
        e[1] = tag .. e[1]
        out[#out + 1] = e
      end
    end
  end
end
return out
"#;

/// ARGV: prefix, group, then (entry, function) per delivered task of a rate-limited function, in
/// delivery order. Token bucket per function in `PREFIX:bucket:FN` ({tokens, at}: broker ms),
/// refilled at `RATE` per second up to `BURST` (from `PREFIX:limits`). Each task takes a token: if
/// one was there it runs now; if not, it reserves the next one (tokens go below zero) and leaves
/// the queue for the schedule, due when that token accrues, with `paid` set so that run does not
/// pay again. An entry already `paid`, gone, or whose function has no (valid) limit any more
/// runs now. Returns the entries that run now.
const THROTTLE: &str = r#"
local prefix, group = ARGV[1], ARGV[2]
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local run, deferred = {}, 0
for i = 3, #ARGV - 1, 2 do
  local stream, entry = lane_of(ARGV[i])
  local fn = ARGV[i + 1]
  local found = redis.call('XRANGE', stream, entry, entry)
  local spec = redis.pcall('HGET', prefix .. ':limits', fn)
  local rate, burst = nil, nil
  if type(spec) == 'string' then
    local r, b = string.match(spec, '^(%S+) (%S+)$')
    rate, burst = tonumber(r), tonumber(b)
  end
  local fields = found[1] and found[1][2] or {}
  local paid = false
  for j = 1, #fields - 1, 2 do
    if fields[j] == 'paid' then paid = true end
  end
  -- A schedule key another program replaced cannot take a throttled task: it runs now rather
  -- than fail the fetch (which would stop the worker).
  local schedule_type = redis.call('TYPE', prefix .. ':scheduled')['ok']
  local schedulable = schedule_type == 'zset' or schedule_type == 'none'
  if not found[1] or paid or not rate or rate <= 0 or not burst or burst < 1
      or not schedulable then
    run[#run + 1] = ARGV[i]
  else
    local bucket = prefix .. ':bucket:' .. fn
    local state = redis.pcall('HMGET', bucket, 'tokens', 'at')
    local tokens, at = burst, now_ms
    if type(state) == 'table' and not state.err then
      tokens = tonumber(state[1]) or burst
      at = tonumber(state[2]) or now_ms
    end
    tokens = math.min(burst, tokens + math.max(0, now_ms - at) * rate / 1000) - 1
    if tokens >= 0 then
      run[#run + 1] = ARGV[i]
    else
      local due = now_ms + math.ceil(-tokens * 1000 / rate)
      local id = ''
      local copy = {}
      for j = 1, #fields - 1, 2 do
        if fields[j] == 'id' then id = fields[j + 1] end
        copy[#copy + 1] = fields[j]
        copy[#copy + 1] = fields[j + 1]
      end
      copy[#copy + 1] = 'paid'
      copy[#copy + 1] = '1'
      local task = prefix .. ':scheduled:' .. id
      redis.call('DEL', task)
      redis.call('HSET', task, unpack(copy))
      redis.call('ZADD', prefix .. ':scheduled', due, id)
      redis.call('XACK', stream, group, entry)
      redis.call('XDEL', stream, entry)
      deferred = deferred + 1
    end
    -- Gone once it would be full again: a missing bucket is a full one.
    redis.pcall('HSET', bucket, 'tokens', tostring(tokens), 'at', now_ms)
    redis.pcall('PEXPIRE', bucket, math.ceil((burst - tokens) * 1000 / rate) + 1000)
  end
end
if deferred > 0 then redis.pcall('HINCRBY', prefix .. ':stats', 'throttled', deferred) end
return run
"#;

/// ARGV: prefix, then task ids. Records an abort of each task not finished yet: its id joins
/// the sorted set `PREFIX:aborted`, scored by when the record expires (broker time +
/// `result_ttl`), so a task that waits in the queue for hours is still cancelled when a worker
/// gets it, and nothing stays forever (expired members are pruned here, the key expires with
/// its last member, and publishing a task's outcome removes its record). A task waiting on the
/// schedule (a delay, a retry's backoff, a rate limit) never reaches a worker again: it is
/// taken off and published cancelled (`C`) at once. Returns per task: 0 if it already had an
/// outcome (it stands), 1 otherwise. An abort set of another type (written by another program)
/// fails the call before anything is written.
const ABORT: &str = r#"
local prefix = ARGV[1]
local ttl = result_ttl(prefix)
local aborted = prefix .. ':aborted'
local kind = redis.call('TYPE', aborted)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE the abort set ' .. aborted .. ' holds a ' .. kind ..
    ', not a sorted set (written by another program): delete it so aborts can be recorded')
end
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', aborted, '-inf', now_ms)
local answers, replies, recorded = {}, {}, 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('EXISTS', prefix .. ':result:' .. id) == 1 then
    answers[#answers + 1] = 0
  else
    -- pcall: a schedule key of another type holds no task of ours.
    local scheduled = redis.pcall('ZREM', prefix .. ':scheduled', id)
    if scheduled == 1 then
      redis.call('DEL', prefix .. ':scheduled:' .. id)
      publish(prefix, id, 'C', ttl, replies)
    else
      redis.call('ZADD', aborted, now_ms + ttl, id)
      recorded = recorded + 1
    end
    answers[#answers + 1] = 1
  end
end
if recorded > 0 then redis.call('PEXPIRE', aborted, ttl) end
send_replies(prefix, replies, ttl)
return answers
"#;

/// ARGV: prefix, then task ids. Returns those with an unexpired abort record. Never fails on the
/// data: an abort set of another type reads as empty (a worker must not stop over it).
const ABORTED: &str = r#"
local prefix = ARGV[1]
if #ARGV < 2 then return {} end
local scores = redis.pcall('ZMSCORE', prefix .. ':aborted', unpack(ARGV, 2))
if type(scores) ~= 'table' or scores.err then return {} end
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local out = {}
for i, score in ipairs(scores) do
  if score and tonumber(score) > now_ms then out[#out + 1] = ARGV[i + 1] end
end
return out
"#;

/// Leases of silence after which a worker that holds nothing is dropped from the pool's list.
pub(super) const FORGET_AFTER_LEASES: u32 = 10;

/// A script's source and the SHA1 the broker knows it by after `SCRIPT LOAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Script {
    Submit,
    Complete,
    Heartbeat,
    Reap,
    Release,
    Retire,
    DeadLetter,
    Promote,
    Fetch,
    Throttle,
    Abort,
    Aborted,
    Progress,
}

impl Script {
    pub(super) const ALL: [Script; 13] = [
        Script::Submit,
        Script::Complete,
        Script::Heartbeat,
        Script::Reap,
        Script::Release,
        Script::Retire,
        Script::DeadLetter,
        Script::Promote,
        Script::Fetch,
        Script::Throttle,
        Script::Abort,
        Script::Aborted,
        Script::Progress,
    ];

    pub(super) fn source(self) -> String {
        let body = match self {
            Script::Submit => SUBMIT,
            Script::Complete => COMPLETE,
            Script::Heartbeat => HEARTBEAT,
            Script::Reap => REAP,
            Script::Release => RELEASE,
            Script::Retire => RETIRE,
            Script::DeadLetter => DEAD_LETTER,
            Script::Promote => PROMOTE,
            Script::Fetch => FETCH,
            Script::Throttle => THROTTLE,
            Script::Abort => ABORT,
            Script::Aborted => ABORTED,
            Script::Progress => PROGRESS,
        };
        format!("{PUBLISH}{body}").replace("FORGET_AFTER_LEASES", &FORGET_AFTER_LEASES.to_string())
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}
