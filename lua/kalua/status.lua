--- A backup's progress, from what it wrote to storage: its manifest and
-- checkpoint. No broker is asked.
--
--   local status = require "kalua.status"
--   local s = assert(status.read(store, "nightly", { now = os.time() }))
--   io.write(status.format(s))
--
-- The checkpoint is the newest truth (rewritten after every published
-- segment); the manifest adds each partition's target (`high`: the high
-- watermark of the last round's plan), the mode and the times. A run
-- looks active when the checkpoint was written in the last
-- opts.active_within seconds (default 180: continuous rounds rewrite it at
-- least every segment_max_interval_ms, one minute by default).
local json = require "kalua.json"
local manifests = require "kalua.manifest"

local M = {}

local function read_checkpoint(store, id)
  local key = id .. "/checkpoint.json"
  local data, err, name = store:get(key)
  if not data then
    if name == "NOT_FOUND" then return nil end
    return nil, err
  end
  local v, derr = json.decode(data)
  if type(v) ~= "table" or type(v.partitions) ~= "table" then
    return nil, ("%s: corrupt checkpoint (%s)"):format(key, derr or "no partitions")
  end
  local st = store:stat(key)
  return v, nil, st and st.mtime
end

local function split_key(key)
  local topic, p = tostring(key):match("^(.*)/(%d+)$")
  return topic, tonumber(p)
end

local function sum_segments(part, segments)
  for _, s in ipairs(type(segments) == "table" and segments or {}) do
    if type(s) == "table" then
      part.segments = part.segments + 1
      part.records = part.records + (math.tointeger(s.records) or 0)
      part.bytes = part.bytes + (math.tointeger(s.bytes) or 0)
      if s.max_timestamp and (not part.newest or s.max_timestamp > part.newest) then part.newest = s.max_timestamp end
    end
  end
end

