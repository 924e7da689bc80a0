--- Run a Kafka proxy: unmodified clients in, TLS and any SASL out.
-- Usage: kalua proxy [connection flags of the cluster] [--map BROKER=LOCAL ...] [options]
--
-- Clients connect to local listeners with no SASL (or TLS, or SASL PLAIN
-- checked by --auth-script); kalua connects to the brokers with the
-- connection flags (GSSAPI, SCRAM, OAUTHBEARER, Lua mechanisms, TLS),
-- re-authenticates as KIP-368 asks, and rewrites Metadata, FindCoordinator
-- and DescribeCluster so clients only see proxy addresses. A broker that is
-- not mapped gets a listener of its own when first seen (--no-dynamic-listeners
-- turns that off). Runs until SIGTERM or SIGINT. --config FILE reads `source`
-- (the cluster) and `proxy:` (listeners, forbidden_api_keys, tls, identities,
-- auth_script, ...; see README "kalua proxy").
--
--   --map BROKER=LOCAL[=ADVERTISED]  a listener on LOCAL for broker BROKER (host:port as the
--                                    broker advertises itself; repeatable). Default: one per
--                                    bootstrap server on --listen-host, any free port
--   --listen-host HOST               where default and dynamic listeners bind (127.0.0.1)
--   --advertised-host HOST           the host clients are told for dynamic listeners
--   --port-min N                     first port for default and dynamic listeners (0: any)
--   --no-dynamic-listeners           refuse brokers that have no --map
--   --forbid API[,API]               answer these requests with an authorization error
--                                    (e.g. DeleteTopics,CreateTopics,Produce)
--   --max-connections N              refuse client connections beyond N
--   --idle-timeout-ms N              close client connections quiet this long
--   --tls-cert FILE --tls-key FILE   TLS for clients (--tls-key-password-env VAR)
--   --tls-client-ca FILE             and require client certificates this CA signed
--   --auth-script FILE               clients must authenticate with SASL PLAIN; FILE returns
--                                    function(user, password, info) -> true | identity | nil, reason
--   --metrics-addr HOST:PORT         serve /metrics and /healthz
--   --no-check                       start without first authenticating to a broker (by
--                                    default a SASL upstream is checked: bad credentials,
--                                    a missing keytab or a broker that is down end it at once)
-- Connection flags (or --config FILE with OSO YAML):
-- @connection-flags
local cli = require "kalua.cli"
local log = require "kalua.log"
local proxy = require "kalua.proxy"

local flags = cli.flags(cli.connection_flags, {
  { name = "map", key = "map", arg = true, multi = true, help = "BROKER=LOCAL[=ADVERTISED] (repeatable)" },
  { name = "listen-host", key = "listen_host", arg = true, help = "host for default and dynamic listeners" },
  { name = "advertised-host", key = "advertised_host", arg = true, help = "host clients see for dynamic listeners" },
  { name = "port-min", key = "port_min", arg = true, help = "first local port (0: any free one)" },
  { name = "no-dynamic-listeners", key = "no_dynamic", help = "refuse brokers with no --map" },
  { name = "forbid", key = "forbid", arg = true, multi = true, help = "API names or keys to refuse" },
  { name = "max-connections", key = "max_connections", arg = true, help = "client connection limit" },
  { name = "idle-timeout-ms", key = "idle_timeout_ms", arg = true, help = "close quiet client connections" },
  { name = "tls-cert", key = "tls_cert", arg = true, help = "certificate for clients (PEM)" },
  { name = "tls-key", key = "tls_key", arg = true, help = "its key (PEM)" },
  { name = "tls-key-password-env", key = "tls_key_password_env", arg = true, help = "the key's password, from env" },
  { name = "tls-client-ca", key = "tls_client_ca", arg = true, help = "require client certificates of this CA" },
  { name = "auth-script", key = "auth_script", arg = true, help = "SASL PLAIN check for clients (Lua)" },
  { name = "metrics-addr", key = "metrics_addr", arg = true, help = "serve /metrics and /healthz" },
  { name = "no-check", key = "no_check", help = "start without authenticating to a broker first" },
})

local opts, err = cli.parse({ ... }, flags)
if not opts then cli.die("proxy", err .. "\n" .. cli.usage(flags), 2) end

local function load_config()
  if not opts.config then return {}, nil end
  local cfg, e = require("kalua.config").load(opts.config)
  if not cfg then cli.die("proxy", e) end
  return cfg.proxy or {}, cfg.source
