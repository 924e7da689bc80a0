--- Command-line parsing shared by kalua's commands.
--
-- Flags are declared as data: { name = "bootstrap-servers", key = "bootstrap_servers",
-- arg = true, help = "..." }. The connection flags map one to one onto the
-- YAML `source` keys, so `--sasl-mechanism` and `sasl_mechanism:` mean the same.
-- Secrets are never taken from argv (visible in `ps`): `--sasl-password-env VAR`
-- and `--sasl-password-file PATH` name where to read them.
local log = require "kalua.log"

local M = {}

--- Flags every command that talks to Kafka accepts.
M.connection_flags = {
  { name = "bootstrap-servers", short = "b", key = "bootstrap_servers", arg = true,
    help = "broker list, host:port[,host:port...]" },
  { name = "config", key = "config", arg = true, help = "YAML config file (OSO keys)" },
  { name = "security-protocol", key = "security_protocol", arg = true, security = true,
    help = "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL" },
  { name = "sasl-mechanism", key = "sasl_mechanism", arg = true, security = true,
    help = "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | GSSAPI | OAUTHBEARER | auto" },
  { name = "sasl-username", key = "sasl_username", arg = true, security = true, help = "SASL user" },
  { name = "sasl-password-env", key = "sasl_password_env", arg = true,
    help = "read the SASL password from this environment variable" },
  { name = "sasl-password-file", key = "sasl_password_file", arg = true,
    help = "read the SASL password from this file (first line)" },
  { name = "sasl-keytab", key = "sasl_keytab_path", arg = true, security = true, help = "Kerberos client keytab" },
  { name = "sasl-krb5-config", key = "sasl_krb5_config_path", arg = true, security = true, help = "krb5.conf to use" },
  { name = "sasl-kerberos-service-name", key = "sasl_kerberos_service_name", arg = true, security = true,
    help = "broker service name (default kafka)" },
  { name = "sasl-jaas-config", key = "sasl_jaas_config", arg = true, security = true, help = "JAAS file with KafkaClient" },
  { name = "sasl-principal", key = "sasl_principal", arg = true, security = true, help = "principal to pick from the JAAS file" },
  { name = "sasl-lua-mechanism", key = "sasl_lua_mechanism", arg = true, security = true,
    help = "Lua file defining a SASL mechanism" },
  { name = "ssl-ca-location", key = "ssl_ca_location", arg = true, security = true, help = "CA certificate (PEM)" },
  { name = "ssl-certificate-location", key = "ssl_certificate_location", arg = true, security = true,
    help = "client certificate (PEM), for mTLS" },
  { name = "ssl-key-location", key = "ssl_key_location", arg = true, security = true, help = "client key (PEM)" },
  { name = "ssl-key-password-env", key = "ssl_key_password_env", arg = true,
    help = "read the client key's password from this environment variable" },
  { name = "property", short = "X", key = "properties", arg = true, multi = true,
    help = "librdkafka property name=value (repeatable)" },
}

