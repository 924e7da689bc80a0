--- One logger for kalua's commands, on stderr.
--
--   local log = require "kalua.log"
--   log.configure { level = "debug", format = "json" }   -- level, format, stream, tty, color
--   log.info("backup done", { topics = 3, records = 1200 })
--   local blog = log.child { component = "backup" }      -- default fields
--   blog.warn("partition stalled", { topic = "t", partition = 0 })
--   log.secret(password)                                  -- masked wherever it appears
--
-- Levels: error, warn, info (the default), debug, trace. Formats: `text`
-- (on a terminal `HH:MM:SS level message key=value ...` in colour, else
-- `2026-11-25T20:00:00.123Z level message key=value ...`) and `json` (one
-- object a line: ts, level, msg, then the fields). Fields named like a
-- secret (password, secret, token, authorization) are written as
-- "[redacted]", and so is every value registered with log.secret, in the
-- message and the fields alike. KALUA_LOG_LEVEL and KALUA_LOG_FORMAT set
-- the defaults; kalua.cli's -v, -q and --log-format override them.
--
-- librdkafka's log lines come here too (component "rdkafka"): only with -v,
-- or when a client asked for them (a `debug` property or `log = true`).
local json = require "kalua.json"

local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4, trace = 5 }
local NAMES = { "error", "warn", "info", "debug", "trace" }
local COLORS = { "31", "33", "32", "36", "90" } -- red, yellow, green, cyan, grey
local REDACTED = "[redacted]"
local SECRET_NAMES = { "password", "passwd", "secret", "token", "authorization", "private_key", "connection_string" }
-- ...but not where a secret is found: sasl_password_env names a variable.
local NOT_SECRET_SUFFIXES = { "_env", "_file", "_path", "_location", "_script", "_url", "_endpoint" }

local state = { level = LEVELS.info, format = "text", stream = io.stderr, tty = false, color = false, fields = {} }
local secrets = {} -- registered secret values, longest first

local function level_number(level)
  if math.type(level) == "integer" and NAMES[level] then return level end
  local n = LEVELS[tostring(level):lower()]
  if not n then
    error(("unknown log level '%s' (expected error, warn, info, debug or trace)"):format(tostring(level)), 3)
  end
  return n
end

local function is_tty(stream)
  if stream ~= io.stderr and stream ~= io.stdout then return false end
  local ok, host = pcall(require, "kalua.host")
  return ok and host.isatty(stream == io.stderr and 2 or 1) or false
end

--- Sets where and how lines go: level (a name), format ("text" | "json"),
-- stream (anything with :write, default io.stderr), tty and color
-- (booleans; by default found from the stream, and NO_COLOR turns colour
-- off), fields (default fields of every line, e.g. {component = "topics"}).
-- Keys left out keep their value.
function M.configure(opts)
  opts = opts or {}
  if opts.fields ~= nil then state.fields = opts.fields end
  if opts.level ~= nil then state.level = level_number(opts.level) end
  if opts.format ~= nil then
    if opts.format ~= "text" and opts.format ~= "json" then
      error(("unknown log format '%s' (expected text or json)"):format(tostring(opts.format)), 2)
    end
    state.format = opts.format
  end
  if opts.stream ~= nil then state.stream = opts.stream end
  if opts.stream ~= nil or opts.tty ~= nil then
    if opts.tty ~= nil then state.tty = opts.tty else state.tty = is_tty(state.stream) end
  end
  if opts.color ~= nil then
    state.color = opts.color
  elseif opts.stream ~= nil or opts.tty ~= nil then
    state.color = state.tty and os.getenv("NO_COLOR") == nil
  end
end

--- The current settings: { level = "info", format = "text", tty = false, color = false, fields = {} }.
function M.settings()
  return { level = NAMES[state.level], format = state.format, tty = state.tty, color = state.color,
    fields = state.fields }
end

--- True when a line of this level would be written.
function M.enabled(level)
  return level_number(level) <= state.level
end

-- Secrets ---------------------------------------------------------------

