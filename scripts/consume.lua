--- Print a topic's records.
-- Usage: kalua consume TOPIC [-o beginning|end|OFFSET|@TIMESTAMP_MS] [-p N] [-c COUNT] [-e]
--                            [-f text|json|lua] [-G GROUP] [connection flags]
--
-- -o sets where to start in every partition (default beginning), -p picks
-- one partition, -c stops after COUNT records, -e exits at the end of every
-- partition, -G consumes as a member of GROUP (and commits). Formats: `text`
-- prints the value per line, `json` one JSON object per record (key, value
-- and header values as strings, or base64 when not UTF-8), `lua` a Lua table.
--
-- Connection flags (the same keys as the YAML `source` section):
-- @connection-flags
local cli = require "kalua.cli"
local repl = require "kalua.repl"

local flags = cli.flags(cli.connection_flags, {
  { name = "offset", short = "o", key = "offset", arg = true, help = "start: beginning|end|N|@timestamp_ms" },
  { name = "partition", short = "p", key = "partition", arg = true, help = "only this partition" },
  { name = "count", short = "c", key = "count", arg = true, help = "stop after COUNT records" },
  { name = "exit", short = "e", key = "exit_at_end", help = "exit at the end of all partitions" },
  { name = "format", short = "f", key = "format", arg = true, help = "text | json | lua (default text)" },
  { name = "group", short = "G", key = "group", arg = true, help = "consume in this consumer group" },
})

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("consume", err) end
local topic = opts[1] or cli.die("consume", "usage: kalua consume TOPIC [options] (see `kalua help consume`)")

local function start_offset(s)
  if s == nil or s == "beginning" or s == "end" then return s or "beginning" end
  local ts = s:match("^@(%d+)$")
  if ts then return { timestamp = tonumber(ts) } end
  return tonumber(s) or cli.die("consume", "bad -o value " .. s)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  return (s:gsub("..?.?", function(chunk)
    local a, b, c = chunk:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local out = {}
    for i = 1, 4 do
      local idx = (n >> (6 * (4 - i))) & 63
      out[i] = B64:sub(idx + 1, idx + 1)
    end
    if not b then out[3] = "=" end
    if not c then out[4] = "=" end
    return table.concat(out)
  end))
end

local function json_string(s)
  if s == nil then return "null" end
  if utf8.len(s) == nil then return '{"base64":"' .. base64(s) .. '"}' end
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function show(r)
  if opts.format == "json" then
    local hs = {}
    for i, h in ipairs(r.headers or {}) do hs[i] = "[" .. json_string(h[1]) .. "," .. json_string(h[2]) .. "]" end
    print(('{"topic":%s,"partition":%d,"offset":%d,"timestamp":%s,"key":%s,"value":%s,"headers":[%s]}'):format(
      json_string(r.topic), r.partition, r.offset, tostring(r.timestamp or "null"),
      json_string(r.key), json_string(r.value), table.concat(hs, ",")))
  elseif opts.format == "lua" then
    print(repl.pretty(r))
  else
    print(r.value or "")
  end
end

local extra = { partition_eof = true }
if opts.group then
  extra.group_id = opts.group
  -- A group with no committed offset starts where -o says (beginning or end).
  extra["auto.offset.reset"] = opts.offset == "end" and "latest" or "earliest"
end
local consumer, msg = cli.connect("consumer", opts, extra)
if not consumer then cli.die("consume", msg) end

local ok, e
if opts.group then
  ok, e = consumer:subscribe { topic }
else
  local admin = assert(cli.connect("admin", opts))
  local topics
  topics, e = admin:metadata { topic = topic }
  admin:close()
  if not topics then cli.die("consume", e) end
  if not topics[1] or topics[1].error or #topics[1].partitions == 0 then
    cli.die("consume", ("topic '%s' not found"):format(topic))
  end
  local assignment = {}
  for _, p in ipairs(topics[1].partitions) do
    if not opts.partition or tonumber(opts.partition) == p.id then
      assignment[#assignment + 1] = { topic = topic, partition = p.id, offset = start_offset(opts.offset) }
    end
  end
  ok, e = consumer:assign(assignment)
end
if not ok then cli.die("consume", e) end

local limit = opts.count and tonumber(opts.count) or math.huge
local seen, at_end, assigned = 0, {}, nil
while seen < limit do
  local r, perr = consumer:poll(1000)
  if r and r.eof then
    at_end[r.partition] = true
    if opts.exit_at_end then
      assigned = assigned or #(consumer:assignment() or {})
      local n = 0
      for _ in pairs(at_end) do n = n + 1 end
      if n >= assigned then break end
    end
  elseif r then
    at_end[r.partition] = nil
    show(r)
    seen = seen + 1
  elseif perr then
    cli.die("consume", perr)
  end
end
if opts.group then consumer:commit() end
consumer:close()
