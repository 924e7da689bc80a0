-- kalua.sasl: mechanisms against the RFCs' vectors, an independent SCRAM
-- computation (the openssl command line), and bad servers.
local sasl = require "kalua.sasl"
local proc = require "proc"

-- RFC 7677 section 3
local RFC7677 = {
  nonce = "rOprNGfwEbeRWgbNEkqO",
  server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}

local function sh(cmd)
  local r = proc.run { "sh", "-c", cmd }
  assert(r.code == 0, r.stderr)
  return (r.stdout:gsub("%s+$", ""))
end

local function hex_of_b64(s) return sh(("printf %%s %s | base64 -d | od -An -tx1 | tr -d ' \\n'"):format(proc.quote(s))) end
local function b64_of_hex(h) return sh(("printf %%s %s | xxd -r -p | base64 -w0"):format(proc.quote(h))) end
local function hmac(digest, hexkey, data)
  return sh(("printf %%s %s | openssl dgst -%s -mac HMAC -macopt hexkey:%s | sed 's/.*= //'"):format(
    proc.quote(data), digest, hexkey))
end
local function xor_hex(a, b)
  local out = {}
  for i = 1, #a, 2 do
    out[#out + 1] = ("%02x"):format(tonumber(a:sub(i, i + 1), 16) ~ tonumber(b:sub(i, i + 1), 16))
  end
  return table.concat(out)
end

describe("kalua.sasl", function()
  local BUILTIN = { "GSSAPI", "OAUTHBEARER", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" }

  it("lists its mechanisms", function()
    assert.are.same(BUILTIN, sasl.mechanisms())
  end)

  it("OAUTHBEARER sends the token and extensions (RFC 7628), fresh from a function", function()
    local calls = 0
    local function token() calls = calls + 1 return "eyJhbGciOi.payload.sig" .. calls end
    local m = assert(sasl.new("OAUTHBEARER", { token = token, extensions = { traceId = "42" } }))
    assert.are.equal("n,,\1auth=Bearer eyJhbGciOi.payload.sig1\1traceId=42\1\1", m:start())
    assert.are.same({ "", true }, { m:step("") })
    local again = assert(sasl.new("OAUTHBEARER", { token = token, authzid = "svc" }))
    assert.are.equal("n,a=svc,\1auth=Bearer eyJhbGciOi.payload.sig2\1\1", again:start())
    local refused = assert(sasl.new("OAUTHBEARER", { token = "t" }))
    refused:start()
    assert.are.same({ nil, "OAUTHBEARER: the server refused the token (status invalid_token, scope kafka.read)",
      "SASL_AUTHENTICATION" }, { refused:step('{"status":"invalid_token","scope":"kafka.read"}') })
    assert.are.same({ nil, "OAUTHBEARER needs a token (RFC 6750 b64token characters only)", "SASL_CONFIG" },
      { sasl.new("OAUTHBEARER", { token = "has space" }) })
    local _, err = sasl.new("OAUTHBEARER", { token = "t", extensions = { auth = "x" } })
    assert.truthy(err:find("bad extension 'auth'", 1, true), err)
  end)

  it("PLAIN sends authzid NUL user NUL password once", function()
    local m = assert(sasl.new("PLAIN", { username = "alice", password = "s3cret" }))
    assert.are.equal("\0alice\0s3cret", m:start())
    assert.are.same({ "", true }, { m:step("") })
    local z = assert(sasl.new("PLAIN", { username = "alice", password = "pw", authzid = "admin" }))
    assert.are.equal("admin\0alice\0pw", z:start())
  end)

  it("SCRAM-SHA-256 produces RFC 7677's messages and accepts its server signature", function()
    local m = assert(sasl.new("SCRAM-SHA-256", { username = "user", password = "pencil", nonce = RFC7677.nonce }))
    assert.are.equal("SCRAM-SHA-256", m:name())
    assert.are.equal("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", m:start())
    assert.are.same({ RFC7677.client_final, false }, { m:step(RFC7677.server_first) })
    assert.are.same({ "", true }, { m:step(RFC7677.server_final) })
    assert.has_error(function() m:step("v=x") end, "SCRAM-SHA-256: the exchange is already complete")
  end)

  it("SCRAM-SHA-512 agrees with an independent computation by the openssl tool", function()
    local password, salt_b64, iterations = "correct horse", "c2FsdHlzYWx0eXNhbHQ=", 4096
    local m = assert(sasl.new("SCRAM-SHA-512", { username = "bob", password = password, nonce = "abc" }))
    local first = m:start()
    local server_first = ("r=abcXYZ,s=%s,i=%d"):format(salt_b64, iterations)
    local final = assert(m:step(server_first))
    local without_proof, proof = final:match("^(c=biws,r=abcXYZ),p=(.+)$")
    assert.truthy(without_proof, final)
    local salted = sh(("openssl kdf -keylen 64 -kdfopt digest:SHA512 -kdfopt pass:%s -kdfopt hexsalt:%s "
      .. "-kdfopt iter:%d PBKDF2 | tr -d ':' | tr 'A-F' 'a-f'"):format(proc.quote(password), hex_of_b64(salt_b64), iterations))
    local client_key = hmac("sha512", salted, "Client Key")
    local stored_key = sh(("printf %%s %s | xxd -r -p | openssl dgst -sha512 | sed 's/.*= //'"):format(client_key))
    local auth = first:sub(4) .. "," .. server_first .. "," .. without_proof
    assert.are.equal(b64_of_hex(xor_hex(client_key, hmac("sha512", stored_key, auth))), proof)
    local server_sig = b64_of_hex(hmac("sha512", hmac("sha512", salted, "Server Key"), auth))
    assert.are.same({ "", true }, { m:step("v=" .. server_sig) })
  end)

  it("escapes ',' and '=' in names and applies SASLprep", function()
    local m = assert(sasl.new("SCRAM-SHA-256", { username = "a,b=c", password = "p", nonce = "n" }))
    assert.are.equal("n,,n=a=2Cb=3Dc,r=n", m:start())
    assert.are.equal("IX", sasl.saslprep("I\u{AD}X"))        -- RFC 4013 3: mapped to nothing
    assert.are.equal("a b", sasl.saslprep("a\u{A0}b"))        -- non-ASCII space
    assert.are.equal("user", sasl.saslprep("user"))
    local ok, err = sasl.saslprep("bell\7")
    assert.is_nil(ok)
    assert.truthy(err:find("prohibited", 1, true))
    assert.is_nil((sasl.saslprep("\xff")))
  end)

  describe("refuses a server that", function()
    local function exchange(server_first, server_final, opts)
      local creds = { username = "user", password = "pencil", nonce = RFC7677.nonce }
      for k, v in pairs(opts or {}) do creds[k] = v end
      local m = assert(sasl.new("SCRAM-SHA-256", creds))
      m:start()
      local reply, err, name = m:step(server_first)
      if not reply then return err, name end
      return select(2, m:step(server_final))
    end

    it("does not know the password (wrong signature)", function()
      local err, name = exchange(RFC7677.server_first, "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
      assert.truthy(err:find("signature is wrong", 1, true), err)
      assert.are.equal("SASL_AUTHENTICATION", name)
    end)

    it("sends a nonce that does not extend ours", function()
      local err = exchange("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
      assert.truthy(err:find("nonce does not extend ours", 1, true), err)
    end)

    it("asks for too few iterations", function()
      local err = exchange(RFC7677.server_first:gsub("i=4096", "i=1000"))
      assert.truthy(err:find("1000 iterations, fewer than the minimum 4096", 1, true), err)
      err = exchange(RFC7677.server_first, RFC7677.server_final, { min_iterations = 8192 })
      assert.truthy(err:find("fewer than the minimum 8192", 1, true), err)
    end)

    it("says no, with its reason", function()
      local err = exchange("e=invalid-proof")
      assert.truthy(err:find("the server refused: invalid-proof", 1, true), err)
      err = exchange(RFC7677.server_first, "e=other-error")
      assert.truthy(err:find("the server refused: other-error", 1, true), err)
    end)

    it("sends garbage", function()
      assert.truthy(exchange("garbage"):find("lacks r=, s= or i=", 1, true))
      assert.truthy(exchange("r=" .. RFC7677.nonce .. "x,s=!!!!,i=4096"):find("not base64", 1, true))
    end)
  end)

  it("never puts the password into its messages or errors", function()
    local m = assert(sasl.new("SCRAM-SHA-512", { username = "u", password = "hunter2-secret" }))
    local first = m:start()
    local final = m:step("r=" .. first:match("r=(.*)$") .. "x,s=c2FsdA==,i=4096")
    local _, err = m:step("v=AAAA")
    for _, s in ipairs { first, final, err } do assert.falsy(s:find("hunter2", 1, true)) end
  end)

  it("runs mechanisms written in Lua through the same shape", function()
    sasl.register("X-ECHO", {
      start = function(ctx)
        ctx.round = 0
        return "hello " .. ctx.username
      end,
      step = function(ctx, challenge)
        ctx.round = ctx.round + 1
        if challenge == "deny" then return nil, "denied by the server" end
        return "echo " .. challenge, ctx.round >= 2
      end,
    })
    local names = { table.unpack(BUILTIN) }
    names[#names + 1] = "X-ECHO"
    assert.are.same(names, sasl.mechanisms())
    local m = assert(sasl.new("X-ECHO", { username = "carol" }))
    assert.are.equal("X-ECHO", m:name())
    assert.are.equal("hello carol", m:start())
    assert.are.same({ "echo one", false }, { m:step("one") })
    assert.are.same({ "echo two", true }, { m:step("two") })
    local d = assert(sasl.new("X-ECHO", { username = "dave" }))
    d:start()
    assert.are.same({ nil, "denied by the server", "SASL_AUTHENTICATION" }, { d:step("deny") })
  end)

  it("refuses misuse and unknown names clearly", function()
    assert.are.same({ nil, "unknown SASL mechanism 'NOPE' (see sasl.mechanisms())", "UNSUPPORTED" }, { sasl.new("NOPE") })
    assert.are.same({ nil, "SCRAM-SHA-256 needs a username and a password", "SASL_CONFIG" },
      { sasl.new("SCRAM-SHA-256", { username = "x" }) })
    assert.has_error(function() sasl.register("bad name", { start = print, step = print }) end)
    assert.has_error(function() sasl.register("X-HALF", { start = print }) end)
    assert.has_error(function() sasl.register("PLAIN", { start = print, step = print }) end)
    local m = assert(sasl.new("SCRAM-SHA-256", { username = "u", password = "p" }))
    assert.has_error(function() m:step("r=x,s=y,i=1") end)
    m:close()
    m:close()
    assert.has_error(function() m:start() end, "the SASL mechanism is closed")
    assert.truthy(tostring(m):find("closed", 1, true))
  end)
end)
