-- kalua's auth relay: librdkafka speaks PLAINTEXT to a socket pair, the
-- relay does SaslHandshake + SaslAuthenticate with kalua's own C mechanisms
-- against the rig's real broker, then forwards Kafka frames.
local kafka = require "kalua.kafka"
local rig = require "rig"

local monotonic = require("kalua.clock").now
local proc_read = require("proc").read_file

local function relayed(mechanism, extra)
  local security = {
    security_protocol = "SASL_PLAINTEXT", sasl_mechanism = mechanism, sasl_relay = true,
    sasl_username = rig.env(mechanism == "PLAIN" and "KAFKA_PLAIN_USER" or "KAFKA_SCRAM_USER"),
    sasl_password = rig.env(mechanism == "PLAIN" and "KAFKA_PLAIN_PASSWORD" or "KAFKA_SCRAM_PASSWORD"),
  }
  for k, v in pairs(extra or {}) do security[k] = v end
  return { bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"), security = security }
end

-- Every connection the relay opened authenticated with kalua's mechanism.
local function assert_all_authenticated(client, mechanism)
  local s = assert(client:relay_stats())
  assert.are.equal(mechanism, s.mechanism)
  assert.are.equal(0, s.failures, s.last_error)
  assert.is_true(s.authentications > 0)
  assert.is_true(s.authentications <= s.connections)
  assert.are.equal(0, s.reauthentications)
  assert.are.equal(0, s.unmatched_responses) -- frames and correlation ids followed exactly
  return s
end

-- Produces once, then flushes; returns the first failure (message, name).
local function first_error(conf)
  local producer, msg, name = kafka.producer(conf)
  if not producer then return msg, name end
  local ok
  ok, msg, name = producer:produce { topic = rig.topic("relay-bad"), value = "x" }
  if ok then ok, msg, name = producer:flush(8000) end
  producer:close()
  assert.is_nil(ok)
  return msg, name
end

describe("the auth relay", function()
  local admin

  setup(function()
    admin = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
  end)

  teardown(function() admin:close() end)

  for _, mechanism in ipairs { "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" } do
    it("carries an idempotent producer and a consumer group with " .. mechanism, function()
      local topic = rig.topic("relay")
      assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1 } })
      local n = 2000
      local conf = relayed(mechanism)
      local producer <close> = assert(kafka.producer(rig.with(conf, { idempotence = true, acks = "all" })))
      for i = 1, n do
        assert(producer:produce { topic = topic, key = "k" .. i, value = ("record %d "):format(i):rep(8) })
      end
      assert(producer:flush(30000))
      assert.is_nil(producer:relay_stats().last_error)
      assert_all_authenticated(producer, mechanism)

      local group = rig.topic("relay-group")
      local consumer <close> = assert(kafka.consumer(rig.with(conf,
        { group_id = group, ["auto.offset.reset"] = "earliest" })))
      assert(consumer:subscribe { topic })
      local seen, count = {}, 0
      for _ = 1, 120 do
        local batch = assert(consumer:poll_batch(1000, 500))
        for r in batch:records() do
          if not seen[r.key] then count = count + 1 end
          seen[r.key] = r.value
        end
        if count >= n then break end
      end
      assert.are.equal(n, count)
      assert.are.equal(("record 7 "):rep(8), seen.k7)
      assert(consumer:commit())
      local s = assert_all_authenticated(consumer, mechanism)
      assert.is_true(s.requests > 0 and s.responses > 0)
      assert(admin:delete_topics { topic })
    end)
  end

  for _, mechanism in ipairs { "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" } do
    it("names the mechanism and the broker's reason on a wrong password with " .. mechanism, function()
      local password = "wrong-" .. math.random(1e9)
      local msg, name = first_error(relayed(mechanism, { sasl_password = password }))
      assert.are.equal("_AUTHENTICATION", name, msg)
      assert.truthy(msg:find("SASL authentication failed with mechanism " .. mechanism, 1, true), msg)
      assert.truthy(msg:find("invalid credentials", 1, true) or msg:find("SASL_AUTHENTICATION_FAILED", 1, true), msg)
      assert.falsy(msg:find(password, 1, true), "the password leaked into the error")
      assert.falsy(msg:find("\n", 1, true), msg)
    end)
  end

  it("lists the broker's mechanisms when the listener does not enable the chosen one", function()
    local token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."
    local msg, name = first_error {
      bootstrap_servers = rig.env("KAFKA_GSSAPI"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "OAUTHBEARER",
        sasl_oauthbearer_token = token },
    }
    assert.are.equal("_AUTHENTICATION", name, msg)
    assert.truthy(msg:find("does not enable OAUTHBEARER", 1, true), msg)
    assert.are.equal("GSSAPI", msg:match("it enables: (.*)$"), msg)
    assert.falsy(msg:find(token, 1, true), "the token leaked into the error")
  end)

  it("fails in bounded time with the relay's reason when no broker listens", function()
    local conf = relayed("SCRAM-SHA-512")
    conf.bootstrap_servers = "127.0.0.1:1"
    local a = assert(kafka.admin(conf))
    local t0 = monotonic()
    local topics, msg, name = a:metadata { timeout_ms = 3000 }
    local elapsed = monotonic() - t0
    local stats = a:relay_stats()
    a:close()
    assert.is_nil(topics)
    assert.truthy(name == "_TRANSPORT" or name == "_TIMED_OUT" or name == "_ALL_BROKERS_DOWN", name)
    assert.truthy(msg:find("127.0.0.1:1", 1, true) and msg:find("refused", 1, true), msg)
    assert.is_true(elapsed < 10)
    assert.is_true(stats.failures > 0)
    assert.are.equal(0, stats.authentications)
  end)

  it("opens and closes 20 relayed clients without hanging", function()
    local t0 = monotonic()
    for i = 1, 20 do
      local kind = ({ "producer", "consumer", "admin" })[i % 3 + 1]
      local c = assert(kafka[kind](relayed(i % 2 == 0 and "PLAIN" or "SCRAM-SHA-256")))
      if kind == "admin" and i % 2 == 0 then assert(c:metadata { timeout_ms = 5000 }) end
      if kind == "producer" then assert(c:produce { topic = rig.topic("relay-close"), value = "x" }) end
      c:close()
    end
    -- and some left to the garbage collector, mid-handshake
    for i = 1, 5 do assert(kafka.admin(relayed(i % 2 == 0 and "PLAIN" or "SCRAM-SHA-512"))) end
    collectgarbage()
    collectgarbage()
    assert.is_true(monotonic() - t0 < 60)
  end)

  it("is not used unless asked for", function()
    local conf = relayed("PLAIN")
    conf.security.sasl_relay = nil
    local a <close> = assert(kafka.admin(conf))
    assert.is_nil(a:relay_stats())
  end)