--- The progress of backup `id`: { id=, mode=, cluster_id=, started=,
-- finished=, checkpoint_time=, active=, state=, topics = { { name=,
-- partitions = { { partition=, next=, target=, done=, records=, bytes=,
-- segments=, gaps = {{from=, to=}}, newest= } } } }, totals = { topics=,
-- partitions=, done=, records=, bytes=, segments=, gaps= } }, or nil,
-- message, name ("NOT_FOUND" when the storage has neither file).
function M.read(store, id, opts)
  opts = opts or {}
  if type(id) ~= "string" or id == "" or id:find("/", 1, true) then
    return nil, ("bad backup id '%s'"):format(tostring(id)), "NOT_FOUND"
  end
  local manifest, merr, mname = manifests.load(store, id)
  if not manifest and mname ~= "NOT_FOUND" then return nil, merr, mname end
  local checkpoint, cerr, ctime = read_checkpoint(store, id)
  if cerr then return nil, cerr, "CORRUPT" end
  if not manifest and not checkpoint then return nil, ("no backup '%s' in this storage"):format(id), "NOT_FOUND" end

  local now = opts.now or os.time()
  local s = { id = id, mode = manifest and manifest.mode, cluster_id = manifest and manifest.cluster_id,
    started = manifest and manifest.started, finished = manifest and manifest.finished, checkpoint_time = ctime,
    has_manifest = manifest ~= nil, topics = {} }
  s.active = ctime ~= nil and now - ctime <= (opts.active_within or 180)

  local by_topic, parts = {}, {}
  local function topic_of(name)
    by_topic[name] = by_topic[name] or { name = name, partitions = {} }
    return by_topic[name]
  end
  local function part_of(topic, p)
    local key = topic .. "/" .. p
    if not parts[key] then
      parts[key] = { partition = p, records = 0, bytes = 0, segments = 0, gaps = {} }
      table.insert(topic_of(topic).partitions, parts[key])
    end
    return parts[key]
  end
  for name, t in pairs(manifest and manifest.topics or {}) do
    topic_of(name).partition_count = t.partition_count
    for p, entry in pairs(t.partitions) do
      local part = part_of(name, tonumber(p))
      part.target = entry.high
      if not checkpoint then
        sum_segments(part, entry.segments)
        part.gaps = entry.gaps or {}
        part.next = entry.high
      end
    end
  end
  for key, state in pairs(checkpoint and checkpoint.partitions or {}) do
    local topic, p = split_key(key)
    if topic and type(state) == "table" then
      local part = part_of(topic, p)
      part.next = math.tointeger(state.next_offset)
      sum_segments(part, state.segments)
      part.gaps = type(state.gaps) == "table" and state.gaps or {}
    end
  end

  for _, t in pairs(by_topic) do s.topics[#s.topics + 1] = t end
  table.sort(s.topics, function(a, b) return a.name < b.name end)
  local totals = { topics = #s.topics, partitions = 0, done = 0, records = 0, bytes = 0, segments = 0, gaps = 0 }
  for _, t in ipairs(s.topics) do
    table.sort(t.partitions, function(a, b) return a.partition < b.partition end)
    t.records, t.bytes, t.segments, t.done = 0, 0, 0, 0
    for _, part in ipairs(t.partitions) do
      part.done = part.target ~= nil and part.next ~= nil and part.next >= part.target
      t.records, t.bytes, t.segments = t.records + part.records, t.bytes + part.bytes, t.segments + part.segments
      if part.done then t.done = t.done + 1 end
      totals.gaps = totals.gaps + #part.gaps
      if part.newest and (not s.newest or part.newest > s.newest) then s.newest = part.newest end
    end
    totals.partitions = totals.partitions + #t.partitions
    totals.done, totals.records = totals.done + t.done, totals.records + t.records
    totals.bytes, totals.segments = totals.bytes + t.bytes, totals.segments + t.segments
  end
  s.totals = totals
  s.state = M.state(s)
  return s
end

--- One word for where a backup stands: "running", "complete" (a snapshot
-- at its targets), "idle" (a continuous backup no process is running),
-- "incomplete" (stopped or crashed before the end; run it again to resume).
function M.state(s)
  if s.active then return "running" end
  if not s.has_manifest then return "incomplete" end
  if s.mode == "continuous" then return "idle" end
  return s.totals.done == s.totals.partitions and "complete" or "incomplete"
end

local function utc(t) return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or "-" end

local function size(bytes)
  if bytes < 1024 then return ("%d B"):format(bytes) end
  if bytes < 1024 * 1024 then return ("%.1f KiB"):format(bytes / 1024) end
  if bytes < 1024 ^ 3 then return ("%.1f MiB"):format(bytes / 1024 ^ 2) end
  return ("%.2f GiB"):format(bytes / 1024 ^ 3)
end

local function ago(secs)
  if secs < 120 then return ("%ds ago"):format(secs) end
  if secs < 7200 then return ("%dm ago"):format(secs // 60) end
  if secs < 172800 then return ("%dh ago"):format(secs // 3600) end
  return ("%dd ago"):format(secs // 86400)
end

local STATE_TEXT = {
  running = "running (the checkpoint is being written)",
  complete = "complete",
  idle = "idle: continuous, and no run is active",
  incomplete = "incomplete: stopped or crashed before the end; run the backup again to resume",
}

--- The progress as text, at most max_lines (default 20) partition lines.
function M.format(s, opts)
  opts = opts or {}
  local now = opts.now or os.time()
  local out = {}
  local function add(fmt, ...) out[#out + 1] = fmt:format(...) end
  add("backup %s (%s%s)", s.id, s.mode or "no manifest yet", s.cluster_id and (", cluster " .. s.cluster_id) or "")
  add("  state:      %s", STATE_TEXT[s.state] or s.state)
  if s.checkpoint_time then
    add("  checkpoint: %s (%s)", utc(s.checkpoint_time), ago(math.max(0, now - s.checkpoint_time)))
  else
    add("  checkpoint: none")
  end
  add("  started:    %s; manifest written %s", utc(s.started), utc(s.finished))
  local t = s.totals
  add("  progress:   %d topics, %d/%d partitions done, %d records, %s in %d segments, %d gaps", t.topics, t.done,
    t.partitions, t.records, size(t.bytes), t.segments, t.gaps)
  if s.newest then add("  newest record: %s", utc(s.newest / 1000)) end
  local shown, max_lines = 0, opts.max_lines or 20
  for _, topic in ipairs(s.topics) do
    add("  topic %s: %d/%d partitions done, %d records, %s in %d segments", topic.name, topic.done,
      #topic.partitions, topic.records, size(topic.bytes), topic.segments)
    for _, p in ipairs(topic.partitions) do
      local show = not p.done or #p.gaps > 0
      if show and shown < max_lines then
        shown = shown + 1
        local where = p.target and ("next offset %s of %d"):format(tostring(p.next or "-"), p.target)
          or ("next offset %s (no target until the manifest is written)"):format(tostring(p.next or "-"))
        add("    partition %d: %s, %d records in %d segments%s", p.partition, where, p.records, p.segments,
          p.done and ", done" or "")
        for _, g in ipairs(p.gaps) do
          add("      gap: offsets %d..%d were deleted before the backup read them", g.from, g.to - 1)
        end
      elseif show then
        shown = shown + 1
      end
    end
  end
  if shown > max_lines then add("  ... and %d more partitions not done or with gaps", shown - max_lines) end
  return table.concat(out, "\n") .. "\n"
end

return M
