--- Show a backup's progress: partitions done, records, bytes, whether it runs.
-- Usage: kalua status --path DIR --backup-id ID [--watch [--interval S]] [--format text|json]
--
-- Reads only what the backup wrote to storage (manifest.json and
-- checkpoint.json): topics, partitions done out of those planned,
-- records, bytes and segments so far, gaps, the newest record's time, and
-- when the checkpoint was last written. A run looks active when that was
-- less than --active-within seconds ago (default 180). Partitions not yet
-- done (or with gaps) are listed. --path takes a directory, file://DIR,
-- s3://bucket/prefix, az://container/prefix or gs://bucket/prefix
-- (--config FILE uses a config's storage section and backup_id). --watch
-- redraws every --interval seconds (default 2) until interrupted, and
-- waits for a backup that has not started yet. Exits 1 when the storage
-- has no such backup (without --watch).
local cli = require "kalua.cli"
local catalog = require "kalua.catalog"
local status = require "kalua.status"
local json = require "kalua.json"

local flags = cli.flags(catalog.flags, {
  { name = "backup-id", key = "backup_id", arg = true, help = "the backup to show" },
  { name = "watch", short = "w", key = "watch", help = "redraw until interrupted" },
  { name = "interval", key = "interval", arg = true, help = "seconds between redraws (default 2)" },
  { name = "active-within", key = "active_within", arg = true,
    help = "a checkpoint this recent (seconds) means a run is active (default 180)" },
})
local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("status", err) end
local id = opts.backup_id or opts[1]
if not id and opts.config then
  local cfg = require("kalua.config").load(opts.config)
  id = cfg and cfg.backup_id
end
if not id then cli.die("status", "usage: kalua status --path DIR --backup-id ID [--watch [--interval S]]") end
local interval = tonumber(opts.interval or 2)
if not interval or interval <= 0 then cli.die("status", "--interval must be a number of seconds above 0") end
local active_within = tonumber(opts.active_within or 180)
if not active_within then cli.die("status", "--active-within must be a number of seconds") end

local store
store, err = catalog.open_flags(opts)
if not store then cli.die("status", err) end

-- Draws once. --watch waits for a backup that has not written anything yet.
local function draw(clear)
  local s, rerr, name = status.read(store, id, { active_within = active_within })
  if not s and not (opts.watch and name == "NOT_FOUND") then cli.die("status", rerr) end
  local text
  if not s then
    text = opts.format == "json" and (json.encode { id = id, state = "waiting", error = rerr } .. "\n")
      or (rerr .. " (yet): waiting\n")
  elseif opts.format == "json" then
    text = json.encode(s) .. "\n"
  else
    text = status.format(s)
  end
  if clear then io.write("\27[H\27[2J") end
  io.write(text)
  io.flush()
end

if not opts.watch then
  draw(false)
  store:close()
  os.exit(0)
end

local host = require "kalua.host"
local clock = require "kalua.clock"
host.catch_signals()
local on_tty = host.isatty(1) and opts.format ~= "json"
local frame = 0
while not host.stop_requested() do
  if frame > 0 and not on_tty and opts.format ~= "json" then io.write("\n") end
  draw(on_tty)
  frame = frame + 1
  local deadline = clock.now() + interval
  while clock.now() < deadline and not host.stop_requested() do
    clock.sleep(math.min(0.1, deadline - clock.now()))
  end
end
store:close()
