-- GSSAPI (RFC 4752) over MIT krb5, against the rig's real KDC: kalua's
-- mechanism on one side, spec/peers/gss_acceptor.c (MIT's own acceptor
-- with the broker's keytab) on the other, talking hex lines through a
-- pipe (to the acceptor's stdin) and a fifo (from its stdout).
local sasl = require "kalua.sasl"
local proc = require "proc"
local rig = require "rig"

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

describe("GSSAPI", function()
  local dir, acceptor_bin, peer_bin, conf, realm, broker_keytab, alice, bob

  setup(function()
    conf = rig.env("KRB5_RIG_CONFIG")
    realm = rig.env("KALUA_RIG_REALM")
    broker_keytab = rig.env("KALUA_RIG_DIR") .. "/keytabs/broker.keytab"
    alice = { keytab = rig.env("KALUA_RIG_ALICE_KEYTAB"), principal = rig.env("KALUA_RIG_ALICE_PRINCIPAL") }
    bob = { keytab = rig.env("KALUA_RIG_BOB_KEYTAB"), principal = rig.env("KALUA_RIG_BOB_PRINCIPAL") }
    dir = proc.tmpdir()
    acceptor_bin = dir .. "/gss_acceptor"
    peer_bin = dir .. "/kafka_sasl_peer"
    local r = proc.run { "sh", "-c", ("cc -O1 -Wall -Werror -o %s spec/peers/gss_acceptor.c $(pkg-config --cflags --libs krb5-gssapi)")
      :format(proc.quote(acceptor_bin)) }
    assert(r.code == 0, r.stderr)
    r = proc.run { "cc", "-O1", "-Wall", "-Werror", "-o", peer_bin, "spec/peers/kafka_sasl_peer.c" }
    assert(r.code == 0, r.stderr)
  end)

  teardown(function() proc.rmdir(dir) end)

  local function creds(who, extra)
    local c = { keytab = who.keytab, principal = who.principal, host = "localhost", krb5_config = conf }
    for k, v in pairs(extra or {}) do c[k] = v or nil end  -- false: leave out
    return c
  end

  local n = 0
  -- Runs mechanism m against a peer (argv string; its stdin gets "T <hex>"
  -- lines, its stdout goes to a fifo we read). Returns what the peer said:
  -- { who = "client authzid" (acceptor), lifetime = ms, apis = n (broker) },
  -- or nil, error.
  local function converse(m, peer, env)
    n = n + 1
    local fifo, errf = ("%s/out-%d"):format(dir, n), ("%s/err-%d"):format(dir, n)
    assert(os.execute("mkfifo " .. proc.quote(fifo)))
    local w = assert(io.popen(("exec env %s %s > %s 2> %s"):format(env or "", peer, proc.quote(fifo), proc.quote(errf)), "w"))
    local r = assert(io.open(fifo, "r")) -- opens once the peer opened its end
    local result, err = {}, nil
    local msg, serr = m:start() -- nil, message when the KDC says no
    local started, done = msg ~= nil, false
    if not started then err = serr end
    while started do
      w:write("T ", hex(msg), "\n")
      w:flush()
      local line = r:read("l")
      if line == nil then
        err = "peer: no answer: " .. proc.read_file(errf)
        break
      end
      local kind, rest = line:match("^(%u) ?(.*)$")
      if kind == "E" then
        err = "peer: " .. rest
        break
      end
      local token, lifetime = "", nil
      if kind == "T" then
        token, lifetime = rest:match("^(%x*) ?(%d*)$")
        result.lifetime = tonumber(lifetime)
      end
      msg, done = m:step(unhex(token))
      if msg == nil then
        err = done
        break
      end
      if kind == "A" then
        assert.is_true(done, "the mechanism is done after the server's final message")
        result.who = rest
        break
      end
      if done then break end
    end
    w:close()
    for line in r:lines() do
      local apis = line:match("^V (%d+)$")
      if apis then result.apis = tonumber(apis) end
    end
    r:close()
    os.remove(fifo)
    os.remove(errf)
    if err then return nil, err end
    return result
  end

  -- Against spec/peers/gss_acceptor.c with the broker's keytab; the
  -- acceptor gets the rig's krb5.conf through its own environment, kalua
  -- (this process) through creds.krb5_config only.
  local function exchange(m, layers)
    local r, err = converse(m, ("%s %s %s"):format(proc.quote(acceptor_bin), proc.quote(broker_keytab), layers or ""),
      ("KRB5_CONFIG=%s KRB5RCACHETYPE=none"):format(proc.quote(conf)))
    return r and r.who, err
  end

  it("authenticates alice with her keytab; the acceptor sees alice@REALM", function()
    local m = assert(sasl.new("GSSAPI", creds(alice)))
    assert.are.equal("GSSAPI", m:name())
    local who, err = exchange(m)
    assert.are.equal(("%s %s"):format(alice.principal, alice.principal), who, err)
    assert.are.equal("alice@" .. realm, alice.principal)
  end)

  it("runs alice and bob side by side in one process, alternating, with no environment variable set", function()
    local a = assert(sasl.new("GSSAPI", creds(alice)))
    local b = assert(sasl.new("GSSAPI", creds(bob)))
    local a2 = assert(sasl.new("GSSAPI", creds(alice)))
    assert.are.equal(bob.principal .. " " .. bob.principal, (exchange(b)))
    assert.are.equal(alice.principal .. " " .. alice.principal, (exchange(a)))
    local b2 = assert(sasl.new("GSSAPI", creds(bob, { principal = false })))  -- the keytab's first principal
    assert.are.equal(bob.principal .. " " .. bob.principal, (exchange(b2)))
    assert.are.equal(alice.principal .. " " .. alice.principal, (exchange(a2)))
    for _, m in ipairs { a, b, a2, b2 } do m:close() end
    assert.is_nil(os.getenv("KRB5CCNAME"))
    assert.is_nil(os.getenv("KRB5_CLIENT_KTNAME"))
    assert.is_nil(os.getenv("KRB5_KTNAME"))
  end)

  it("sends the configured authzid, or none", function()
    local m = assert(sasl.new("GSSAPI", creds(alice, { authzid = "" })))
    assert.are.equal(alice.principal .. " ", (exchange(m)))
  end)

  it("refuses a missing or unreadable keytab before any traffic, in one line", function()
    local ok, err, name = sasl.new("GSSAPI", creds(alice, { keytab = dir .. "/nope.keytab" }))
    assert.is_nil(ok)
    assert.are.equal(("GSSAPI: keytab %s/nope.keytab: no such file (fix sasl_keytab_path)"):format(dir), err)
    assert.are.equal("SASL_CONFIG", name)
    proc.write_file(dir .. "/garbage.keytab", "not a keytab at all")
    ok, err = sasl.new("GSSAPI", creds(alice, { keytab = dir .. "/garbage.keytab" }))
    assert.is_nil(ok)
    assert.truthy(err:find("garbage.keytab is not a keytab", 1, true), err)
    assert.falsy(err:find("\n", 1, true))
    ok, err = sasl.new("GSSAPI", creds(alice, { keytab = dir }))
    assert.truthy(err:find("not a file", 1, true), err)
  end)

  it("refuses a principal that is not in the keytab, naming both", function()
    local ok, err = sasl.new("GSSAPI", creds(alice, { principal = "bob" }))
    assert.is_nil(ok)
    assert.are.equal(("GSSAPI: principal bob@%s not in keytab %s (klist -k %s lists the ones it holds)"):format(
      realm, alice.keytab, alice.keytab), err)
  end)

  it("names an unknown service principal and the fix", function()
    local m = assert(sasl.new("GSSAPI", creds(alice, { service = "nokafka" })))
    local ok, err, name = m:start()
    assert.is_nil(ok)
    assert.are.equal("SASL_AUTHENTICATION", name)
    assert.are.equal(("GSSAPI to nokafka/localhost: cannot start: Server nokafka/localhost@%s not found in Kerberos "
      .. "database: the broker host must match the service principal's host; check sasl_kerberos_service_name"):format(realm),
      err)
  end)

  it("needs the broker host", function()
    local ok, err = sasl.new("GSSAPI", { keytab = alice.keytab, krb5_config = conf })
    assert.is_nil(ok)
    assert.are.equal("GSSAPI needs the broker's host name (host) for the service principal kafka/<host>", err)
  end)

  it("refuses a server that offers no 'no security layer' (0x01)", function()
    local m = assert(sasl.new("GSSAPI", creds(alice)))
    local ok, err = exchange(m, "0x06")
    assert.is_nil(ok)
    assert.are.equal("GSSAPI to kafka/localhost: the server offers security layers 0x06 without 0x01 (none); "
      .. "kalua needs the broker to allow no layer", err)
    local m2 = assert(sasl.new("GSSAPI", creds(alice)))
    assert.are.equal(alice.principal .. " " .. alice.principal, (exchange(m2, "0x07")))
  end)

  it("applies one krb5.conf per process and refuses a second, different one", function()
    local other = dir .. "/other-krb5.conf"
    proc.write_file(other, proc.read_file(conf))
    local ok, err, name = sasl.new("GSSAPI", creds(alice, { krb5_config = other }))
    assert.is_nil(ok)
    assert.are.equal(("GSSAPI: krb5.conf is already %s for this process; one krb5.conf per process (not %s)")
      :format(conf, other), err)
    assert.are.equal("SASL_CONFIG", name)
    assert(sasl.new("GSSAPI", creds(alice, { krb5_config = false })))  -- none: the process's
    ok, err = sasl.new("GSSAPI", creds(alice, { krb5_config = dir .. "/missing.conf" }))
    assert.truthy(err:find("missing.conf: no such file", 1, true), err)
  end)

  it("never puts keytab keys into messages", function()
    local r = proc.run({ "klist", "-kK", alice.keytab }, { env = { KRB5_CONFIG = conf } })
    local keys = {}
    for k in r.stdout:gmatch("%(0x(%x+)%)") do keys[#keys + 1] = k end
    assert.is_true(#keys > 0, r.stdout .. r.stderr)
    local errors = {}
    for _, extra in ipairs { { principal = "bob" }, { service = "nokafka" }, { keytab = dir .. "/x" }, {} } do
      local m, err = sasl.new("GSSAPI", creds(alice, extra))
      if m then
        local first, e = m:start()
        err = first and hex(first) or e -- the first token, too
      end
      errors[#errors + 1] = err
    end
    for _, e in ipairs(errors) do
      for _, k in ipairs(keys) do
        assert.falsy(e:lower():find(k:lower(), 1, true), "a key in: " .. e)
        assert.falsy(e:find(unhex(k), 1, true), "a raw key in: " .. e)
      end
    end
  end)

  describe("against the rig's broker (GSSAPI listener, no relay)", function()
    local host, port
    setup(function() host, port = rig.env("KAFKA_GSSAPI"):match("^(.+):(%d+)$") end)

    local function broker(m)
      return converse(m, ("%s %s %s GSSAPI"):format(proc.quote(peer_bin), proc.quote(host), port))
    end

    it("authenticates alice and bob, alternating: the broker logs each, and the connection then works", function()
      local log = rig.env("KALUA_RIG_DIR") .. "/broker.log"
      local before = #proc.read_file(log)
      for _, who in ipairs { alice, bob, alice } do
        local m = assert(sasl.new("GSSAPI", creds(who, { host = host })))
        local r = assert(broker(m))
        assert.are.equal(60000, r.lifetime, "connections.max.reauth.ms of the GSSAPI listener")
        assert.is_true(r.apis > 10, "ApiVersions answered after authentication")
        m:close()
      end
      assert.is_nil(os.getenv("KRB5CCNAME"))
      local seen = {}
      for id in proc.read_file(log):sub(before + 1):gmatch("Successfully authenticated client: authenticationID=([^;]+);") do
        seen[#seen + 1] = id
      end
      assert.are.same({ alice.principal, bob.principal, alice.principal }, seen)
    end)

    it("names the service principal when the host does not match it (127.0.0.1 for kafka/localhost)", function()
      local m = assert(sasl.new("GSSAPI", creds(alice, { host = "127.0.0.1" })))
      local ok, err = broker(m)
      assert.is_nil(ok)
      assert.are.equal(("GSSAPI to kafka/127.0.0.1: cannot start: Server kafka/127.0.0.1@%s not found in Kerberos "
        .. "database: the broker host must match the service principal's host; check sasl_kerberos_service_name")
        :format(realm), err)
    end)
  end)
end)
