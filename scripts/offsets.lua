--- Consumer-group offsets: snapshot, list, show, reset, rollback, verify, delete.
-- Usage:
--   kalua offsets snapshot -b BROKERS --path DIR [--group G]... [--id ID]
--   kalua offsets list --path DIR
--   kalua offsets show --path DIR (ID | --backup-id B)   a saved snapshot
--   kalua offsets show -b BROKERS --group G...           live offsets and lag
--   kalua offsets reset -b BROKERS (--group G... | --all-groups) [--topic T]...
--       (--to-earliest | --to-latest | --to-datetime T | --to-offset N | --shift-by N) [--execute]
--       [--metrics-textfile PATH]
--   kalua offsets rollback -b BROKERS --path DIR (ID | --backup-id B) [--group G]... [--execute]
--       [--metrics-textfile PATH]
--   kalua offsets verify -b BROKERS --path DIR (ID | --backup-id B) [--group G]...
--   kalua offsets delete --path DIR ID
--
-- Snapshots live under DIR/offsets/; --backup-id takes the newest
-- consumer-group snapshot a backup saved. reset and rollback print the plan
-- and change nothing unless --execute is given, and refuse a group that
-- has active members. verify exits 1 and prints every difference.
-- T is epoch milliseconds or YYYY-MM-DDTHH:MM:SSZ. Connection flags are
-- those of `kalua help consume` (--config reads a YAML `source`).
-- reset and rollback take --metrics-textfile PATH: at the end, failed runs
-- included, they write kalua_offsets_groups_changed_total{action} and
-- kalua_offsets_partitions_changed_total{action} (what --execute applied)
-- and kalua_errors_total{kind} for node_exporter's textfile collector.
local cli = require "kalua.cli"
local storage = require "kalua.storage"
local offsets = require "kalua.offsets"
local time = require "kalua.time"
local telemetry = require "kalua.telemetry"

local COMMAND = "offsets"
local flags = cli.flags(cli.connection_flags, {
  { name = "path", key = "path", arg = true, help = "storage directory of snapshots and backups" },
  { name = "group", short = "g", key = "groups", arg = true, multi = true, help = "consumer group (repeatable)" },
  { name = "all-groups", key = "all_groups", help = "reset every group on the cluster" },
  { name = "topic", short = "t", key = "topics", arg = true, multi = true, help = "limit to this topic (repeatable)" },
  { name = "id", key = "id", arg = true, help = "snapshot id (default: the time)" },
  { name = "backup-id", key = "backup_id", arg = true, help = "use this backup's consumer-group snapshot" },
  { name = "to-earliest", key = "to_earliest", help = "reset to the log start" },
  { name = "to-latest", key = "to_latest", help = "reset to the log end" },
  { name = "to-datetime", key = "to_datetime", arg = true, help = "reset to the first record at or after T" },
  { name = "to-offset", key = "to_offset", arg = true, help = "reset to offset N (kept inside the log)" },
  { name = "shift-by", key = "shift_by", arg = true, help = "move by N (negative: back)" },
  { name = "execute", key = "execute", help = "apply the plan (default: dry run)" },
  { name = "metrics-textfile", key = "metrics_textfile", arg = true,
    help = "reset, rollback: write their metrics to this file at the end" },
})

-- reset and rollback count what they change and their errors (phase: what
-- was being done, see kalua.telemetry.error_kind); the others just die.
local tele
local function die(msg, phase)
  if tele then tele:die(msg, nil, phase) end
  cli.die(COMMAND, msg)
end

local args = { ... }
local sub = table.remove(args, 1)
local opts, err = cli.parse(args, flags)
if not opts then cli.die(COMMAND, err) end
if sub == "reset" or sub == "rollback" then
  tele = telemetry.command(COMMAND, { metrics_textfile = opts.metrics_textfile })
elseif opts.metrics_textfile then
  cli.die(COMMAND, "--metrics-textfile goes with reset and rollback")
end

local function open_store()
  if not opts.path then die("give --path DIR (where snapshots and backups are)", "config") end
  local path = opts.path:gsub("^file://", "")
  local store, serr = storage.open { backend = "filesystem", path = path }
  if not store then die(serr, "storage") end
  return store
end

local function admin()
  local a, aerr = cli.connect("admin", opts)
  if not a then die(aerr, aerr and aerr:find("^no brokers") and "config" or "kafka") end
  return a
end

local function load_snapshot(store)
  local id = opts[1]
  if not id and not opts.backup_id then die("name a snapshot id, or --backup-id", "config") end
  local snap, lerr = offsets.load(store, id, opts.backup_id)
  if not snap then die(lerr, "storage") end
  return snap
end

local function integer_flag(name, v)
  local n = math.tointeger(tonumber(v))
  if not n then die(("--%s expects an integer, got '%s'"):format(name, v), "config") end
  return n
end

