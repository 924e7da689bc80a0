--- kalua's configuration: OSO Kafka Backup's YAML keys, checked against a
-- schema, and the translation of a client section into librdkafka properties.
--
--   local cfg, err = config.load("backup.yaml")   -- err: "backup.yaml:3:5: ..."
--   local props, err = config.client_properties(cfg.source)
--
-- The schema below is data: a feature adds its keys in one place. Kinds:
-- string, integer, boolean, enum (values), strings (a list, or one
-- comma-separated string), map (free-form key = scalar), section (keys).
-- Numeric strings are accepted for integers and numbers for strings, since
-- `${VAR}` substitutions are always strings.
--
-- client_properties returns librdkafka properties, plus `kalua.*` keys for
-- kalua's auth relay (security.sasl_relay, GSSAPI, OAUTHBEARER, auto, Lua
-- mechanisms), which kalua.kafka gives to the relay instead of librdkafka.
local yaml = require "kalua.yaml"

local M = {}

local function str() return { kind = "string" } end
local function int() return { kind = "integer" } end
local function bool() return { kind = "boolean" } end
local function enum(values, opts)
  return { kind = "enum", values = values, ignore_case = opts and opts.ignore_case }
end
local function section(keys, opts)
  return { kind = "section", keys = keys, required = opts and opts.required }
end

local SECURITY = section {
  security_protocol = enum({ "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL" }, { ignore_case = true }),
  sasl_mechanism = enum({ "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA256", "SCRAM-SHA-512", "SCRAM-SHA512",
    "GSSAPI", "OAUTHBEARER", "auto" }, { ignore_case = true }),
  sasl_username = str(), sasl_password = str(),
  ssl_ca_location = str(), ssl_certificate_location = str(), ssl_key_location = str(),
  ssl_key_password = str(), ssl_endpoint_identification = bool(),
  sasl_kerberos_service_name = str(), sasl_keytab_path = str(), sasl_krb5_config_path = str(),
  sasl_jaas_config = str(), sasl_principal = str(), sasl_lua_mechanism = str(),
  sasl_relay = bool(), sasl_oauthbearer_token = str(), sasl_oauthbearer_token_script = str(),
}

local TOPICS = section { include = { kind = "strings" }, exclude = { kind = "strings" } }

local function client_section()
  return section {
    bootstrap_servers = { kind = "strings", required = true },
    security = SECURITY,
    properties = { kind = "map" },
    topics = TOPICS,
    client_id = str(),
    group_id = str(),
  }
end

local STORAGE = section({
  backend = enum { "filesystem", "s3", "azure", "gcs" },
  path = str(), url = str(), prefix = str(),
  bucket = str(), region = str(), endpoint = str(), force_path_style = bool(),
  access_key = str(), secret_key = str(), session_token = str(), profile = str(),
  server_side_encryption = str(), kms_key_id = str(),
  container = str(), account_name = str(), account_key = str(),
  connection_string = str(), sas_token = str(),
  project_id = str(), credentials_file = str(), service_account_key = str(),
  hmac_access_id = str(), hmac_secret = str(),
})

local BACKUP = section {
  compression = enum { "none", "zstd" },
  compression_level = int(),
  include_offset_headers = bool(),
  segment_max_bytes = int(), segment_max_records = int(), segment_max_interval_ms = int(),
  continuous = bool(), stop_at_current_offsets = bool(),
  max_concurrent_partitions = int(),
  start_offset = { kind = "any" },
  checkpoint_interval_secs = int(), poll_interval_ms = int(),
  consumer_group_snapshot = bool(),
  encryption = { kind = "map" },
}

local RESTORE = section {
  topic_mapping = { kind = "map" }, partition_mapping = { kind = "any" },
  topics = TOPICS,
  time_window_start = { kind = "any" }, time_window_end = { kind = "any" },
  start_time = { kind = "any" }, end_time = { kind = "any" },
  start_offset = int(), end_offset = int(),
  dry_run = bool(), create_topics = bool(),
  include_original_offset_header = bool(), include_original_timestamp_header = bool(),
  rate_limit_records_per_sec = int(),
  consumer_groups = { kind = "strings" }, consumer_group_strategy = str(),
  reset_consumer_offsets = bool(), restore_id = str(),
}

