--- Restore: segments from a backup back into Kafka.
--
--   local restore = require "kalua.restore"
--   local plan = assert(restore.plan(cfg))      -- what would happen (dry run)
--   local summary = assert(restore.run(cfg))
--
-- Topics map through restore.topic_mapping; partitions keep their numbers
-- unless restore.partition_mapping says otherwise. A window by offset
-- (start_offset/end_offset) or time (start_time/end_time, or OSO's
-- time_window_start/end: epoch ms or "YYYY-MM-DDTHH:MM:SSZ") restores just
-- the records inside it. Original timestamps are kept; with
-- include_original_offset_header each record also carries
-- kalua.original.offset, kalua.original.timestamp and kalua.original.cluster
-- (the source cluster's id). Missing target topics are
-- created with the saved partition count and configs. Records go from the
-- segments into an idempotent producer in C.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local clock = require "kalua.clock"
local json = require "kalua.json"
local manifests = require "kalua.manifest"
local backup = require "kalua.backup"
local time = require "kalua.time"
local codec = require "kalua.codec"
local offsets = require "kalua.offsets"

local M = {}

--- Epoch milliseconds from a number (ms) or "YYYY-MM-DDTHH:MM:SS[.mmm]Z".
M.parse_time = time.parse

local function window(r)
  local w = { from_offset = r.start_offset, to_offset = r.end_offset }
  local err
  w.start_time, err = M.parse_time(r.start_time or r.time_window_start)
  if err then return nil, err end
  w.end_time, err = M.parse_time(r.end_time or r.time_window_end)
  if err then return nil, err end
  return w
end

local function overlaps(seg, w)
  return not ((w.from_offset and seg.last_offset < w.from_offset) or (w.to_offset and seg.first_offset > w.to_offset)
    or (w.start_time and seg.max_timestamp and seg.max_timestamp < w.start_time))
end

--- What a restore would do: { window=, topics = { {source=, target=, partition_count=,
-- configs=, partitions = { {source=, target=, segments={...}, records=} } } } }
function M.plan(cfg)
  local r = cfg.restore or {}
  local store, err = storage.open(cfg.storage)
  if not store then return nil, err end
  local manifest
  manifest, err = manifests.load(store, cfg.backup_id)
  if not manifest then return nil, ("backup '%s': %s"):format(cfg.backup_id, err) end
  local w
  w, err = window(r)
  if not w then return nil, err end
  local filter = r.topics or cfg.topics
  local listed = {}
  for name in pairs(manifest.topics) do listed[#listed + 1] = { name = name, partitions = {} } end
  local plan = { window = w, topics = {}, store = store, cluster_id = manifest.cluster_id }
  local mapping = r.topic_mapping or {}
  for name in pairs(mapping) do
    if not manifest.topics[name] then return nil, ("topic_mapping names '%s', which is not in backup '%s'"):format(name, cfg.backup_id) end
  end
  for _, t in ipairs(backup.select_topics(listed, filter)) do
    local saved = manifest.topics[t.name]
    local entry = { source = t.name, target = mapping[t.name] or t.name, partition_count = saved.partition_count,
      configs = saved.configs, partitions = {} }
    local ids = {}
    for id in pairs(saved.partitions) do ids[#ids + 1] = tonumber(id) end
    table.sort(ids)
    for _, id in ipairs(ids) do
      local p = saved.partitions[tostring(id)]
      local target = id
      if type(r.partition_mapping) == "table" then
        target = r.partition_mapping[tostring(id)] or r.partition_mapping[id] or id
      end
      local part = { source = id, target = target, segments = {}, records = 0 }
      for _, seg in ipairs(p.segments) do
        if overlaps(seg, w) then
          part.segments[#part.segments + 1] = seg
          part.records = part.records + seg.records
        end
      end
      entry.partitions[#entry.partitions + 1] = part
    end
    plan.topics[#plan.topics + 1] = entry
  end
  return plan
end

local function ensure_topic(admin, entry, create)
  local md = admin:metadata { topic = entry.target }
  if md and md[1] and not md[1].error then return "exists" end
  if create == false then
    return nil, ("target topic '%s' does not exist and create_topics is false"):format(entry.target), "config"
  end
  local ok, err, name = admin:create_topics { { name = entry.target, partitions = entry.partition_count,
    replication_factor = -1, config = entry.configs } }
  if not ok then return nil, err, name end
  return "created"
end

-- --- the restore checkpoint -------------------------------------------------
-- <backup_id>/restores/<restore_id>.json, rewritten atomically after every
-- segment once the producer has flushed it:
--   targets  = { ["topic/partition"] = { base=, next= } }  target offsets:
--              where this restore started and where its next record lands
--   done     = { [segment key .. " -> " .. target] = true }
--   mapping  = { ["source topic/partition"] = { target_topic=, target_partition=,
--              runs = { {source_first, count, target_first}, ... } } }
-- A kill between a flush and the checkpoint leaves records in the target
-- that the checkpoint does not know: the target's high watermark is then
-- past `next`, and exactly that many records of the next segment are
-- skipped on resume (the idempotent producer keeps a partition's records in
-- order, so what landed is a prefix). This assumes nothing else writes to
-- the target partitions while a restore runs.

-- YAML gives `0: 1` integer keys; JSON (and so the id's seed) wants strings.
local function string_keys(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[tostring(k)] = v end
  return out
end

--- The id of a restore: restore.restore_id, or one derived from the
-- target cluster, the mapping and the window, so rerunning the same config
-- resumes and a different restore starts afresh.
function M.restore_id(cfg)
  local r = cfg.restore or {}
  if r.restore_id then return r.restore_id end
  local seed = json.encode { servers = cfg.target and cfg.target.bootstrap_servers, topics = r.topic_mapping,
    partitions = string_keys(r.partition_mapping), filter = r.topics or cfg.topics, from = r.start_offset, to = r.end_offset,
    start = r.start_time or r.time_window_start, stop = r.end_time or r.time_window_end }
  return ("r%08x"):format(codec.crc32c(seed))
end

local function checkpoint_key(cfg)
  return ("%s/restores/%s.json"):format(cfg.backup_id, M.restore_id(cfg))
end

local function read_checkpoint(store, key)
  local data, err, name = store:get(key)
  if not data then
    if name == "NOT_FOUND" then return { targets = {}, done = {}, mapping = {} } end
    return nil, err
  end
  local ckpt, derr = json.decode(data)
  if type(ckpt) ~= "table" then return nil, ("%s: %s"):format(key, derr or "not a restore checkpoint") end
  return ckpt
end

--- The offset mapping a restore recorded (see the checkpoint above), or nil, message.
function M.offset_mapping(cfg)
  local store, err = storage.open(cfg.storage)
  if not store then return nil, err end
  local key = checkpoint_key(cfg)
  if not store:stat(key) then return nil, ("no restore '%s' of backup '%s' has run yet"):format(M.restore_id(cfg), cfg.backup_id) end
  local ckpt
  ckpt, err = read_checkpoint(store, key)
  store:close()
  if not ckpt then return nil, err end
  return ckpt.mapping, ckpt
end

-- Where the target partition stands: its record for this restore, and how
-- many records past it an interrupted run left there.
local function target_state(ctx, topic, partition)
  local tkey = topic .. "/" .. partition
  local t = ctx.ckpt.targets[tkey]
  local low, high
  -- A topic created a moment ago has no leader yet, and librdkafka's
  -- metadata cache may not know its partitions: ask again (fresh metadata)
  -- for up to 30 s by the clock (poll returns early when it serves events).
  local deadline = clock.now() + 30
  repeat
    low, high = ctx.admin:watermarks(topic, partition)
    if low then break end
    ctx.admin:metadata { topic = topic, timeout_ms = 2000 }
    ctx.producer:poll(250)
  until clock.now() >= deadline
  if not low then return nil, ("%s [%d]: cannot read the end offset: %s"):format(topic, partition, high) end
  if not t then
    -- Recorded (by restore_wave) before the first record is sent: were it
    -- learnt only after a flush, a kill in between would make what this
    -- restore delivered look like someone else's records, and a rerun
    -- would write them again.
    t = { base = high, next = high }
    ctx.ckpt.targets[tkey] = t
    ctx.new_targets = true
    return t, 0
  end
  if high < t.next then
    return nil, ("%s [%d] ends at %d but this restore already wrote up to %d: was the topic recreated? "
      .. "delete %s to start over"):format(topic, partition, high, t.next, ctx.ckpt_key)
  end
  return t, high - t.next
end

local function record_runs(ctx, entry, part, t, runs)
  local skey = entry.source .. "/" .. part.source
  local m = ctx.ckpt.mapping[skey]
  if not m then
    m = { target_topic = entry.target, target_partition = part.target, runs = json.array() }
    ctx.ckpt.mapping[skey] = m
  end
  local at = t.next
  for _, run in ipairs(runs) do
    local last = m.runs[#m.runs]
    if last and last[1] + last[2] == run[1] and last[3] + last[2] == at then
      last[2] = last[2] + run[2]
    else
      m.runs[#m.runs + 1] = { run[1], run[2], at }
    end
    at = at + run[2]
  end
  return at
end

-- Sends one segment into its target partition (not yet flushed).
local function send_segment(ctx, item)
  local entry, part, seg, t, extra = item.entry, item.part, item.seg, item.target, item.extra
  local reader, err = segment.open(ctx.store, seg.key)
  if not reader then return nil, err, "storage" end
  local w = ctx.plan.window
  local sent, runs, skip_left = reader:produce(ctx.producer, {
    topic = entry.target, partition = part.target,
    from_offset = w.from_offset, to_offset = w.to_offset, start_time = w.start_time, end_time = w.end_time,
    original_headers = ctx.r.include_original_offset_header, cluster = ctx.plan.cluster_id,
    skip = extra, offset_runs = true,
    rate = ctx.r.rate_limit_records_per_sec, rate_epoch = ctx.clock, rate_base = ctx.produced,
  })
  reader:close()
  if not sent then return nil, runs, skip_left end -- produce's error name
  if skip_left > 0 then
    return nil, ("%s [%d] holds %d more records than this restore sent: was it written to meanwhile?"):format(
      entry.target, part.target, skip_left), "kafka"
  end
  ctx.produced = ctx.produced + sent
  item.sent, item.runs = sent, runs
  return true
end

-- One wave: the next segment of every target partition is sent, so all
-- partitions are in flight at once; one flush, then the checkpoint learns
-- them all. A kill inside a wave leaves each partition a delivered prefix,
-- which the next run skips (target_state).
local function save_checkpoint(ctx)
  return ctx.store:put(ctx.ckpt_key, json.encode(ctx.ckpt, { indent = " " }) .. "\n")
end

local function restore_wave(ctx, wave)
  local sent = {}
  for _, item in ipairs(wave) do
    if not ctx.ckpt.done[item.done_key] then
      item.target, item.extra = target_state(ctx, item.entry.target, item.part.target)
      if not item.target then return nil, item.extra, "kafka" end
      sent[#sent + 1] = item
    end
  end
  if #sent == 0 then return true end
  local ok, err
  if ctx.new_targets then -- where new target partitions start, before anything lands there
    ok, err = save_checkpoint(ctx)
    if not ok then return nil, err, "storage" end
    ctx.new_targets = false
  end
  for _, item in ipairs(sent) do
    local kind
    ok, err, kind = send_segment(ctx, item)
    if not ok then return nil, err, kind end
  end
  local name
  ok, err, name = ctx.producer:flush(ctx.flush_ms)
  if not ok then return nil, err, name end
  for _, item in ipairs(sent) do
    item.target.next = record_runs(ctx, item.entry, item.part, item.target, item.runs)
    ctx.ckpt.done[item.done_key] = true
    ctx.summary.records = ctx.summary.records + item.sent
    ctx.summary.resumed = ctx.summary.resumed + item.extra
  end
  ok, err = save_checkpoint(ctx)
  if not ok then return nil, err, "storage" end
  if ctx.hooks.segment then
    for _, item in ipairs(sent) do
      ctx.hooks.segment(item.entry.target, item.part.target, item.sent, item.seg.bytes)
    end
  end
  if ctx.hooks.wave then ctx.hooks.wave() end
  return true
end

-- The segments to send, one lane per target partition, each in order.
local function lanes_of(ctx, plan)
  local lanes, by_target = {}, {}
  for _, entry in ipairs(plan.topics) do
    for _, part in ipairs(entry.partitions) do
      ctx.summary.partitions = ctx.summary.partitions + 1
      local target = entry.target .. "/" .. part.target
      local lane = by_target[target]
      if not lane then
        lane = { next = 1 }
        by_target[target] = lane
        lanes[#lanes + 1] = lane
      end
      for _, seg in ipairs(part.segments) do
        lane[#lane + 1] = { entry = entry, part = part, seg = seg, done_key = seg.key .. " -> " .. target }
      end
    end
  end
  return lanes
end

local function send_lanes(ctx, lanes)
  while true do
    local wave = {}
    for _, lane in ipairs(lanes) do
      if lane[lane.next] then
        wave[#wave + 1] = lane[lane.next]
        lane.next = lane.next + 1
      end
    end
    if #wave == 0 then return true end
    local ok, err, kind = restore_wave(ctx, wave)
    if not ok then return nil, err, kind end
  end
end

-- Phase two and three: each group's committed offsets from the backup's
-- snapshot, through the mapping, onto the target cluster.
local function restore_groups(ctx, cfg)
  local snap, err = offsets.load(ctx.store, nil, cfg.backup_id)
  if not snap then return nil, err, "storage" end
  local plan, skipped = offsets.translate(snap, ctx.ckpt.mapping, ctx.r.consumer_groups)
  local ok, name
  ok, err, name = offsets.apply(ctx.admin, plan)
  if not ok then return nil, err, name or "kafka" end
  ctx.summary.groups = #plan
  ctx.summary.groups_skipped = skipped
  return true
end

-- The end of a run, failed (err, and the kind of error: a phase or an
-- error name; see kalua.telemetry.error_kind) or not: its clients and
-- store are closed after hooks.close(run, summary) has read them.
local function finish(ctx, summary, err, kind)
  if ctx.hooks.close then ctx.hooks.close(ctx.run, summary) end
  if ctx.producer then ctx.producer:close() end
  if ctx.admin then ctx.admin:close() end
  if ctx.store then ctx.store:close() end
  if not summary then return nil, err, kind end
  return summary
end

--- Restores what plan(cfg) describes, resuming an interrupted run of the
-- same restore. With restore.reset_consumer_offsets (or consumer_groups)
-- the backup's consumer-group offsets are translated through the offset
-- mapping and applied to the target. Returns a summary or nil, message,
-- kind (what failed: "storage", "kafka", "config" or an error's name, for
-- kalua.telemetry.error_kind).
--
-- hooks (all optional, for metrics: kalua.telemetry's restore_hooks):
-- open(run) once the clients are open, with run = {backup_id=, store=,
-- admin=, producer=}; segment(topic, partition, records, bytes) for each
-- segment restored (target topic and partition; bytes as stored), once
-- delivered and checkpointed; wave() after each round of segments;
-- close(run, summary) at the end, summary nil when the run failed.
function M.run(cfg, hooks)
  local r = cfg.restore or {}
  local plan, err = M.plan(cfg)
  if not plan then return nil, err, err:find("^backup '") and "storage" or "config" end
  local ctx = { r = r, plan = plan, store = plan.store, ckpt_key = checkpoint_key(cfg), clock = clock.now(),
    flush_ms = 120000, produced = 0, hooks = hooks or {},
    summary = { topics = 0, created = 0, partitions = 0, records = 0, resumed = 0, groups = 0 } }
  ctx.run = { backup_id = cfg.backup_id, store = ctx.store }
  local name
  ctx.ckpt, err = read_checkpoint(ctx.store, ctx.ckpt_key)
  if not ctx.ckpt then return finish(ctx, nil, err, "storage") end
  ctx.admin, err, name = kafka.admin(cfg.target)
  if not ctx.admin then return finish(ctx, nil, err, name or "kafka") end
  ctx.run.admin = ctx.admin
  -- librdkafka refuses records over 1 MB by default, yet a topic (or a
  -- broker) may allow larger ones, and the backup holds whatever the source
  -- took: let the target broker be the judge of size.
  local properties = { ["message.max.bytes"] = "100000000" }
  for k, v in pairs(cfg.target.properties or {}) do properties[k] = v end
  ctx.producer, err, name = kafka.producer {
    bootstrap_servers = cfg.target.bootstrap_servers, security = cfg.target.security,
    properties = properties, idempotence = true, acks = "all",
  }
  if not ctx.producer then return finish(ctx, nil, err, name or "kafka") end
  ctx.run.producer = ctx.producer
  if ctx.hooks.open then ctx.hooks.open(ctx.run) end
  for _, entry in ipairs(plan.topics) do
    local how, terr, tname = ensure_topic(ctx.admin, entry, r.create_topics)
    if not how then return finish(ctx, nil, terr, tname or "kafka") end
    if how == "created" then ctx.summary.created = ctx.summary.created + 1 end
    ctx.summary.topics = ctx.summary.topics + 1
  end
  local ok, serr, kind = send_lanes(ctx, lanes_of(ctx, plan))
  if not ok then return finish(ctx, nil, serr, kind) end
  if r.reset_consumer_offsets or (r.consumer_groups and #r.consumer_groups > 0) then
    ok, serr, kind = restore_groups(ctx, cfg)
    if not ok then return finish(ctx, nil, serr, kind) end
  end
  ctx.summary.restore_id = M.restore_id(cfg)
  return finish(ctx, ctx.summary)
end

return M