end)

-- Produces n records to a fresh topic and reads them back with conf.
local function round_trip(conf, n)
  local admin <close> = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
  local topic = rig.topic("relay-rt")
  assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
  local p <close> = assert(kafka.producer(conf))
  for i = 1, n do assert(p:produce { topic = topic, partition = 0, key = "k" .. i, value = ("v%d"):format(i) }) end
  assert(p:flush(20000))
  local c <close> = assert(kafka.consumer(conf))
  assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
  local got = 0
  for _ = 1, 60 do
    local batch <close> = assert(c:poll_batch(500, 250))
    got = got + #batch
    if got >= n then break end
  end
  assert.are.equal(n, got)
  return p:relay_stats(), c:relay_stats()
end

describe("the auth relay over TLS (SASL_SSL)", function()
  local function tls(mechanism, extra)
    local conf = relayed(mechanism, { security_protocol = "SASL_SSL", ssl_ca_location = rig.env("KALUA_RIG_CA") })
    conf.bootstrap_servers = rig.env("KAFKA_SASL_SSL")
    for k, v in pairs(extra or {}) do conf.security[k] = v end
    return conf
  end

  for _, mechanism in ipairs { "PLAIN", "SCRAM-SHA-512" } do
    it("produces and consumes with " .. mechanism .. ", verifying the broker's certificate", function()
      local ps, cs = round_trip(tls(mechanism), 500)
      for _, s in ipairs { ps, cs } do
        assert.is_true(s.tls)
        assert.are.equal(0, s.failures, s.last_error)
        assert.is_true(s.authentications > 0)
        assert.are.equal(0, s.unmatched_responses)
      end
    end)
  end

  it("loads a client certificate with an encrypted key, and names a wrong key password", function()
    local cert = { ssl_certificate_location = rig.env("KALUA_RIG_CLIENT_CERT"),
      ssl_key_location = rig.env("KALUA_RIG_CLIENT_KEY_ENC"), ssl_key_password = rig.env("KALUA_RIG_CLIENT_KEY_PASSWORD") }
    local ps = round_trip(tls("PLAIN", cert), 20)
    assert.is_true(ps.tls)
    cert.ssl_key_password = "not-the-password"
    local p, msg = kafka.producer(tls("PLAIN", cert))
    assert.is_nil(p)
    assert.truthy(msg:find("cannot read the key (wrong ssl_key_password?)", 1, true), msg)
    assert.falsy(msg:find("not-the-password", 1, true), msg)
  end)

  it("names the certificate problem when the CA is not the broker's", function()
    -- the client certificate is no CA: nothing can chain to it
    local msg, name = first_error(tls("PLAIN", { ssl_ca_location = rig.env("KALUA_RIG_CLIENT_CERT") }))
    assert.truthy(msg:find("TLS certificate verification failed for localhost", 1, true), msg)
    assert.truthy(msg:find("self-signed", 1, true) or msg:find("unable to get", 1, true), msg)
    assert.truthy(name == "_TRANSPORT" or name == "_TIMED_OUT" or name == "_ALL_BROKERS_DOWN" or name == "_SSL", name)
    assert.falsy(msg:find("\n", 1, true), msg)
  end)

  it("checks the host name, and can be told not to", function()
    -- the certificate names localhost and 127.0.0.1; "127.1" reaches
    -- 127.0.0.1 too, but as a name it is neither
    local port = rig.env("KAFKA_SASL_SSL"):match(":(%d+)$")
    local conf = tls("PLAIN")
    conf.bootstrap_servers = "127.1:" .. port
    local msg = first_error(conf)
    assert.truthy(msg:find("TLS certificate verification failed for 127.1", 1, true), msg)
    assert.truthy(msg:find("does not name this host", 1, true), msg)
    conf.security.ssl_endpoint_identification = false
    local a <close> = assert(kafka.admin(conf))
    assert(a:metadata { timeout_ms = 10000 })
  end)

  it("refuses a TLS port spoken to without TLS, and plain text spoken to a TLS port, in one line", function()
    local conf = relayed("PLAIN") -- SASL_PLAINTEXT to the SASL_SSL listener
    conf.bootstrap_servers = rig.env("KAFKA_SASL_SSL")
    local msg = first_error(conf)
    assert.truthy(msg:find("kalua relay", 1, true), msg)
    assert.falsy(msg:find("\n", 1, true), msg)
    local t = tls("PLAIN")
    t.bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT")
    msg = first_error(t)
    assert.truthy(msg:find("TLS", 1, true), msg)
  end)
end)

