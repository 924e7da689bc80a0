--- Back up Kafka topics into segments (snapshot to the high watermarks, or continuous).
-- Usage: kalua backup --config backup.yaml [--quiet] [--metrics-addr HOST:PORT] [--metrics-textfile PATH]
--
-- Reads OSO Kafka Backup's keys (mode: backup, backup_id, source, topics,
-- storage, backup). Each partition is read from where the last published
-- segment ended up to the high watermark taken at start, so running the
-- same backup_id again resumes and adds only new records. Up to
-- backup.max_concurrent_partitions (default 4) partitions are read at once;
-- a segment is closed at segment_max_records or segment_max_bytes.
-- backup.continuous: true keeps going, a round at least every
-- segment_max_interval_ms (default 60000), until stopped: any stop, even
-- kill -9, is safe, and the next run resumes. SIGTERM or SIGINT stops it
-- cleanly: the open segments are published and checkpointed, and it exits
-- 0 with "stopped by SIGTERM after N records" (continuous mode) or 1 (a
-- snapshot stopped before its end: run it again to resume). Storage is a
-- path or URL (file://, s3://, az://, gs://) or a storage.backend section.
-- On a terminal a progress line shows partitions done, records, bytes and rate.
-- --metrics-addr 127.0.0.1:9464 serves Prometheus metrics (GET /metrics,
-- /healthz) while it runs (port 0 picks one; "metrics at http://..." on
-- stderr says which); --metrics-textfile PATH writes them for
-- node_exporter's textfile collector at the end (and after each round in
-- continuous mode), failed runs included; kalua_errors_total{kind} counts
-- errors by kind (config, auth, kafka, storage, other). The names are in
-- lua/kalua/telemetry.lua.
-- Connection flags (e.g. --sasl-mechanism GSSAPI --sasl-keytab ...) override
-- the config's source:
-- @connection-flags
-- Exits 0 when every selected partition is backed up, 1 otherwise.
local cli = require "kalua.cli"
local config = require "kalua.config"
local backup = require "kalua.backup"
local telemetry = require "kalua.telemetry"

local flags = cli.flags({
  { name = "config", short = "c", key = "config", arg = true, help = "YAML config file" },
  { name = "quiet", short = "q", key = "quiet", help = "print nothing on success" },
  { name = "metrics-addr", key = "metrics_addr", arg = true,
    help = "serve Prometheus metrics at host:port while running (port 0: any free one)" },
  { name = "metrics-textfile", key = "metrics_textfile", arg = true,
    help = "write the metrics to this file at the end (and after each continuous round)" },
}, cli.client_override_flags())

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("backup", err) end
if not opts.config then cli.die("backup", "usage: kalua backup --config backup.yaml") end
local tele = telemetry.command("backup", opts)

local cfg
cfg, err = config.load(opts.config)
if not cfg then tele:die(err, nil, "config") end
if cfg.mode ~= "backup" then
  tele:die(("%s: mode is '%s', expected 'backup'"):format(opts.config, tostring(cfg.mode)), nil, "config")
end
do
  local client, cerr = cli.override(opts, cfg.source)
  if cerr then tele:die(cerr, nil, "config") end
  cfg.source = client
end

-- A progress line, redrawn at most 4 times a second, only for a person.
local function progress_line()
  local ok, host = pcall(require, "kalua.host")
  if opts.quiet or not ok or not host.isatty(2) then return nil end
  local clock = require "kalua.clock"
  local began, last = clock.now(), 0
  return function(s)
    local now = clock.now()
    if now - last < 0.25 then return end
    last = now
    local elapsed = math.max(now - began, 0.001)
    io.stderr:write(("\r\27[Kbackup %s: %d/%d partitions, %d records, %.1f MiB, %.0f records/s"):format(
      cfg.backup_id, s.partitions_done, s.partitions, s.records, s.bytes / 1048576, s.records / elapsed))
    io.stderr:flush()
  end
end

-- SIGTERM or SIGINT stops at the next segment boundary, checkpointed.
local stop
do
  local ok, host = pcall(require, "kalua.host")
  if ok then
    host.catch_signals()
    stop = host.stop_requested
  end
end

-- A metrics file that cannot be written is reported, not fatal.
local function write_metrics() tele:flush() end

local started = os.time()
local progress = progress_line()
local summary, name
summary, err, name = backup.run(cfg, tele:backup_hooks { progress = progress, stop = stop,
  round = (cfg.backup or {}).continuous and write_metrics or nil })
if progress then io.stderr:write("\r\27[K") end
if not summary then tele:die(err, name) end
write_metrics()
tele:close()
if summary.stopped then
  local what = ("stopped by %s after %d records"):format(summary.stopped, summary.records)
  if not (cfg.backup or {}).continuous then
    cli.die("backup", what .. ", before the snapshot completed; run again to resume")
  end
  if not opts.quiet then print(("backup %s: %s"):format(cfg.backup_id, what)) end
  os.exit(0)
end
if not opts.quiet then
  print(("backup %s: %d topics, %d partitions, %d new records in %d segments (%d bytes), %d gaps, %ds"):format(
    cfg.backup_id, summary.topics, summary.partitions, summary.records, summary.segments, summary.bytes,
    summary.gaps, os.time() - started))
end
