--- An OAUTHBEARER token function for kalua's auth relay: returns an
-- unsecured JWT (RFC 7519 with "alg": "none"), which a Kafka broker accepts
-- with its default OAuthBearerUnsecuredValidatorCallbackHandler, as in
-- development clusters and the rig. A real one would fetch a signed token
-- from an identity provider here; the relay calls it for every exchange
-- (each connection, each KIP-368 re-authentication), so it stays fresh.
--
--   security:
--     sasl_mechanism: OAUTHBEARER
--     sasl_oauthbearer_token_script: examples/sasl/unsecured_token.lua
--
-- ctx holds host and broker (the connection's), username and principal.
local crypto = require "kalua.crypto"

local function base64url(s)
  return (crypto.base64_encode(s):gsub("%+", "-"):gsub("/", "_"):gsub("=+$", ""))
end

return function(ctx)
  local now = os.time()
  local subject = os.getenv("KALUA_TOKEN_SUBJECT") or ctx.username or "alice"
  local header = '{"alg":"none"}'
  local claims = ('{"sub":"%s","iat":%d,"exp":%d,"scope":"kafka"}'):format(subject, now, now + 3600)
  return base64url(header) .. "." .. base64url(claims) .. ".", { traceId = "kalua" .. now }
end
