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
local json = require "kalua.json"
local offsets = require "kalua.offsets"

local M = {}

local DEFAULTS = {
  compression = "zstd",
  compression_level = 3,
  segment_max_records = 1000000,
  segment_max_bytes = 256 * 1024 * 1024,
  batch_size = 10000,
  poll_timeout_ms = 1000,
  idle_polls = 30, -- consecutive empty polls before a partition is declared stuck
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
-- segments as they fill and the checkpoint after each one.
local function backup_partition(ctx, topic, partition, from, stop)
  local state = ctx.checkpoint.partitions[partition_key(topic, partition)]
  local consumer <close> = assert(kafka.consumer(ctx.client))
  local ok, err = consumer:assign { { topic = topic, partition = partition, offset = from } }
  if not ok then return nil, err end
  local writer, written, idle = nil, nil, 0
  local function publish()
    local stats, perr = writer:finish()
    writer = nil
    if not stats then return nil, perr end
    stats.key = written
    local segments = state.segments
    segments[#segments + 1] = stats
    state.next_offset = stats.last_offset + 1
    ctx.summary.segments = ctx.summary.segments + 1
    ctx.summary.records = ctx.summary.records + stats.records
    ctx.summary.bytes = ctx.summary.bytes + stats.bytes
    return write_json(ctx.store, ctx.id .. "/checkpoint.json", ctx.checkpoint)
  end
  while true do
    local position = consumer:position { { topic, partition } }[1].offset
    if position >= stop then break end
    -- Never take more than the open segment has room for.
    local room = ctx.opts.segment_max_records - (ctx.writer_records or 0)
    local batch, perr = consumer:poll_batch(math.min(ctx.opts.batch_size, room), ctx.opts.poll_timeout_ms)
    if not batch then return nil, perr end
    if #batch == 0 then
      idle = idle + 1
      if idle >= ctx.opts.idle_polls then
        return nil, ("%s [%d]: no records for %d polls before offset %d"):format(topic, partition, idle, stop)
      end
    else
      idle = 0
      if batch:first_offset() >= stop then break end
      if not writer then
        written = segment_key(ctx.id, topic, partition, batch:first_offset())
        local sink, serr = ctx.store:open_writer(written)
        if not sink then return nil, serr end
        writer = assert(segment.writer(sink, { codec = ctx.opts.compression, level = ctx.opts.compression_level }))
      end
      local added, aerr = writer:add_batch(batch, stop)
      if not added then return nil, aerr end
      ctx.writer_records = (ctx.writer_records or 0) + added
      if ctx.writer_records >= ctx.opts.segment_max_records then
        ctx.writer_records = 0
        ok, err = publish()
        if not ok then return nil, err end
      end
      if batch:last_offset() >= stop - 1 then break end
    end
  end
  ctx.writer_records = 0
  if writer then
    ok, err = publish()
    if not ok then return nil, err end
  end
  return true
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

--- Runs a snapshot backup. Returns a summary table or nil, message.
function M.run(cfg)
  local opts = {}
  for k, v in pairs(DEFAULTS) do opts[k] = v end
  for k, v in pairs(cfg.backup or {}) do opts[k] = v end
  if opts.compression ~= "zstd" then opts.compression = "none" end
  local store, err = storage.open(cfg.storage)
  if not store then return nil, err end
  local admin
  admin, err = kafka.admin(cfg.source)
  if not admin then return nil, err end
  local topics
  topics, err = admin:list_topics { watermarks = true }
  if not topics then return nil, err end
  local checkpoint = read_json(store, cfg.backup_id .. "/checkpoint.json") or { partitions = {} }
  local ctx = {
    id = cfg.backup_id, store = store, admin = admin, opts = opts, checkpoint = checkpoint,
    client = { bootstrap_servers = cfg.source.bootstrap_servers, security = cfg.source.security,
      properties = cfg.source.properties },
    summary = { topics = 0, partitions = 0, segments = 0, records = 0, bytes = 0, gaps = 0 },
  }
  local manifest = { backup_id = cfg.backup_id, format = 1, started = os.time(), topics = {} }
  for _, t in ipairs(M.select_topics(topics, cfg.topics)) do
    local entry = { partitions = {}, partition_count = #t.partitions, configs = topic_configs(admin, t.name) }
    manifest.topics[t.name] = entry
    ctx.summary.topics = ctx.summary.topics + 1
    for _, p in ipairs(t.partitions) do
      if p.watermark_error then return nil, ("%s [%d]: %s"):format(t.name, p.id, p.watermark_error) end
      local key = partition_key(t.name, p.id)
      local state = checkpoint.partitions[key] or { segments = json.array(), gaps = json.array() }
      checkpoint.partitions[key] = state
      local from = state.next_offset or p.low
      if from < p.low then -- retention removed records we never read
        state.gaps[#state.gaps + 1] = { from = from, to = p.low }
        ctx.summary.gaps = ctx.summary.gaps + 1
        from = p.low
      end
      if from < p.high then
        local ok, perr = backup_partition(ctx, t.name, p.id, from, p.high)
        if not ok then return nil, perr end
      end
      state.next_offset = math.max(state.next_offset or 0, p.high)
      entry.partitions[tostring(p.id)] = { low = p.low, high = p.high, segments = state.segments, gaps = state.gaps }
      ctx.summary.partitions = ctx.summary.partitions + 1
    end
  end
  local ok
  ok, err = write_json(store, cfg.backup_id .. "/checkpoint.json", checkpoint)
  if not ok then return nil, err end
  snapshot_groups(ctx)
  manifest.finished = os.time()
  ok, err = write_json(store, cfg.backup_id .. "/manifest.json", manifest)
  if not ok then return nil, err end
  admin:close()
  store:close()
  return ctx.summary
end

return M
