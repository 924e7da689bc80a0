--- Backup: Kafka partitions into segments in a kalua.storage store.
--
--   local backup = require "kalua.backup"
--   local summary, err = backup.run(cfg)   -- cfg as kalua.config.load gives it
--
-- Snapshot mode: each partition is read from where the last published
-- segment ended (checkpoint.json) up to the high watermark taken at start.
-- Records stay in C: consumer batches go straight into the segment writer.
-- Layout under <backup_id>/:
--   topics/<topic>/<partition>/<first offset, 20 digits>.kseg
--   checkpoint.json   next offset and segments per partition, rewritten
--                     atomically after every published segment
--   manifest.json     topics, partition counts, configs, segments, gaps
--   groups/<time>.json  committed offsets of every consumer group (kalua.offsets shape)
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local clock = require "kalua.clock"
local json = require "kalua.json"
local offsets = require "kalua.offsets"

local M = {}

local DEFAULTS = {
  compression = "zstd",
  compression_level = 3,
  segment_max_records = 1000000,
  segment_max_bytes = 256 * 1024 * 1024,
  segment_max_interval_ms = 60000, -- continuous mode: a round at least this often
  max_concurrent_partitions = 4,
  batch_size = 10000,
  poll_timeout_ms = 50,            -- how long one partition may wait when all are idle
  idle_timeout_ms = 30000,         -- no records this long before the snapshot's end: stuck
  checkpoint_interval_secs = 300,  -- continuous mode: consumer-group snapshots
}

--- True when name matches the shell-style glob (* and ?).
function M.glob_match(glob, name)
  local pattern = "^" .. glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return name:match(pattern) ~= nil
end

local function any_match(globs, name)
  for _, g in ipairs(globs or {}) do
    if M.glob_match(g, name) then return true end
  end
  return false
end

