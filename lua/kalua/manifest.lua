--- A backup's manifest.json: read it and check its shape once, so the
-- code that walks it (restore, describe, validate, prune) can trust it.
--
--   local manifest = require "kalua.manifest"
--   local m, err, name = manifest.load(store, "nightly")   -- name: NOT_FOUND | CORRUPT
--
-- Shape (format 1):
--   { backup_id=, format=1, started=, finished=, mode=, cluster_id=, base=,
--     topics = { [topic] = { partition_count=, configs = {k=v},
--       partitions = { ["0"] = { low=, high=, gaps = { {from=, to=} },
--         segments = { {key=, records=, bytes=, raw_bytes=, blocks=, first_offset=,
--           last_offset=, first_timestamp=, max_timestamp=} } } } } } }
-- A segment key must lie under <backup_id>/topics/<topic>/<partition>/: a
-- manifest cannot point a restore at another backup's files.
local json = require "kalua.json"

local M = {}

local function int(v) return math.type(v) == "integer" end

local function check_segment(seg, where, prefix)
  if type(seg) ~= "table" then return where .. " is not an object" end
  if type(seg.key) ~= "string" or seg.key:sub(1, #prefix) ~= prefix or seg.key:find("/", #prefix + 1, true) then
    return ("%s.key must name a file under %s"):format(where, prefix)
  end
  for _, f in ipairs { "records", "bytes", "first_offset", "last_offset" } do
    if not int(seg[f]) then return ("%s.%s must be an integer"):format(where, f) end
  end
  for _, f in ipairs { "raw_bytes", "blocks", "first_timestamp", "max_timestamp" } do
    if seg[f] ~= nil and not int(seg[f]) then return ("%s.%s must be an integer"):format(where, f) end
  end
  if seg.records < 0 or seg.bytes < 0 or seg.last_offset < seg.first_offset then
    return where .. " has negative counts or offsets that run backwards"
  end
end

local function check_partition(p, where, prefix)
  if type(p) ~= "table" then return where .. " is not an object" end
  for _, f in ipairs { "low", "high" } do
    if p[f] ~= nil and not int(p[f]) then return ("%s.%s must be an integer"):format(where, f) end
  end
  if type(p.segments) ~= "table" then return where .. ".segments must be a list" end
  for i, seg in ipairs(p.segments) do
    local err = check_segment(seg, ("%s.segments[%d]"):format(where, i), prefix)
    if err then return err end
  end
  for i, g in ipairs(type(p.gaps) == "table" and p.gaps or {}) do
    if type(g) ~= "table" or not int(g.from) or not int(g.to) then
      return ("%s.gaps[%d] must be {from=, to=} integers"):format(where, i)
    end
  end
  if p.gaps ~= nil and type(p.gaps) ~= "table" then return where .. ".gaps must be a list" end
end

local function check_topic(t, name, id)
  local where = ("topics[%q]"):format(name)
  if type(t) ~= "table" then return where .. " is not an object" end
  if t.partition_count ~= nil and (not int(t.partition_count) or t.partition_count < 1) then
    return where .. ".partition_count must be a positive integer"
  end
  if t.configs ~= nil and type(t.configs) ~= "table" then return where .. ".configs must be an object" end
  for k, v in pairs(t.configs or {}) do
    if type(k) ~= "string" or type(v) ~= "string" then return where .. ".configs must map names to strings" end
  end
  if type(t.partitions) ~= "table" then return where .. ".partitions must be an object" end
  for p, part in pairs(t.partitions) do
    if type(p) ~= "string" or not p:match("^%d+$") or #p > 9 then
      return ("%s.partitions has a key that is not a partition number: %s"):format(where, tostring(p))
    end
    local err = check_partition(part, ("%s.partitions[%q]"):format(where, p), ("%s/topics/%s/%s/"):format(id, name, p))
    if err then return err end
  end
end

--- Checks a decoded manifest of backup `id`. Returns it, or nil, message.
function M.check(m, id)
  if type(m) ~= "table" then return nil, "not a JSON object" end
  if m.format ~= nil and m.format ~= 1 then
    return nil, ("format %s: this kalua reads format 1"):format(tostring(m.format))
  end
  if type(m.topics) ~= "table" then return nil, "topics must be an object" end
  for _, f in ipairs { "started", "finished" } do
    if m[f] ~= nil and not int(m[f]) then return nil, f .. " must be an integer" end
  end
  for _, f in ipairs { "base", "cluster_id", "mode" } do
    if m[f] ~= nil and type(m[f]) ~= "string" then return nil, f .. " must be a string" end
  end
  for name, t in pairs(m.topics) do
    if type(name) ~= "string" or name == "" or name:find("/", 1, true) or name == "." or name == ".." then
      return nil, ("topics has a bad name '%s'"):format(tostring(name))
    end
    local err = check_topic(t, name, id)
    if err then return nil, err end
  end
  return m
end

--- Decodes and checks data read from <id>/manifest.json.
function M.decode(data, id)
  local key = id .. "/manifest.json"
  local m, err = json.decode(data)
  if m == nil then return nil, ("%s: corrupt JSON (%s)"):format(key, err), "CORRUPT" end
  m, err = M.check(m, id)
  if not m then return nil, ("%s: not a kalua manifest: %s"):format(key, err), "CORRUPT" end
  return m
end

--- Reads and checks a backup's manifest: it, or nil, message, name
-- ("NOT_FOUND" or "CORRUPT", or the storage's error name).
function M.load(store, id)
  local data, err, name = store:get(id .. "/manifest.json")
  if not data then return nil, err, name end
  return M.decode(data, id)
end

return M
