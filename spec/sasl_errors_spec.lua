-- The SASL failures users meet, each provoked for real against the rig's
-- KDC and broker through `kalua sasl probe` (the relay's own connection
-- code): one line, the cause and the fix, exit 1, no secret.
local proc = require "proc"
local rig = require "rig"

local function probe(args, opts)
  local argv = { proc.kalua(), "sasl", "probe", "--security-protocol", "SASL_PLAINTEXT" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = proc.run(argv, opts)
  return r, r.stdout:match("error%s+([^\n]*)") or r.stderr
end

local function kerberos(keytab, krb5_config, bootstrap)
  return { "-b", bootstrap or rig.env("KAFKA_GSSAPI"), "--sasl-mechanism", "GSSAPI", "--sasl-keytab", keytab,
    "--sasl-krb5-config", krb5_config or rig.env("KRB5_RIG_CONFIG") }
end

describe("SASL errors, provoked for real", function()
  it("a missing keytab: named before any traffic", function()
    local r, msg = probe(kerberos("/nonexistent/alice.keytab"))
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("sasl_keytab_path: cannot read /nonexistent/alice.keytab", 1, true), msg)
    assert.are.equal("", r.stdout) -- it never got to connect
  end)

  it("a stale keytab (the key changed after export)", function()
    local r, msg = probe(kerberos(rig.env("KALUA_RIG_STALE_KEYTAB")))
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("the keytab is stale (export it again)", 1, true), msg)
  end)

  it("an expired password", function()
    local r, msg = probe(kerberos(rig.env("KALUA_RIG_EXPIRED_KEYTAB")))
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("password has expired", 1, true) and msg:find("kpasswd", 1, true), msg)
  end)

  it("a broker host that does not match the service principal (KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN)", function()
    local port = rig.env("KAFKA_GSSAPI"):match(":(%d+)$")
    local r, msg = probe(kerberos(rig.env("KALUA_RIG_ALICE_KEYTAB"), nil, "127.0.0.1:" .. port))
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("kafka/127.0.0.1", 1, true), msg)
    assert.truthy(msg:find("the broker host must match the service principal's host", 1, true), msg)
  end)

  it("a clock 20 minutes off from the KDC's", function()
    -- krb5 corrects a skew by itself (kdc_timesync); a config without that
    -- shows what a client that cannot correct it meets
    local dir = proc.tmpdir()
    local conf = proc.read_file(rig.env("KRB5_RIG_CONFIG")):gsub("%[libdefaults%]", "[libdefaults]\n  kdc_timesync = 0")
    proc.write_file(dir .. "/krb5.conf", conf)
    local argv = { "faketime", "-f", "-20m" }
    local r = proc.run({ "faketime", "-f", "-20m", "true" })
    assert.are.equal(0, r.code, "faketime is missing: run tools/install-deps")
    local msg
    r, msg = probe(kerberos(rig.env("KALUA_RIG_ALICE_KEYTAB"), dir .. "/krb5.conf"), {
      prefix = argv,
      env = { ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":verify_asan_link_order=0" },
    })
    proc.rmdir(dir)
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(msg:find("Clock skew too great", 1, true) and msg:find("sync the clocks", 1, true), msg)
  end)

  it("a wrong password, with no password in the output", function()
    local r, msg = probe({ "-b", rig.env("KAFKA_SASL_PLAINTEXT"), "--sasl-mechanism", "SCRAM-SHA-256",
      "--sasl-username", "alice", "--sasl-password-env", "P" }, { env = { P = "correct-horse-wrong" } })
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("invalid credentials", 1, true), msg)
    assert.falsy((r.stdout .. r.stderr):find("correct-horse-wrong", 1, true))
  end)

  it("a mechanism the listener does not enable, with the broker's list", function()
    local r, msg = probe({ "-b", rig.env("KAFKA_GSSAPI"), "--sasl-mechanism", "PLAIN", "--sasl-username", "alice",
      "--sasl-password-env", "P" }, { env = { P = "x" } })
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("does not enable PLAIN on this listener; it enables: GSSAPI", 1, true), msg)
  end)

  it("a TLS certificate that does not verify, naming the problem", function()
    local r, msg = probe({ "-b", rig.env("KAFKA_SASL_SSL"), "--security-protocol", "SASL_SSL",
      "--ssl-ca-location", rig.env("KALUA_RIG_CLIENT_CERT"), "--sasl-mechanism", "PLAIN", "--sasl-username", "alice",
      "--sasl-password-env", "P" }, { env = { P = "x" } })
    assert.are.equal(1, r.code)
    assert.truthy(msg:find("TLS certificate verification failed for localhost: self-signed certificate", 1, true), msg)
  end)
end)