--- Registers a value (a password, a key) that must never be written:
-- every occurrence in messages and fields becomes "[redacted]". Values
-- shorter than 3 characters are ignored (they would mask ordinary text).
-- Returns value.
function M.secret(value)
  if type(value) ~= "string" or #value < 3 then return value end
  for _, s in ipairs(secrets) do
    if s == value then return value end
  end
  secrets[#secrets + 1] = value
  table.sort(secrets, function(a, b) return #a > #b end)
  return value
end

--- True when a field of this name holds a secret (case-insensitive:
-- password, secret, token, authorization, ...; not sasl_password_env or
-- sasl_oauthbearer_token_script, which say where one is).
function M.secret_name(name)
  if type(name) ~= "string" then return false end
  local lower = name:lower()
  for _, suffix in ipairs(NOT_SECRET_SUFFIXES) do
    if lower:sub(-#suffix) == suffix then return false end
  end
  for _, s in ipairs(SECRET_NAMES) do
    if lower:find(s, 1, true) then return true end
  end
  return false
end

--- Registers every string under a secret-looking key of t (nested tables
-- too), e.g. a config's source section. Returns t.
function M.secrets_in(t, depth)
  depth = depth or 0
  if type(t) ~= "table" or depth > 10 then return t end
  for k, v in pairs(t) do
    if type(v) == "table" then
      M.secrets_in(v, depth + 1)
    elseif M.secret_name(k) then
      M.secret(v)
    end
  end
  return t
end

--- s with every registered secret replaced by "[redacted]".
function M.mask(s)
  if type(s) ~= "string" then return s end
  for _, secret in ipairs(secrets) do
    local from = 1
    while true do
      local i, j = s:find(secret, from, true)
      if not i then break end
      s = s:sub(1, i - 1) .. REDACTED .. s:sub(j + 1)
      from = i + #REDACTED
    end
  end
  return s
end

-- A copy of v fit to write: secret-named fields and registered values
-- redacted, functions and userdata as strings.
local function clean(v, depth)
  local tv = type(v)
  if tv == "string" then return M.mask(v) end
  if tv == "number" or tv == "boolean" or v == json.null then return v end
  if tv ~= "table" then return M.mask(tostring(v)) end
  if depth > 10 then return "[...]" end
  local out = {}
  for k, x in pairs(v) do
    if M.secret_name(k) and x ~= nil then
      out[k] = REDACTED
    else
      out[k] = clean(x, depth + 1)
    end
  end
  return out
end

-- Formatting -------------------------------------------------------------

-- Wall-clock seconds, with their fraction: kalua.clock's CLOCK_REALTIME
-- (os.time's whole seconds where kalua.clock is missing).
local function wall_clock()
  local ok, clock = pcall(require, "kalua.clock")
  if ok and type(clock) == "table" and clock.time then return clock.time end
  return os.time
end

local now = wall_clock()

-- RFC 3339 in UTC with milliseconds, truncated (a line never shows a time
-- later than the one it was written at): 2026-11-25T20:00:00.123Z.
local function iso_utc(t)
  local ms = math.floor(t * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. (".%03dZ"):format(ms % 1000)
end

local function sorted_keys(fields)
  local keys = {}
  for k in pairs(fields) do
    if k ~= "component" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  if fields.component ~= nil then table.insert(keys, 1, "component") end
  return keys
end

local function encode(v)
  local ok, s = pcall(json.encode, v)
  return ok and s or json.encode(tostring(v))
end

local function text_value(v)
  if type(v) == "table" then return encode(v) end
  local s = tostring(v)
  if s == "" or s:find('[%s"=\\%c]') then return encode(s) end
  return s
end

local function text_line(t, level, msg, fields)
  local parts = {}
  if state.tty then
    parts[1] = os.date("%H:%M:%S", math.floor(t))
    local name = ("%-5s"):format(NAMES[level])
    parts[2] = state.color and ("\27[" .. COLORS[level] .. "m" .. name .. "\27[0m") or name
  else
    parts[1] = iso_utc(t)
    parts[2] = NAMES[level]
  end
  parts[3] = msg
  for _, k in ipairs(sorted_keys(fields)) do
    parts[#parts + 1] = tostring(k) .. "=" .. text_value(fields[k])
  end
  return table.concat(parts, " ")
end

local function json_line(t, level, msg, fields)
  local parts = { '"ts":' .. encode(iso_utc(t)), '"level":' .. encode(NAMES[level]), '"msg":' .. encode(msg) }
  for _, k in ipairs(sorted_keys(fields)) do
    if k ~= "ts" and k ~= "level" and k ~= "msg" then
      parts[#parts + 1] = encode(tostring(k)) .. ":" .. encode(fields[k])
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Writes one line: level a number, defaults and fields tables (or nil),
-- t the time in epoch seconds (default now).
local function emit(level, msg, defaults, fields, t)
  local all = {}
  for k, v in pairs(state.fields) do all[k] = v end
  for k, v in pairs(defaults or {}) do all[k] = v end
  if type(fields) == "table" then
    for k, v in pairs(fields) do all[k] = v end
  elseif fields ~= nil then
    all.detail = fields
  end
  all = clean(all, 0)
  msg = M.mask(tostring(msg))
  t = t or now()
  local line = state.format == "json" and json_line(t, level, msg, all) or text_line(t, level, msg, all)
  state.stream:write(line, "\n")
  if state.stream.flush then state.stream:flush() end
end

-- Loggers ---------------------------------------------------------------

local function make_logger(defaults)
  local logger = {}
  function logger.log(level, msg, fields)
    local n = level_number(level)
    if n <= state.level then emit(n, msg, defaults, fields) end
  end
  for n, name in ipairs(NAMES) do
    logger[name] = function(msg, fields)
      if n <= state.level then emit(n, msg, defaults, fields) end
    end
  end
  logger.enabled = M.enabled
  --- A logger whose lines carry these fields (and the parent's).
  function logger.child(fields)
    local merged = {}
    for k, v in pairs(defaults) do merged[k] = v end
    for k, v in pairs(fields or {}) do merged[k] = v end
    return make_logger(merged)
  end
  return logger
end

local root = make_logger({})
for k, v in pairs(root) do M[k] = v end

--- Writes a line whatever the level (cli.die's error: always one line).
function M.always(level, msg, fields)
  emit(level_number(level), msg, nil, fields)
end

-- librdkafka ------------------------------------------------------------

-- syslog severities (0 emerg .. 7 debug) as kalua levels.
local SYSLOG = { [0] = LEVELS.error, LEVELS.error, LEVELS.error, LEVELS.error, LEVELS.warn, LEVELS.info,
  LEVELS.info, LEVELS.debug }

--- Writes one librdkafka log line (kalua.kafka calls this on the Lua
-- thread, after each client method, for the lines its threads queued).
-- Without -v they are dropped unless the client asked for them (a debug
-- property or `log = true`): kalua reports errors itself, once. -q wins.
function M.rdkafka(severity, facility, message, requested, client, ts_ms)
  local level = SYSLOG[severity] or LEVELS.debug
  local threshold = state.level
  if requested and threshold >= LEVELS.info then threshold = LEVELS.trace end
  if not requested and state.level < LEVELS.debug then return end
  if level > threshold then return end
  emit(level, message, nil, { component = "rdkafka", facility = facility, client = client },
    ts_ms and ts_ms / 1000 or nil)
end

local function hook_kafka()
  local ok, kafka = pcall(require, "kalua.kafka")
  if ok and type(kafka) == "table" and kafka.set_logger then kafka.set_logger(M.rdkafka) end
end

-- Defaults from the environment (a scheduler can set them for its runs).
do
  local level, format = os.getenv("KALUA_LOG_LEVEL"), os.getenv("KALUA_LOG_FORMAT")
  state.tty = is_tty(state.stream)
  state.color = state.tty and os.getenv("NO_COLOR") == nil
  if level and LEVELS[level:lower()] then state.level = LEVELS[level:lower()] end
  if format == "json" or format == "text" then state.format = format end
  hook_kafka()
end

return M
