-- The rig itself is known-good before kalua's own clients are judged on it:
-- Kafka's Java clients authenticate with Kerberos, and kcat (librdkafka,
-- independent of kalua's code) reaches every other listener.
local proc = require "proc"
local rig = require "rig"

describe("the test rig", function()
  it("serves GSSAPI to Kafka's Java console producer and consumer", function()
    local r = proc.run({ "spec/rig/check-gssapi" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("serves every other listener to kcat", function()
    local r = proc.run({ "spec/rig/check-listeners" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:match("\n(%d+) passed, 0 failed"), r.stdout)
  end)

  it("describes itself through rig env", function()
    for _, key in ipairs { "KAFKA_PLAINTEXT", "KAFKA_SSL", "KAFKA_MTLS", "KAFKA_SASL_PLAINTEXT",
      "KAFKA_SASL_SSL", "KAFKA_GSSAPI", "KALUA_RIG_CA", "KRB5_RIG_CONFIG", "KALUA_RIG_ALICE_KEYTAB" } do
      assert.is_string(rig.env(key))
    end
  end)
end)
