--- List, describe, create and delete topics.
-- Usage: kalua topics [list] [--internal] [connection flags]
--        kalua topics describe TOPIC [connection flags]
--        kalua topics create TOPIC [--partitions N] [--replication-factor N] [--topic-config k=v ...]
--        kalua topics delete TOPIC... [connection flags]
--
-- `list` shows each topic's partitions and message counts (high - low
-- watermark); `describe` adds leaders, replicas and the topic's configs.
-- Connection flags (or --config FILE with OSO YAML):
-- @connection-flags
local cli = require "kalua.cli"

local flags = cli.flags(cli.connection_flags, {
  { name = "partitions", short = "p", key = "partitions", arg = true, help = "partitions for create (default 1)" },
  { name = "replication-factor", short = "r", key = "replication_factor", arg = true,
    help = "replication factor for create (default 1)" },
  { name = "topic-config", key = "topic_config", arg = true, multi = true, help = "topic config k=v for create" },
  { name = "internal", key = "internal", help = "include internal topics in list" },
})

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("topics", err .. "\n" .. cli.usage(flags)) end
local action = opts[1] or "list"

local admin, msg = cli.connect("admin", opts)
if not admin then cli.die("topics", msg) end

local function count(p) return (p.high or 0) - (p.low or 0) end

local function list()
  local topics, e = admin:list_topics { watermarks = true }
  if not topics then cli.die("topics", e) end
  table.sort(topics, function(a, b) return a.name < b.name end)
  for _, t in ipairs(topics) do
    if opts.internal or not t.internal then
      local records = 0
      for _, p in ipairs(t.partitions) do records = records + count(p) end
      print(("%-40s partitions=%-4d records=%d"):format(t.name, #t.partitions, records))
    end
  end
end

local function describe(name)
  local topics, e = admin:metadata { topic = name, watermarks = true }
  if not topics then cli.die("topics", e) end
  local t = topics[1]
  if not t or t.error then cli.die("topics", ("topic '%s' not found"):format(name)) end
  print(("topic %s: %d partitions"):format(t.name, #t.partitions))
  for _, p in ipairs(t.partitions) do
    print(("  partition %-3d leader=%-3s replicas=%s isr=%s offsets=%d..%d"):format(p.id, tostring(p.leader),
      table.concat(p.replicas or {}, ","), table.concat(p.isrs or {}, ","), p.low or 0, p.high or 0))
  end
  local configs = admin:describe_configs { { type = "topic", name = name } }
  if configs and configs[name] then
    local keys = {}
    for k in pairs(configs[name]) do keys[#keys + 1] = k end
    table.sort(keys)
    print("  configs:")
    for _, k in ipairs(keys) do
      local v = configs[name][k]
      print(("    %s = %s"):format(k, type(v) == "table" and tostring(v.value) or tostring(v)))
    end
  end
end

local function create(name)
  local config = {}
  for _, kv in ipairs(opts.topic_config or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then cli.die("topics", "--topic-config expects k=v, got " .. kv) end
    config[k] = v
  end
  local ok, e = admin:create_topics { {
    name = name,
    partitions = tonumber(opts.partitions or 1),
    replication_factor = tonumber(opts.replication_factor or 1),
    config = config,
  } }
  if not ok then cli.die("topics", e) end
  print("created " .. name)
end

local function delete(names)
  local ok, e = admin:delete_topics(names)
  if not ok then cli.die("topics", e) end
  print("deleted " .. table.concat(names, ", "))
end

if action == "list" then
  list()
elseif action == "describe" and opts[2] then
  describe(opts[2])
elseif action == "create" and opts[2] then
  create(opts[2])
elseif action == "delete" and opts[2] then
  delete(table.move(opts, 2, #opts, 1, {}))
else
  cli.die("topics", "usage: kalua topics [list|describe TOPIC|create TOPIC|delete TOPIC...] (see `kalua help topics`)")
end
admin:close()
