--- Restore a backup into Kafka (topic mapping, windows, dry run).
-- Usage: kalua restore --config restore.yaml [--dry-run]
--
-- Reads mode: restore, backup_id, target, storage and restore: topic_mapping,
-- partition_mapping, start_offset/end_offset, start_time/end_time (or OSO's
-- time_window_start/end: epoch ms or YYYY-MM-DDTHH:MM:SSZ), dry_run,
-- create_topics, include_original_offset_header. Missing topics are created
-- with the saved partition count and configs; timestamps are kept.
-- --dry-run (or restore.dry_run: true) prints the plan and writes nothing.
local cli = require "kalua.cli"
local config = require "kalua.config"
local restore = require "kalua.restore"

local flags = {
  { name = "config", short = "c", key = "config", arg = true, help = "YAML config file" },
  { name = "dry-run", short = "n", key = "dry_run", help = "print the plan only" },
}

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("restore", err) end
if not opts.config then cli.die("restore", "usage: kalua restore --config restore.yaml [--dry-run]") end
local cfg
cfg, err = config.load(opts.config)
if not cfg then cli.die("restore", err) end
if cfg.mode ~= "restore" then cli.die("restore", ("%s: mode is '%s', expected 'restore'"):format(opts.config, tostring(cfg.mode))) end

if opts.dry_run or (cfg.restore and cfg.restore.dry_run) then
  local plan
  plan, err = restore.plan(cfg)
  if not plan then cli.die("restore", err) end
  print(("dry run: backup %s, nothing will be written"):format(cfg.backup_id))
  for _, t in ipairs(plan.topics) do
    print(("topic %s -> %s (%d partitions, created if missing)"):format(t.source, t.target, t.partition_count))
    for _, p in ipairs(t.partitions) do
      print(("  partition %d -> %d: %d segments, up to %d records"):format(p.source, p.target, #p.segments, p.records))
    end
  end
  os.exit(0)
end

local started = os.time()
local summary
summary, err = restore.run(cfg)
if not summary then cli.die("restore", err) end
print(("restore %s: %d topics (%d created), %d partitions, %d records, %ds"):format(cfg.backup_id,
  summary.topics, summary.created, summary.partitions, summary.records, os.time() - started))