describe("sasl_mechanism auto (KIP-43)", function()
  it("picks SCRAM-SHA-512 on a listener that enables PLAIN and SCRAM, and says why", function()
    local ps = round_trip(relayed("auto"), 50)
    assert.are.equal("SCRAM-SHA-512", ps.mechanism)
    assert.truthy(ps.mechanism_reason:find("broker enables", 1, true), ps.mechanism_reason)
    assert.are.equal(0, ps.failures, ps.last_error)
  end)

  it("picks GSSAPI when a keytab is given", function()
    local conf = {
      bootstrap_servers = rig.env("KAFKA_GSSAPI"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "auto",
        sasl_keytab_path = rig.env("KALUA_RIG_ALICE_KEYTAB"), sasl_principal = rig.env("KALUA_RIG_ALICE_PRINCIPAL"),
        sasl_krb5_config_path = rig.env("KRB5_RIG_CONFIG"),
        sasl_username = "alice", sasl_password = "not-used" },
    }
    local ps = round_trip(conf, 20)
    assert.are.equal("GSSAPI", ps.mechanism)
  end)

  it("falls back past what the listener lacks: a keytab and a password on a SCRAM listener", function()
    local conf = relayed("auto", {
      sasl_keytab_path = rig.env("KALUA_RIG_ALICE_KEYTAB"), sasl_krb5_config_path = rig.env("KRB5_RIG_CONFIG"),
    })
    local ps = round_trip(conf, 20)
    assert.are.equal("SCRAM-SHA-512", ps.mechanism)
  end)

  it("fails with the broker's list when nothing the credentials allow is enabled", function()
    local conf = relayed("auto")
    conf.bootstrap_servers = rig.env("KAFKA_GSSAPI")
    local msg, name = first_error(conf)
    assert.are.equal("_AUTHENTICATION", name, msg)
    assert.truthy(msg:find("the broker enables GSSAPI; the credentials allow SCRAM-SHA-512, SCRAM-SHA-256, PLAIN", 1, true), msg)
  end)

  it("needs some credentials", function()
    local p, msg = kafka.producer {
      bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "auto" },
    }
    assert.is_nil(p)
    assert.truthy(msg:find("sasl_mechanism auto needs credentials", 1, true), msg)
  end)
