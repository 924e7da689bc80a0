--- Interactive helpers: how the REPL shows values and what it preloads.
local M = {}

local MAX_DEPTH = 6
local MAX_ITEMS = 200

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local format

local function format_key(k, seen, depth)
  if is_identifier(k) then return k end
  return "[" .. format(k, seen, depth) .. "]"
end

local function format_table(t, seen, depth, indent)
  if seen[t] then return "<cycle " .. tostring(t) .. ">" end
  local mt = getmetatable(t)
  if mt and mt.__tostring then return tostring(t) end
  if depth >= MAX_DEPTH then return "{...}" end
  seen[t] = true
  local n = #t
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  local parts, inner = {}, indent .. "  "
  for i = 1, math.min(n, MAX_ITEMS) do
    parts[#parts + 1] = format(t[i], seen, depth + 1, inner)
  end
  for i = 1, math.min(#keys, MAX_ITEMS) do
    local k = keys[i]
    parts[#parts + 1] = format_key(k, seen, depth + 1) .. " = " .. format(t[k], seen, depth + 1, inner)
  end
  if n + #keys > MAX_ITEMS * 2 then parts[#parts + 1] = "..." end
  seen[t] = nil
  if #parts == 0 then return "{}" end
  local flat = "{ " .. table.concat(parts, ", ") .. " }"
  if #flat + #indent <= 78 and not flat:find("\n", 1, true) then return flat end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

format = function(v, seen, depth, indent)
  local tv = type(v)
  if tv == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if tv == "table" then return format_table(v, seen or {}, depth or 0, indent or "") end
  return tostring(v)
end

--- Returns a readable, Lua-like rendering of any value.
function M.pretty(v)
  return (format(v, {}, 0, ""))
end

--- Prints values like Lua's REPL does (tab separated), with tables expanded.
-- Strings print raw, as `print` would, so text output stays copyable.
function M.show(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do
    local v = select(i, ...)
    out[i] = type(v) == "string" and v or M.pretty(v)
  end
  io.stdout:write(table.concat(out, "\t"), "\n")
end

local PRELOADED = {
  kafka = "kalua.kafka",
  yaml = "kalua.yaml",
  config = "kalua.config",
  codec = "kalua.codec",
  storage = "kalua.storage",
  sasl = "kalua.sasl",
  crypto = "kalua.crypto",
  clock = "kalua.clock",
}

-- The clients `kalua -i --bootstrap-servers ...` opened, for :help.
local opened = {}

--- Opens admin, producer and consumer globals from connection flags (the
-- same flags as every command: --bootstrap-servers, --sasl-*, --ssl-*).
local function open_clients(flags)
  local cli = require "kalua.cli"
  local opts, err = cli.parse(flags, cli.connection_flags)
  if not opts then return nil, err end
  local client
  client, err = cli.client(opts)
  if not client then return nil, err end
  local kafka = require "kalua.kafka"
  for _, kind in ipairs { "admin", "producer", "consumer" } do
    local c, cerr = kafka[kind](client)
    if not c then return nil, ("%s: %s"):format(kind, cerr) end
    rawset(_G, kind, c)
    opened[#opened + 1] = kind
  end
  local sec = client.security or {}
  io.stdout:write(("clients admin, producer, consumer -> %s%s  (:help for more)\n"):format(
    tostring(client.bootstrap_servers),
    sec.sasl_mechanism and (" as " .. tostring(sec.sasl_username or sec.sasl_principal or "?") .. " ("
      .. tostring(sec.sasl_mechanism) .. ")") or ""))
  return true
end

--- Makes kalua's modules globals for interactive use; a module that fails
-- to load is skipped so the REPL always starts. With connection flags it
-- also opens admin, producer and consumer.
function M.setup(...)
  for name, module in pairs(PRELOADED) do
    local ok, mod = pcall(require, module)
    if ok and rawget(_G, name) == nil then rawset(_G, name, mod) end
  end
  rawset(_G, "pretty", M.pretty)
  if select("#", ...) > 0 then
    local ok, err = open_clients { ... }
    if not ok then io.stderr:write("kalua: ", tostring(err), "\n") end
  end
end

-- --- tab completion ---------------------------------------------------------

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- What `a.b.c` names, following plain fields from _G only (no calls, no
-- __index functions: completing must never run user code).
local function resolve(path)
  local v = _G
  for name in path:gmatch("[^.:]+") do
    if type(v) ~= "table" then return nil end
    v = rawget(v, name)
  end
  return v
end

-- Names a value offers after "." (fields) or ":" (methods).
local function members(v, methods)
  local out, seen = {}, {}
  local function add(k, val)
    if type(k) == "string" and not seen[k] and k:match("^[%a_][%w_]*$") and not k:match("^__")
      and (not methods or type(val) == "function") then
      seen[k] = true
      out[#out + 1] = k
    end
  end
  if type(v) == "table" then for k, val in pairs(v) do add(k, val) end end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then
    for k, val in pairs(rawget(mt, "__index")) do add(k, val) end
  end
  return out
end

local topic_cache = { at = -math.huge, names = {} }

-- Topic names from the REPL's admin client (or any admin-like global),
-- asked at most every 5 s.
local function topics()
  local admin = rawget(_G, "admin")
  if type(admin) ~= "userdata" then return {} end
  local now = os.time()
  if now - topic_cache.at >= 5 then
    local ok, list = pcall(admin.list_topics, admin, { timeout_ms = 3000 })
    if ok and type(list) == "table" then
      topic_cache.names = {}
      for _, t in ipairs(list) do topic_cache.names[#topic_cache.names + 1] = t.name end
      topic_cache.at = now
    end
  end
  return topic_cache.names
end

local function starting_with(list, prefix, base)
  local out = {}
  for _, name in ipairs(list) do
    if name:sub(1, #prefix) == prefix then out[#out + 1] = (base or "") .. name end
  end
  table.sort(out)
  return out
end

--- Completions for word, given the line before it: topic names after a
-- quote, fields after ".", methods after ":", else globals and keywords.
function M.complete(before, word)
  if before:match("[\"']$") then return starting_with(topics(), word) end
  local base, sep, prefix = word:match("^(.*)([.:])([%w_]*)$")
  if base then
    local v = resolve(base)
    if v == nil then return {} end
    return starting_with(members(v, sep == ":"), prefix, base .. sep)
  end
  local names = members(_G)
  for _, k in ipairs(KEYWORDS) do names[#names + 1] = k end
  return starting_with(names, word)
end

-- --- :commands ---------------------------------------------------------------

local HELP = [[
kalua REPL: Lua 5.4 with kalua's modules as globals:
  kafka    producer/consumer/admin clients       yaml     YAML in and out
  config   OSO config keys -> client properties  storage  file/s3/az/gs stores
  codec    zstd, CRC32C                          sasl     SASL mechanisms, JAAS
  crypto   hashes, HMAC, PBKDF2, base64          clock    monotonic time, sleep
  pretty(v) renders any value; expressions print without `return`.
Tab completes globals, fields (kafka.<Tab>), methods (admin:<Tab>) and,
after a quote, topic names. `kalua -i --bootstrap-servers HOST:PORT [flags]`
opens admin, producer and consumer (the flags of any kalua command).
Commands: :help [name]  what a module or client offers   :quit  leave]]

--- Runs a ":name args" line (without the colon).
function M.command(line)
  local name, rest = line:match("^(%S*)%s*(.-)%s*$")
  if name == "help" or name == "h" or name == "?" then
    if rest == "" then
      io.stdout:write(HELP, "\n")
      if #opened > 0 then io.stdout:write("Open clients: ", table.concat(opened, ", "), "\n") end
      return
    end
    local v = resolve(rest)
    if v == nil then
      io.stdout:write(("no global %s\n"):format(rest))
      return
    end
    local fields, methods = members(v, false), members(v, true)
    table.sort(fields)
    table.sort(methods)
    if type(v) == "userdata" then
      io.stdout:write(("%s (%s) methods: %s\n"):format(rest, tostring(v), table.concat(methods, ", ")))
    else
      io.stdout:write(("%s: %s\n"):format(rest, table.concat(fields, ", ")))
    end
  elseif name == "quit" or name == "q" then
    os.exit(0)
  else
    io.stdout:write(("unknown command :%s (try :help)\n"):format(name))
  end
end

return M
