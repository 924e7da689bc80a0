-- kalua.crypto: published test vectors, encodings, and the errors a
-- script's mistakes raise.
local crypto = require "kalua.crypto"

local hex = crypto.hex

describe("kalua.crypto", function()
  describe("digest", function()
    it("matches the FIPS 180 'abc' vectors", function()
      assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex(crypto.digest("sha256", "abc")))
      assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(crypto.digest("sha1", "abc")))
      assert.are.equal("cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
        hex(crypto.digest("sha384", "abc")))
      assert.are.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f", hex(crypto.digest("sha512", "abc")))
      assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex(crypto.digest("sha256", "")))
    end)

    it("accepts the names in any case and with a dash", function()
      local want = crypto.digest("sha256", "abc")
      for _, alg in ipairs { "SHA256", "Sha256", "SHA-256", "sha-256" } do
        assert.are.equal(want, crypto.digest(alg, "abc"))
      end
      assert.are.equal(crypto.digest("sha1", "x"), crypto.digest("SHA-1", "x"))
    end)

    it("hashes binary data with NULs", function()
      assert.are_not.equal(crypto.digest("sha256", "a\0b"), crypto.digest("sha256", "a\0c"))
      assert.are.equal(32, #crypto.digest("sha256", ("\0"):rep(1000)))
    end)

    it("names the accepted algorithms when given another", function()
      assert.error_matches(function() crypto.digest("md5", "abc") end,
        "bad argument #1 to '.*' %(unknown digest 'md5': use sha1, sha256, sha384 or sha512%)")
      assert.has_error(function() crypto.hmac("sha3-256", "k", "d") end)
      assert.has_error(function() crypto.digest("sha256") end)
    end)
  end)

  describe("hmac", function()
    it("matches RFC 4231 test case 2", function()
      local key, data = "Jefe", "what do ya want for nothing?"
      assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", hex(crypto.hmac("sha256", key, data)))
      assert.are.equal("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
        hex(crypto.hmac("sha384", key, data)))
      assert.are.equal("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737", hex(crypto.hmac("sha512", key, data)))
    end)

    it("matches RFC 4231 test case 6 (a key longer than the block)", function()
      assert.are.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        hex(crypto.hmac("sha256", ("\xaa"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First")))
    end)

    it("takes an empty key", function()
      assert.are.equal(32, #crypto.hmac("sha256", "", "data"))
    end)
  end)

  describe("pbkdf2", function()
    it("matches the PBKDF2-HMAC-SHA256 and RFC 6070 vectors", function()
      assert.are.equal("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
        hex(crypto.pbkdf2("sha256", "password", "salt", 4096, 32)))
      assert.are.equal("0c60c80f961f0e71f3a9b524af6012062fe037a6", hex(crypto.pbkdf2("sha1", "password", "salt", 1, 20)))
      assert.are.equal("4b007901b765489abead49d926f721d065a429c1", hex(crypto.pbkdf2("SHA-1", "password", "salt", 4096, 20)))
      assert.are.equal("56fa6aa75548099dcc37d7f03425e0c3", hex(crypto.pbkdf2("sha1", "pass\0word", "sa\0lt", 4096, 16)))
    end)

    it("derives any length", function()
      assert.are.equal(1, #crypto.pbkdf2("sha256", "p", "s", 1, 1))
      local long = crypto.pbkdf2("sha256", "p", "s", 2, 100)
      assert.are.equal(100, #long)
      assert.are.equal(crypto.pbkdf2("sha256", "p", "s", 2, 32), long:sub(1, 32))
    end)

    it("refuses fewer than one iteration or byte", function()
      assert.error_matches(function() crypto.pbkdf2("sha256", "p", "s", 0, 32) end,
        "(iterations must be at least 1)", nil, true)
      assert.has_error(function() crypto.pbkdf2("sha256", "p", "s", -5, 32) end)
      assert.error_matches(function() crypto.pbkdf2("sha256", "p", "s", 1, 0) end,
        "(length must be at least 1)", nil, true)
      assert.has_error(function() crypto.pbkdf2("sha256", "p", "s", 1.5, 32) end)
      assert.has_error(function() crypto.pbkdf2("nope", "p", "s", 1, 32) end)
    end)
  end)

  describe("random", function()
    it("gives as many bytes as asked, different each time", function()
      assert.are.equal("", crypto.random(0))
      assert.are.equal(1, #crypto.random(1))
      assert.are.equal(4096, #crypto.random(4096))
      local seen = {}
      for _ = 1, 100 do
        local r = crypto.random(16)
        assert.is_nil(seen[r])
        seen[r] = true
      end
    end)

    it("refuses a negative count", function()
      assert.has_error(function() crypto.random(-1) end)
    end)
  end)

  describe("base64", function()
    it("matches RFC 4648 section 10", function()
      local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
      for plain, encoded in pairs(vectors) do
        assert.are.equal(encoded, crypto.base64_encode(plain))
        assert.are.equal(plain, crypto.base64_decode(encoded))
      end
    end)

    it("round-trips binary data of every length", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      assert.are.equal(all, crypto.base64_decode(crypto.base64_encode(all)))
      assert.are.equal("//79", crypto.base64_encode("\255\254\253"))
      for n = 0, 70 do
        local s = crypto.random(n)
        local encoded = crypto.base64_encode(s)
        assert.are.equal(4 * math.ceil(n / 3), #encoded)
        assert.are.equal(s, crypto.base64_decode(encoded))
      end
    end)

    it("refuses invalid input with nil and a message", function()
      for _, bad in ipairs { "Zg", "Zg=", "Z===", "====", "=Zg=", "Zg==Zg==", "Zm9v!A==", "Zm 9v", "Zm9v\n", "Zm-_", "Zm9\0" } do
        assert.are.same({ nil, "invalid base64", "INVALID" }, { crypto.base64_decode(bad) }, bad)
      end
    end)
  end)

  describe("hex", function()
    it("writes lowercase pairs", function()
      assert.are.equal("", hex(""))
      assert.are.equal("0001abff", hex("\0\1\171\255"))
      assert.are.equal("616263", hex("abc"))
    end)
  end)

  describe("xor", function()
    it("combines equal-length strings byte by byte", function()
      assert.are.equal("\240\15", crypto.xor("\15\240", "\255\255"))
      assert.are.equal("", crypto.xor("", ""))
      local a = crypto.random(32)
      assert.are.equal(("\0"):rep(32), crypto.xor(a, a))
    end)

    it("refuses strings of different lengths", function()
      assert.has_error(function() crypto.xor("ab", "abc") end, "crypto.xor needs strings of equal length (got 2 and 3 bytes)")
    end)
  end)

  describe("equal", function()
    it("compares whole strings", function()
      assert.is_true(crypto.equal("", ""))
      assert.is_true(crypto.equal("a\0b", "a\0b"))
      assert.is_false(crypto.equal("a\0b", "a\0c"))
      assert.is_false(crypto.equal("abc", "ab"))
      assert.is_false(crypto.equal("", "x"))
      assert.has_error(function() crypto.equal("a") end)
    end)
  end)
end)