local function reset_target()
  local chosen = {}
  if opts.to_earliest then chosen[#chosen + 1] = { to = "earliest" } end
  if opts.to_latest then chosen[#chosen + 1] = { to = "latest" } end
  if opts.to_offset then chosen[#chosen + 1] = { to = "offset", value = integer_flag("to-offset", opts.to_offset) } end
  if opts.shift_by then chosen[#chosen + 1] = { to = "shift", value = integer_flag("shift-by", opts.shift_by) } end
  if opts.to_datetime then
    local ms, terr = time.parse(opts.to_datetime)
    if not ms then die(terr, "config") end
    chosen[#chosen + 1] = { to = "timestamp", value = ms }
  end
  if #chosen ~= 1 then
    die("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by", "config")
  end
  return chosen[1]
end

local function run_plan(a, plan, what)
  local lines = offsets.plan_lines(plan)
  if #lines == 0 then print(what .. ": nothing to change") return end
  for _, l in ipairs(lines) do print(l) end
  if not opts.execute then
    print(("dry run: %d partition(s) would move; add --execute to apply"):format(#lines))
    return
  end
  local ok, aerr = offsets.apply(a, plan)
  if not ok then die(aerr, "kafka") end
  tele:offsets_changed(what, #plan, #lines)
  print(("%s: %d partition(s) moved"):format(what, #lines))
end

local function show_live(a)
  for _, g in ipairs(opts.groups) do
    local committed, cerr = offsets.committed(a, g)
    if not committed then die(cerr) end
    for _, o in ipairs(committed) do
      local _, high = a:watermarks(o.topic, o.partition)
      print(("%s %s [%d]: committed %d, end %s, lag %s"):format(g, o.topic, o.partition, o.offset,
        tostring(high or "?"), high and tostring(high - o.offset) or "?"))
    end
  end
end

local commands = {}

function commands.snapshot()
  local store, a = open_store(), admin()
  local snap, serr = offsets.capture(a, opts.groups)
  if not snap then die(serr) end
  local id = opts.id or offsets.new_id(store)
  local ok, perr = offsets.save(store, id, snap)
  if not ok then die(perr) end
  local n = 0
  for _ in pairs(snap.groups) do n = n + 1 end
  print(("snapshot %s: %d group(s)"):format(id, n))
end

function commands.list()
  for _, s in ipairs(offsets.list(open_store())) do
    print(("%s  %s  %d group(s)"):format(s.id, s.taken and time.format(s.taken) or "?", s.groups))
  end
end

function commands.show()
  if opts.groups and not opts.path then return show_live(admin()) end
  local snap = load_snapshot(open_store())
  local names = {}
  for g in pairs(snap.groups) do names[#names + 1] = g end
  table.sort(names)
  print(("snapshot taken %s"):format(snap.taken and time.format(snap.taken) or "?"))
  for _, g in ipairs(names) do
    for _, o in ipairs(snap.groups[g].offsets) do
      print(("%s %s [%d]: %d"):format(g, o.topic, o.partition, o.offset))
    end
  end
end

function commands.reset()
  local target = reset_target()
  local a = admin()
  local groups = opts.groups
  if opts.all_groups then
    local gerr
    groups, gerr = offsets.groups(a)
    if not groups then die(gerr, "kafka") end
  end
  if not groups or #groups == 0 then die("name the groups with --group, or --all-groups", "config") end
  local plan, perr = offsets.plan_reset(a, groups, target, opts.topics)
  if not plan then die(perr, "kafka") end
  run_plan(a, plan, "reset")
end

function commands.rollback()
  local snap = load_snapshot(open_store())
  local a = admin()
  local plan, perr = offsets.plan_rollback(a, snap, opts.groups)
  if not plan then die(perr, perr and perr:find("is not in the snapshot") and "config" or "kafka") end
  run_plan(a, plan, "rollback")
end

function commands.verify()
  local snap = load_snapshot(open_store())
  local diffs, verr = offsets.verify(admin(), snap, opts.groups)
  if not diffs then die(verr) end
  for _, d in ipairs(diffs) do
    print(("%s %s [%d]: snapshot %d, now %s"):format(d.group, d.topic, d.partition, d.expected,
      d.actual and tostring(d.actual) or "no commit"))
  end
  if #diffs > 0 then die(("%d partition(s) differ from the snapshot"):format(#diffs)) end
  print("offsets match the snapshot")
end

function commands.delete()
  if not opts[1] then die("name the snapshot id to delete") end
  local ok, derr = offsets.delete(open_store(), opts[1])
  if not ok then die(derr) end
  print(("deleted snapshot %s"):format(opts[1]))
end

local run = commands[sub or ""]
if not run then die("usage: kalua offsets snapshot|list|show|reset|rollback|verify|delete ... (see kalua help offsets)") end
run()
if tele then
  tele:flush()
  tele:close()
end