--- The topics a backup takes: matching include (default all) and not
-- exclude. Internal topics (__consumer_offsets, ...) only when an include
-- other than "*" names them.
function M.select_topics(topics, filter)
  filter = filter or {}
  local include = filter.include or { "*" }
  local named = {}
  for _, g in ipairs(include) do
    if g ~= "*" then named[#named + 1] = g end
  end
  local chosen = {}
  for _, t in ipairs(topics) do
    local wanted = any_match(t.internal and named or include, t.name) and not any_match(filter.exclude, t.name)
    if wanted and not t.error then chosen[#chosen + 1] = t end
  end
  table.sort(chosen, function(a, b) return a.name < b.name end)
  return chosen
end

local function read_json(store, key)
  local data, err, name = store:get(key)
  if not data then
    if name == "NOT_FOUND" then return nil end
    return nil, err
  end
  local v, derr = json.decode(data)
  if v == nil then return nil, key .. ": " .. derr end
  return v
end

local function write_json(store, key, value)
  return store:put(key, json.encode(value, { indent = "  " }) .. "\n")
end

local function segment_key(id, topic, partition, first_offset)
  return ("%s/topics/%s/%d/%020d.kseg"):format(id, topic, partition, first_offset)
end

local function partition_key(topic, partition)
  return topic .. "/" .. partition
end

-- Reads one partition from `from` up to (not including) `stop`, publishing
-- segments as they fill and the checkpoint after each one. Runs as a
-- coroutine: it yields after every poll (true when it got records) so
-- partitions take turns; their consumers fetch in the background meanwhile.
local function backup_partition(ctx, topic, partition, from, stop)
  local state = ctx.checkpoint.partitions[partition_key(topic, partition)]
  local consumer <close> = assert(kafka.consumer(ctx.client))
  local _ <close> = ctx.hook("client", consumer) -- closed first: the consumer is still open
  local ok, err = consumer:assign { { topic = topic, partition = partition, offset = from } }
  if not ok then return nil, err end
  local opts, writer, written = ctx.opts, nil, nil
  local function publish()
    local stats, perr = writer:finish()
    writer = nil
    if not stats then return nil, perr end
    stats.key = written
    ctx.hook("segment", topic, partition, stats, stop)
    local segments = state.segments
    segments[#segments + 1] = stats
    state.next_offset = stats.last_offset + 1
    ctx.summary.segments = ctx.summary.segments + 1
    ctx.summary.records = ctx.summary.records + stats.records
    ctx.summary.bytes = ctx.summary.bytes + stats.bytes
    ctx.report()
    return write_json(ctx.store, ctx.id .. "/checkpoint.json", ctx.checkpoint)
  end
  local idle_since = clock.now()
  while consumer:position { { topic, partition } }[1].offset < stop do
    if ctx.stopping() then break end -- a stop request: publish what the segment has
    local records = writer and writer:size() or 0
    -- Never take more than the open segment has room for.
    -- Closed at the end of each turn: librdkafka's messages are big and
    -- invisible to Lua's collector, which would let them pile up.
    local batch <close>, perr = consumer:poll_batch(math.min(opts.batch_size, opts.segment_max_records - records),
      ctx.poll_ms)
    if not batch then return nil, perr end
    if #batch == 0 then
      if clock.now() - idle_since > opts.idle_timeout_ms / 1000 then
        return nil, ("%s [%d]: no records for %d ms before offset %d"):format(topic, partition, opts.idle_timeout_ms, stop)
      end
      coroutine.yield(false)
    else
      idle_since = clock.now()
      if batch:first_offset() >= stop then break end
      if not writer then
        written = segment_key(ctx.id, topic, partition, batch:first_offset())
        local sink, serr = ctx.store:open_writer(written)
        if not sink then return nil, serr end
        writer = assert(segment.writer(sink, { codec = opts.compression, level = opts.compression_level }))
      end
      local added, aerr = writer:add_batch(batch, stop)
      if not added then return nil, aerr end
      local count, bytes = writer:size()
      if count >= opts.segment_max_records or bytes >= opts.segment_max_bytes then
        ok, err = publish()
        if not ok then return nil, err end
      end
      if batch:last_offset() >= stop - 1 then break end
      coroutine.yield(true)
    end
  end
  if writer then
    ok, err = publish()
    if not ok then return nil, err end
  end
  return true
end

-- Runs jobs ({topic, partition, from, stop}) as coroutines, at most
-- max_concurrent_partitions at a time. Stops at the first failure.
local function run_jobs(ctx, jobs)
  local running, next_job = {}, 1
  local function fail(err)
    for _, r in ipairs(running) do coroutine.close(r.co) end
    return nil, err
  end
  while true do
    while #running < ctx.opts.max_concurrent_partitions and next_job <= #jobs and not ctx.stopping() do
      local job = jobs[next_job]
      next_job = next_job + 1
      local co = coroutine.create(backup_partition)
      running[#running + 1] = { co = co, args = { ctx, job.topic, job.partition, job.from, job.stop } }
    end
    if #running == 0 then return true end
    local busy = false
    for i = #running, 1, -1 do
      local r = running[i]
      local ok, res, err = coroutine.resume(r.co, table.unpack(r.args))
      if not ok then return fail(debug.traceback(r.co, res)) end
      if coroutine.status(r.co) == "dead" then
        if not res then return fail(err) end
        table.remove(running, i)
        ctx.summary.partitions_done = ctx.summary.partitions_done + 1
        ctx.report()
      elseif res then
        busy = true
      end
    end
    -- Wait in poll only when nobody had records: otherwise keep them moving.
    ctx.poll_ms = (busy or #running == 0) and 0 or math.max(1, ctx.opts.poll_timeout_ms // #running)
  end
end

-- Consumer groups' committed offsets, in kalua.offsets' snapshot shape, so
-- `kalua offsets rollback --backup-id` and the three-phase restore read it.
-- A cluster that refuses to list groups (ACLs) gets no snapshot, not a
-- failed backup.
local function snapshot_groups(ctx)
  if ctx.opts.consumer_group_snapshot == false then return true end
  local snap = offsets.capture(ctx.admin)
  if not snap then return true end
  return write_json(ctx.store, ("%s/groups/%d.json"):format(ctx.id, snap.taken), snap)
end

local function topic_configs(admin, name)
  local described = admin:describe_configs { { type = "topic", name = name } }
  local out = {}
  for k, v in pairs(described and described[name] or {}) do
    if not v.is_default and not v.is_sensitive then out[k] = v.value end
  end
  return out
end

local function options(cfg)
  local opts = {}
  for k, v in pairs(DEFAULTS) do opts[k] = v end
  for k, v in pairs(cfg.backup or {}) do opts[k] = v end
  if opts.compression ~= "zstd" then opts.compression = "none" end
  if opts.max_concurrent_partitions < 1 then opts.max_concurrent_partitions = 1 end
  return opts
end

-- Plans one round: the jobs that take each selected partition from where
-- the checkpoint left it to the high watermark now, and the manifest's
-- topic entries. Records retention deleted before we read them as gaps.
local function plan_round(ctx, cfg)
  -- Watermarks only for the selected topics: a cluster may hold thousands.
  local topics, err = ctx.admin:list_topics()
  if not topics then return nil, err end
  local jobs, entries = {}, {}
  local checkpoint = ctx.checkpoint
  for _, t in ipairs(M.select_topics(topics, cfg.topics)) do
    local entry = { partitions = {}, partition_count = #t.partitions, configs = topic_configs(ctx.admin, t.name) }
    entries[t.name] = entry
    for _, p in ipairs(t.partitions) do
      local werr
      p.low, p.high = ctx.admin:watermarks(t.name, p.id)
      if not p.low then
        werr = p.high
        return nil, ("%s [%d]: %s"):format(t.name, p.id, tostring(werr))
      end
      local key = partition_key(t.name, p.id)
      local state = checkpoint.partitions[key] or { segments = json.array(), gaps = json.array() }
      checkpoint.partitions[key] = state
      local from = state.next_offset or p.low
      if from < p.low then
        state.gaps[#state.gaps + 1] = { from = from, to = p.low }
        ctx.summary.gaps = ctx.summary.gaps + 1
        from = p.low
      end
      state.next_offset = from
      ctx.hook("partition", t.name, p.id, from, p.high)
      if from < p.high then jobs[#jobs + 1] = { topic = t.name, partition = p.id, from = from, stop = p.high } end
      entry.partitions[tostring(p.id)] = { low = p.low, high = p.high, segments = state.segments, gaps = state.gaps }
    end
  end
  return jobs, entries
end

local function count_partitions(entries)
  local topics, partitions = 0, 0
  for _, e in pairs(entries) do
    topics = topics + 1
    for _ in pairs(e.partitions) do partitions = partitions + 1 end
  end
  return topics, partitions
end

-- One pass: every partition up to the watermarks taken at its start, then
-- the checkpoint and manifest. A partition's `high` in the manifest is
-- where its backup ends (the next offset the next round starts from).
local function round(ctx, cfg)
  local jobs, entries = plan_round(ctx, cfg)
  if not jobs then return nil, entries end
  ctx.summary.topics, ctx.summary.partitions = count_partitions(entries)
  ctx.summary.partitions_done = ctx.summary.partitions - #jobs
  ctx.report()
  local ok, err = run_jobs(ctx, jobs)
  if not ok then return nil, err end
  for _, job in ipairs(jobs) do
    local state = ctx.checkpoint.partitions[partition_key(job.topic, job.partition)]
    if ctx.stopped then -- stopped early: the backup ends where its segments do
      entries[job.topic].partitions[tostring(job.partition)].high = state.next_offset
    else
      state.next_offset = math.max(state.next_offset, job.stop)
    end
    ctx.hook("partition", job.topic, job.partition, state.next_offset, job.stop)
  end
  ok, err = write_json(ctx.store, ctx.id .. "/checkpoint.json", ctx.checkpoint)
  if not ok then return nil, err end
  if ctx.stopped and not ctx.opts.continuous then return true end -- an unfinished snapshot has no manifest
  ctx.manifest.topics = entries
  ctx.manifest.finished = os.time()
  return write_json(ctx.store, ctx.id .. "/manifest.json", ctx.manifest)
end

local function open_run(cfg, hooks)
  local opts = options(cfg)
  local store, err = storage.open(cfg.storage)
  if not store then return nil, err end
  local admin
  admin, err = kafka.admin(cfg.source)
  if not admin then return nil, err end
  -- No checkpoint means a new backup; any other failure (wrong key, no such
  -- bucket) must stop us here, not at the first segment.
  local checkpoint, cerr = read_json(store, cfg.backup_id .. "/checkpoint.json")
  if cerr then return nil, cerr end
  checkpoint = checkpoint or { partitions = {} }
  local ctx = {
    id = cfg.backup_id, store = store, admin = admin, opts = opts, checkpoint = checkpoint, poll_ms = 0,
    client = { bootstrap_servers = cfg.source.bootstrap_servers, security = cfg.source.security,
      properties = cfg.source.properties },
    summary = { topics = 0, partitions = 0, partitions_done = 0, segments = 0, records = 0, bytes = 0, gaps = 0,
      rounds = 0 },
    manifest = { backup_id = cfg.backup_id, format = 1, started = os.time(), topics = {},
      mode = opts.continuous and "continuous" or "snapshot", cluster_id = admin:cluster_id() },
  }
  local progress = hooks and hooks.progress
  ctx.report = function() if progress then progress(ctx.summary) end end
  local stop = hooks and hooks.stop
  ctx.stopping = function() -- once true, stays true; ctx.stopped names the reason
    if stop and not ctx.stopped then ctx.stopped = stop() end
    return ctx.stopped
  end
  ctx.hook = function(name, ...)
    local fn = hooks and hooks[name]
    if fn then return fn(...) end
  end
  ctx.run = { backup_id = cfg.backup_id, store = store, admin = admin }
  ctx.hook("open", ctx.run)
  return ctx
end

local function close_run(ctx)
  ctx.hook("close", ctx.run)
  ctx.admin:close()
  ctx.store:close()
end

--- Runs a backup. Snapshot mode (the default) stops at the high watermarks
-- taken at start; backup.continuous keeps going, one round at least every
-- segment_max_interval_ms, until the process is stopped (any kill is safe:
-- the next run resumes from the checkpoint). hooks.progress(summary) is
-- called as partitions and segments complete; hooks.rounds caps the rounds
-- of a continuous run (for scripts and tests). hooks.stop() -> a reason
-- (e.g. "SIGTERM") or nil is asked between polls: once it gives one, open
-- segments are published, the checkpoint (and, in continuous mode, the
-- manifest) written, and the summary returned with stopped = the reason.
-- For metrics (kalua.telemetry's backup_hooks): hooks.open(run) and
-- hooks.close(run) with run = {backup_id=, store=, admin=};
-- hooks.partition(topic, partition, next_offset, high) when a round plans
-- or finishes a partition; hooks.segment(topic, partition, stats, high)
-- for each published segment; hooks.round(summary) after each completed
-- round; hooks.client(consumer) may return a value to close just before
-- the consumer is.
-- Returns a summary table or nil, message.
function M.run(cfg, hooks)
  local ctx, err = open_run(cfg, hooks)
  if not ctx then return nil, err end
  local last_groups = -math.huge
  local max_rounds = hooks and hooks.rounds or math.huge
  while true do
    local started = clock.now()
    local ok, rerr = round(ctx, cfg)
    if not ok then
      close_run(ctx)
      return nil, rerr
    end
    ctx.summary.rounds = ctx.summary.rounds + 1
    if ctx.stopping() then break end
    ctx.hook("round", ctx.summary)
    if os.time() - last_groups >= ctx.opts.checkpoint_interval_secs or not ctx.opts.continuous then
      snapshot_groups(ctx)
      last_groups = os.time()
    end
    if not ctx.opts.continuous or ctx.summary.rounds >= max_rounds then break end
    local rest = ctx.opts.segment_max_interval_ms / 1000 - (clock.now() - started)
    while rest > 0 and not ctx.stopping() do
      clock.sleep(math.min(rest, 0.2))
      rest = rest - 0.2
    end
    if ctx.stopping() then break end -- asked again: a round may outlast the interval
  end
  close_run(ctx)
  ctx.summary.stopped = ctx.stopped
  return ctx.summary
end

return M
