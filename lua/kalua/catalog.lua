--- The backup catalog: what backups a store holds, what is in one, whether
-- it is intact, and which old ones to remove.
--
--   local catalog = require "kalua.catalog"
--   local store = assert(catalog.open("/backups"))   -- or "file://...", or a storage table
--   local backups = assert(catalog.list(store))
--   local info = assert(catalog.describe(store, "daily-1"))
--   local report = assert(catalog.validate(store, "daily-1", { deep = true }))
--   local plan = assert(catalog.prune(store, { keep_last = 7, dry_run = true }))
--
-- A backup is every key under `<backup_id>/` (layout in kalua.backup). One
-- without manifest.json is incomplete: still running, or crashed. Expected
-- failures (no such store or backup, unreadable manifest) return nil, message.
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local json = require "kalua.json"
local manifests = require "kalua.manifest"

local M = {}

local DAY = 86400

-- --- opening and reading -----------------------------------------------------

--- Opens an existing store: a directory, "file://DIR", a storage config
-- table ({backend=, path=}) or an already open store (returned as is).
-- Unlike storage.open, never creates the directory: a typo in --path must
-- not look like an empty catalog.
function M.open(where)
  if type(where) == "userdata" then return where end
  local path = where
  if type(where) == "table" then
    if where.backend and where.backend ~= "filesystem" then return storage.open(where) end
    path = where.path
    if not path then return nil, "storage: no path given" end
  end
  if type(path) ~= "string" or path == "" then return nil, "storage: no path given" end
  local dir = path:gsub("^file://", "")
  if not dir:find("://", 1, true) then
    local probe = io.open(dir .. "/.", "r")
    if not probe then return nil, ("%s: no such directory"):format(dir) end
    probe:close()
  end
  return storage.open(type(where) == "table" and where or path)
end

local function read_json(store, key)
  local data, err, name = store:get(key)
  if not data then return nil, err, name end
  local v, derr = json.decode(data)
  if v == nil then return nil, ("%s: corrupt JSON (%s)"):format(key, derr), "CORRUPT" end
  if type(v) ~= "table" then return nil, ("%s: not a JSON object"):format(key), "CORRUPT" end
  return v
end