-- kalua proxy (lua/kalua/proxy.lua); `source` is the cluster it fronts.
local PROXY = section {
  listeners = { kind = "any" }, listen_host = str(),
  dynamic_listeners = bool(), dynamic_host = str(), dynamic_advertised_host = str(), dynamic_port_min = int(),
  forbidden_api_keys = { kind = "strings" },
  max_connections = int(), idle_timeout_ms = int(), handshake_timeout_ms = int(),
  tls = section { cert = str(), key = str(), key_password = str(), ca = str(), client_subjects = { kind = "any" } },
  auth_script = str(),
  identities = { kind = "any" },
  metrics_addr = str(),
}

M.schema = section {
  mode = enum { "backup", "restore", "proxy" },
  backup_id = str(),
  source = client_section(),
  target = client_section(),
  topics = TOPICS,
  storage = STORAGE,
  backup = BACKUP,
  restore = RESTORE,
  proxy = PROXY,
}

-- What each mode needs on top of the schema's own required keys.
local REQUIRED_BY_MODE = {
  backup = { "backup_id", "source", "storage" },
  restore = { "backup_id", "target", "storage" },
  proxy = { "source" },
}

-- --- validation -------------------------------------------------------------

local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

local function suggestion(key, keys)
  local best, best_d
  for known in pairs(keys) do
    local d = distance(key, known)
    if d <= 3 and (not best_d or d < best_d or (d == best_d and known < best)) then best, best_d = known, d end
  end
  return best and (" (did you mean '%s'?)"):format(best) or ""
end
--- " (did you mean 'x'?)" for an unknown key close to one of keys (a set), or "".
M.suggestion = suggestion

local Checker = {}
Checker.__index = Checker

function Checker:where(parent, key)
  local p = parent and self.positions[parent] and self.positions[parent][key]
  if p then return ("%s:%d:%d"):format(self.name, p.line, p.column) end
  return self.name
end

function Checker:fail(parent, key, fmt, ...)
  error({ message = self:where(parent, key) .. ": " .. fmt:format(...) }, 0)
end

local function join(path, key)
  return path == "" and tostring(key) or (path .. "." .. tostring(key))
end

local coerce = {}

function coerce.string(self, v, parent, key, path)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then self:fail(parent, key, "'%s' must be a string", path) end
  return v
end

function coerce.integer(self, v, parent, key, path)
  local n = math.tointeger(tonumber(v))
  if n == nil then self:fail(parent, key, "'%s' must be an integer", path) end
  return n
end

function coerce.boolean(self, v, parent, key, path)
  if v == "true" then return true elseif v == "false" then return false end
  if type(v) ~= "boolean" then self:fail(parent, key, "'%s' must be true or false", path) end
  return v
end

function coerce.enum(self, v, parent, key, path, spec)
  v = coerce.string(self, v, parent, key, path)
  for _, allowed in ipairs(spec.values) do
    if v == allowed or (spec.ignore_case and v:upper() == allowed:upper()) then return allowed end
  end
  self:fail(parent, key, "'%s' must be one of %s (got '%s')", path, table.concat(spec.values, ", "), v)
end