end

local function listeners_from_flags()
  local out = {}
  for _, m in ipairs(opts.map or {}) do
    local up, listen, adv = m:match("^([^=]+)=([^=]+)=?(.*)$")
    if not up then cli.die("proxy", ("--map expects BROKER=LOCAL[=ADVERTISED], got '%s'"):format(m), 2) end
    out[#out + 1] = { upstream = up, listen = listen, advertised = adv ~= "" and adv or nil }
  end
  return #out > 0 and out or nil
end

local function integer(v, what)
  if v == nil then return nil end
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 then cli.die("proxy", ("%s expects a whole number, got '%s'"):format(what, tostring(v)), 2) end
  return n
end

local function settings()
  local pcfg, source = load_config()
  local upstream, e = cli.client(opts, source)
  if not upstream then cli.die("proxy", e) end
  local tls = pcfg.tls
  if opts.tls_cert or opts.tls_key then
    tls = { cert = opts.tls_cert, key = opts.tls_key, ca = opts.tls_client_ca }
    if opts.tls_key_password_env then
      tls.key_password = os.getenv(opts.tls_key_password_env)
      if not tls.key_password then
        cli.die("proxy", ("--tls-key-password-env: environment variable %s is not set"):format(
          opts.tls_key_password_env))
      end
      log.secret(tls.key_password)
    end
  end
  local forbidden = pcfg.forbidden_api_keys
  if opts.forbid then forbidden = table.concat(opts.forbid, ",") end
  return {
    upstream = upstream,
    listeners = listeners_from_flags() or pcfg.listeners,
    listen_host = opts.listen_host or pcfg.listen_host,
    dynamic_listeners = not opts.no_dynamic and pcfg.dynamic_listeners ~= false,
    dynamic_host = opts.listen_host or pcfg.dynamic_host,
    dynamic_advertised_host = opts.advertised_host or pcfg.dynamic_advertised_host,
    dynamic_port_min = integer(opts.port_min, "--port-min") or pcfg.dynamic_port_min,
    forbidden = forbidden,
    max_connections = integer(opts.max_connections, "--max-connections") or pcfg.max_connections,
    idle_timeout_ms = integer(opts.idle_timeout_ms, "--idle-timeout-ms") or pcfg.idle_timeout_ms,
    handshake_timeout_ms = pcfg.handshake_timeout_ms,
    tls = tls,
    auth_script = opts.auth_script or pcfg.auth_script,
    identities = pcfg.identities,
  }, opts.metrics_addr or pcfg.metrics_addr
end

-- A SASL upstream is tried once before any client comes: a wrong password
-- or a broker that is down should end the command, not each client's connection.
local function check_upstream(client, who)
  local sec = client.security or {}
  if opts.no_check or not tostring(sec.security_protocol or ""):upper():find("^SASL_") then return end
  local probe = { bootstrap_servers = client.bootstrap_servers, security = {} }
  for k, v in pairs(sec) do probe.security[k] = v end
  probe.security.sasl_relay = true
  local r, e = require("kalua.kafka").sasl_probe(probe, { timeout_ms = 15000 })
  if not r then cli.die("proxy", who .. e) end
  if not r.authenticated then cli.die("proxy", ("%scannot authenticate to %s: %s"):format(who, r.broker, r.error)) end
end

local host = require "kalua.host"
host.catch_signals()
local cfg, metrics_addr = settings()
check_upstream(cfg.upstream, "")
for user, security in pairs(cfg.identities or {}) do
  if type(security) == "table" then
    check_upstream(proxy.identity_client(cfg.upstream, security), ("identity of user '%s': "):format(user))
  end
end
local p, e = proxy.start(cfg)
if not p then cli.die("proxy", e) end

local reg
if metrics_addr then
  reg = require("kalua.metrics").registry()
  local ok, merr = reg:serve(metrics_addr)
  if not ok then cli.die("proxy", merr) end
  log.info("serving metrics", { component = "proxy", address = reg:address() })
end

for _, l in ipairs(p:listeners()) do
  -- stdout: the line scripts and tests wait for
  io.stdout:write(("kalua proxy: listening on %s for %s%s\n"):format(l.listen, l.upstream,
    l.advertised ~= l.listen and (" (clients told %s)"):format(l.advertised) or ""))
end
io.stdout:flush()

proxy.run(p, { metrics = reg, stop = host.stop_requested })
log.info("stopped", { component = "proxy" })
