-- Produce and consume over every listener and mechanism of the rig's real
-- broker, with exact record equality.
local kafka = require "kalua.kafka"
local rig = require "rig"

-- Records that exercise what a backup must keep exactly.
local function sample_records(topic)
  return {
    { topic = topic, partition = 0, key = "k\0binary\255", value = "v\0\1\2\255", timestamp = 1600000000123,
      headers = { { "h", "1" }, { "h", "2" }, { "empty", "" }, { "null" , nil } } },
    { topic = topic, partition = 0, key = nil, value = "null key", timestamp = 1600000000456 },
    { topic = topic, partition = 0, key = "", value = "", timestamp = 1600000000789 },
    { topic = topic, partition = 0, key = "null value", value = nil, timestamp = 1600000001000 },
    { topic = topic, partition = 0, key = "big", value = string.rep("x", 200000), timestamp = 1600000002000 },
  }
end

local function header_list(headers)
  local out = {}
  for i, h in ipairs(headers or {}) do out[i] = { h[1], h[2] } end
  return out
end

local function consume(conf, topic, n)
  local consumer <close> = assert(kafka.consumer(conf))
  assert(consumer:assign { { topic = topic, partition = 0, offset = "beginning" } })
  local got = {}
  for _ = 1, 60 do
    local batch = assert(consumer:poll_batch(100, 500))
    for record in batch:records() do got[#got + 1] = record end
    if #got >= n then break end
  end
  return got
end

describe("kafka clients over the rig's listeners", function()
  local admin

  setup(function()
    admin = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
  end)

  teardown(function() admin:close() end)

  for _, client in ipairs(rig.clients()) do
    it("round-trips records exactly over " .. client.name, function()
      local topic = rig.topic("listener")
      assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
      local sent = sample_records(topic)
      local producer <close> = assert(kafka.producer(client.conf))
      for _, r in ipairs(sent) do assert(producer:produce(r)) end
      assert(producer:flush(15000))

      local got = consume(client.conf, topic, #sent)
      assert.are.equal(#sent, #got)
      for i, want in ipairs(sent) do
        local r = got[i]
        assert.are.equal(i - 1, r.offset)
        assert.are.equal(want.key, r.key)
        assert.are.equal(want.value, r.value)
        assert.are.equal(want.timestamp, r.timestamp)
        assert.are.equal("create", r.timestamp_type)
        assert.are.same(header_list(want.headers), header_list(r.headers))
      end
      assert(admin:delete_topics { topic })
    end)
  end
end)

describe("kafka clients given bad credentials or addresses", function()
  local function first_error(conf)
    local producer, msg, name = kafka.producer(conf)
    if not producer then return msg, name end
    local ok
    ok, msg, name = producer:produce { topic = rig.topic("bad"), value = "x" }
    if ok then ok, msg, name = producer:flush(10000) end
    producer:close()
    assert.is_nil(ok)
    return msg, name
  end

  for _, mechanism in ipairs { "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" } do
    it("names SASL authentication and " .. mechanism .. " on a wrong password", function()
      local password = "wrong-" .. math.random(1e9)
      local msg, name = first_error {
        bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"),
        security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = mechanism,
          sasl_username = rig.env("KAFKA_SCRAM_USER"), sasl_password = password },
      }
      assert.truthy(msg:find("SASL authentication", 1, true), msg)
      assert.truthy(msg:find(mechanism, 1, true), msg)
      assert.are.equal("_AUTHENTICATION", name)
      assert.falsy(msg:find(password, 1, true), "the password leaked into the error")
    end)
  end

  it("fails in bounded time when no broker listens", function()
    local admin = assert(kafka.admin { bootstrap_servers = "127.0.0.1:1" })
    local topics, msg, name = admin:metadata { timeout_ms = 3000 }
    admin:close()
    assert.is_nil(topics)
    assert.is_string(msg)
    assert.truthy(name == "_TRANSPORT" or name == "_TIMED_OUT" or name == "_ALL_BROKERS_DOWN", name)
  end)

  it("names a missing certificate file", function()
    local missing = "/nonexistent/kalua-spec/client.pem"
    local producer, msg = kafka.producer {
      bootstrap_servers = rig.env("KAFKA_MTLS"),
      security = { security_protocol = "SSL", ssl_ca_location = rig.env("KALUA_RIG_CA"),
        ssl_certificate_location = missing, ssl_key_location = rig.env("KALUA_RIG_CLIENT_KEY") },
    }
    assert.is_nil(producer)
    assert.truthy(msg:find(missing, 1, true), msg)
  end)

  it("fails the TLS handshake against a CA that did not sign the broker", function()
    local msg = first_error {
      bootstrap_servers = rig.env("KAFKA_SSL"),
      security = { security_protocol = "SSL", ssl_ca_location = "/etc/ssl/certs/ca-certificates.crt" },
    }
    assert.truthy(msg:lower():find("ssl") or msg:lower():find("certificate"), msg)
  end)
end)
