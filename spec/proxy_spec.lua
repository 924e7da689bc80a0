-- kalua proxy against the rig: Kafka's own Java console clients and kcat,
-- configured for no SASL at all, reach the 3-broker GSSAPI cluster through
-- it; a group rebalances through it; forbidden APIs get their error; local
-- SASL PLAIN accepts and rejects and maps users to upstream identities;
-- dropped upstream connections recover; bad input ends it in one line.
local kafka = require "kalua.kafka"
local proc = require "proc"
local rig = require "rig"
local jc = require "java_clients"
local proxy = require "kalua.proxy"
local clock = require "kalua.clock"

local function gssapi_flags(bootstrap)
  return {
    "--bootstrap-servers", bootstrap, "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "GSSAPI",
    "--sasl-keytab", rig.env("KALUA_RIG_ALICE_KEYTAB"), "--sasl-principal", rig.env("KALUA_RIG_ALICE_PRINCIPAL"),
    "--sasl-krb5-config", rig.env("KRB5_RIG_CONFIG"), "--sasl-kerberos-service-name", "kafka",
  }
end

local function scram_upstream(user, password)
  return {
    bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"),
    security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "SCRAM-SHA-512",
      sasl_username = user or rig.env("KAFKA_SCRAM_USER"), sasl_password = password or rig.env("KAFKA_SCRAM_PASSWORD") },
  }
end

