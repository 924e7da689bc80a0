--- Probe a broker's SASL, or list the mechanisms kalua knows.
-- Usage: kalua sasl probe [connection flags] [--timeout-ms N] [--json]
--        kalua sasl mechanisms [--sasl-lua-mechanism FILE]
--
-- `probe` connects to the first bootstrap broker the way kalua's auth relay
-- does (TLS with SASL_SSL), and prints the broker's API versions, the
-- mechanisms it enables, the one chosen (and why, for `auto`), whether
-- authentication succeeded, the session lifetime (KIP-368) and how long
-- each step took. It exits 0 only when authentication succeeded.
-- Passwords come from --sasl-password-env/--sasl-password-file, never argv.
-- Connection flags (or --config FILE with OSO YAML):
-- @connection-flags
local cli = require "kalua.cli"

local flags = cli.flags(cli.connection_flags, {
  { name = "timeout-ms", key = "timeout_ms", arg = true, help = "give up after this long (default 30000)" },
  { name = "json", key = "json", help = "print the result as one JSON object" },
})

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("sasl", err .. "\n" .. cli.usage(flags)) end
local action = opts[1]

local function mechanisms()
  local sasl = require "kalua.sasl"
  local native = { PLAIN = true, ["SCRAM-SHA-256"] = true, ["SCRAM-SHA-512"] = true }
  for _, name in ipairs(sasl.mechanisms()) do
    print(("%-16s %s"):format(name, native[name] and "librdkafka or kalua's relay" or "kalua's relay"))
  end
  if opts.sasl_lua_mechanism then
    local ok, def = pcall(dofile, opts.sasl_lua_mechanism)
    if not ok or type(def) ~= "table" or type(def.start) ~= "function" or type(def.step) ~= "function" then
      cli.die("sasl", ("%s does not return a mechanism {name=, start=, step=}%s"):format(
        opts.sasl_lua_mechanism, ok and "" or (": " .. tostring(def))))
    end
    print(("%-16s Lua, from %s (kalua's relay)"):format(tostring(def.name), opts.sasl_lua_mechanism))
  end
end

-- "Metadata", or "key 99" for one kalua does not know.
local function api_name(key)
  local name = require("kalua.kafka").wire.api_key_name(key)
  return name ~= "UnknownApi" and name or ("key " .. key)
end

local function print_result(r)
  print(("broker          %s%s"):format(r.broker, r.tls and " (TLS)" or ""))
  if r.connect_ms then print(("connected in    %d ms"):format(r.connect_ms)) end
  if r.api_versions then
    local parts = {}
    for _, v in ipairs(r.api_versions) do
      parts[#parts + 1] = ("%s %d-%d"):format(api_name(v.key), v.min, v.max)
    end
    print(("api versions    %d APIs: %s"):format(#r.api_versions, table.concat(parts, ", ")))
  end
  if r.enabled then print(("enabled         %s"):format(table.concat(r.enabled, ", "))) end
  print(("mechanism       %s"):format(r.mechanism))
  if r.reason then print(("why             %s"):format(r.reason)) end
  print(("authenticated   %s"):format(r.authenticated and "yes" or "no"))
  if r.session_lifetime_ms then
    print(("session         %s"):format(r.session_lifetime_ms > 0
      and ("%d ms (re-authentication due at ~80%%)"):format(r.session_lifetime_ms) or "no lifetime set by the broker"))
  end
  if r.auth_ms then print(("exchange took   %d ms"):format(r.auth_ms)) end
  if r.error then print(("error           %s"):format(r.error)) end
end

local function probe()
  local base
  if opts.config then
    local cfg, e = require("kalua.config").load(opts.config)
    if not cfg then cli.die("sasl", e) end
    base = cfg.source
  end
  local client, e = cli.client(opts, base)
  if not client then cli.die("sasl", e) end
  client.security = client.security or {}
  client.security.sasl_relay = true -- the probe is the relay's own connection
  local kafka = require "kalua.kafka"
  local r, msg = kafka.sasl_probe(client, { timeout_ms = tonumber(opts.timeout_ms) })
  if not r then cli.die("sasl", msg) end
  if opts.json then
    print(require("kalua.json").encode(r))
  else
    print_result(r)
  end
  os.exit(r.authenticated and 0 or 1)
end

if action == "probe" then
  probe()
elseif action == "mechanisms" then
  mechanisms()
else
  cli.die("sasl", "expected `probe` or `mechanisms`\n" .. cli.usage(flags), 2)
end