function coerce.strings(self, v, parent, key, path)
  if type(v) == "string" then
    local list = {}
    for item in v:gmatch("[^,%s]+") do list[#list + 1] = item end
    return list
  end
  if type(v) ~= "table" then self:fail(parent, key, "'%s' must be a list or a comma-separated string", path) end
  for i, item in ipairs(v) do v[i] = coerce.string(self, item, v, i, join(path, i)) end
  return v
end

function coerce.map(self, v, parent, key, path)
  if type(v) ~= "table" then self:fail(parent, key, "'%s' must be a mapping", path) end
  for k, item in pairs(v) do
    if type(item) == "table" then self:fail(v, k, "'%s' must be a scalar", join(path, k)) end
  end
  return v
end

function coerce.any(_, v) return v end

function coerce.section(self, v, parent, key, path, spec)
  if type(v) ~= "table" then self:fail(parent, key, "'%s' must be a mapping", path) end
  for k, item in pairs(v) do
    local child = spec.keys[k]
    if not child then
      self:fail(v, k, "unknown key '%s'%s%s", tostring(k), path == "" and "" or (" in " .. path),
        suggestion(tostring(k), spec.keys))
    end
    v[k] = coerce[child.kind](self, item, v, k, join(path, k), child)
  end
  for k, child in pairs(spec.keys) do
    if child.required and v[k] == nil then
      self:fail(nil, nil, "missing required key '%s'", join(path, k))
    end
  end
  return v
end

--- Checks (and normalises in place) a loaded document against the schema.
-- Returns the table, or nil, "name:line:col: message".
function M.check(doc, positions, name)
  local self = setmetatable({ positions = positions or {}, name = name or "config" }, Checker)
  local ok, err = pcall(function()
    if type(doc) ~= "table" then self:fail(nil, nil, "expected a mapping of settings at the top level") end
    coerce.section(self, doc, nil, nil, "", M.schema)
    for _, k in ipairs(REQUIRED_BY_MODE[doc.mode] or {}) do
      if doc[k] == nil then self:fail(nil, nil, "missing required key '%s' (needed by mode %s)", k, doc.mode) end
    end
  end)
  if not ok then
    if type(err) == "table" then return nil, err.message end
    error(err, 0)
  end
  return doc
end

--- Loads and checks a YAML config file.
function M.load(path, opts)
  local doc, positions = yaml.load_file(path, opts)
  if doc == nil then return nil, positions end
  return M.check(doc, positions, path)
end

--- Loads and checks YAML text (name is used in messages).
function M.parse(text, name, opts)
  local doc, positions = yaml.load(text, name or "config", opts)
  if doc == nil then return nil, positions end
  return M.check(doc, positions, name or "config")
end

-- --- librdkafka properties ---------------------------------------------------

local MECHANISMS = {
  ["PLAIN"] = "PLAIN",
  ["SCRAM-SHA-256"] = "SCRAM-SHA-256", ["SCRAM-SHA256"] = "SCRAM-SHA-256",
  ["SCRAM-SHA-512"] = "SCRAM-SHA-512", ["SCRAM-SHA512"] = "SCRAM-SHA-512",
}

-- Mechanisms only kalua's own SASL engine runs (not librdkafka): these
-- always go through the auth relay.
local ENGINE_MECHANISMS = { GSSAPI = true, OAUTHBEARER = true, AUTO = true }
-- Mechanisms the auth relay runs with kalua's C mechanisms (kalua.sasl).
local RELAY_MECHANISMS = {
  PLAIN = true, ["SCRAM-SHA-256"] = true, ["SCRAM-SHA-512"] = true, OAUTHBEARER = true, GSSAPI = true, AUTO = true,
}

local function readable(key, path)
  local f, err = io.open(path, "r")
  if not f then return nil, ("%s: cannot read %s"):format(key, err) end
  f:close()
  return true
end

local function scalar_string(v)
  if type(v) == "boolean" then return v and "true" or "false" end
  return tostring(v)
end

local function bootstrap_list(servers)
  if type(servers) == "table" then return table.concat(servers, ",") end
  return servers
end

local function add_tls(props, sec)
  local files = {
    { "ssl_ca_location", "ssl.ca.location" },
    { "ssl_certificate_location", "ssl.certificate.location" },
    { "ssl_key_location", "ssl.key.location" },
  }
  for _, f in ipairs(files) do
    local path = sec[f[1]]
    if path then
      local ok, err = readable(f[1], path)
      if not ok then return nil, err end
      props[f[2]] = path
    end
  end
  if sec.ssl_certificate_location and not sec.ssl_key_location then
    return nil, "ssl_certificate_location is set but ssl_key_location is not: mTLS needs both"
  end
  if sec.ssl_key_location and not sec.ssl_certificate_location then
    return nil, "ssl_key_location is set but ssl_certificate_location is not: mTLS needs both"
  end
  if sec.ssl_key_password then props["ssl.key.password"] = sec.ssl_key_password end
  if sec.ssl_endpoint_identification == false then props["ssl.endpoint.identification.algorithm"] = "none" end
  return true
end

local function truthy(v) return v == true or v == "true" end

-- librdkafka's TLS settings, moved to the relay, which does the TLS.
local RELAY_TLS = {
  ["ssl.ca.location"] = "kalua.ssl.ca_location",
  ["ssl.certificate.location"] = "kalua.ssl.certificate_location",
  ["ssl.key.location"] = "kalua.ssl.key_location",
  ["ssl.key.password"] = "kalua.ssl.key_password",
  ["ssl.endpoint.identification.algorithm"] = "kalua.ssl.endpoint_identification",
}

local RELAY_KEYS = {
  sasl_username = "kalua.sasl.username", sasl_password = "kalua.sasl.password",
  sasl_oauthbearer_token = "kalua.sasl.token", sasl_keytab_path = "kalua.sasl.keytab",
  sasl_principal = "kalua.sasl.principal", sasl_kerberos_service_name = "kalua.sasl.service",
  sasl_krb5_config_path = "kalua.sasl.krb5_config", sasl_lua_mechanism = "kalua.sasl.lua_mechanism",
  sasl_oauthbearer_token_script = "kalua.sasl.token_script",
}

local function check_credentials(sec, mechanism)
  if (mechanism == "PLAIN" or mechanism:find("^SCRAM")) and not (sec.sasl_username and sec.sasl_password) then
    return nil, ("sasl_mechanism %s needs sasl_username and sasl_password"):format(mechanism)
  end
  if mechanism == "OAUTHBEARER" and not (sec.sasl_oauthbearer_token or sec.sasl_oauthbearer_token_script) then
    return nil, "sasl_mechanism OAUTHBEARER needs sasl_oauthbearer_token or sasl_oauthbearer_token_script"
  end
  if mechanism == "GSSAPI" and sec.sasl_keytab_path then
    local ok, err = readable("sasl_keytab_path", sec.sasl_keytab_path)
    if not ok then return nil, err end
  end
  return true
end

-- kalua's auth relay runs the SASL exchange (and TLS): librdkafka speaks
-- PLAINTEXT to it and gets the settings as kalua.* keys (see
-- core/kafka/relay.h). mechanism is nil for a Lua mechanism that names itself.
local function add_relay(props, sec, protocol, mechanism)
  if mechanism then
    local ok, err = check_credentials(sec, mechanism)
    if not ok then return nil, err end
    props["kalua.sasl.mechanism"] = mechanism
  end
  for _, key in ipairs { "sasl_lua_mechanism", "sasl_oauthbearer_token_script" } do
    if sec[key] then
      local ok, err = readable(key, sec[key])
      if not ok then return nil, err end
    end
  end
  props["security.protocol"] = "plaintext"
  props["kalua.relay"] = "true"
  if protocol == "SASL_SSL" then
    props["kalua.relay.tls"] = "true"
    for from, to in pairs(RELAY_TLS) do
      props[to], props[from] = props[from], nil
    end
  end
  for key, prop in pairs(RELAY_KEYS) do
    if sec[key] ~= nil then props[prop] = tostring(sec[key]) end
  end
  return true
end

-- A JAAS KafkaClient entry fills in what the security section leaves out:
-- sasl_jaas_config is a file, or one inline entry as in Kafka's
-- sasl.jaas.config; sasl_principal picks an entry when there are several.
local function apply_jaas(sec)
  local sasl = require "kalua.sasl"
  local text = tostring(sec.sasl_jaas_config)
  local entries, err
  if text:find("LoginModule", 1, true) then
    entries, err = sasl.jaas(text)
  else
    entries, err = sasl.jaas_file(text)
  end
  if not entries then return nil, "sasl_jaas_config: " .. err end
  local found, names = {}, {}
  for _, e in ipairs(entries) do
    if (e.section == nil or e.section == "KafkaClient") and e.mechanism then
      names[#names + 1] = ("%s (%s)"):format(tostring(e.principal), e.mechanism)
      if sec.sasl_principal == nil or e.principal == sec.sasl_principal then found[#found + 1] = e end
    end
  end
  if #found == 0 then
    return nil, ("sasl_jaas_config has no KafkaClient entry%s; it has: %s"):format(
      sec.sasl_principal and (" for principal '%s'"):format(sec.sasl_principal) or "",
      #names > 0 and table.concat(names, ", ") or "none")
  end
  if #found > 1 then
    return nil, ("sasl_jaas_config has several KafkaClient entries: set sasl_principal to one of %s"):format(
      table.concat(names, ", "))
  end
  local e, o, out = found[1], found[1].options or {}, {}
  for k, v in pairs(sec) do out[k] = v end
  out.sasl_jaas_config = nil
  out.sasl_mechanism = out.sasl_mechanism or e.mechanism
  if e.mechanism == "GSSAPI" then
    out.sasl_keytab_path = out.sasl_keytab_path or o.keyTab
    out.sasl_principal = o.principal or out.sasl_principal
    out.sasl_kerberos_service_name = out.sasl_kerberos_service_name or o.serviceName
  else
    out.sasl_username = out.sasl_username or o.username
    out.sasl_password = out.sasl_password or o.password
    out.sasl_principal = nil
  end
  return out
end

local function add_sasl(props, sec, protocol)
  if sec.sasl_jaas_config then
    local err
    sec, err = apply_jaas(sec)
    if not sec then return nil, err end
  end
  local raw = sec.sasl_mechanism
  if sec.sasl_lua_mechanism then return add_relay(props, sec, protocol, raw and tostring(raw) or nil) end
  if raw == nil then
    return nil, ("security_protocol %s needs sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI, "
      .. "OAUTHBEARER or auto)"):format(protocol)
  end
  local upper = tostring(raw):upper()
  local mechanism = MECHANISMS[upper] or upper
  if truthy(sec.sasl_relay) or ENGINE_MECHANISMS[upper] then
    if not RELAY_MECHANISMS[mechanism] then return nil, ("unknown sasl_mechanism '%s'"):format(tostring(raw)) end
    return add_relay(props, sec, protocol, mechanism == "AUTO" and "auto" or mechanism)
  end
  if not MECHANISMS[upper] then return nil, ("unknown sasl_mechanism '%s'"):format(tostring(raw)) end
  if not sec.sasl_username or not sec.sasl_password then
    return nil, ("sasl_mechanism %s needs sasl_username and sasl_password"):format(mechanism)
  end
  props["sasl.mechanism"] = mechanism
  props["sasl.username"] = tostring(sec.sasl_username)
  props["sasl.password"] = tostring(sec.sasl_password)
  if sec.sasl_kerberos_service_name then props["sasl.kerberos.service.name"] = sec.sasl_kerberos_service_name end
  return true
end

--- Translates a client section ({bootstrap_servers=, security=, properties=})
-- into a flat table of librdkafka properties, or nil, message. Messages
-- never contain a password.
function M.client_properties(client)
  if type(client) ~= "table" then return nil, "client settings must be a table" end
  local props = {}
  if client.bootstrap_servers then props["bootstrap.servers"] = bootstrap_list(client.bootstrap_servers) end
  local sec = client.security or {}
  local protocol = (sec.security_protocol or "PLAINTEXT"):upper()
  local valid = { PLAINTEXT = true, SSL = true, SASL_PLAINTEXT = true, SASL_SSL = true }
  if not valid[protocol] then return nil, ("unknown security_protocol '%s'"):format(tostring(sec.security_protocol)) end
  props["security.protocol"] = protocol:lower()
  local ok, err
  if protocol == "SSL" or protocol == "SASL_SSL" then
    ok, err = add_tls(props, sec)
    if not ok then return nil, err end
  elseif sec.ssl_certificate_location or sec.ssl_ca_location then
    return nil, ("ssl_* settings need security_protocol SSL or SASL_SSL (got %s)"):format(protocol)
  end
  if protocol == "SASL_PLAINTEXT" or protocol == "SASL_SSL" then
    ok, err = add_sasl(props, sec, protocol)
    if not ok then return nil, err end
  elseif sec.sasl_mechanism then
    return nil, ("sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL (got %s)"):format(protocol)
  end
  if client.client_id then props["client.id"] = client.client_id end
  for k, v in pairs(client.properties or {}) do props[tostring(k)] = scalar_string(v) end
  return props
end

--- The settings of kalua's own broker connections (kalua.* keys, see
-- core/kafka/relay.h) for a client section, whatever its protocol: SASL
-- through the relay's engine, TLS by the relay, and for PLAINTEXT or SSL
-- no SASL at all. kalua proxy connects this way. Returns props or nil, message.
function M.relay_properties(client)
  if type(client) ~= "table" then return nil, "client settings must be a table" end
  local copy = {}
  for k, v in pairs(client) do copy[k] = v end
  copy.security = {}
  for k, v in pairs(client.security or {}) do copy.security[k] = v end
  copy.security.sasl_relay = true
  local props, err = M.client_properties(copy)
  if not props then return nil, err end
  if not props["kalua.relay"] then
    props["kalua.relay"] = "true"
    props["kalua.sasl.mechanism"] = "none"
    if props["security.protocol"] == "ssl" then
      props["kalua.relay.tls"] = "true"
      for from, to in pairs(RELAY_TLS) do props[to], props[from] = props[from], nil end
    end
  end
  local out = {}
  for k, v in pairs(props) do
    if k:sub(1, 6) == "kalua." then out[k] = v end
  end
  return out
end

return M
