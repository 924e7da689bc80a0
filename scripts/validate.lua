--- Check a backup against its manifest, segment by segment.
-- Usage: kalua validate --path DIR [--backup-id] ID [--deep] [--format text|json]
--
-- Every segment the manifest names must exist with the recorded size, pass
-- its checksums (--deep also decompresses and decodes every record), and
-- hold the recorded record count and first/last offsets; segments of a
-- partition must not overlap. Segment files the manifest does not name are
-- reported as orphan warnings (a crash can leave them; they do no harm).
-- Prints a one-line summary, then one line per problem and warning.
-- Exits 0 when the backup is valid, 1 otherwise.
local cli = require "kalua.cli"
local catalog = require "kalua.catalog"
local json = require "kalua.json"

local flags = cli.flags(catalog.flags, {
  { name = "backup-id", key = "backup_id", arg = true, help = "the backup to check" },
  { name = "deep", short = "d", key = "deep", help = "decode every record, not only checksums" },
})
local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("validate", err) end
local id = opts.backup_id or opts[1]
if not id then cli.die("validate", "usage: kalua validate --path DIR --backup-id ID [--deep] [--format text|json]") end
local store
store, err = catalog.open_flags(opts)
if not store then cli.die("validate", err) end
local report
report, err = catalog.validate(store, id, { deep = opts.deep })
if not report then cli.die("validate", err) end
store:close()

if opts.format == "json" then
  print(json.encode(report, { indent = "  " }))
else
  local how = opts.deep and "deep check" or "checksums"
  if report.ok then
    print(("backup %s is valid (%s): %d segments, %d records, %d warnings"):format(id, how, report.segments,
      report.records, #report.warnings))
  else
    print(("backup %s is NOT valid (%s): %d problems in %d segments, %d warnings"):format(id, how, #report.problems,
      report.segments, #report.warnings))
  end
  for _, p in ipairs(report.problems) do print(p) end
  for _, w in ipairs(report.warnings) do print("warning: " .. w) end
end
os.exit(report.ok and 0 or 1)