end)

describe("a SASL mechanism written in Lua, run by the relay", function()
  local function lua_scram(extra)
    return relayed("SCRAM-SHA-256", rig.with({ sasl_mechanism = "SCRAM-SHA-256",
      sasl_lua_mechanism = "examples/sasl/scram.lua" }, extra or {}))
  end

  it("authenticates to the broker's SCRAM listener with examples/sasl/scram.lua", function()
    local ps, cs = round_trip(lua_scram(), 200)
    assert.are.equal("SCRAM-SHA-256", ps.mechanism)
    assert.are.equal(0, ps.failures + cs.failures, ps.last_error or cs.last_error)
    assert.is_true(ps.authentications > 0 and cs.authentications > 0)
  end)

  it("does so over TLS too", function()
    local conf = lua_scram { security_protocol = "SASL_SSL", ssl_ca_location = rig.env("KALUA_RIG_CA") }
    conf.bootstrap_servers = rig.env("KAFKA_SASL_SSL")
    local ps = round_trip(conf, 50)
    assert.is_true(ps.tls)
  end)

  it("reports the Lua mechanism's own error on a wrong password", function()
    local msg, name = first_error(lua_scram { sasl_password = "wrong" })
    assert.are.equal("_AUTHENTICATION", name, msg)
    assert.truthy(msg:find("SASL authentication failed with mechanism SCRAM-SHA-256", 1, true), msg)
    assert.falsy(msg:find("wrong", 1, true) and msg:find("password=wrong", 1, true), msg)
  end)

  it("names a missing mechanism file, and one that returns no mechanism", function()
    local p, msg = kafka.producer(lua_scram { sasl_lua_mechanism = "/nonexistent/mech.lua" })
    assert.is_nil(p)
    assert.truthy(msg:find("sasl_lua_mechanism: cannot read /nonexistent/mech.lua", 1, true), msg)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("return 42\n")
    f:close()
    p, msg = kafka.producer(lua_scram { sasl_lua_mechanism = path })
    os.remove(path)
    assert.is_nil(p)
    assert.truthy(msg:find("must return a table with start and step functions", 1, true), msg)
  end)
end)

