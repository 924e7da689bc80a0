-- SCRAM-SHA-256 (RFC 5802, RFC 7677) in plain Lua over kalua.crypto: a
-- kalua.sasl mechanism to read, copy and adapt (kalua's built-in C one is
-- what a broker connection uses unless you say otherwise).
--
--   local sasl = require "kalua.sasl"
--   sasl.register("LUA-SCRAM-SHA-256", dofile("examples/sasl/scram.lua"))
--   local m = assert(sasl.new("LUA-SCRAM-SHA-256", { username = "user", password = "pencil" }))
--
-- or in a config's security section: `sasl_lua_mechanism: examples/sasl/scram.lua`.
-- Registered under its own name because SCRAM-SHA-256 is built in; the
-- `name` below is what goes to the broker. No channel binding ("n,,").
local crypto = require "kalua.crypto"
local sasl = require "kalua.sasl"

local NAME = "SCRAM-SHA-256"
local MIN_ITERATIONS = 4096        -- RFC 7677 section 4
local MAX_ITERATIONS = 10000000    -- beyond this a server is making us burn minutes of CPU

local function hmac(key, data) return crypto.hmac("sha256", key, data) end

local function fail(why) return nil, NAME .. ": " .. why end

-- RFC 5802 5.1: "=" and "," would break the attribute syntax
local function saslname(s) return (s:gsub("=", "=3D"):gsub(",", "=2C")) end

-- "a=1,b=2" -> {a = "1", b = "2"}; the first occurrence of a key wins
local function attributes(msg)
  local out = {}
  for field in (msg .. ","):gmatch("([^,]*),") do
    local k, v = field:match("^(%a)=(.*)$")
    if k and out[k] == nil then out[k] = v end
  end
  return out
end

local function client_final(ctx, server_first)
  local a = attributes(server_first)
  if a.e then return fail("the server refused: " .. a.e) end
  if a.m then return fail("the server requires an extension we do not know") end
  if not (a.r and a.s and a.i) then return fail("the server's first message lacks r=, s= or i=") end
  if #a.r <= #ctx.cnonce or a.r:sub(1, #ctx.cnonce) ~= ctx.cnonce then
    return fail("the server's nonce does not extend ours (a replay or a broken server)")
  end
  local iterations = math.tointeger(tonumber(a.i:match("^%d+$") or ""))
  local minimum = math.max(MIN_ITERATIONS, ctx.min_iterations or 0)
  if not iterations then return fail("bad iteration count") end
  if iterations < minimum then
    return fail(("the server asks for %d iterations, fewer than the minimum %d"):format(iterations, minimum))
  end
  if iterations > MAX_ITERATIONS then return fail("the server asks for an absurd iteration count") end
  local salt = crypto.base64_decode(a.s)
  if not salt then return fail("the salt is not base64") end
  local password, err = sasl.saslprep(ctx.password)
  if not password then return fail(err) end

  local salted = crypto.pbkdf2("sha256", password, salt, iterations, 32)
  local client_key = hmac(salted, "Client Key")
  local without_proof = "c=" .. crypto.base64_encode(ctx.gs2) .. ",r=" .. a.r
  local auth_message = ctx.first_bare .. "," .. server_first .. "," .. without_proof
  local proof = crypto.xor(client_key, hmac(crypto.digest("sha256", client_key), auth_message))
  ctx.server_signature = hmac(hmac(salted, "Server Key"), auth_message)
  ctx.password = nil -- done with it: nothing later needs it in this table
  return without_proof .. ",p=" .. crypto.base64_encode(proof), false
end

local function verify_server(ctx, server_final)
  local a = attributes(server_final)
  if a.e then return fail("the server refused: " .. a.e) end
  if not a.v then return fail("the server's final message has no signature") end
  local signature = crypto.base64_decode(a.v)
  if not signature or not crypto.equal(signature, ctx.server_signature) then
    return fail("the server's signature is wrong: it does not know the password (or is not the server)")
  end
  return "", true
end

return {
  name = NAME,
  start = function(ctx)
    assert(ctx.username and ctx.password, NAME .. " needs a username and a password")
    ctx.cnonce = ctx.nonce or crypto.base64_encode(assert(crypto.random(18)))
    ctx.gs2 = "n," .. (ctx.authzid and "a=" .. saslname(assert(sasl.saslprep(ctx.authzid))) or "") .. ","
    ctx.first_bare = "n=" .. saslname(assert(sasl.saslprep(ctx.username))) .. ",r=" .. ctx.cnonce
    ctx.state = "first"
    return ctx.gs2 .. ctx.first_bare
  end,
  step = function(ctx, challenge)
    local state = ctx.state
    ctx.state = "over" -- a failed step ends the exchange too
    if state == "first" then
      local reply, done = client_final(ctx, challenge)
      if reply then ctx.state = "final" end
      return reply, done
    end
    if state == "final" then return verify_server(ctx, challenge) end
    return fail("step() out of order (call start() first, stop when done)")
  end,
}
