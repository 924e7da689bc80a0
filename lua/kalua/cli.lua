--- Command-line parsing shared by kalua's commands.
--
-- Flags are declared as data: { name = "bootstrap-servers", key = "bootstrap_servers",
-- arg = true, help = "..." }. The connection flags map one to one onto the
-- YAML `source` keys, so `--sasl-mechanism` and `sasl_mechanism:` mean the same.
-- Secrets are never taken from argv (visible in `ps`): `--sasl-password-env VAR`
-- and `--sasl-password-file PATH` name where to read them.
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

local function index_flags(flags)
  local by_name = {}
  for _, f in ipairs(flags) do
    by_name["--" .. f.name] = f
    if f.short then by_name["-" .. f.short] = f end
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

--- Parses args (a list of strings) against flags.
-- Returns opts (flag values by key, positional args in opts[1..n]) or
-- nil, message. `--name=value` and `--name value` both work; `--` ends flags.
function M.parse(args, flags)
  local by_name = index_flags(flags)
  local opts = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do opts[#opts + 1] = args[j] end
      break
    end
    local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
    name = name or a
    local f = by_name[name]
    if a:sub(1, 1) == "-" and a ~= "-" and not f then
      return nil, ("unknown option '%s'"):format(name)
    end
    if not f then
      opts[#opts + 1] = a
    elseif f.arg then
      local value = inline
      if value == nil then
        i = i + 1
        value = args[i]
        if value == nil then return nil, ("option '%s' needs a value"):format(name) end
      end
      if f.multi then
        opts[f.key] = opts[f.key] or {}
        table.insert(opts[f.key], value)
      else
        opts[f.key] = value
      end
    else
      if inline ~= nil then return nil, ("option '%s' takes no value"):format(name) end
      opts[f.key] = true
    end
    i = i + 1
  end
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
  if not given then return section end
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

--- Prints "kalua <command>: message" to stderr and exits with status 1 (or code).
function M.die(command, message, code)
  io.stderr:write("kalua ", command, ": ", tostring(message), "\n")
  os.exit(code or 1)
end

return M
