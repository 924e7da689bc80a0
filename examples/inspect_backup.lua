-- Inspect a backup from the REPL.
--
--   kalua -i examples/inspect_backup.lua /tmp/kalua-backups demo
--
-- Loads the backup's manifest and leaves you at the prompt with a few
-- helpers (globals on purpose: they are for typing):
--
--   > backups()                      -- every backup in the store
--   > partitions()                   -- topic, partition, records, offsets
--   > seg = open("orders", 0)        -- a partition's first segment reader
--   > seg:info()
--   > records("orders", 0, 3)        -- the first 3 records, pretty-printed
--   > find("orders", 0, 1700000000000)  -- the first record at or after a time
--   > check()                        -- kalua validate --deep, from here
local catalog = require "kalua.catalog"
local segment = require "kalua.segment"
local pretty = require("kalua.repl").pretty

local dir, id = arg[1] or "/tmp/kalua-backups", arg[2] or "demo"
store = assert(catalog.open(dir))
manifest = assert(catalog.manifest(store, id))

function backups()
  for _, b in ipairs(assert(catalog.list(store))) do
    print(("%-24s %s records=%s"):format(b.id, b.complete and "complete  " or "incomplete", tostring(b.records)))
  end
end

function partitions()
  for name, t in pairs(manifest.topics) do
    for p, part in pairs(t.partitions) do
      local n = 0
      for _, s in ipairs(part.segments) do n = n + s.records end
      print(("%s [%s]: %d records, offsets %d..%d, %d segment(s)"):format(name, p, n, part.low, part.high - 1,
        #part.segments))
    end
  end
end

local function segments(topic, partition)
  local t = manifest.topics[topic] or error("no topic " .. tostring(topic) .. " in backup " .. id, 2)
  return (t.partitions[tostring(partition)] or error("no partition " .. tostring(partition), 2)).segments
end

function open(topic, partition, n)
  return assert(segment.open(store, segments(topic, partition)[n or 1].key))
end

function records(topic, partition, limit)
  local shown = 0
  for _, s in ipairs(segments(topic, partition)) do
    local r <close> = assert(segment.open(store, s.key))
    for rec in r:records() do
      if shown >= (limit or 10) then return end
      print(pretty(rec))
      shown = shown + 1
    end
  end
end

function find(topic, partition, ms)
  for _, s in ipairs(segments(topic, partition)) do
    if s.max_timestamp >= ms then
      local r <close> = assert(segment.open(store, s.key))
      for rec in r:records() do
        if rec.timestamp >= ms then return rec end
      end
    end
  end
end

function check()
  local report = assert(catalog.validate(store, id, { deep = true }))
  print(report.ok and "valid" or table.concat(report.problems, "\n"))
  return report.ok
end

print(("backup %s in %s: try partitions(), records(topic, partition, 3), check()"):format(id, dir))
