-- examples/sasl/scram.lua: the pure-Lua SCRAM-SHA-256 driven through
-- kalua.sasl, against RFC 7677's vector, the built-in C mechanism, and bad
-- servers.
local sasl = require "kalua.sasl"

-- RFC 7677 section 3
local RFC7677 = {
  nonce = "rOprNGfwEbeRWgbNEkqO",
  server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}

-- SCRAM-SHA-256 is built in, so the Lua one registers under another name
local NAME = "LUA-SCRAM-SHA-256"

describe("examples/sasl/scram.lua", function()
  local def = dofile("examples/sasl/scram.lua")

  setup(function() sasl.register(NAME, def) end)
  -- Registrations outlive a spec file (they live in the Lua registry, and
  -- kalua.sasl has no unregister): leave the list as sasl_spec expects it.
  teardown(function() debug.getregistry()["kalua.sasl.registry"][NAME] = nil end)

  local function new(creds)
    local c = { username = "user", password = "pencil", nonce = RFC7677.nonce }
    for k, v in pairs(creds or {}) do c[k] = v end
    return assert(sasl.new(NAME, c))
  end

  it("names itself as the broker knows it", function()
    assert.are.equal("SCRAM-SHA-256", def.name)
    assert.are.equal(NAME, new():name())
  end)

  it("produces RFC 7677's messages and accepts its server signature", function()
    local m = new()
    assert.are.equal("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", m:start())
    assert.are.same({ RFC7677.client_final, false }, { m:step(RFC7677.server_first) })
    assert.are.same({ "", true }, { m:step(RFC7677.server_final) })
  end)

  it("says exactly what the built-in C mechanism says", function()
    local function run(name, creds, server_first)
      local m = assert(sasl.new(name, creds))
      return { m:start(), (m:step(server_first)) }
    end
    local cases = {
      { { username = "user", password = "pencil", nonce = RFC7677.nonce }, RFC7677.server_first },
      { { username = "a,b=c", password = "p,w=\u{A0}x", nonce = "n0nce" }, "r=n0nceSERVER,s=c2FsdHlzYWx0eXNhbHQ=,i=5000" },
      { { username = "bob", password = "secret", authzid = "admin", nonce = "xyz" }, "r=xyz+42,s=AAAA,i=4096" },
    }
    for _, case in ipairs(cases) do
      local creds, server_first = case[1], case[2]
      local want = run("SCRAM-SHA-256", creds, server_first)
      assert.are.same(want, run(NAME, creds, server_first))
    end
    local m = new { username = "a,b=c" }
    assert.are.equal("n,,n=a=2Cb=3Dc,r=rOprNGfwEbeRWgbNEkqO", m:start())
  end)

  it("makes up a fresh nonce when none is given", function()
    local a = assert(sasl.new(NAME, { username = "u", password = "p" })):start()
    local b = assert(sasl.new(NAME, { username = "u", password = "p" })):start()
    assert.truthy(a:match("^n,,n=u,r=[%w+/]+$"), a)
    assert.are_not.equal(a, b)
  end)

  it("raises when called without credentials or out of order", function()
    assert.has_error(function() assert(sasl.new(NAME, { username = "u" })):start() end)
    local m = new()
    local _, err = m:step(RFC7677.server_first)
    assert.truthy(err:find("out of order", 1, true), err)
  end)

  describe("refuses a server that", function()
    local function exchange(server_first, server_final, creds)
      local m = new(creds)
      m:start()
      local reply, err, name = m:step(server_first)
      if not reply then return err, name end
      return select(2, m:step(server_final))
    end

    it("does not know the password (wrong signature)", function()
      local err, name = exchange(RFC7677.server_first, "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
      assert.are.equal("SCRAM-SHA-256: the server's signature is wrong: it does not know the password (or is not the server)", err)
      assert.are.equal("SASL_AUTHENTICATION", name)
      assert.truthy(exchange(RFC7677.server_first, "v=not base64"):find("signature is wrong", 1, true))
      assert.truthy(exchange(RFC7677.server_first, "x=1"):find("has no signature", 1, true))
    end)

    it("sends a nonce that does not extend ours", function()
      local err = exchange("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
      assert.truthy(err:find("nonce does not extend ours", 1, true), err)
      err = exchange("r=" .. RFC7677.nonce .. ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
      assert.truthy(err:find("nonce does not extend ours", 1, true), err)
    end)

    it("asks for too few iterations, or absurdly many", function()
      local err = exchange((RFC7677.server_first:gsub("i=4096", "i=1000")))
      assert.are.equal("SCRAM-SHA-256: the server asks for 1000 iterations, fewer than the minimum 4096", err)
      err = exchange(RFC7677.server_first, RFC7677.server_final, { min_iterations = 8192 })
      assert.truthy(err:find("fewer than the minimum 8192", 1, true), err)
      assert.truthy(exchange((RFC7677.server_first:gsub("i=4096", "i=99999999999"))):find("absurd", 1, true))
      assert.truthy(exchange((RFC7677.server_first:gsub("i=4096", "i=-1"))):find("bad iteration count", 1, true))
    end)

    it("says no, with its reason", function()
      assert.are.equal("SCRAM-SHA-256: the server refused: invalid-proof", exchange("e=invalid-proof"))
      assert.are.equal("SCRAM-SHA-256: the server refused: other-error", exchange(RFC7677.server_first, "e=other-error"))
    end)

    it("sends garbage", function()
      assert.truthy(exchange("garbage"):find("lacks r=, s= or i=", 1, true))
      assert.truthy(exchange("r=" .. RFC7677.nonce .. "x,s=!!!!,i=4096"):find("not base64", 1, true))
      assert.truthy(exchange("m=ext," .. RFC7677.server_first):find("extension", 1, true))
    end)
  end)
end)
