-- GSSAPI across brokers: kalua's auth relay against the rig's 3-broker
-- cluster (spec/rig/rig cluster up). Each broker advertises its own address
-- 127.0.0.N and holds its own service principal kafka/127.0.0.N@REALM, so
-- the relay must build the target name per broker, from the host librdkafka
-- connects to, and get a ticket for each from the rig's KDC.
local kafka = require "kalua.kafka"
local proc = require "proc"
local rig = require "rig"

-- alice's keytab, kalua's GSSAPI through the relay, the rig's krb5.conf
-- (one per process: the same one every other spec uses).
local function kerberos(bootstrap)
  return {
    bootstrap_servers = bootstrap,
    security = {
      security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "GSSAPI", sasl_relay = true,
      sasl_keytab_path = rig.env("KALUA_RIG_ALICE_KEYTAB"), sasl_principal = rig.env("KALUA_RIG_ALICE_PRINCIPAL"),
      sasl_kerberos_service_name = "kafka", sasl_krb5_config_path = rig.env("KRB5_RIG_CONFIG"),
    },
  }
end

-- Every connection the relay opened authenticated, and there were at
-- least `brokers` of them: one per broker.
local function assert_authenticated_to(client, brokers)
  local s = assert(client:relay_stats())
  assert.are.equal("GSSAPI", s.mechanism)
  assert.are.equal(0, s.failures, s.last_error)
  assert.is_true(s.authentications >= brokers,
    ("%d authentications over %d connections, want one per broker (%d)"):format(s.authentications, s.connections, brokers))
  assert.are.equal(0, s.unmatched_responses)
end

-- The topic's partitions once every one has a leader and all 3 replicas in
-- sync: { [partition id] = leader broker id }.
local function leaders(admin, topic)
  local last
  for _ = 1, 60 do
    local topics = assert(admin:metadata { topic = topic, timeout_ms = 5000 })
    local parts, ready = topics[1].partitions, true
    last = {}
    for _, p in ipairs(parts) do
      last[p.id] = p.leader
      if p.error or p.leader < 0 or #p.isrs < 3 then ready = false end
    end
    if ready and #parts == 6 then return last end
    os.execute("sleep 0.25")
  end
  error(("the partitions of %s have no leaders with 3 in-sync replicas yet"):format(topic))
end

-- The part of a log written since `from` (a byte count taken earlier).
local function since(path, from)
  return proc.read_file(path):sub(from + 1)
end

-- Whether the KDC's log shows a service ticket issued to client for server:
-- `TGS_REQ (...) <address>: ISSUE: ..., <client> for <server>`.
local function issued(kdc, client, server)
  local tail = (" %s for %s"):format(client, server)
  for line in kdc:gmatch("[^\n]+") do
    if line:find(" TGS_REQ ", 1, true) and line:find(": ISSUE: ", 1, true) and line:sub(-#tail) == tail then
      return true
    end
  end
  return false
end

describe("the auth relay with GSSAPI on the 3-broker cluster", function()
  local cluster, admin, topic, kdc_log, kdc_from, broker_from
  local hosts = {} -- broker id -> advertised host

  setup(function()
    cluster = rig.cluster()
    kdc_log = rig.env("KALUA_RIG_DIR") .. "/kdc.log"
    kdc_from = #proc.read_file(kdc_log)
    broker_from = {}
    for id = 1, 3 do broker_from[id] = #proc.read_file(("%s/broker-%d.log"):format(cluster.dir, id)) end
    admin = assert(kafka.admin { bootstrap_servers = cluster.plaintext })
    for _, b in ipairs(assert(admin:brokers())) do hosts[b.id] = b.host end
    topic = rig.topic("cluster-gssapi")
    assert(admin:create_topics { { name = topic, partitions = 6, replication_factor = 3 } })
  end)

  teardown(function()
    if admin then
      if topic then admin:delete_topics { topic } end
      admin:close()
    end
  end)

  it("runs three brokers, each advertising its own address with its own service principal", function()
    assert.are.same({ "127.0.0.2", "127.0.0.3", "127.0.0.4" }, { hosts[1], hosts[2], hosts[3] })
    local realm = rig.env("KALUA_RIG_REALM")
    for id = 1, 3 do
      assert.are.equal(("kafka/%s@%s"):format(hosts[id], realm), cluster.principals[id])
    end
  end)

  it("spreads the partition leaders of a 6-partition topic over all three brokers", function()
    local led = {}
    for _, leader in pairs(leaders(admin, topic)) do led[leader] = (led[leader] or 0) + 1 end
    assert.are.same({ 1, 2, 3 }, { led[1] and 1, led[2] and 2, led[3] and 3 })
  end)

  it("produces to every broker's partitions and consumes it all back as alice, with a ticket per broker", function()
    local leader_of = leaders(admin, topic)
    local per_partition, sent = 50, {}
    local p <close> = assert(kafka.producer(rig.with(kerberos(cluster.gssapi), { acks = "all" })))
    for partition = 0, 5 do
      for i = 1, per_partition do
        local key = ("p%d-%d"):format(partition, i)
        sent[key] = ("record %d of partition %d, led by broker %d"):format(i, partition, leader_of[partition])
        assert(p:produce { topic = topic, partition = partition, key = key, value = sent[key] })
      end
    end
    assert(p:flush(30000))
    assert_authenticated_to(p, 3)

    local c <close> = assert(kafka.consumer(kerberos(cluster.gssapi)))
    local assignment = {}
    for partition = 0, 5 do assignment[#assignment + 1] = { topic = topic, partition = partition, offset = "beginning" } end
    assert(c:assign(assignment))
    local got, n, want = {}, 0, 6 * per_partition
    for _ = 1, 120 do
      local batch <close> = assert(c:poll_batch(1000, 500))
      for r in batch:records() do
        assert.are.equal(r.key:match("^p(%d+)-"), tostring(r.partition))
        if got[r.key] == nil then n = n + 1 end
        got[r.key] = r.value
      end
      if n >= want then break end
    end
    assert.are.equal(want, n)
    assert.are.same(sent, got)
    assert_authenticated_to(c, 3)

    local kdc = since(kdc_log, kdc_from)
    local alice = rig.env("KALUA_RIG_ALICE_PRINCIPAL")
    for id, principal in ipairs(cluster.principals) do
      assert.is_true(issued(kdc, alice, principal),
        ("the KDC issued no ticket for %s to %s (see %s)"):format(principal, alice, kdc_log))
      local log = since(("%s/broker-%d.log"):format(cluster.dir, id), broker_from[id])
      assert.truthy(log:find("Successfully authenticated client: authenticationID=" .. alice, 1, true),
        ("broker %d (%s) logged no GSSAPI authentication of %s"):format(id, principal, alice))
    end
  end)
end)