--- Flags every command takes (applied to kalua.log by parse): the log
-- format, -v (debug; -vv trace) and -q (errors only). A command that
-- declares a flag of the same name or letter keeps its own meaning; its
-- own `quiet` key (backup's "print nothing on success") quiets the log too.
M.log_flags = {
  { name = "log-format", key = "log_format", arg = true, help = "text (default) | json: one JSON object a line" },
  { name = "verbose", short = "v", key = "verbose", count = true,
    help = "more log lines: debug, and librdkafka's (-vv: trace)" },
  { name = "quiet", short = "q", key = "quiet", help = "log errors only" },
}

local function index_flags(flags)
  local by_name = {}
  for _, f in ipairs(flags) do
    by_name["--" .. f.name] = f
    if f.short then by_name["-" .. f.short] = f end
  end
  for _, f in ipairs(M.log_flags) do
    if not by_name["--" .. f.name] then by_name["--" .. f.name] = f end
    if f.short and not by_name["-" .. f.short] then by_name["-" .. f.short] = f end
  end
  return by_name
end

--- Concatenates flag lists.
function M.flags(...)
  local out = {}
  for _, list in ipairs { ... } do
    for _, f in ipairs(list) do out[#out + 1] = f end
  end
  return out
end

-- "-vv" is -v twice when -v counts.
local function repeated_short(by_name, a)
  local letters = a:match("^%-(%a%a+)$")
  if not letters or letters:find("[^" .. letters:sub(1, 1) .. "]") then return nil end
  local f = by_name["-" .. letters:sub(1, 1)]
  if f and f.count then return f, #letters end
  return nil
end

--- Sets kalua.log from parsed opts: log_format, quiet (errors only),
-- verbose (the -v count: 1 debug, 2 or more trace; a command's own
-- boolean `verbose` is its business). Returns true or nil, message.
function M.apply_log_flags(opts)
  local settings = {}
  if opts.log_format ~= nil then
    if opts.log_format ~= "text" and opts.log_format ~= "json" then
      return nil, ("unknown log format '%s' (expected text or json)"):format(tostring(opts.log_format))
    end
    settings.format = opts.log_format
  end
  if opts.quiet then
    settings.level = "error"
  elseif math.type(opts.verbose) == "integer" then
    settings.level = opts.verbose >= 2 and "trace" or "debug"
  end
  -- `kalua topics ...` runs with arg[0] == "topics": its lines say so.
  local command = type(arg) == "table" and arg[0]
  if type(command) == "string" and command:match("^[%w_-]+$") and not log.settings().fields.component then
    settings.fields = { component = command }
  end
  if next(settings) then log.configure(settings) end
  return true
end

--- Parses args (a list of strings) against flags, plus M.log_flags.
-- Returns opts (flag values by key, positional args in opts[1..n]) or
-- nil, message. `--name=value` and `--name value` both work; `--` ends flags.
-- The log flags take effect (kalua.log) even when parsing fails, so the
-- error is written the way --log-format asks.
function M.parse(args, flags)
  local by_name = index_flags(flags)
  local opts = {}
  local failure
  local function fail(msg) failure = failure or msg end
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do opts[#opts + 1] = args[j] end
      break
    end
    local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
    name = name or a
    local f, times = by_name[name], 1
    if not f and a:sub(1, 1) == "-" then f, times = repeated_short(by_name, a) end
    if a:sub(1, 1) == "-" and a ~= "-" and not f then
      fail(("unknown option '%s'"):format(name))
    elseif not f then
      opts[#opts + 1] = a
    elseif f.arg then
      local value = inline
      if value == nil then
        i = i + 1
        value = args[i]
      end
      if value == nil then
        fail(("option '%s' needs a value"):format(name))
      elseif f.multi then
        opts[f.key] = opts[f.key] or {}
        table.insert(opts[f.key], value)
      else
        opts[f.key] = value
      end
    elseif inline ~= nil then
      fail(("option '%s' takes no value"):format(name))
    elseif f.count then
      opts[f.key] = (tonumber(opts[f.key]) or 0) + times
    else
      opts[f.key] = true
    end
    i = i + 1
  end
  local ok, err = M.apply_log_flags(opts)
  if not ok then fail(err) end
  if failure then return nil, failure end
  return opts
end

local function read_secret_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, ("cannot read secret file: %s"):format(err) end
  local line = f:read("l") or ""
  f:close()
  return line
end

local function secret_from(opts, env_key, file_key, what)
  if opts[env_key] then
    local v = os.getenv(opts[env_key])
    if v == nil then return nil, ("%s: environment variable %s is not set"):format(what, opts[env_key]) end
    return v
  end
  if file_key and opts[file_key] then return read_secret_file(opts[file_key]) end
  return false
end

--- Builds a client table ({bootstrap_servers=, security=, properties=}, the
-- shape of the YAML `source`) from parsed connection flags. Flags given on
-- the command line override those of `base` (e.g. a config file's source).
function M.client(opts, base)
  local client = { security = {}, properties = {} }
  base = base or {}
  client.bootstrap_servers = opts.bootstrap_servers or base.bootstrap_servers
  for k, v in pairs(base.security or {}) do client.security[k] = v end
  for k, v in pairs(base.properties or {}) do client.properties[k] = v end
  for _, f in ipairs(M.connection_flags) do
    if f.security and opts[f.key] ~= nil then client.security[f.key] = opts[f.key] end
  end
  local password, err = secret_from(opts, "sasl_password_env", "sasl_password_file", "SASL password")
  if password == nil then return nil, err end
  if password then client.security.sasl_password = password end
  local key_password
  key_password, err = secret_from(opts, "ssl_key_password_env", nil, "SSL key password")
  if key_password == nil then return nil, err end
  if key_password then client.security.ssl_key_password = key_password end
  for _, kv in ipairs(opts.properties or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return nil, ("-X expects name=value, got '%s'"):format(kv) end
    client.properties[k] = v
  end
  log.secrets_in(client) -- passwords read from env, files or the config: never logged
  if not client.bootstrap_servers then
    return nil, "no brokers: give --bootstrap-servers (or -b), or a --config with source.bootstrap_servers"
  end
  if next(client.security) == nil then client.security = nil end
  return client
end

--- The connection flags without --config, for commands whose --config is
-- their own job file (backup, restore): the flags then override its client.
function M.client_override_flags()
  local out = {}
  for _, f in ipairs(M.connection_flags) do
    if f.key ~= "config" then out[#out + 1] = f end
  end
  return out
end

--- A config's client section (`source` or `target`) with any connection
-- flags of opts laid over it; the section itself when no flag is given.
function M.override(opts, section)
  local given = opts.sasl_password_env or opts.sasl_password_file or opts.ssl_key_password_env or opts.properties
  for _, f in ipairs(M.connection_flags) do
    if f.key ~= "config" and opts[f.key] ~= nil then given = true end
  end
  if not given then return log.secrets_in(section) end
  local client, err = M.client(opts, section)
  if not client then return nil, err end
  for k, v in pairs(section or {}) do
    if client[k] == nil then client[k] = v end -- topics, group_id, ...
  end
  return client
end

--- Opens a kafka client ("producer", "consumer" or "admin") from parsed
-- connection flags, reading --config's `source` (or `target` when
-- section says so) first. Returns the client or nil, message.
function M.connect(kind, opts, extra, section)
  local base
  if opts.config then
    local cfg, err = require("kalua.config").load(opts.config)
    if not cfg then return nil, err end
    base = cfg[section or "source"]
  end
  local client, err = M.client(opts, base)
  if not client then return nil, err end
  for k, v in pairs(extra or {}) do client[k] = v end
  log.debug("connecting", { client = kind, bootstrap_servers = client.bootstrap_servers,
    security_protocol = client.security and client.security.security_protocol,
    sasl_mechanism = client.security and client.security.sasl_mechanism })
  log.trace("client config", client) -- secret fields come out as [redacted]
  local kafka = require "kalua.kafka"
  return kafka[kind](client)
end

--- Usage text for a list of flags.
function M.usage(flags)
  local lines = {}
  for _, f in ipairs(flags) do
    local names = (f.short and ("-" .. f.short .. ", ") or "    ") .. "--" .. f.name .. (f.arg and " VALUE" or "")
    lines[#lines + 1] = ("  %-40s %s"):format(names, f.help or "")
  end
  return table.concat(lines, "\n")
end

--- Reports a problem that is not the end of the command: "kalua <command>:
-- message" on stderr, or with --log-format json one line of that level
-- (default "error"; "warn" lines go unless -q).
function M.report(command, message, level)
  level = level or "error"
  if not log.enabled(level) then return end
  if log.settings().format == "json" then
    log.always(level, tostring(message), { component = command })
  else
    io.stderr:write("kalua ", command, ": ", log.mask(tostring(message)), "\n")
  end
end

--- Reports "kalua <command>: message" (or one JSON line with --log-format
-- json) and exits with status 1 (or code). Registered secrets are masked.
function M.die(command, message, code)
  if log.settings().format == "json" then
    log.always("error", tostring(message), { component = command, exit = code or 1 })
  else
    io.stderr:write("kalua ", command, ": ", log.mask(tostring(message)), "\n")
  end
  os.exit(code or 1)
end

return M