-- Every key of the store grouped by backup id (the first path element).
local function keys_by_backup(store)
  local entries, err = store:list("")
  if not entries then return nil, err end
  local by_id, ids = {}, {}
  for _, e in ipairs(entries) do
    local id, rest = e.key:match("^([^/]+)/(.+)$")
    if id then
      if not by_id[id] then
        by_id[id] = { keys = {}, newest = 0 }
        ids[#ids + 1] = id
      end
      local b = by_id[id]
      b.keys[#b.keys + 1] = e
      b.has_manifest = b.has_manifest or rest == "manifest.json"
      b.newest = math.max(b.newest, e.mtime or 0)
    end
  end
  return by_id, ids
end

--- Reads a backup's manifest. Returns it, or nil, message, name where name
-- is "NOT_FOUND" (no such backup), "INCOMPLETE" (keys but no manifest) or
-- "CORRUPT".
function M.manifest(store, id)
  if type(id) ~= "string" or id == "" or id:find("/", 1, true) then
    return nil, ("bad backup id '%s'"):format(tostring(id)), "NOT_FOUND"
  end
  local m, err, name = manifests.load(store, id)
  if m then return m end
  if name ~= "NOT_FOUND" then return nil, err, name end
  local keys = store:list(id .. "/")
  if keys and #keys > 0 then
    return nil, ("backup '%s' is incomplete (no manifest.json): still running or crashed"):format(id), "INCOMPLETE"
  end
  return nil, ("no backup '%s' in this storage"):format(id), "NOT_FOUND"
end

-- Partitions of a manifest as a sorted list of {topic=, partition=, entry=}.
local function partitions_of(manifest)
  local out = {}
  if type(manifest.topics) ~= "table" then return out end
  for topic, t in pairs(manifest.topics) do
    for p, entry in pairs(type(t) == "table" and type(t.partitions) == "table" and t.partitions or {}) do
      if type(entry) == "table" then
        out[#out + 1] = { topic = topic, partition = math.tointeger(tonumber(p)) or p, entry = entry }
      end
    end
  end
  table.sort(out, function(a, b)
    if a.topic ~= b.topic then return a.topic < b.topic end
    local x, y = tonumber(a.partition), tonumber(b.partition)
    if x and y then return x < y end
    return tostring(a.partition) < tostring(b.partition)
  end)
  return out
end

-- Segments of a partition sorted by first offset.
local function sorted_segments(entry)
  local segs = {}
  for _, s in ipairs(type(entry.segments) == "table" and entry.segments or {}) do
    if type(s) == "table" then segs[#segs + 1] = s end
  end
  table.sort(segs, function(a, b) return (a.first_offset or 0) < (b.first_offset or 0) end)
  return segs
end

local function count_topics(manifest)
  local n = 0
  for _ in pairs(manifest.topics or {}) do n = n + 1 end
  return n
end

--- Flags the catalog commands share: where the storage is, output format.
M.flags = {
  { name = "path", short = "p", key = "path", arg = true, help = "storage directory (or file://DIR)" },
  { name = "config", short = "c", key = "config", arg = true, help = "YAML config file: use its storage section" },
  { name = "format", short = "f", key = "format", arg = true, help = "text (default) | json" },
}

--- Opens the store named by parsed flags: --path, else --config's storage.
function M.open_flags(opts)
  if opts.format and opts.format ~= "text" and opts.format ~= "json" then
    return nil, ("unknown format '%s': use text or json"):format(opts.format)
  end
  if opts.path then return M.open(opts.path) end
  if opts.config then
    local cfg, err = require("kalua.config").load(opts.config)
    if not cfg then return nil, err end
    if not cfg.storage then return nil, opts.config .. ": no storage section" end
    return M.open(cfg.storage)
  end
  return nil, "no storage: give --path DIR (or --config FILE with a storage section)"
end

--- "YYYY-MM-DDTHH:MM:SSZ" for epoch seconds, "-" for nil.
function M.utc(seconds)
  if not seconds then return "-" end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", seconds)
end

-- --- list ----------------------------------------------------------------------

--- Every backup in the store, oldest first (by `started`; incomplete ones by
-- their newest object's time). Each: {id=, complete=, started=, finished=,
-- base=, topics=, partitions=, segments=, records=, bytes=, raw_bytes=};
-- an unreadable manifest gives {id=, complete=false, error=message}.
function M.list(store)
  local by_id, ids = keys_by_backup(store)
  if not by_id then return nil, ids end
  local out = {}
  for _, id in ipairs(ids) do
    local b = by_id[id]
    local item = { id = id, complete = false, objects = #b.keys }
    if b.has_manifest then
      local m, err = manifests.load(store, id)
      if m then
        item.complete = true
        item.started, item.finished, item.base = m.started, m.finished, m.base
        item.topics = count_topics(m)
        item.partitions, item.segments, item.records, item.bytes, item.raw_bytes = 0, 0, 0, 0, 0
        for _, p in ipairs(partitions_of(m)) do
          item.partitions = item.partitions + 1
          for _, s in ipairs(sorted_segments(p.entry)) do
            item.segments = item.segments + 1
            item.records = item.records + (s.records or 0)
            item.bytes = item.bytes + (s.bytes or 0)
            item.raw_bytes = item.raw_bytes + (s.raw_bytes or 0)
          end
        end
      else
        item.error = err
      end
    end
    item.time = math.tointeger(item.started) or b.newest
    out[#out + 1] = item
  end
  table.sort(out, function(a, b)
    if a.time ~= b.time then return a.time < b.time end
    return a.id < b.id
  end)
  return out
end

-- --- describe ------------------------------------------------------------------

local function ratio(raw, bytes)
  if not bytes or bytes == 0 then return nil end
  return raw / bytes
end

local function group_snapshots(store, id)
  local out = {}
  for _, e in ipairs(store:list(id .. "/groups/") or {}) do
    local snap = { key = e.key, time = math.tointeger(tonumber(e.key:match("([^/]+)%.json$"))) }
    local doc, err = read_json(store, e.key)
    if doc then
      local names = {}
      for g in pairs(doc) do names[#names + 1] = g end
      table.sort(names)
      snap.groups = json.array(names)
    else
      snap.error = err
    end
    out[#out + 1] = snap
  end
  return out
end

--- One backup in detail: {id=, started=, finished=, base=, records=,
-- bytes=, raw_bytes=, ratio=, segments=, topics = { {name=, partition_count=,
-- configs=, partitions = { {partition=, low=, high=, first_offset=,
-- last_offset=, first_timestamp=, max_timestamp=, records=, segments=,
-- bytes=, raw_bytes=, ratio=, gaps=} } } }, groups = { {key=, time=, groups=} } }.
-- ratio is raw_bytes / bytes (how much compression saved); nil when empty.
function M.describe(store, id)
  local m, err, name = M.manifest(store, id)
  if not m then return nil, err, name end
  local d = { id = id, started = m.started, finished = m.finished, base = m.base, format = m.format,
    records = 0, bytes = 0, raw_bytes = 0, segments = 0, partitions = 0, topics = {} }
  local topics = {}
  for _, p in ipairs(partitions_of(m)) do
    local t = topics[p.topic]
    if not t then
      local src = m.topics[p.topic]
      t = { name = p.topic, partition_count = src.partition_count, configs = src.configs or {}, partitions = {} }
      topics[p.topic] = t
      d.topics[#d.topics + 1] = t
    end
    local e = p.entry
    local info = { partition = p.partition, low = e.low, high = e.high, records = 0, bytes = 0, raw_bytes = 0,
      segments = 0, gaps = json.array() }
    for _, s in ipairs(sorted_segments(e)) do
      info.segments = info.segments + 1
      info.records = info.records + (s.records or 0)
      info.bytes = info.bytes + (s.bytes or 0)
      info.raw_bytes = info.raw_bytes + (s.raw_bytes or 0)
      if (s.records or 0) > 0 then
        info.first_offset = info.first_offset and math.min(info.first_offset, s.first_offset) or s.first_offset
        info.last_offset = info.last_offset and math.max(info.last_offset, s.last_offset) or s.last_offset
        if s.first_timestamp then
          info.first_timestamp = math.min(info.first_timestamp or s.first_timestamp, s.first_timestamp)
        end
        if s.max_timestamp then
          info.max_timestamp = math.max(info.max_timestamp or s.max_timestamp, s.max_timestamp)
        end
      end
    end
    for _, g in ipairs(type(e.gaps) == "table" and e.gaps or {}) do info.gaps[#info.gaps + 1] = { from = g.from, to = g.to } end
    info.ratio = ratio(info.raw_bytes, info.bytes)
    t.partitions[#t.partitions + 1] = info
    d.partitions = d.partitions + 1
    d.segments = d.segments + info.segments
    d.records = d.records + info.records
    d.bytes = d.bytes + info.bytes
    d.raw_bytes = d.raw_bytes + info.raw_bytes
  end
  d.ratio = ratio(d.raw_bytes, d.bytes)
  d.groups = group_snapshots(store, id)
  return d
end

-- --- validate ------------------------------------------------------------------

-- Checks one segment file against its manifest entry; adds to report.problems.
local function check_segment(store, s, label, deep, report)
  local function problem(fmt, ...) report.problems[#report.problems + 1] = label .. ": " .. fmt:format(...) end
  if type(s.key) ~= "string" then return problem("segment without a key in the manifest") end
  local st, err, name = store:stat(s.key)
  if not st then
    if name == "NOT_FOUND" then return problem("segment %s is missing", s.key) end
    return problem("segment %s: %s", s.key, err)
  end
  if s.bytes and st.size ~= s.bytes then
    problem("segment %s is %d bytes, the manifest says %d", s.key, st.size, s.bytes)
  end
  local r
  r, err = segment.open(store, s.key)
  if not r then return problem("%s", err) end
  local ok, verr = r:verify(deep)
  local info = r:info()
  r:close()
  if not ok then problem("%s", verr) end
  report.records = report.records + (info.records or 0)
  for _, field in ipairs { "records", "first_offset", "last_offset" } do
    if s[field] ~= nil and info[field] ~= s[field] then
      problem("segment %s holds %s %s, the manifest says %s", s.key, field:gsub("_", " "), tostring(info[field]),
        tostring(s[field]))
    end
  end
end

-- Segments of one partition must not overlap (gaps are fine: compaction,
-- transactions and retention leave them).
local function check_order(segs, label, report)
  local prev
  for _, s in ipairs(segs) do
    if s.first_offset and s.last_offset and s.first_offset > s.last_offset then
      report.problems[#report.problems + 1] = ("%s: segment %s ends (%d) before it starts (%d)"):format(label,
        tostring(s.key), s.last_offset, s.first_offset)
    end
    if prev and s.first_offset and prev.last_offset and s.first_offset <= prev.last_offset then
      report.problems[#report.problems + 1] = ("%s: segments %s (to %d) and %s (from %d) overlap"):format(label,
        tostring(prev.key), prev.last_offset, tostring(s.key), s.first_offset)
    end
    prev = s
  end
end

--- Checks a backup against its manifest: every segment exists with the
-- manifest's size, passes verify (CRCs; opts.deep decodes every record),
-- holds the manifest's record count and offsets, and no two segments of a
-- partition overlap. Segment files the manifest does not name are orphans:
-- warnings, since a crash between publishing a segment and writing the
-- manifest leaves them and they harm nothing.
-- Returns {ok=, problems={...}, warnings={...}, segments=, records=} or
-- nil, message when the manifest cannot be read.
function M.validate(store, id, opts)
  opts = opts or {}
  local m, err, name = M.manifest(store, id)
  if not m then return nil, err, name end
  local report = { id = id, ok = true, problems = json.array(), warnings = json.array(), segments = 0, records = 0,
    deep = opts.deep and true or false }
  if type(m.topics) ~= "table" then report.problems[#report.problems + 1] = "manifest has no topics" end
  if m.base and not store:stat(m.base .. "/manifest.json") then
    report.problems[#report.problems + 1] = ("base backup '%s' is missing"):format(tostring(m.base))
  end
  local named = {}
  for _, p in ipairs(partitions_of(m)) do
    local label = ("%s [%s]"):format(p.topic, tostring(p.partition))
    local segs = sorted_segments(p.entry)
    for _, s in ipairs(segs) do
      report.segments = report.segments + 1
      if s.key then named[s.key] = true end
      check_segment(store, s, label, opts.deep, report)
    end
    check_order(segs, label, report)
  end
  for _, e in ipairs(store:list(id .. "/topics/") or {}) do
    if e.key:match("%.kseg$") and not named[e.key] then
      report.warnings[#report.warnings + 1] = ("orphan segment %s (%d bytes) is not in the manifest"):format(e.key,
        e.size)
    end
  end
  report.ok = #report.problems == 0
  return report
end

-- --- prune ---------------------------------------------------------------------

-- Deletes every key of a backup. The manifest goes FIRST: from then on the
-- backup lists as incomplete, and restore refuses it, so a crash in the
-- middle leaves a visibly incomplete backup (pruned again only with
-- include_incomplete) rather than a manifest that names deleted segments
-- and would restore a partial copy as if it were whole.
local function delete_backup(store, id)
  local ok, err, name = store:delete(id .. "/manifest.json")
  if not ok and name ~= "NOT_FOUND" then return nil, err end
  local keys
  keys, err = store:list(id .. "/")
  if not keys then return nil, err end
  for _, e in ipairs(keys) do
    ok, err, name = store:delete(e.key)
    if not ok and name ~= "NOT_FOUND" then return nil, err end
  end
  return true
end

-- The base a backup builds on: the manifest's, or for a backup still being
-- written, its checkpoint's (so a running incremental keeps its base).
local function base_of(store, item)
  if item.complete then return item.base end
  local cp = read_json(store, item.id .. "/checkpoint.json")
  return cp and cp.base
end

--- Chooses and (unless rule.dry_run) deletes old backups.
-- rule: keep_last = n (keep the n newest complete backups), older_than_days
-- = n or older_than = seconds (delete what started before now - that),
-- now = epoch seconds (default os.time()), include_incomplete = true (also
-- prune backups without a manifest, aged by their newest object), dry_run.
-- With both rules a backup goes only when neither keeps it. A kept backup's
-- base (and its base, ...) is always kept. Refuses to prune when any
-- manifest is unreadable, since its base link is unknown.
-- Returns {dry_run=, delete = {{id=, started=, reason=}}, keep = {{id=, reason=}}}.
function M.prune(store, rule)
  rule = rule or {}
  local older_than = rule.older_than or (rule.older_than_days and rule.older_than_days * DAY)
  if rule.keep_last == nil and older_than == nil then
    return nil, "prune needs a rule: keep_last and/or older_than_days"
  end
  if rule.keep_last and (math.type(rule.keep_last) ~= "integer" or rule.keep_last < 0) then
    return nil, "keep_last must be a whole number >= 0"
  end
  if older_than and (type(older_than) ~= "number" or older_than < 0) then
    return nil, "older_than must be a number of seconds >= 0"
  end
  local backups, err = M.list(store)
  if not backups then return nil, err end
  local cutoff = older_than and (rule.now or os.time()) - older_than
  local by_id, candidates = {}, {}
  for _, b in ipairs(backups) do
    if b.error then return nil, ("cannot prune: %s"):format(b.error) end
    by_id[b.id] = b
    if b.complete or rule.include_incomplete then candidates[#candidates + 1] = b end
  end
  local keep = {}
  for _, b in ipairs(backups) do
    if not b.complete and not rule.include_incomplete then keep[b.id] = "incomplete" end
  end
  -- candidates are oldest first; the newest keep_last of them stay
  if rule.keep_last then
    for i = math.max(1, #candidates - rule.keep_last + 1), #candidates do
      keep[candidates[i].id] = keep[candidates[i].id] or ("one of the newest " .. rule.keep_last)
    end
  end
  if cutoff then
    for _, b in ipairs(candidates) do
      if b.time >= cutoff and not keep[b.id] then keep[b.id] = "newer than the cutoff" end
    end
  end
  -- bases of kept backups stay, transitively
  local queue = {}
  for id in pairs(keep) do queue[#queue + 1] = id end
  table.sort(queue)
  while #queue > 0 do
    local id = table.remove(queue, 1)
    local base = base_of(store, by_id[id])
    if base and by_id[base] and not keep[base] then
      keep[base] = "base of " .. id
      queue[#queue + 1] = base
    end
  end
  local plan = { dry_run = rule.dry_run and true or false, delete = json.array(), keep = json.array() }
  for _, b in ipairs(backups) do
    if keep[b.id] then
      plan.keep[#plan.keep + 1] = { id = b.id, started = b.started, reason = keep[b.id] }
    else
      local reason = b.complete and "old" or "incomplete"
      plan.delete[#plan.delete + 1] = { id = b.id, started = b.started, reason = reason,
        bytes = b.bytes, objects = b.objects }
    end
  end
  if not rule.dry_run then
    for _, d in ipairs(plan.delete) do
      local n, derr = delete_backup(store, d.id)
      if not n then return nil, ("pruning %s: %s"):format(d.id, derr) end
    end
  end
  return plan
end

return M
