--- Produce records to a topic, one per input line.
-- Usage: kalua produce TOPIC [-k SEP] [--partition N] [-H name=value ...] [connection flags] < lines
--
-- Each line of standard input becomes one record's value. With -k SEP the
-- text before the first SEP is the key. -H adds a header to every record
-- (repeatable). Exits non-zero if any record was not delivered.
-- Connection flags:
-- @connection-flags
local cli = require "kalua.cli"
local log = require "kalua.log"

local flags = cli.flags(cli.connection_flags, {
  { name = "key-delimiter", short = "k", key = "key_delimiter", arg = true, help = "split key and value at SEP" },
  { name = "partition", short = "p", key = "partition", arg = true, help = "partition (default: by key)" },
  { name = "header", short = "H", key = "headers", arg = true, multi = true, help = "header name=value (repeatable)" },
})

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("produce", err) end
local topic = opts[1] or cli.die("produce", "usage: kalua produce TOPIC [options] < lines")

local headers = {}
for _, kv in ipairs(opts.headers or {}) do
  local k, v = kv:match("^([^=]+)=(.*)$")
  if not k then cli.die("produce", "-H expects name=value, got " .. kv) end
  headers[#headers + 1] = { k, v }
end

local producer, msg = cli.connect("producer", opts)
if not producer then cli.die("produce", msg) end

local n = 0
for line in io.stdin:lines() do
  local key, value = nil, line
  if opts.key_delimiter then
    local at = line:find(opts.key_delimiter, 1, true)
    if at then key, value = line:sub(1, at - 1), line:sub(at + #opts.key_delimiter) end
  end
  local ok, e = producer:produce {
    topic = topic, key = key, value = value, headers = headers,
    partition = opts.partition and tonumber(opts.partition) or nil,
  }
  if not ok then cli.die("produce", e) end
  n = n + 1
end
local ok, e = producer:flush(30000)
if not ok then cli.die("produce", e) end
producer:close()
log.info(("produced %d records to %s"):format(n, topic), { records = n, topic = topic })
