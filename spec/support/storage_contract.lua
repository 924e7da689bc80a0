--- What every kalua.storage backend must do the same way, asserted once
-- and called from each backend's spec (filesystem, S3, Azure, GCS).
local assert = require "luassert"

local M = {}

--- Binary objects under nested keys, and an empty one, come back exactly.
function M.binary_round_trip(store)
  local key = "backup-1/topics/orders/0/00000000000000000000.kseg"
  local data = ("\0\1\2\255kalua"):rep(10000)
  assert(store:put(key, data))
  assert.are.equal(data, store:get(key))
  assert(store:put("empty", ""))
  assert.are.equal("", store:get("empty"))
  return key, data
end

--- get(key, offset, length) and open_reader(key, offset, length) on a
-- 10-byte object, past its end included.
function M.ranged_reads(store)
  assert(store:put("r", "0123456789"))
  assert.are.equal("3456", store:get("r", 3, 4))
  assert.are.equal("789", store:get("r", 7))
  assert.are.equal("", store:get("r", 20, 5))
  assert.are.equal("", store:get("r", 10))
  local reader <close> = assert(store:open_reader("r", 2, 5))
  assert.are.equal("23", reader:read(2))
  assert.are.equal("456", reader:read(100))
  assert.is_nil(reader:read())
end

return M
