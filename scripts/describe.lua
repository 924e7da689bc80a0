--- Describe one backup: topics, partitions, offsets, times, sizes, groups.
-- Usage: kalua describe --path DIR [--backup-id] ID [--format text|json]
--
-- Per partition: the offset range the segments hold, the time range of
-- their records (UTC), record count, segments, stored and raw bytes, the
-- compression ratio (raw / stored) and gaps (offsets retention removed
-- before the backup read them). Then the consumer group snapshots.
-- --path takes a directory or file://DIR; --config FILE uses the storage
-- section of a config. Exits 1 when the backup is unknown, incomplete or its
-- manifest cannot be read.
local cli = require "kalua.cli"
local catalog = require "kalua.catalog"
local json = require "kalua.json"

local flags = cli.flags(catalog.flags, {
  { name = "backup-id", key = "backup_id", arg = true, help = "the backup to describe" },
})
local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("describe", err) end
local id = opts.backup_id or opts[1]
if not id then cli.die("describe", "usage: kalua describe --path DIR --backup-id ID [--format text|json]") end
local store
store, err = catalog.open_flags(opts)
if not store then cli.die("describe", err) end
local d
d, err = catalog.describe(store, id)
if not d then cli.die("describe", err) end
store:close()

if opts.format == "json" then
  print(json.encode(d, { indent = "  " }))
  os.exit(0)
end

local function ms(t) return t and catalog.utc(t // 1000) or "-" end
local function ratio(r) return r and ("%.2f"):format(r) or "-" end

print(("backup %s%s"):format(d.id, d.base and (" (incremental on " .. d.base .. ")") or ""))
print(("  started %s, finished %s"):format(catalog.utc(d.started), catalog.utc(d.finished)))
print(("  %d topics, %d partitions, %d segments, %d records, %d bytes stored, %d raw, ratio %s"):format(#d.topics,
  d.partitions, d.segments, d.records, d.bytes, d.raw_bytes, ratio(d.ratio)))
for _, t in ipairs(d.topics) do
  print(("topic %s (%s partitions)"):format(t.name, tostring(t.partition_count or #t.partitions)))
  for _, p in ipairs(t.partitions) do
    local range = p.first_offset and ("%d..%d"):format(p.first_offset, p.last_offset) or "empty"
    print(("  partition %s: offsets %s, times %s..%s, %d records in %d segments, %d bytes (%d raw, ratio %s)"):format(
      tostring(p.partition), range, ms(p.first_timestamp), ms(p.max_timestamp), p.records, p.segments, p.bytes,
      p.raw_bytes, ratio(p.ratio)))
    for _, g in ipairs(p.gaps) do
      print(("    gap: offsets %d..%d were gone before the backup read them"):format(g.from, g.to - 1))
    end
  end
end
if #d.groups == 0 then print("no consumer group snapshots") end
for _, g in ipairs(d.groups) do
  if g.error then
    print(("groups %s: %s"):format(g.key, g.error))
  else
    print(("groups at %s: %d (%s)"):format(catalog.utc(g.time), #g.groups, table.concat(g.groups, ", ")))
  end
end
