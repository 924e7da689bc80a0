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
-- kalua.original.offset/kalua.original.timestamp. Missing target topics are
-- created with the saved partition count and configs. Records go from the
-- segments into an idempotent producer in C.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local json = require "kalua.json"
local backup = require "kalua.backup"

local M = {}

-- Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
-- days_from_civil), so UTC times need no time zone from the machine.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- Epoch milliseconds from a number (ms) or "YYYY-MM-DDTHH:MM:SS[.mmm]Z".
function M.parse_time(v)
  if v == nil then return nil end
  if math.type(v) == "integer" then return v end
  local y, mo, d, h, mi, s, ms = tostring(v):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)%.?(%d*)Z$")
  if not y then
    local n = math.tointeger(tonumber(v))
    if n then return n end
    return nil, ("bad time '%s': use epoch milliseconds or YYYY-MM-DDTHH:MM:SSZ"):format(tostring(v))
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local frac = ms ~= "" and tonumber((ms .. "00"):sub(1, 3)) or 0
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + frac
end

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
  local data
  data, err = store:get(cfg.backup_id .. "/manifest.json")
  if not data then return nil, ("backup '%s': %s"):format(cfg.backup_id, err) end
  local manifest
  manifest, err = json.decode(data)
  if not manifest then return nil, cfg.backup_id .. "/manifest.json: " .. err end
  local w
  w, err = window(r)
  if not w then return nil, err end
  local filter = r.topics or cfg.topics
  local listed = {}
  for name in pairs(manifest.topics) do listed[#listed + 1] = { name = name, partitions = {} } end
  local plan = { window = w, topics = {}, store = store }
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
  if create == false then return nil, ("target topic '%s' does not exist and create_topics is false"):format(entry.target) end
  local ok, err = admin:create_topics { { name = entry.target, partitions = entry.partition_count,
    replication_factor = -1, config = entry.configs } }
  if not ok then return nil, err end
  return "created"
end

--- Restores what plan(cfg) describes. Returns a summary or nil, message.
function M.run(cfg)
  local r = cfg.restore or {}
  local plan, err = M.plan(cfg)
  if not plan then return nil, err end
  local admin
  admin, err = kafka.admin(cfg.target)
  if not admin then return nil, err end
  local producer
  producer, err = kafka.producer {
    bootstrap_servers = cfg.target.bootstrap_servers, security = cfg.target.security,
    properties = cfg.target.properties, idempotence = true, acks = "all",
  }
  if not producer then return nil, err end
  local summary = { topics = 0, created = 0, partitions = 0, records = 0 }
  for _, entry in ipairs(plan.topics) do
    local how, terr = ensure_topic(admin, entry, r.create_topics)
    if not how then return nil, terr end
    if how == "created" then summary.created = summary.created + 1 end
    summary.topics = summary.topics + 1
    for _, part in ipairs(entry.partitions) do
      for _, seg in ipairs(part.segments) do
        local reader, rerr = segment.open(plan.store, seg.key)
        if not reader then return nil, rerr end
        local sent, perr = reader:produce(producer, {
          topic = entry.target, partition = part.target,
          from_offset = plan.window.from_offset, to_offset = plan.window.to_offset,
          start_time = plan.window.start_time, end_time = plan.window.end_time,
          original_headers = r.include_original_offset_header,
        })
        reader:close()
        if not sent then return nil, perr end
        summary.records = summary.records + sent
      end
      summary.partitions = summary.partitions + 1
    end
  end
  local ok
  ok, err = producer:flush(60000)
  if not ok then return nil, err end
  producer:close()
  admin:close()
  plan.store:close()
  return summary
end

return M
