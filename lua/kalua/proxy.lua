--- kalua proxy: a Kafka proxy for unmodified clients, in the manner of
-- grepplabs kafka-proxy. Clients speak PLAINTEXT (or TLS, or SASL PLAIN
-- checked by a Lua function) to local listeners, one per broker; kalua
-- connects to the brokers with TLS and any SASL mechanism it has (GSSAPI,
-- SCRAM, OAUTHBEARER, Lua ones), re-authenticating as KIP-368 asks, and
-- rewrites Metadata, FindCoordinator and DescribeCluster so clients only
-- ever see proxy addresses. The engine is C (kafka.proxy, core/kafka/
-- proxy.h); this module turns a config into its settings, and runs it:
--
--   local proxy = require "kalua.proxy"
--   local p = assert(proxy.start {
--     upstream = { bootstrap_servers = "broker:9093", security = { security_protocol = "SASL_PLAINTEXT",
--                  sasl_mechanism = "GSSAPI", sasl_keytab_path = "app.keytab", sasl_principal = "app@REALM" } },
--     listeners = { { upstream = "broker:9093", listen = "127.0.0.1:19092" } },
--     forbidden = { "DeleteTopics" },
--   })
--   for _, l in ipairs(p:listeners()) do print(l.listen, l.upstream) end
--   proxy.run(p, { metrics = registry, stop = host.stop_requested })
local config = require "kalua.config"
local kafka = require "kalua.kafka"
local log = require "kalua.log"

local M = {}

-- API keys by name or number: "DeleteTopics", "deletetopics", 20.
local function api_key(v)
  if math.type(tonumber(v)) == "integer" then return tonumber(v) end
  local key = kafka.wire.api_key(tostring(v))
  if key then return key end
  return nil, ("unknown API key '%s' (a name such as DeleteTopics, or a number)"):format(tostring(v))
end

