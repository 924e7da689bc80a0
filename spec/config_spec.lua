local config = require "kalua.config"
local rig = require "rig"

local function write(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("kalua.config loading", function()
  it("loads OSO's complete secure example unchanged", function()
    local cfg = assert(config.load("spec/fixtures/config/oso-secure.yaml", { env = { KAFKA_PASSWORD = "from-env" } }))
    assert.are.equal("backup", cfg.mode)
    assert.are.same({ "kafka-0.kafka.svc:9093", "kafka-1.kafka.svc:9093", "kafka-2.kafka.svc:9093" }, cfg.source.bootstrap_servers)
    assert.are.equal("SCRAM-SHA512", cfg.source.security.sasl_mechanism)
    assert.are.equal("from-env", cfg.source.security.sasl_password)
    assert.are.equal(3, cfg.backup.compression_level)
    assert.are.same({ "__consumer_offsets" }, cfg.topics.exclude)
  end)

  it("loads OSO's GSSAPI example", function()
    local cfg = assert(config.load("spec/fixtures/config/oso-gssapi.yaml"))
    assert.are.equal("GSSAPI", cfg.source.security.sasl_mechanism)
    assert.are.equal("/etc/kafka-backup/client.keytab", cfg.source.security.sasl_keytab_path)
  end)

  it("points at an unknown key and suggests the right one", function()
    local cfg, err = config.load("spec/fixtures/config/typo.yaml")
    assert.is_nil(cfg)
    assert.are.equal("spec/fixtures/config/typo.yaml:7:5: unknown key 'sasl_mechansim' in source.security"
      .. " (did you mean 'sasl_mechanism'?)", err)
  end)

  it("passes YAML syntax errors through with their position", function()
    local cfg, err = config.load("spec/fixtures/config/broken.yaml")
    assert.is_nil(cfg)
    assert.truthy(err:match("^spec/fixtures/config/broken%.yaml:%d+:%d+: "), err)
  end)

  it("names a missing required key", function()
    local cfg, err = config.parse("mode: backup\nbackup_id: x\nsource:\n  security: {}\nstorage: {backend: filesystem}\n", "m.yaml")
    assert.is_nil(cfg)
    assert.are.equal("m.yaml: missing required key 'source.bootstrap_servers'", err)
    cfg, err = config.parse("mode: backup\nbackup_id: x\nstorage: {backend: filesystem}\n", "m.yaml")
    assert.is_nil(cfg)
    assert.are.equal("m.yaml: missing required key 'source' (needed by mode backup)", err)
  end)

  it("checks types and enumerations with positions", function()
    local _, err = config.parse("backup:\n  compression_level: high\n", "t.yaml")
    assert.are.equal("t.yaml:2:3: 'backup.compression_level' must be an integer", err)
    _, err = config.parse("source:\n  bootstrap_servers: a:1\n  security:\n    security_protocol: TLS\n", "e.yaml")
    assert.are.equal("e.yaml:4:5: 'source.security.security_protocol' must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (got 'TLS')", err)
  end)

  it("accepts numbers from environment variables where integers are due", function()
    local cfg = assert(config.parse("backup:\n  compression_level: ${LEVEL}\n", "n.yaml", { env = { LEVEL = "7" } }))
    assert.are.equal(7, cfg.backup.compression_level)
  end)

  it("takes bootstrap servers as a comma-separated string too", function()
    local cfg = assert(config.parse("source:\n  bootstrap_servers: a:1, b:2\n", "b.yaml"))
    assert.are.same({ "a:1", "b:2" }, cfg.source.bootstrap_servers)
  end)
end)

describe("kalua.config client properties", function()
  local ca, cert, key

  setup(function()
    ca, cert, key = rig.env("KALUA_RIG_CA"), rig.env("KALUA_RIG_CLIENT_CERT"), rig.env("KALUA_RIG_CLIENT_KEY")
  end)

  it("translates PLAINTEXT", function()
    assert.are.same({ ["bootstrap.servers"] = "a:1,b:2", ["security.protocol"] = "plaintext" },
      config.client_properties { bootstrap_servers = { "a:1", "b:2" } })
  end)

  it("translates SSL and mTLS with an encrypted key", function()
    local props = assert(config.client_properties {
      bootstrap_servers = "a:1",
      security = { security_protocol = "ssl", ssl_ca_location = ca, ssl_certificate_location = cert,
        ssl_key_location = key, ssl_key_password = "kp", ssl_endpoint_identification = false },
    })
    assert.are.same({
      ["bootstrap.servers"] = "a:1", ["security.protocol"] = "ssl", ["ssl.ca.location"] = ca,
      ["ssl.certificate.location"] = cert, ["ssl.key.location"] = key, ["ssl.key.password"] = "kp",
      ["ssl.endpoint.identification.algorithm"] = "none",
    }, props)
  end)

  for spelled, canonical in pairs { PLAIN = "PLAIN", ["SCRAM-SHA-256"] = "SCRAM-SHA-256", ["SCRAM-SHA256"] = "SCRAM-SHA-256",
    ["SCRAM-SHA-512"] = "SCRAM-SHA-512", ["SCRAM-SHA512"] = "SCRAM-SHA-512", ["scram-sha-512"] = "SCRAM-SHA-512" } do
    it("translates SASL mechanism " .. spelled .. " to " .. canonical, function()
      local props = assert(config.client_properties {
        bootstrap_servers = "a:1",
        security = { security_protocol = "SASL_SSL", sasl_mechanism = spelled, sasl_username = "u",
          sasl_password = "p", ssl_ca_location = ca },
      })
      assert.are.equal(canonical, props["sasl.mechanism"])
      assert.are.equal("sasl_ssl", props["security.protocol"])
      assert.are.equal("u", props["sasl.username"])
    end)
  end

  it("lets raw properties override what it derives", function()
    local props = assert(config.client_properties {
      bootstrap_servers = "a:1", properties = { ["security.protocol"] = "ssl", ["enable.idempotence"] = true, ["linger.ms"] = 5 },
    })
    assert.are.equal("ssl", props["security.protocol"])
    assert.are.equal("true", props["enable.idempotence"])
    assert.are.equal("5", props["linger.ms"])
  end)

  it("names a missing certificate file and the key that points at it", function()
    local props, err = config.client_properties {
      bootstrap_servers = "a:1",
      security = { security_protocol = "SSL", ssl_ca_location = ca, ssl_certificate_location = "/no/such/cert.pem",
        ssl_key_location = key },
    }
    assert.is_nil(props)
    assert.are.equal("ssl_certificate_location: cannot read /no/such/cert.pem: No such file or directory", err)
  end)

  it("refuses inconsistent security settings without showing secrets", function()
    local secret = "s3cr3t-" .. math.random(1e9)
    local cases = {
      { security_protocol = "SASL_PLAINTEXT", sasl_password = secret },
      { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "PLAIN", sasl_password = secret },
      { security_protocol = "PLAINTEXT", sasl_mechanism = "PLAIN", sasl_username = "u", sasl_password = secret },
      { security_protocol = "SSL", ssl_certificate_location = cert, ssl_key_password = secret },
      { security_protocol = "BOGUS", sasl_password = secret },
    }
    for _, security in ipairs(cases) do
      local props, err = config.client_properties { bootstrap_servers = "a:1", security = security }
      assert.is_nil(props)
      assert.is_string(err)
      assert.falsy(err:find(secret, 1, true), err)
    end
  end)

  it("gives GSSAPI, OAUTHBEARER and auto to kalua's auth relay, and moves TLS there too", function()
    for _, mechanism in ipairs { "GSSAPI", "auto" } do
      local props = assert(config.client_properties {
        bootstrap_servers = "a:1",
        security = { security_protocol = "SASL_SSL", sasl_mechanism = mechanism, ssl_ca_location = "/dev/null",
          sasl_username = "u", sasl_password = "p" },
      })
      assert.are.equal("plaintext", props["security.protocol"])
      assert.are.equal("true", props["kalua.relay"])
      assert.are.equal("true", props["kalua.relay.tls"])
      assert.are.equal("/dev/null", props["kalua.ssl.ca_location"])
      assert.is_nil(props["ssl.ca.location"])
      assert.are.equal(mechanism, props["kalua.sasl.mechanism"])
    end
  end)

  it("checks a GSSAPI keytab is readable before anything connects", function()
    local props, err = config.client_properties {
      bootstrap_servers = "a:1", security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "GSSAPI",
        sasl_keytab_path = "/nonexistent/x.keytab" },
    }
    assert.is_nil(props)
    assert.truthy(err:find("sasl_keytab_path: cannot read /nonexistent/x.keytab", 1, true), err)
  end)
end)

describe("kalua -e with a bad config", function()
  it("prints the position and exits non-zero", function()
    local proc = require "proc"
    local r = proc.run({ proc.kalua(), "-e",
      "local c, e = require('kalua.config').load('spec/fixtures/config/typo.yaml') if not c then io.stderr:write(e, '\\n') os.exit(1) end" })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("typo.yaml:7:5: unknown key", 1, true), r.stderr)
  end)
end)
