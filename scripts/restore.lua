--- Restore a backup into Kafka (topic mapping, windows, dry run).
-- Usage: kalua restore --config restore.yaml [--dry-run] [--metrics-addr HOST:PORT] [--metrics-textfile PATH]
--
-- Reads mode: restore, backup_id, target, storage and restore: topic_mapping,
-- partition_mapping, start_offset/end_offset, start_time/end_time (or OSO's
-- time_window_start/end: epoch ms or YYYY-MM-DDTHH:MM:SSZ), dry_run,
-- create_topics, include_original_offset_header. Missing topics are created
-- with the saved partition count and configs; timestamps are kept.
-- --dry-run (or restore.dry_run: true) prints the plan and writes nothing.
--
-- A restore keeps a checkpoint in the backup's storage
-- (<backup_id>/restores/<restore_id>.json): run the same config again after
-- an interruption and it carries on, with every record written once.
-- restore.rate_limit_records_per_sec caps the pace. Three-phase restore:
-- with restore.reset_consumer_offsets: true (or consumer_groups: [...]) the
-- groups' committed offsets saved by the backup are translated through the
-- source -> target offset mapping and applied to the target cluster.
-- --show-offset-mapping prints that mapping (and the translated group
-- offsets) for a restore that has run.
-- --metrics-addr 127.0.0.1:9464 serves Prometheus metrics (GET /metrics,
-- /healthz) while it runs; --metrics-textfile PATH writes them at the end,
-- failed runs included, for node_exporter's textfile collector: per target
-- topic/partition kalua_restore_records_total, _bytes_total and
-- _segments_total; kalua_restore_last_success_timestamp_seconds{backup_id};
-- kalua_errors_total{kind} (config, auth, kafka, storage, other).
local cli = require "kalua.cli"
local config = require "kalua.config"
local restore = require "kalua.restore"
local telemetry = require "kalua.telemetry"

local flags = cli.flags({
  { name = "config", short = "c", key = "config", arg = true, help = "YAML config file" },
  { name = "dry-run", short = "n", key = "dry_run", help = "print the plan only" },
  { name = "show-offset-mapping", key = "show_mapping", help = "print the source -> target offset mapping" },
}, telemetry.flags(), cli.client_override_flags())

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("restore", err) end
if not opts.config then cli.die("restore", "usage: kalua restore --config restore.yaml [--dry-run]") end
local tele = telemetry.command("restore", opts)
local cfg
cfg, err = config.load(opts.config)
if not cfg then tele:die(err, nil, "config") end
require("kalua.log").secrets_in(cfg) -- storage keys and passwords: never in a log line
if cfg.mode ~= "restore" then
  tele:die(("%s: mode is '%s', expected 'restore'"):format(opts.config, tostring(cfg.mode)), nil, "config")
end
do
  local client, cerr = cli.override(opts, cfg.target)
  if cerr then tele:die(cerr, nil, "config") end
  cfg.target = client
end

local function show_mapping()
  local mapping, ckpt = restore.offset_mapping(cfg)
  if not mapping then cli.die("restore", ckpt) end
  local keys = {}
  for k in pairs(mapping) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local m = mapping[k]
    for _, run in ipairs(m.runs) do
      print(("%s %d..%d -> %s/%d %d..%d"):format(k, run[1], run[1] + run[2] - 1, m.target_topic,
        m.target_partition, run[3], run[3] + run[2] - 1))
    end
  end
  local storage = require "kalua.storage"
  local offsets = require "kalua.offsets"
  local store = assert(storage.open(cfg.storage))
  local snap = offsets.load(store, nil, cfg.backup_id)
  if snap then
    local plan, skipped = offsets.translate(snap, mapping, cfg.restore and cfg.restore.consumer_groups)
    for _, line in ipairs(offsets.plan_lines(plan)) do print("group " .. line) end
    for _, line in ipairs(skipped) do print("group " .. line) end
  end
  os.exit(0)
end

if opts.show_mapping then
  tele:close()
  show_mapping()
end

if opts.dry_run or (cfg.restore and cfg.restore.dry_run) then
  tele:close() -- a plan restores nothing: no metrics
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
local summary, kind
summary, err, kind = restore.run(cfg, tele:restore_hooks())
if not summary then tele:die(err, kind, kind) end
tele:flush()
tele:close()
print(("restore %s: %d topics (%d created), %d partitions, %d records%s, %d groups, %ds"):format(cfg.backup_id,
  summary.topics, summary.created, summary.partitions, summary.records,
  summary.resumed > 0 and (" (resumed: %d found already written)"):format(summary.resumed) or "",
  summary.groups, os.time() - started))
for _, line in ipairs(summary.groups_skipped or {}) do cli.report("restore", "group " .. line, "warn") end
