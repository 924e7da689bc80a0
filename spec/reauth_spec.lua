-- KIP-368 re-authentication in kalua's auth relay, against the rig's real
-- broker: its GSSAPI and SASL_REAUTH listeners end every session after
-- connections.max.reauth.ms = 60000. A producer and a consumer per
-- mechanism run side by side for 150 s; the relay must re-authenticate
-- each long-lived connection at least twice, on the live connection, with
-- no error, no lost record and no response out of order.
-- KALUA_REAUTH_SECONDS shortens the run (the ASan pass uses 70: one
-- re-authentication per connection, under the sanitizers).
local kafka = require "kalua.kafka"
local clock = require "kalua.clock"
local rig = require "rig"

local RUN_SECONDS = tonumber(os.getenv("KALUA_REAUTH_SECONDS") or "") or 150

local function confs()
  return {
    GSSAPI = {
      bootstrap_servers = rig.env("KAFKA_GSSAPI"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "GSSAPI",
        sasl_keytab_path = rig.env("KALUA_RIG_ALICE_KEYTAB"), sasl_principal = rig.env("KALUA_RIG_ALICE_PRINCIPAL"),
        sasl_krb5_config_path = rig.env("KRB5_RIG_CONFIG") },
    },
    ["SCRAM-SHA-512"] = {
      bootstrap_servers = rig.env("KAFKA_SASL_REAUTH"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "SCRAM-SHA-512", sasl_relay = true,
        sasl_username = rig.env("KAFKA_SCRAM_USER"), sasl_password = rig.env("KAFKA_SCRAM_PASSWORD") },
    },
  }
end

-- Every connection that lived through two re-authentication windows did
-- re-authenticate twice; returns how many such connections there were.
local function check_connections(name, stats)
  assert.are.equal(0, stats.failures, name .. ": " .. tostring(stats.last_error))
  assert.are.equal(0, stats.unmatched_responses, name)
  local long_lived, counts = 0, {}
  for _, c in ipairs(stats.per_connection) do
    counts[#counts + 1] = ("%s %ds:%d"):format(c.broker, c.age_ms // 1000, c.reauthentications)
    assert.is_true(c.session_lifetime_ms > 0 and c.session_lifetime_ms <= 60000, name)
    -- re-authentication comes at 80% of 60 s, +-5 s: by 53 s, then by 106 s
    local due = c.age_ms >= 120000 and 2 or c.age_ms >= 60000 and 1 or 0
    if due > 0 then
      long_lived = long_lived + 1
      assert.is_true(c.reauthentications >= due,
        ("%s: connection to %s lived %d ms with %d re-authentications"):format(name, c.broker, c.age_ms,
          c.reauthentications))
    end
  end
  io.stderr:write(("\n  %s: %d re-authentications; live connections (age:re-auths) %s\n"):format(name,
    stats.reauthentications, table.concat(counts, ", ")))
  return long_lived
end

-- Reads what the consumer has; keys count up from 1 with no gap.
local function receive(r, timeout_ms)
  local batch <close> = assert(r.consumer:poll_batch(500, timeout_ms))
  for rec in batch:records() do
    r.got = r.got + 1
    assert.are.equal(tostring(r.got), rec.key, r.name .. ": records out of order or lost")
  end
end

-- kalua proxy: plain clients, and the proxy's broker links re-authenticate.
local function proxied(admin)
  local p = assert(require("kalua.proxy").start {
    upstream = { bootstrap_servers = rig.env("KAFKA_SASL_REAUTH"), security = { security_protocol = "SASL_PLAINTEXT",
      sasl_mechanism = "SCRAM-SHA-256", sasl_username = rig.env("KAFKA_SCRAM_USER"),
      sasl_password = rig.env("KAFKA_SCRAM_PASSWORD") } },
    listeners = { { upstream = rig.env("KAFKA_SASL_REAUTH"), listen = "127.0.0.1:0" } },
  })
  local plain = { bootstrap_servers = p:listeners()[1].listen }
  local topic = rig.topic("reauth-proxy")
  assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
  local consumer = assert(kafka.consumer(plain))
  assert(consumer:assign { { topic = topic, partition = 0, offset = "beginning" } })
  return { name = "kalua proxy SCRAM-SHA-256", topic = topic, proxy = p, sent = 0, got = 0, consumer = consumer,
    producer = assert(kafka.producer(rig.with(plain, { idempotence = true, acks = "all" }))) }
end

describe("KIP-368 re-authentication through the relay #long", function()
  it(("keeps a producer and a consumer per mechanism going for %d s with no error"):format(RUN_SECONDS), function()
    local admin <close> = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
    local runs = {}
    for name, conf in pairs(confs()) do
      local topic = rig.topic("reauth")
      assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
      local producer = assert(kafka.producer(rig.with(conf, { idempotence = true, acks = "all" })))
      local consumer = assert(kafka.consumer(conf))
      assert(consumer:assign { { topic = topic, partition = 0, offset = "beginning" } })
      runs[#runs + 1] = { name = name, topic = topic, producer = producer, consumer = consumer, sent = 0, got = 0 }
    end
    runs[#runs + 1] = proxied(admin)
    local stop = clock.now() + RUN_SECONDS
    while clock.now() < stop do
      for _, r in ipairs(runs) do
        r.sent = r.sent + 1
        assert(r.producer:produce { topic = r.topic, partition = 0, key = tostring(r.sent), value = "x" })
        receive(r, 100)
      end
    end
    for _, r in ipairs(runs) do
      assert(r.producer:flush(30000))
      for _ = 1, 100 do
        if r.got >= r.sent then break end
        receive(r, 200)
      end
      assert.are.equal(r.sent, r.got, r.name)
      local due = RUN_SECONDS >= 150 and 2 or 1
      if r.proxy then -- the proxy's links to the broker: producer's and consumer's
        local s = r.proxy:stats()
        assert.are.equal(0, s.unmatched_responses, r.name)
        assert.is_true(check_connections(r.name, s.upstream) >= 2, r.name .. ": no link lived through the run")
        assert.is_true(s.upstream.reauthentications >= 2 * due, r.name)
        r.producer:close()
        r.consumer:close()
        r.proxy:close()
      else
        local long_lived = check_connections(r.name .. " producer", r.producer:relay_stats()) +
          check_connections(r.name .. " consumer", r.consumer:relay_stats())
        assert.is_true(long_lived >= 2, r.name .. ": no connection lived through the run")
        assert.is_true(r.producer:relay_stats().reauthentications >= due, r.name)
        assert.is_true(r.consumer:relay_stats().reauthentications >= due, r.name)
        r.producer:close()
        r.consumer:close()
      end
      assert(admin:delete_topics { r.topic })
    end
  end)
end)