local function forbidden_keys(list)
  local keys = {}
  if type(list) == "string" then
    local split = {}
    for name in list:gmatch("[^,%s]+") do split[#split + 1] = name end
    list = split
  end
  for _, v in ipairs(list or {}) do
    local key, err = api_key(v)
    if not key then return nil, "forbidden: " .. err end
    keys[#keys + 1] = key
  end
  return keys
end

--- A local user's upstream connection: the upstream's, with the user's
-- security settings laid over it (a JAAS entry, a keytab and principal,
-- SCRAM credentials, ...). A keytab or JAAS entry is a whole identity: the
-- upstream's username and password are not kept beside it.
function M.identity_client(upstream, security)
  local client = { bootstrap_servers = upstream.bootstrap_servers, security = {} }
  for k, v in pairs(upstream.security or {}) do client.security[k] = v end
  if security.sasl_jaas_config or security.sasl_keytab_path then
    client.security.sasl_username, client.security.sasl_password = nil, nil
    client.security.sasl_principal, client.security.sasl_jaas_config = nil, nil
  end
  for k, v in pairs(security) do client.security[k] = v end
  log.secrets_in(client)
  return client
end

local function identity_props(upstream, security, user)
  local props, err = config.relay_properties(M.identity_client(upstream, security))
  if not props then return nil, ("identity of user '%s': %s"):format(user, err) end
  return props
end

local function bootstrap_list(servers)
  if type(servers) == "table" then return servers end
  local out = {}
  for s in tostring(servers or ""):gmatch("[^,%s]+") do out[#out + 1] = s end
  return out
end

-- Listeners: the ones given, or one per bootstrap server on listen_host
-- (ports from dynamic_port_min, or any free port).
local function listeners_of(cfg)
  if cfg.listeners and #cfg.listeners > 0 then
    for i, l in ipairs(cfg.listeners) do
      if type(l) ~= "table" or not l.upstream or not l.listen then
        return nil, ("listeners[%d]: expected {upstream = host:port, listen = host:port}"):format(i)
      end
    end
    return cfg.listeners
  end
  local out, port = {}, tonumber(cfg.dynamic_port_min) or 0
  for _, server in ipairs(bootstrap_list(cfg.upstream.bootstrap_servers)) do
    out[#out + 1] = { upstream = server, listen = ("%s:%d"):format(cfg.listen_host or "127.0.0.1", port) }
    if port > 0 then port = port + 1 end
  end
  if #out == 0 then return nil, "no listeners: give listeners (--map) or upstream bootstrap_servers" end
  return out, port
end

--- Starts a proxy. cfg: upstream (a client section: bootstrap_servers,
-- security), listeners ({upstream=, listen=, advertised=}, ...; default one
-- per bootstrap server on listen_host), dynamic_listeners (default true),
-- dynamic_host, dynamic_advertised_host, dynamic_port_min, forbidden (API
-- names or keys), max_connections, idle_timeout_ms, handshake_timeout_ms,
-- tls ({cert=, key=, key_password=, ca=, client_subjects={{match=, user=}}}),
-- auth_script (a Lua file returning function(user, password, info) -> true
-- | identity | nil, reason: clients must then authenticate with SASL PLAIN),
-- identities ({user = security section}: the upstream principal of each
-- local user). Returns the kafka.proxy object or nil, message.
function M.start(cfg)
  if type(cfg) ~= "table" or type(cfg.upstream) ~= "table" then return nil, "proxy: upstream settings missing" end
  local upstream, err = config.relay_properties(cfg.upstream)
  if not upstream then return nil, err end
  local identities
  for user, security in pairs(cfg.identities or {}) do
    if type(security) ~= "table" then return nil, ("identities.%s: expected security settings"):format(user) end
    identities = identities or {}
    identities[user], err = identity_props(cfg.upstream, security, user)
    if not identities[user] then return nil, err end
  end
  local forbidden
  forbidden, err = forbidden_keys(cfg.forbidden)
  if not forbidden then return nil, err end
  local listeners, next_port = listeners_of(cfg)
  if not listeners then return nil, next_port end
  local dynamic = false
  if cfg.dynamic_listeners ~= false then
    dynamic = { host = cfg.dynamic_host or cfg.listen_host or "127.0.0.1",
      advertised_host = cfg.dynamic_advertised_host, port_min = math.tointeger(next_port or cfg.dynamic_port_min) or 0 }
  end
  return kafka.proxy {
    upstream = upstream, identities = identities, listeners = listeners, dynamic = dynamic,
    forbidden = forbidden, tls = cfg.tls, check_script = cfg.auth_script,
    max_connections = math.tointeger(cfg.max_connections), idle_timeout_ms = math.tointeger(cfg.idle_timeout_ms),
    handshake_timeout_ms = math.tointeger(cfg.handshake_timeout_ms),
  }
end

-- --- metrics ----------------------------------------------------------------

-- Counters kalua proxy exports, fed from p:stats() (cumulative in C).
local COUNTERS = {
  accepted = { "kalua_proxy_connections_total", "Client connections accepted." },
  refused = { "kalua_proxy_connections_refused_total", "Client connections refused at max_connections." },
  idle_closed = { "kalua_proxy_idle_closed_total", "Client connections closed for idleness." },
  forbidden = { "kalua_proxy_forbidden_total", "Requests refused as forbidden API keys." },
  rewritten = { "kalua_proxy_rewritten_responses_total", "Responses rewritten to proxy addresses." },
}

local Feed = {}
Feed.__index = Feed

--- A feed of p's counters into a kalua.metrics registry.
function M.metrics(p, reg)
  return setmetatable({ p = p, reg = reg, last = {}, cache = {} }, Feed)
end

function Feed:counter(name, help, labels)
  local key = name .. "\0" .. (labels and require("kalua.json").encode(labels) or "")
  local c = self.cache[key]
  if not c then
    c = self.reg:counter(name, help, labels)
    self.cache[key] = c
  end
  return c, key
end

-- Adds what a cumulative value grew by since the last sync.
function Feed:advance(name, help, labels, value)
  local c, key = self:counter(name, help, labels)
  local delta = value - (self.last[key] or 0)
  if delta > 0 then c:add(delta) end
  self.last[key] = value
end

function Feed:identity_stats(s)
  local list = {}
  for _, r in pairs(s.identities or {}) do list[#list + 1] = r end
  return list
end

function Feed:sync()
  local s = self.p:stats()
  for field, m in pairs(COUNTERS) do self:advance(m[1], m[2], nil, s[field] or 0) end
  self:advance("kalua_proxy_bytes_total", "Bytes through the proxy.", { direction = "from_clients" }, s.bytes_in)
  self:advance("kalua_proxy_bytes_total", "Bytes through the proxy.", { direction = "to_clients" }, s.bytes_out)
  self:advance("kalua_proxy_auth_failures_total", "Authentication failures.", { side = "client" }, s.local_failed)
  self:advance("kalua_proxy_auth_failures_total", "Authentication failures.", { side = "upstream" },
    s.upstream_auth_failed)
  self:advance("kalua_proxy_upstream_failures_total", "Broker connections that failed (not authentication).", nil,
    s.upstream_failed)
  for name, a in pairs(s.api) do
    self:advance("kalua_proxy_requests_total", "Requests from clients, by API.", { api = name }, a.requests)
    self:advance("kalua_proxy_responses_total", "Responses from brokers, by API.", { api = name }, a.responses)
    self:advance("kalua_proxy_upstream_seconds_total",
      "Seconds from forwarding a request to its response's first bytes, by API (divide by responses).",
      { api = name }, a.latency_seconds)
  end
  local up = s.upstream or {}
  local auths, reauths, failures = 0, 0, 0
  for _, r in ipairs { s.upstream or {}, table.unpack(self:identity_stats(s)) } do
    auths, reauths = auths + (r.authentications or 0), reauths + (r.reauthentications or 0)
    failures = failures + (r.failures or 0)
  end
  -- the auth relay's own series (kalua.telemetry): one engine, one name
  self:advance("kalua_sasl_authentications_total", "SASL authentications kalua's auth relay completed.", nil, auths)
  self:advance("kalua_sasl_reauthentications_total", "KIP-368 re-authentications kalua's auth relay completed.", nil,
    reauths)
  self:advance("kalua_sasl_authentication_failures_total", "SASL authentications kalua's auth relay failed.", nil,
    failures)
  -- /healthz: unhealthy while kalua cannot connect or authenticate to the brokers
  if up.failing then
    self.reg:health(false, "upstream: " .. tostring(up.last_error))
  else
    self.reg:health(true)
  end
  self.reg:gauge("kalua_proxy_connections_active", "Client connections open now."):set(s.active)
  self.reg:gauge("kalua_proxy_listeners", "Local listeners, one per broker."):set(#self.p:listeners())
  return s
end

-- --- running ----------------------------------------------------------------

local LEVELS = { listener = "info", forbidden = "info", auth = "warn", error = "error" }

--- Logs what the engine reports (new listeners, refusals, failures).
function M.log_events(p)
  for _, e in ipairs(p:events()) do
    local level = LEVELS[e.kind] or "info"
    log[level](e.message, { component = "proxy", event = e.kind })
  end
end

--- Runs p until opts.stop() returns true: logs its events, feeds
-- opts.metrics (a registry) and sleeps opts.interval (default 0.2 s)
-- between rounds; closes p at the end.
function M.run(p, opts)
  opts = opts or {}
  local clock = require "kalua.clock"
  local feed = opts.metrics and M.metrics(p, opts.metrics)
  while not (opts.stop and opts.stop()) do
    M.log_events(p)
    if feed then feed:sync() end
    clock.sleep(opts.interval or 0.2)
  end
  M.log_events(p)
  if feed then feed:sync() end
  p:close()
end

return M
