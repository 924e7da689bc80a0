-- Principal propagation from a JAAS file (shared/seeds/003): one file with
-- several KafkaClient entries, one client per principal in one process.
-- The rig's broker runs the StandardAuthorizer; an ACL denying bob proves
-- which principal the broker saw for each client.
local kafka = require "kalua.kafka"
local sasl = require "kalua.sasl"
local proc = require "proc"
local rig = require "rig"

-- Kafka's own AclCommand, from the jars the rig runs the broker with.
local function acl(args)
  local argv = { "java", "-cp", rig.env("KALUA_RIG_JARS") .. "/*", "kafka.admin.AclCommand",
    "--bootstrap-server", rig.env("KAFKA_PLAINTEXT") }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = proc.run(argv)
  assert.are.equal(0, r.code, r.stderr)
end

local function jaas_file(dir)
  local path = dir .. "/client.jaas"
  proc.write_file(path, ([[
// two users of one team, as in a Java client's JAAS file
KafkaClient {
  org.apache.kafka.common.security.plain.PlainLoginModule required
    username="alice" password="%s";
  org.apache.kafka.common.security.scram.ScramLoginModule required
    username="bob" password="%s" mechanism="SCRAM-SHA-256";
  com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true storeKey=true keyTab="%s" principal="%s" serviceName="kafka";
};
]]):format(rig.env("KAFKA_PLAIN_PASSWORD"), rig.env("KAFKA_BOB_PASSWORD"), rig.env("KALUA_RIG_ALICE_KEYTAB"),
    rig.env("KALUA_RIG_ALICE_PRINCIPAL")))
  return path
end

local function as(path, principal, listener)
  return {
    bootstrap_servers = rig.env(listener or "KAFKA_SASL_PLAINTEXT"),
    security = { security_protocol = "SASL_PLAINTEXT", sasl_jaas_config = path, sasl_principal = principal,
      sasl_krb5_config_path = rig.env("KRB5_RIG_CONFIG") },
  }
end

local function produce(conf, topic)
  local p <close> = assert(kafka.producer(conf))
  assert(p:produce { topic = topic, value = "x" })
  return p:flush(15000)
end

describe("principals from a JAAS file", function()
  local dir, path

  setup(function()
    dir = proc.tmpdir()
    path = jaas_file(dir)
  end)

  teardown(function() proc.rmdir(dir) end)

  it("lists each entry with its mechanism and principal, for Lua to pick from", function()
    local entries = assert(sasl.jaas_file(path))
    local got = {}
    for _, e in ipairs(entries) do got[#got + 1] = e.principal .. "=" .. e.mechanism end
    assert.are.same({ "alice=PLAIN", "bob=SCRAM-SHA-256", rig.env("KALUA_RIG_ALICE_PRINCIPAL") .. "=GSSAPI" }, got)
  end)

  it("runs alice and bob side by side in one process, each seen by the broker as itself", function()
    local admin <close> = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
    local topic = rig.topic("jaas-acl")
    assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
    -- once a topic has ACLs, only what they allow is allowed: everyone may
    -- use it, except that bob may not write
    acl { "--add", "--allow-principal", "User:*", "--operation", "All", "--deny-principal", "User:bob",
      "--operation", "Write", "--topic", topic }
    local alice <close> = assert(kafka.producer(as(path, "alice")))
    local bob <close> = assert(kafka.producer(as(path, "bob")))
    assert(alice:produce { topic = topic, value = "from alice" })
    assert(bob:produce { topic = topic, value = "from bob" })
    assert(alice:flush(15000))
    local ok, msg = bob:flush(15000)
    assert.is_nil(ok)
    assert.truthy(msg:find("TOPIC_AUTHORIZATION_FAILED", 1, true) or msg:find("authoriz", 1, true), msg)
    -- bob is otherwise a working client: another topic takes his records
    assert(produce(as(path, "bob"), rig.topic("jaas-bob")))
    acl { "--remove", "--force", "--topic", topic }
  end)

  it("takes a Kerberos principal's keytab and service name from its Krb5LoginModule entry", function()
    assert(produce(as(path, rig.env("KALUA_RIG_ALICE_PRINCIPAL"), "KAFKA_GSSAPI"), rig.topic("jaas-krb")))
  end)

  it("asks which principal when there are several, and names them", function()
    local p, msg = kafka.producer(as(path, nil))
    assert.is_nil(p)
    assert.truthy(msg:find("set sasl_principal to one of alice (PLAIN), bob (SCRAM-SHA-256)", 1, true), msg)
    p, msg = kafka.producer(as(path, "carol"))
    assert.is_nil(p)
    assert.truthy(msg:find("no KafkaClient entry for principal 'carol'", 1, true), msg)
  end)

  it("names the line and column of a broken JAAS file, and a missing one", function()
    local bad = dir .. "/bad.jaas"
    proc.write_file(bad, "KafkaClient {\n  org.apache.kafka.common.security.plain.PlainLoginModule required\n    username=\"a\"\n};\n")
    local p, msg = kafka.producer(as(bad, "a"))
    assert.is_nil(p)
    assert.truthy(msg:find("sasl_jaas_config: jaas: " .. bad .. ": line 4", 1, true), msg)
    p, msg = kafka.producer(as(dir .. "/missing.jaas", "a"))
    assert.is_nil(p)
    assert.truthy(msg:find("cannot read " .. dir .. "/missing.jaas", 1, true), msg)
  end)

  it("accepts Kafka's inline sasl.jaas.config form", function()
    local conf = as(("org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" "
      .. "password=\"%s\";"):format(rig.env("KAFKA_SCRAM_PASSWORD")), nil)
    assert(produce(conf, rig.topic("jaas-inline")))
  end)
end)
