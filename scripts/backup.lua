--- Back up Kafka topics into segments (snapshot to the high watermarks).
-- Usage: kalua backup --config backup.yaml
--
-- Reads OSO Kafka Backup's keys (mode: backup, backup_id, source, topics,
-- storage, backup). Each partition is read from where the last published
-- segment ended up to the high watermark taken at start, so running the
-- same backup_id again resumes and adds only new records. Filesystem
-- storage for now (storage.backend: filesystem, storage.path).
-- Exits 0 when every selected partition is backed up, 1 otherwise.
local cli = require "kalua.cli"
local config = require "kalua.config"
local backup = require "kalua.backup"

local flags = {
  { name = "config", short = "c", key = "config", arg = true, help = "YAML config file" },
  { name = "quiet", short = "q", key = "quiet", help = "print nothing on success" },
}

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("backup", err) end
if not opts.config then cli.die("backup", "usage: kalua backup --config backup.yaml") end

local cfg
cfg, err = config.load(opts.config)
if not cfg then cli.die("backup", err) end
if cfg.mode ~= "backup" then cli.die("backup", ("%s: mode is '%s', expected 'backup'"):format(opts.config, tostring(cfg.mode))) end

local started = os.time()
local summary
summary, err = backup.run(cfg)
if not summary then cli.die("backup", err) end
if not opts.quiet then
  print(("backup %s: %d topics, %d partitions, %d new records in %d segments (%d bytes), %d gaps, %ds"):format(
    cfg.backup_id, summary.topics, summary.partitions, summary.records, summary.segments, summary.bytes,
    summary.gaps, os.time() - started))
end
