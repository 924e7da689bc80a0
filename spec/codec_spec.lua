local codec = require "kalua.codec"

describe("kalua.codec", function()
  describe("crc32c", function()
    it("matches the Castagnoli check value and RFC 3720 vectors", function()
      assert.are.equal(0xE3069283, codec.crc32c("123456789"))
      assert.are.equal(0, codec.crc32c(""))
      assert.are.equal(0x8A9136AA, codec.crc32c(string.rep("\0", 32)))
      assert.are.equal(0x62A8AB43, codec.crc32c(string.rep("\255", 32)))
    end)

    it("continues across chunks", function()
      local s = string.rep("kalua segment block ", 1000)
      local crc = 0
      for i = 1, #s, 97 do crc = codec.crc32c(s:sub(i, i + 96), crc) end
      assert.are.equal(codec.crc32c(s), crc)
    end)
  end)

  describe("zstd", function()
    local data = {}
    for i = 1, 20000 do data[i] = ("record %d %s"):format(i, ("x"):rep(i % 50)) end
    data = table.concat(data, "\n")

    it("round-trips at every level from negative to maximum", function()
      for _, level in ipairs { codec.min_level, -5, 1, 3, 9, 19, codec.max_level } do
        local frame = codec.compress(data, level)
        if level >= 1 then assert.is_true(#frame < #data) end
        assert.are.equal(data, codec.decompress(frame))
      end
    end)

    it("keeps binary data and empty input exact", function()
      local bin = ("\0\1\2\255"):rep(1000)
      assert.are.equal(bin, codec.decompress(codec.compress(bin)))
      assert.are.equal("", codec.decompress(codec.compress("")))
    end)

    it("streams in and out in arbitrary pieces", function()
      local c <close> = codec.compressor(6)
      local parts = {}
      for i = 1, #data, 4093 do parts[#parts + 1] = c:update(data:sub(i, i + 4092)) end
      parts[#parts + 1] = c:finish()
      local frame = table.concat(parts)
      local d <close> = codec.decompressor()
      local out = {}
      for i = 1, #frame, 333 do out[#out + 1] = assert(d:update(frame:sub(i, i + 332))) end
      assert.is_true(d:finish())
      assert.are.equal(data, table.concat(out))
    end)

    it("decodes concatenated frames", function()
      assert.are.equal("ab", codec.decompress(codec.compress("a") .. codec.compress("b")))
    end)

    it("reports corrupt, truncated and oversized input by name", function()
      local frame = codec.compress(data)
      local function fails(name, ...)
        local r, msg, got = codec.decompress(...)
        assert.is_nil(r)
        assert.is_string(msg)
        assert.are.equal(name, got)
      end
      fails("TRUNCATED", frame:sub(1, #frame - 3))
      fails("CORRUPT", "not zstd at all")
      fails("CORRUPT", frame:sub(1, 20) .. ("\0"):rep(50) .. frame:sub(71))
      fails("TOO_LARGE", frame, 1000)
      fails("TRUNCATED", "")
      local d = codec.decompressor()
      assert(d:update(frame:sub(1, 100)))
      local ok, _, name = d:finish()
      assert.is_nil(ok)
      assert.are.equal("TRUNCATED", name)
    end)

    it("raises on a bad level and on a closed stream", function()
      assert.has_error(function() codec.compress("x", 99) end)
      local c = codec.compressor()
      c:close()
      c:close()
      assert.has_error(function() c:update("x") end, "compressor is closed")
    end)
  end)
end)
