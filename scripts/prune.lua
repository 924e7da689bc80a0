--- Remove old backups (a dry run unless --execute).
-- Usage: kalua prune --path DIR (--keep-last N | --older-than-days N) [--execute]
--
-- --keep-last N keeps the N newest complete backups; --older-than-days N
-- removes backups started more than N days ago. With both, a backup goes
-- only when neither rule keeps it. A backup that a kept backup builds on
-- (its manifest's "base", and that one's base, ...) is always kept.
-- Incomplete backups (no manifest.json: running or crashed) are kept unless
-- --include-incomplete. Prints what would go; --execute deletes it, each
-- backup's manifest first so an interrupted prune leaves it incomplete,
-- never restorable with segments missing.
local cli = require "kalua.cli"
local catalog = require "kalua.catalog"
local json = require "kalua.json"

local USAGE = "usage: kalua prune --path DIR (--keep-last N | --older-than-days N) [--execute]"
local flags = cli.flags(catalog.flags, {
  { name = "keep-last", short = "k", key = "keep_last", arg = true, help = "keep the N newest backups" },
  { name = "older-than-days", short = "o", key = "older_than_days", arg = true,
    help = "remove backups started more than N days ago" },
  { name = "include-incomplete", key = "include_incomplete", help = "also remove incomplete backups" },
  { name = "execute", short = "x", key = "execute", help = "delete (default: only print what would go)" },
})
local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("prune", err) end
if opts[1] then cli.die("prune", ("unexpected argument '%s'; %s"):format(opts[1], USAGE)) end

local rule = { dry_run = not opts.execute, include_incomplete = opts.include_incomplete }
if opts.keep_last then
  rule.keep_last = math.tointeger(tonumber(opts.keep_last))
  if not rule.keep_last or rule.keep_last < 0 then
    cli.die("prune", ("--keep-last wants a whole number >= 0, got '%s'"):format(opts.keep_last))
  end
end
if opts.older_than_days then
  rule.older_than_days = tonumber(opts.older_than_days)
  if not rule.older_than_days or rule.older_than_days < 0 then
    cli.die("prune", ("--older-than-days wants a number >= 0, got '%s'"):format(opts.older_than_days))
  end
end
if not rule.keep_last and not rule.older_than_days then cli.die("prune", USAGE) end

local store
store, err = catalog.open_flags(opts)
if not store then cli.die("prune", err) end
local plan
plan, err = catalog.prune(store, rule)
if not plan then cli.die("prune", err) end
store:close()

if opts.format == "json" then
  print(json.encode(plan, { indent = "  " }))
  os.exit(0)
end
local total = #plan.delete + #plan.keep
if plan.dry_run then
  print(("dry run: would delete %d of %d backups (add --execute to delete)"):format(#plan.delete, total))
else
  print(("deleted %d of %d backups"):format(#plan.delete, total))
end
for _, d in ipairs(plan.delete) do
  print(("%s %s (%s, started %s)"):format(plan.dry_run and "would delete" or "deleted", d.id, d.reason,
    catalog.utc(d.started)))
end
for _, k in ipairs(plan.keep) do print(("keep %s (%s)"):format(k.id, k.reason)) end
