--- List the backups in a storage location.
-- Usage: kalua list --path DIR [--format text|json]
--
-- One line per backup, oldest first: id, status (complete, or incomplete
-- when there is no manifest.json yet: still running or crashed), start and
-- finish times (UTC), topics, partitions, records and stored bytes.
-- --path takes a directory or file://DIR; --config FILE uses the storage
-- section of a backup/restore config instead. --format json prints the
-- same as a JSON array. Exits 1 when a manifest cannot be read.
local cli = require "kalua.cli"
local catalog = require "kalua.catalog"
local json = require "kalua.json"

local opts, err = cli.parse({ ... }, catalog.flags)
if not opts then cli.die("list", err) end
local store
store, err = catalog.open_flags(opts)
if not store then cli.die("list", err) end
local backups
backups, err = catalog.list(store)
if not backups then cli.die("list", err) end

if opts.format == "json" then
  for _, b in ipairs(backups) do b.time = nil end
  print(json.encode(json.array(backups), { indent = "  " }))
elseif #backups == 0 then
  print("no backups")
else
  print(("%-24s %-10s %-20s %-20s %6s %10s %12s %14s"):format("BACKUP", "STATUS", "STARTED", "FINISHED", "TOPICS",
    "PARTITIONS", "RECORDS", "BYTES"))
  for _, b in ipairs(backups) do
    local status = b.complete and "complete" or (b.error and "corrupt" or "incomplete")
    print(("%-24s %-10s %-20s %-20s %6s %10s %12s %14s"):format(b.id, status, catalog.utc(b.started),
      catalog.utc(b.finished), b.topics or "-", b.partitions or "-", b.records or "-", b.bytes or "-"))
  end
end

local failed = false
for _, b in ipairs(backups) do
  if b.error then
    cli.report("list", b.error)
    failed = true
  end
end
store:close()
if failed then os.exit(1) end