describe("OAUTHBEARER with a Lua token function, run by the relay", function()
  local function oauth(protocol, script)
    local ssl = protocol == "SASL_SSL"
    return {
      bootstrap_servers = rig.env(ssl and "KAFKA_SASL_SSL" or "KAFKA_SASL_PLAINTEXT"),
      security = { security_protocol = protocol, sasl_mechanism = "OAUTHBEARER",
        sasl_oauthbearer_token_script = script or "examples/sasl/unsecured_token.lua",
        ssl_ca_location = ssl and rig.env("KALUA_RIG_CA") or nil },
    }
  end

  for _, protocol in ipairs { "SASL_PLAINTEXT", "SASL_SSL" } do
    it("produces and consumes over " .. protocol .. " with a fresh token per connection", function()
      local ps, cs = round_trip(oauth(protocol), 100)
      for _, s in ipairs { ps, cs } do
        assert.are.equal("OAUTHBEARER", s.mechanism)
        assert.are.equal(0, s.failures, s.last_error)
        assert.is_true(s.authentications > 0)
      end
    end)
  end

  it("names a token script that fails, or gives no token", function()
    local dir = require("proc").tmpdir()
    local failing, empty = dir .. "/failing.lua", dir .. "/empty.lua"
    require("proc").write_file(failing, "return function() error('the identity provider is down') end\n")
    require("proc").write_file(empty, "return function() return nil, 'no token for you' end\n")
    local msg, name = first_error(oauth("SASL_PLAINTEXT", failing))
    assert.are.equal("_AUTHENTICATION", name, msg)
    assert.truthy(msg:find("the identity provider is down", 1, true), msg)
    msg = first_error(oauth("SASL_PLAINTEXT", empty))
    assert.truthy(msg:find("gave no token: no token for you", 1, true), msg)
    local p
    p, msg = kafka.producer(oauth("SASL_PLAINTEXT", dir .. "/missing.lua"))
    assert.is_nil(p)
    assert.truthy(msg:find("sasl_oauthbearer_token_script: cannot read", 1, true), msg)
    require("proc").rmdir(dir)
  end)

  it("shows the broker's JSON refusal of a token it does not accept", function()
    local msg, name = first_error {
      bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "OAUTHBEARER",
        sasl_oauthbearer_token = "eyJhbGciOiJub25lIn0.eyJub3N1YiI6MX0." }, -- no "sub" claim
    }
    assert.are.equal("_AUTHENTICATION", name, msg)
    assert.truthy(msg:find("invalid_token", 1, true) or msg:find("sub", 1, true), msg)
  end)
end)

describe("the auth relay with GSSAPI", function()
  -- alice's keytab against the rig's GSSAPI listener; krb5.conf is set once
  -- per process, and every spec here uses the rig's.
  local function kerberos(extra)
    local security = {
      security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "GSSAPI", sasl_relay = true,
      sasl_keytab_path = rig.env("KALUA_RIG_ALICE_KEYTAB"), sasl_principal = rig.env("KALUA_RIG_ALICE_PRINCIPAL"),
      sasl_kerberos_service_name = "kafka", sasl_krb5_config_path = rig.env("KRB5_RIG_CONFIG"),
    }
    for k, v in pairs(extra or {}) do security[k] = v end
    return { bootstrap_servers = rig.env("KAFKA_GSSAPI"), security = security }
  end

  it("produces and consumes as alice with kalua's GSSAPI, no environment touched", function()
    local topic = rig.topic("relay-gssapi")
    local admin <close> = assert(kafka.admin(kerberos()))
    assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
    local p <close> = assert(kafka.producer(kerberos()))
    for i = 1, 200 do assert(p:produce { topic = topic, partition = 0, value = "k" .. i }) end
    assert(p:flush(20000))
    assert_all_authenticated(p, "GSSAPI")
    local c <close> = assert(kafka.consumer(kerberos()))
    assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
    local n = 0
    for _ = 1, 40 do
      local batch <close> = assert(c:poll_batch(500, 250))
      n = n + #batch
      if n >= 200 then break end
    end
    assert.are.equal(200, n)
    assert_all_authenticated(c, "GSSAPI")
    assert.is_nil(os.getenv("KRB5CCNAME"))
    assert.truthy(proc_read(rig.env("KALUA_RIG_LOG")):find("authenticationID=alice@", 1, true))
  end)

  it("produces and consumes over TLS (SASL_SSL) too", function()
    local conf = kerberos { security_protocol = "SASL_SSL", ssl_ca_location = rig.env("KALUA_RIG_CA") }
    conf.bootstrap_servers = rig.env("KAFKA_GSSAPI_SSL")
    local ps, cs = round_trip(conf, 100)
    for _, s in ipairs { ps, cs } do
      assert.is_true(s.tls)
      assert.are.equal("GSSAPI", s.mechanism)
      assert.are.equal(0, s.failures, s.last_error)
    end
  end)

  it("names a missing keytab in one line, before any traffic", function()
    local msg = first_error(kerberos { sasl_keytab_path = "/nonexistent/alice.keytab" })
    assert.truthy(msg:find("/nonexistent/alice.keytab", 1, true), msg)
    assert.is_nil(msg:find("\n", 1, true))
  end)
end)