local function append(list, more)
  for _, v in ipairs(more) do list[#list + 1] = v end
  return list
end

-- `kalua proxy` as a process, once it printed its listeners:
-- h.listeners = { [upstream] = listen }, h.first = the first listen address.
local function start_proxy(args, env)
  local h = proc.spawn(append({ proc.kalua(), "proxy" }, args), { env = env })
  local deadline = clock.now() + 30
  while clock.now() < deadline and h:alive() and not h:stdout():find("listening on") do clock.sleep(0.05) end
  assert(h:stdout():find("listening on"), "kalua proxy did not start: " .. h:stderr())
  h.listeners = {}
  for listen, upstream in h:stdout():gmatch("listening on (%S+) for (%S+)") do
    h.listeners[upstream] = listen
    h.first = h.first or listen
  end
  return h
end

local function stop_proxy(h)
  h:kill("TERM")
  local code = h:wait(20)
  local err = h:stderr()
  h:cleanup()
  return code, err
end

-- Waits until every partition of topic has a leader, as seen through bootstrap.
local function wait_leaders(bootstrap, topic, partitions)
  local a <close> = assert(kafka.admin { bootstrap_servers = bootstrap })
  for _ = 1, 100 do
    local md = a:metadata { topic = topic, timeout_ms = 5000 }
    local t = md and md[1]
    if t and not t.error and #t.partitions == partitions then
      local ready = true
      for _, part in ipairs(t.partitions) do
        if part.error or part.leader < 0 then ready = false end
      end
      if ready then return end
    end
    clock.sleep(0.2)
  end
  error("the partitions of " .. topic .. " got no leaders")
end

local function records(n, prefix)
  local out = {}
  for i = 1, n do out[i] = ("%s-%04d"):format(prefix, i) end
  return out
end

local function sorted(list)
  local copy = table.move(list, 1, #list, 1, {})
  table.sort(copy)
  return copy
end

describe("kalua proxy", function()
  local admin, cluster_admin

  setup(function()
    admin = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
    cluster_admin = assert(kafka.admin { bootstrap_servers = rig.cluster().plaintext })
  end)

  teardown(function()
    admin:close()
    cluster_admin:close()
  end)

  describe("in front of the 3-broker GSSAPI cluster #noasan", function() -- Java peers: slow under ASan, and the C paths run in the tests below too
    local h, c

    setup(function()
      c = rig.cluster()
      local first = c.gssapi:match("^[^,]+")
      -- one broker mapped; the other two are found in Metadata and get listeners of their own
      h = start_proxy(append(gssapi_flags(first), { "--map", first .. "=127.0.0.1:0" }))
    end)

    teardown(function()
      local code, err = stop_proxy(h)
      assert.are.equal(0, code, err)
    end)

    it("lets kcat and Kafka's Java console clients, with no SASL, produce and consume", function()
      local topic = rig.topic("proxy-gssapi")
      assert(cluster_admin:create_topics { { name = topic, partitions = 6, replication_factor = 3 } })
      for broker in c.plaintext:gmatch("[^,]+") do wait_leaders(broker, topic, 6) end -- every broker knows it
      local sent = records(200, "kcat")
      jc.kcat_produce(h.first, topic, sent)
      local java = records(50, "java")
      jc.produce(h.first, topic, java)
      local got = jc.consume(h.first, topic, { from_beginning = true, max_messages = 250, timeout_ms = 20000 })
      assert.are.same(sorted(append(sent, java)), sorted(got))
      local via_kcat = jc.kcat_consume(h.first, topic, { count = 250 })
      assert.are.equal(250, #via_kcat)
      -- every broker got a listener: 1 mapped + 2 discovered, logged as such
      local log = h:stderr()
      local discovered = select(2, log:gsub("discovered", ""))
      assert.is_true(discovered >= 2, log)
    end)

    it("carries a consumer group through a rebalance", function()
      local topic = rig.topic("proxy-group")
      local group = rig.topic("proxy-group-g")
      assert(cluster_admin:create_topics { { name = topic, partitions = 2, replication_factor = 3 } })
      for broker in c.plaintext:gmatch("[^,]+") do wait_leaders(broker, topic, 2) end
      local a = jc.start_consumer(h.first, topic, { group = group, from_beginning = true })
      local ok, err = pcall(function()
        a:wait_assignment(function(parts) return #parts == 2 end)
        local b = jc.start_consumer(h.first, topic, { group = group, from_beginning = true })
        local ok2, err2 = pcall(function()
          b:wait_assignment(function(parts) return #parts == 1 end)
          a:wait_assignment(function(parts) return #parts == 1 end)
          jc.kcat_produce(h.first, topic, records(20, "p0"), { partition = 0 })
          jc.kcat_produce(h.first, topic, records(20, "p1"), { partition = 1 })
          a:wait_records(20)
          b:wait_records(20)
        end)
        b:stop()
        assert(ok2, err2)
      end)
      a:stop()
      assert(ok, err)
    end)
  end)

  describe("with forbidden API keys", function()
    it("answers them with an authorization error and keeps the connection", function()
      local h = start_proxy(append({ "--bootstrap-servers", rig.env("KAFKA_SASL_PLAINTEXT"), "--security-protocol",
        "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", rig.env("KAFKA_SCRAM_USER"),
        "--sasl-password-env", "PROXY_SPEC_PASSWORD", "--forbid", "DeleteTopics,CreateTopics" }, {}),
        { PROXY_SPEC_PASSWORD = rig.env("KAFKA_SCRAM_PASSWORD") })
      local topic = rig.topic("proxy-forbidden")
      assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
      local via = assert(kafka.admin { bootstrap_servers = h.first })
      local ok, msg = via:delete_topics { topic }
      assert.is_nil(ok)
      assert.matches("[Aa]uthorization failed", msg)
      ok, msg = via:create_topics { { name = rig.topic("proxy-forbidden-new"), partitions = 1, replication_factor = 1 } }
      assert.is_nil(ok)
      assert.matches("forbidden by kalua proxy", msg) -- the refusal's own error message (CreateTopics v1+)
      -- the same client goes on: the topic is still there, seen through the proxy
      local md = assert(via:metadata { topic = topic, timeout_ms = 10000 })
      assert.are.equal(topic, md[1].name)
      via:close()
      local code, err = stop_proxy(h)
      assert.are.equal(0, code, err)
      assert.matches("refused DeleteTopics", err)
      assert.matches("refused CreateTopics", err)
      assert.is_nil(err:find(rig.env("KAFKA_SCRAM_PASSWORD"), 1, true))
    end)
  end)

  describe("with local authentication", function()
    local dir, p

    setup(function()
      dir = proc.tmpdir()
      proc.write_file(dir .. "/check.lua", [[
        local users = { alice = "alice-local", bob = "bob-local" }
        return function(user, password, info)
          assert(info.peer and info.listener)
          if users[user] and users[user] == password then return true end
          return nil, "unknown user or wrong password"
        end]])
      p = assert(proxy.start {
        upstream = scram_upstream(),
        identities = { bob = { sasl_username = rig.env("KAFKA_BOB_USER"), sasl_password = rig.env("KAFKA_BOB_PASSWORD") } },
        listeners = { { upstream = rig.env("KAFKA_SASL_PLAINTEXT"), listen = "127.0.0.1:0" } },
        auth_script = dir .. "/check.lua",
      })
    end)

    teardown(function()
      p:close()
      proc.rmdir(dir)
    end)

    local function local_client(user, password)
      return { bootstrap_servers = p:listeners()[1].listen, security = { security_protocol = "SASL_PLAINTEXT",
        sasl_mechanism = "PLAIN", sasl_username = user, sasl_password = password } }
    end

    it("accepts a client whose password the Lua function accepts, as that user's upstream identity", function()
      local topic = rig.topic("proxy-local")
      assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
      local producer <close> = assert(kafka.producer(local_client("bob", "bob-local")))
      assert(producer:produce { topic = topic, value = "from bob" })
      assert(producer:flush(20000))
      local s = p:stats()
      assert.is_true(s.local_ok >= 1)
      assert.is_true(s.identities.bob.authentications >= 1, "bob's connections use bob's upstream identity")
      -- kcat, with SASL PLAIN to the proxy only
      local out = proc.run({ "kcat", "-b", p:listeners()[1].listen, "-X", "security.protocol=SASL_PLAINTEXT",
        "-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=alice", "-X", "sasl.password=alice-local",
        "-C", "-t", topic, "-o", "beginning", "-e", "-q" })
      assert.are.equal(0, out.code, out.stderr)
      assert.are.equal("from bob\n", out.stdout)
      assert.is_true(p:stats().upstream.authentications >= 1, "alice's go as the default identity")
    end)

    it("lets Kafka's Java console clients in with SASL PLAIN to the proxy only", function()
      local topic = rig.topic("proxy-local-java")
      assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
      local props = { ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanism"] = "PLAIN",
        ["sasl.jaas.config"] = 'org.apache.kafka.common.security.plain.PlainLoginModule required '
          .. 'username="alice" password="alice-local";' }
      local listen = p:listeners()[1].listen
      jc.produce(listen, topic, { "one", "two" }, { properties = props })
      local got = jc.consume(listen, topic, { from_beginning = true, max_messages = 2, properties = props })
      assert.are.same({ "one", "two" }, got)
    end)

    it("rejects a wrong password with an authentication error", function()
      local before = p:stats().local_failed
      local producer <close> = assert(kafka.producer(local_client("alice", "Wr0ng-Pass")))
      assert(producer:produce { topic = rig.topic("proxy-local-bad"), value = "x" })
      local ok, msg = producer:flush(8000)
      assert.is_nil(ok)
      assert.matches("[Aa]uthentication", msg)
      assert.is_true(p:stats().local_failed > before)
      local seen
      for _, e in ipairs(p:events()) do
        if e.kind == "auth" and e.message:find("'alice'", 1, true) then seen = e.message end
        assert.is_nil(e.message:find("Wr0ng-Pass", 1, true), "a password in an event: " .. e.message)
      end
      assert.truthy(seen)
    end)
  end)

  it("recovers when its upstream connections drop mid-stream", function()
    local p = assert(proxy.start {
      upstream = scram_upstream(),
      listeners = { { upstream = rig.env("KAFKA_SASL_PLAINTEXT"), listen = "127.0.0.1:0" } },
    })
    local topic = rig.topic("proxy-drop")
    assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1 } })
    local bootstrap = p:listeners()[1].listen
    local producer = assert(kafka.producer { bootstrap_servers = bootstrap, idempotence = true, acks = "all" })
    local n, dropped = 20000, 0
    for i = 1, n do
      assert(producer:produce { topic = topic, key = tostring(i), value = ("v%d"):format(i):rep(20) })
      if i % 5000 == 0 then
        producer:poll(50)
        dropped = dropped + p:drop_upstream()
      end
    end
    assert(producer:flush(60000))
    producer:close()
    assert.is_true(dropped >= 2, "upstream connections dropped: " .. dropped)
    local consumer <close> = assert(kafka.consumer { bootstrap_servers = bootstrap, group_id = rig.topic("proxy-drop-g"),
      ["auto.offset.reset"] = "earliest" })
    assert(consumer:subscribe { topic })
    local seen, count = {}, 0
    for _ = 1, 120 do
      local batch = assert(consumer:poll_batch(1000, 1000))
      for r in batch:records() do
        if not seen[r.key] then count = count + 1 end
        seen[r.key] = true
      end
      if count >= n then break end
      if count > n / 2 and _ % 10 == 0 then p:drop_upstream() end -- and while consuming
    end
    assert.are.equal(n, count)
    local s = p:stats()
    assert.is_true(s.accepted > 2, "clients reconnected")
    assert.are.equal(0, s.unmatched_responses)
    p:close()
  end)

  it("carries plain clients to a SASL_SSL listener, with a CA and an encrypted client key", function()
    local upstream = rig.env("KAFKA_SASL_SSL")
    local p = assert(proxy.start {
      upstream = { bootstrap_servers = upstream, security = { security_protocol = "SASL_SSL",
        sasl_mechanism = "SCRAM-SHA-512", sasl_username = rig.env("KAFKA_SCRAM_USER"),
        sasl_password = rig.env("KAFKA_SCRAM_PASSWORD"), ssl_ca_location = rig.env("KALUA_RIG_CA"),
        ssl_certificate_location = rig.env("KALUA_RIG_CLIENT_CERT"), ssl_key_location = rig.env("KALUA_RIG_CLIENT_KEY_ENC"),
        ssl_key_password = rig.env("KALUA_RIG_CLIENT_KEY_PASSWORD") } },
      listeners = { { upstream = upstream, listen = "127.0.0.1:0" } },
    })
    local topic = rig.topic("proxy-tls")
    assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
    local bootstrap = p:listeners()[1].listen
    local producer <close> = assert(kafka.producer { bootstrap_servers = bootstrap })
    local big = ("0123456789abcdef"):rep(8192) -- 128 KiB: many TLS records a frame
    for i = 1, 40 do assert(producer:produce { topic = topic, key = tostring(i), value = big .. i }) end
    assert(producer:flush(30000))
    local consumer <close> = assert(kafka.consumer { bootstrap_servers = bootstrap })
    assert(consumer:assign { { topic = topic, partition = 0, offset = "beginning" } })
    local got = 0
    for _ = 1, 60 do
      local batch = assert(consumer:poll_batch(100, 500))
      for r in batch:records() do
        got = got + 1
        assert.are.equal(big .. r.key, r.value)
      end
      if got >= 40 then break end
    end
    assert.are.equal(40, got)
    local s = p:stats()
    assert.is_true(s.upstream.tls)
    assert.are.equal(0, s.upstream.failures, s.upstream.last_error)
    p:close()
  end)

  it("refuses connections beyond max_connections and closes idle ones", function()
    local p = assert(proxy.start { upstream = { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") },
      listeners = { { upstream = rig.env("KAFKA_PLAINTEXT"), listen = "127.0.0.1:0" } },
      max_connections = 2, idle_timeout_ms = 1500 })
    local host, port = p:listeners()[1].listen:match("^(.*):(%d+)$")
    local holders = {}
    for i = 1, 3 do -- raw TCP connections that say nothing
      holders[i] = proc.spawn({ "bash", "-c", ("exec 3<>/dev/tcp/%s/%s; sleep 20"):format(host, port) })
    end
    local function until_(pred)
      local s
      for _ = 1, 200 do
        s = p:stats()
        if pred(s) then return s end
        clock.sleep(0.05)
      end
      error("proxy stats never got there: accepted " .. s.accepted .. ", refused " .. s.refused .. ", active "
        .. s.active .. ", idle closed " .. s.idle_closed)
    end
    local s = until_(function(st) return st.accepted + st.refused >= 3 end)
    assert.are.equal(2, s.accepted)
    assert.are.equal(1, s.refused)
    s = until_(function(st) return st.idle_closed >= 2 and st.active == 0 end)
    assert.are.equal(2, s.idle_closed)
    for _, h in ipairs(holders) do h:cleanup() end
    p:close()
  end)

  it("serves /metrics with connections, requests by API and bytes", function()
    local h = start_proxy({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT"), "--metrics-addr", "127.0.0.1:0",
      "--log-format", "json" })
    local producer <close> = assert(kafka.producer { bootstrap_servers = h.first })
    assert(producer:produce { topic = rig.topic("proxy-metrics"), value = "m" })
    assert(producer:flush(20000))
    local addr
    for line in h:stderr():gmatch("[^\n]+") do
      addr = addr or line:match('"address":"([^"]+)"')
    end
    assert.truthy(addr, h:stderr())
    local body
    for _ = 1, 50 do
      body = proc.run({ "curl", "-sf", "http://" .. addr .. "/metrics" }).stdout
      if body:find('kalua_proxy_requests_total{api="Produce"}', 1, true) then break end
      clock.sleep(0.1)
    end
    assert.matches('kalua_proxy_requests_total{api="Produce"} [1-9]', body)
    assert.matches('kalua_proxy_requests_total{api="Metadata"} [1-9]', body)
    assert.matches("kalua_proxy_connections_total [1-9]", body)
    assert.matches('kalua_proxy_bytes_total{direction="from_clients"} [1-9]', body)
    assert.matches("kalua_proxy_upstream_seconds_total", body)
    assert.are.equal(0, proc.run({ "curl", "-sf", "http://" .. addr .. "/healthz" }).code)
    local code, err = stop_proxy(h)
    assert.are.equal(0, code, err)
  end)

  it("answers /healthz 503 while it cannot authenticate to the brokers", function()
    local h = start_proxy({ "--bootstrap-servers", rig.env("KAFKA_SASL_PLAINTEXT"), "--security-protocol",
      "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", rig.env("KAFKA_SCRAM_USER"),
      "--sasl-password-env", "P", "--no-check", "--metrics-addr", "127.0.0.1:0", "--log-format", "json" },
      { P = "not-alices-password" })
    local addr = h:stderr():match('"address":"([^"]+)"')
    assert.truthy(addr, h:stderr())
    local a <close> = assert(kafka.admin { bootstrap_servers = h.first })
    local r
    for _ = 1, 100 do
      a:metadata { timeout_ms = 200 }
      r = proc.run({ "curl", "-s", "-w", "\n%{http_code}", "http://" .. addr .. "/healthz" })
      if r.stdout:find("503", 1, true) then break end
    end
    assert.matches("upstream: SASL authentication failed", r.stdout)
    assert.matches("\n503$", r.stdout)
    assert.is_nil(r.stdout:find("not-alices-password", 1, true))
    local code, err = stop_proxy(h)
    assert.are.equal(0, code, err)
    assert.matches("SASL authentication failed", err)
    assert.is_nil(err:find("not-alices-password", 1, true))
  end)

  it("speaks TLS to clients and maps client certificates to users", function()
    local dir = proc.tmpdir()
    proc.write_file(dir .. "/proxy.yaml", ([[
mode: proxy
source:
  bootstrap_servers: %s
proxy:
  tls:
    cert: %s
    key: %s
    ca: %s
    client_subjects:
      - { match: "CN=kalua-client", user: alice }
]]):format(rig.env("KAFKA_PLAINTEXT"), rig.env("KALUA_RIG_DIR") .. "/tls/broker.crt",
      rig.env("KALUA_RIG_DIR") .. "/tls/broker.key", rig.env("KALUA_RIG_CA")))
    local h = start_proxy({ "--config", dir .. "/proxy.yaml" })
    local tls = { security_protocol = "SSL", ssl_ca_location = rig.env("KALUA_RIG_CA") }
    local with_cert = { bootstrap_servers = h.first, security = rig.with(tls, {
      ssl_certificate_location = rig.env("KALUA_RIG_CLIENT_CERT"), ssl_key_location = rig.env("KALUA_RIG_CLIENT_KEY") }) }
    local a <close> = assert(kafka.admin(with_cert))
    assert(a:metadata { timeout_ms = 10000 })
    local no_cert <close> = assert(kafka.admin { bootstrap_servers = h.first, security = tls })
    local ok = no_cert:metadata { timeout_ms = 3000 }
    assert.is_nil(ok)
    local code, err = stop_proxy(h)
    assert.are.equal(0, code, err)
    proc.rmdir(dir)
  end)

  describe("bad input", function()
    local function run(args, env)
      return proc.run(append({ proc.kalua(), "proxy" }, args), { env = env })
    end

    local function one_line(r)
      assert.are_not.equal(0, r.code)
      local lines = select(2, r.stderr:gsub("\n", ""))
      assert.are.equal(1, lines, r.stderr)
      return r.stderr
    end

    it("a wrong upstream password", function()
      local err = one_line(run({ "--bootstrap-servers", rig.env("KAFKA_SASL_PLAINTEXT"), "--security-protocol",
        "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", rig.env("KAFKA_SCRAM_USER"),
        "--sasl-password-env", "P" }, { P = "not-the-password" }))
      assert.matches("cannot authenticate", err)
      assert.is_nil(err:find("not-the-password", 1, true))
    end)

    it("a missing keytab", function()
      local args = gssapi_flags(rig.cluster().gssapi:match("^[^,]+"))
      for i, v in ipairs(args) do
        if v == rig.env("KALUA_RIG_ALICE_KEYTAB") then args[i] = "/nonexistent/alice.keytab" end
      end
      assert.matches("/nonexistent/alice.keytab", one_line(run(args)))
    end)

    it("an unknown principal", function()
      local args = gssapi_flags(rig.cluster().gssapi:match("^[^,]+"))
      for i, v in ipairs(args) do
        if v == rig.env("KALUA_RIG_ALICE_PRINCIPAL") then args[i] = "nobody@KALUA.TEST" end
      end
      assert.matches("nobody", one_line(run(args)))
    end)

    it("a broker that is down", function()
      assert.matches("127.0.0.1:1", one_line(run({ "--bootstrap-servers", "127.0.0.1:1", "--security-protocol",
        "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN", "--sasl-username", "u", "--sasl-password-env", "P" },
        { P = "p" })))
    end)

    it("an API it cannot refuse, or does not know", function()
      assert.matches("NoSuchApi", one_line(run({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT"), "--forbid",
        "NoSuchApi" })))
      assert.matches("cannot refuse", one_line(run({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT"), "--forbid",
        "Fetch" })))
    end)

    it("a listen address in use, and a malformed --map", function()
      local h = start_proxy({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT") })
      assert.matches("cannot listen", one_line(run({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT"), "--map",
        rig.env("KAFKA_PLAINTEXT") .. "=" .. h.first })))
      stop_proxy(h)
      local r = run({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT"), "--map", "nonsense" })
      assert.are.equal(2, r.code)
      assert.matches("BROKER=LOCAL", r.stderr)
    end)

    it("an auth script that does not load", function()
      assert.matches("auth_script", one_line(run({ "--bootstrap-servers", rig.env("KAFKA_PLAINTEXT"),
        "--auth-script", "/nonexistent/check.lua" })))
    end)

    it("bad YAML, with line and column", function()
      local dir = proc.tmpdir()
      proc.write_file(dir .. "/p.yaml", "mode: proxy\nsource:\n  bootstrap_servers: [a\nproxy: {}\n")
      assert.matches("p.yaml:%d+:%d+", one_line(run({ "--config", dir .. "/p.yaml" })))
      proc.write_file(dir .. "/p.yaml", "mode: proxy\nsource:\n  bootstrap_servers: x:1\nproxy:\n  max_conections: 3\n")
      assert.matches("p.yaml:5:%d+.*max_connections", one_line(run({ "--config", dir .. "/p.yaml" })))
      proc.rmdir(dir)
    end)
  end)
end)
