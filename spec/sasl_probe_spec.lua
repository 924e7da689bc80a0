-- `kalua sasl probe` and `kalua sasl mechanisms`, run as a user would,
-- against the rig's real broker and KDC.
local proc = require "proc"
local json = require "kalua.json"
local rig = require "rig"

local function probe(args, env)
  local argv = { proc.kalua(), "sasl", "probe" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.run(argv, { env = env })
end

local function scram_args(listener, mechanism)
  return { "-b", rig.env(listener), "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", mechanism,
    "--sasl-username", rig.env("KAFKA_SCRAM_USER"), "--sasl-password-env", "PROBE_PASSWORD" }
end

describe("kalua sasl probe", function()
  it("prints API versions, enabled mechanisms, the choice and why, and exits 0", function()
    local r = probe(scram_args("KAFKA_SASL_PLAINTEXT", "auto"), { PROBE_PASSWORD = rig.env("KAFKA_SCRAM_PASSWORD") })
    assert.are.equal(0, r.code, r.stderr .. r.stdout)
    assert.truthy(r.stdout:find("SaslHandshake 0%-1"), r.stdout)
    assert.truthy(r.stdout:find("enabled%s+[%w%-, ]*SCRAM%-SHA%-512"), r.stdout)
    assert.truthy(r.stdout:find("mechanism%s+SCRAM%-SHA%-512"), r.stdout)
    assert.truthy(r.stdout:find("why%s+auto chose SCRAM%-SHA%-512"), r.stdout)
    assert.truthy(r.stdout:find("authenticated%s+yes"), r.stdout)
    assert.falsy(r.stdout:find(rig.env("KAFKA_SCRAM_PASSWORD"), 1, true))
  end)

  it("reports the session lifetime of a GSSAPI listener as JSON", function()
    local r = probe { "-b", rig.env("KAFKA_GSSAPI"), "--security-protocol", "SASL_PLAINTEXT",
      "--sasl-mechanism", "GSSAPI", "--sasl-keytab", rig.env("KALUA_RIG_ALICE_KEYTAB"),
      "--sasl-krb5-config", rig.env("KRB5_RIG_CONFIG"), "--json" }
    assert.are.equal(0, r.code, r.stderr .. r.stdout)
    local result = assert(json.decode(r.stdout))
    assert.is_true(result.authenticated)
    assert.are.equal("GSSAPI", result.mechanism)
    assert.are.equal(60000, result.session_lifetime_ms)
    assert.are.same({ "GSSAPI" }, result.enabled)
    assert.is_true(#result.api_versions > 20)
    assert.is_number(result.auth_ms)
  end)

  it("probes over TLS", function()
    local args = scram_args("KAFKA_SASL_SSL", "SCRAM-SHA-256")
    args[4] = "SASL_SSL"
    args[#args + 1] = "--ssl-ca-location"
    args[#args + 1] = rig.env("KALUA_RIG_CA")
    local r = probe(args, { PROBE_PASSWORD = rig.env("KAFKA_SCRAM_PASSWORD") })
    assert.are.equal(0, r.code, r.stderr .. r.stdout)
    assert.truthy(r.stdout:find("(TLS)", 1, true), r.stdout)
  end)

  it("exits 1 on a wrong password, with the broker's reason and no password", function()
    local r = probe(scram_args("KAFKA_SASL_PLAINTEXT", "SCRAM-SHA-512"), { PROBE_PASSWORD = "wrong-horse-battery" })
    assert.are.equal(1, r.code)
    assert.truthy(r.stdout:find("authenticated%s+no"), r.stdout)
    assert.truthy(r.stdout:find("invalid credentials", 1, true), r.stdout)
    assert.falsy((r.stdout .. r.stderr):find("wrong-horse-battery", 1, true))
  end)

  it("exits 1 when the mechanism is not enabled, listing the broker's", function()
    local r = probe(scram_args("KAFKA_GSSAPI", "SCRAM-SHA-512"), { PROBE_PASSWORD = "x" })
    assert.are.equal(1, r.code)
    assert.truthy(r.stdout:find("does not enable SCRAM-SHA-512 on this listener; it enables: GSSAPI", 1, true), r.stdout)
  end)

  it("exits 1 when no broker listens", function()
    local args = scram_args("KAFKA_SASL_PLAINTEXT", "PLAIN")
    args[2] = "127.0.0.1:1"
    local r = probe(args, { PROBE_PASSWORD = "x" })
    assert.are.equal(1, r.code)
    assert.truthy(r.stdout:find("connect failed: Connection refused", 1, true), r.stdout)
  end)

  it("refuses a password on the command line and a listener without SASL", function()
    local r = probe { "-b", rig.env("KAFKA_SASL_PLAINTEXT"), "--sasl-password", "x" }
    assert.are.equal(1, r.code)
    r = probe { "-b", rig.env("KAFKA_PLAINTEXT") }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("nothing to probe", 1, true), r.stderr)
  end)
end)

describe("kalua sasl mechanisms", function()
  it("lists the built-in mechanisms and a Lua one", function()
    local r = proc.run { proc.kalua(), "sasl", "mechanisms", "--sasl-lua-mechanism", "examples/sasl/scram.lua" }
    assert.are.equal(0, r.code, r.stderr)
    for _, m in ipairs { "GSSAPI", "OAUTHBEARER", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" } do
      assert.truthy(r.stdout:find(m, 1, true), r.stdout)
    end
  end)
end)
