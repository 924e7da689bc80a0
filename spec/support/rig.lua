--- What the test rig started (from `spec/rig/rig env`), and helpers specs
-- share: unique topic names and a client config per listener.
local M = {}

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then
    error(name .. " is not set: run specs through tools/test, or eval \"$(spec/rig/rig env)\"", 2)
  end
  return v
end
M.env = env

local counter = 0
--- A topic name no other spec (or earlier run) uses.
function M.topic(prefix)
  counter = counter + 1
  return ("%s-%d-%d-%d"):format(prefix or "spec", os.time(), math.random(1e6), counter)
end

--- Client configs (the OSO `source` shape) for each listener and mechanism.
function M.clients()
  local ca = env("KALUA_RIG_CA")
  local scram_user, scram_password = env("KAFKA_SCRAM_USER"), env("KAFKA_SCRAM_PASSWORD")
  local plain_user, plain_password = env("KAFKA_PLAIN_USER"), env("KAFKA_PLAIN_PASSWORD")
  local function sasl(listener, protocol, mechanism, user, password)
    return {
      bootstrap_servers = env(listener),
      security = {
        security_protocol = protocol, sasl_mechanism = mechanism,
        sasl_username = user, sasl_password = password,
        ssl_ca_location = protocol == "SASL_SSL" and ca or nil,
      },
    }
  end
  return {
    { name = "PLAINTEXT", conf = { bootstrap_servers = env("KAFKA_PLAINTEXT") } },
    { name = "SSL", conf = { bootstrap_servers = env("KAFKA_SSL"),
      security = { security_protocol = "SSL", ssl_ca_location = ca } } },
    { name = "mTLS", conf = { bootstrap_servers = env("KAFKA_MTLS"),
      security = { security_protocol = "SSL", ssl_ca_location = ca,
        ssl_certificate_location = env("KALUA_RIG_CLIENT_CERT"),
        ssl_key_location = env("KALUA_RIG_CLIENT_KEY") } } },
    { name = "mTLS with an encrypted key", conf = { bootstrap_servers = env("KAFKA_MTLS"),
      security = { security_protocol = "SSL", ssl_ca_location = ca,
        ssl_certificate_location = env("KALUA_RIG_CLIENT_CERT"),
        ssl_key_location = env("KALUA_RIG_CLIENT_KEY_ENC"),
        ssl_key_password = env("KALUA_RIG_CLIENT_KEY_PASSWORD") } } },
    { name = "SASL_PLAINTEXT PLAIN", conf = sasl("KAFKA_SASL_PLAINTEXT", "SASL_PLAINTEXT", "PLAIN", plain_user, plain_password) },
    { name = "SASL_PLAINTEXT SCRAM-SHA-256", conf = sasl("KAFKA_SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA-256", scram_user, scram_password) },
    { name = "SASL_PLAINTEXT SCRAM-SHA256 (OSO spelling)", conf = sasl("KAFKA_SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA256", scram_user, scram_password) },
    { name = "SASL_PLAINTEXT SCRAM-SHA-512", conf = sasl("KAFKA_SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA-512", scram_user, scram_password) },
    { name = "SASL_SSL PLAIN", conf = sasl("KAFKA_SASL_SSL", "SASL_SSL", "PLAIN", plain_user, plain_password) },
    { name = "SASL_SSL SCRAM-SHA-256", conf = sasl("KAFKA_SASL_SSL", "SASL_SSL", "SCRAM-SHA-256", scram_user, scram_password) },
    { name = "SASL_SSL SCRAM-SHA512 (OSO spelling)", conf = sasl("KAFKA_SASL_SSL", "SASL_SSL", "SCRAM-SHA512", scram_user, scram_password) },
  }
end

--- Every record of a partition from the beginning, as plain tables without
-- topic and partition (the shape segments hold). Stops after 3 empty polls.
function M.read_partition(brokers, topic, partition)
  local kafka = require "kalua.kafka"
  local c <close> = assert(kafka.consumer { bootstrap_servers = brokers })
  assert(c:assign { { topic = topic, partition = partition, offset = "beginning" } })
  local out, empty = {}, 0
  while empty < 3 do
    local batch = assert(c:poll_batch(1000, 500))
    if #batch == 0 then empty = empty + 1 end
    for rec in batch:records() do
      rec.topic, rec.partition = nil, nil
      out[#out + 1] = rec
    end
  end
  return out
end

--- The rig's 3-broker cluster (`spec/rig/rig cluster up`, then
-- `eval "$(spec/rig/rig cluster env)"`): bootstrap lists, the brokers'
-- service principals and the directory of their logs. Raises when the
-- cluster is not up, so a spec that needs it fails instead of skipping.
function M.cluster()
  local function get(name)
    local v = os.getenv(name)
    if v == nil or v == "" then
      error(("the 3-broker rig is not up: spec/rig/rig cluster up (%s is not set; tools/test exports it, "
        .. "or eval \"$(spec/rig/rig cluster env)\")"):format(name), 3)
    end
    return v
  end
  local c = { gssapi = get("KALUA_CLUSTER_GSSAPI"), plaintext = get("KALUA_CLUSTER_PLAINTEXT"),
    dir = get("KALUA_CLUSTER_DIR"), principals = {} }
  for p in get("KALUA_CLUSTER_PRINCIPALS"):gmatch("[^,]+") do c.principals[#c.principals + 1] = p end
  return c
end

--- A shallow copy of conf with fields of `extra` set on top.
function M.with(conf, extra)
  local out = {}
  for k, v in pairs(conf) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

return M
