-- kalua proxy's Kafka messages (kafka.wire, core/kafka/wire.c), byte for
-- byte: frames built here with string.pack as Kafka's message definitions
-- lay them out, rewritten or answered, and read back.
local wire = require("kalua.kafka").wire

-- --- building ------------------------------------------------------------------

local function uvarint(n)
  local out = {}
  repeat
    local b = n & 0x7f
    n = n >> 7
    out[#out + 1] = string.char(n > 0 and (b | 0x80) or b)
  until n == 0
  return table.concat(out)
end

-- A string, classic (int16 length) or compact (uvarint length + 1); nil is null.
local function str(s, compact)
  if compact then return s and (uvarint(#s + 1) .. s) or uvarint(0) end
  return s and string.pack(">s2", s) or string.pack(">i2", -1)
end

local function array(items, compact)
  return (compact and uvarint(#items + 1) or string.pack(">i4", #items)) .. table.concat(items)
end

local function tags(compact) return compact and uvarint(0) or "" end

local function frame(body) return string.pack(">s4", body) end

-- --- reading -------------------------------------------------------------------

local Reader = {}
Reader.__index = Reader
local function reader(s) return setmetatable({ s = s, pos = 1 }, Reader) end
function Reader:unpack(fmt)
  local v, next_pos = string.unpack(fmt, self.s, self.pos)
  self.pos = next_pos
  return v
end
function Reader:uvarint()
  local n, shift = 0, 0
  repeat
    local b = self:unpack("B")
    n = n | ((b & 0x7f) << shift)
    shift = shift + 7
  until b < 0x80
  return n
end
function Reader:str(compact)
  if compact then
    local n = self:uvarint() - 1
    if n < 0 then return nil end
    local s = self.s:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + n
    return s
  end
  local n = self:unpack(">i2")
  if n < 0 then return nil end
  local s = self.s:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end
function Reader:count(compact) return compact and self:uvarint() - 1 or self:unpack(">i4") end
function Reader:rest() return self.s:sub(self.pos) end

-- --- fixtures ------------------------------------------------------------------

local BROKERS = { { 1, "b1.internal", 9093, "rack-a" }, { 2, "b2.internal", 9093, nil } }
local MAP = { ["b1.internal:9093"] = "127.0.0.1:19092", ["b2.internal:9093"] = "127.0.0.1:19093" }

-- What follows the brokers in a Metadata response: cluster id, controller,
-- a topic with a partition, tagged fields. Copied untouched by a rewrite.
local function metadata_tail(v)
  local fl = v >= 9
  local parts = {}
  local p = string.pack(">i2i4i4", 0, 0, 1)
  if v >= 7 then p = p .. string.pack(">i4", 5) end
  p = p .. array({ string.pack(">i4", 1) }, fl) .. array({ string.pack(">i4", 1) }, fl)
  if v >= 5 then p = p .. array({}, fl) end
  parts[1] = p .. tags(fl)
  local topic = string.pack(">i2", 0) .. str("orders", fl)
  if v >= 10 then topic = topic .. ("\1"):rep(16) end
  if v >= 1 then topic = topic .. "\0" end
  topic = topic .. array(parts, fl)
  if v >= 8 then topic = topic .. string.pack(">i4", -2147483648) end
  topic = topic .. tags(fl)
  local tail = ""
  if v >= 2 then tail = tail .. str("cluster-xyz", fl) end
  if v >= 1 then tail = tail .. string.pack(">i4", 1) end
  tail = tail .. array({ topic }, fl)
  if v >= 8 and v <= 10 then tail = tail .. string.pack(">i4", -2147483648) end
  return tail .. tags(fl)
end

local function metadata(v)
  local fl = v >= 9
  local brokers = {}
  for _, b in ipairs(BROKERS) do
    local e = string.pack(">i4", b[1]) .. str(b[2], fl) .. string.pack(">i4", b[3])
    if v >= 1 then e = e .. str(b[4], fl) end
    brokers[#brokers + 1] = e .. tags(fl)
  end
  local head = string.pack(">i4", 42) .. tags(fl)
  if v >= 3 then head = head .. string.pack(">i4", 0) end
  return frame(head .. array(brokers, fl) .. metadata_tail(v))
end

-- Reads a rewritten Metadata response: its brokers and the bytes after them.
local function read_metadata(s, v)
  local fl = v >= 9
  local r = reader(s)
  assert.are.equal(#s - 4, r:unpack(">i4"))
  assert.are.equal(42, r:unpack(">i4"))
  if fl then assert.are.equal(0, r:uvarint()) end
  if v >= 3 then r:unpack(">i4") end
  local brokers = {}
  for _ = 1, r:count(fl) do
    local b = { r:unpack(">i4"), r:str(fl), r:unpack(">i4") }
    if v >= 1 then b[4] = r:str(fl) end
    if fl then r:uvarint() end
    brokers[#brokers + 1] = b
  end
  return brokers, r:rest()
end

describe("kafka.wire", function()
  describe("rewrites Metadata", function()
    for _, v in ipairs { 0, 1, 2, 3, 5, 7, 8, 9, 10, 11, 12 } do
      it("v" .. v .. ": broker addresses to the proxy's, every other byte as it was", function()
        local out = assert(wire.rewrite_response(3, v, metadata(v), MAP))
        local brokers, rest = read_metadata(out, v)
        assert.are.same({ 1, "127.0.0.1", 19092 }, { brokers[1][1], brokers[1][2], brokers[1][3] })
        assert.are.same({ 2, "127.0.0.1", 19093 }, { brokers[2][1], brokers[2][2], brokers[2][3] })
        if v >= 1 then assert.are.equal("rack-a", brokers[1][4]) end
        assert.are.equal(metadata_tail(v), rest)
      end)
    end

    it("asks the map for each broker, and fails when it says so", function()
      local asked = {}
      assert(wire.rewrite_response(3, 12, metadata(12), function(node, host, port)
        asked[#asked + 1] = ("%d %s:%d"):format(node, host, port)
        return "proxy", 1000 + node
      end))
      assert.are.same({ "1 b1.internal:9093", "2 b2.internal:9093" }, asked)
      local ok, err = wire.rewrite_response(3, 12, metadata(12), function() return nil, "no" end)
      assert.is_nil(ok)
      assert.matches("no proxy address", err)
    end)

    it("refuses versions it cannot read, and truncated frames", function()
      assert.is_nil(wire.rewrite_response(3, 13, metadata(12), MAP))
      local whole = metadata(9)
      for cut = 5, 40 do
        local short = string.pack(">s4", whole:sub(5, cut))
        local ok, err = wire.rewrite_response(3, 9, short, MAP)
        assert.is_nil(ok, "cut at " .. cut)
        assert.matches("malformed", err)
      end
    end)
  end)

  describe("rewrites FindCoordinator", function()
    it("v0 and v1-3 (one coordinator)", function()
      local v0 = frame(string.pack(">i4i2i4", 7, 0, 2) .. str("b2.internal") .. string.pack(">i4", 9093))
      local out = assert(wire.rewrite_response(10, 0, v0, MAP))
      assert.are.equal(frame(string.pack(">i4i2i4", 7, 0, 2) .. str("127.0.0.1") .. string.pack(">i4", 19093)), out)
      local v3 = frame(string.pack(">i4", 7) .. tags(true) .. string.pack(">i4i2", 0, 0) .. str(nil, true)
        .. string.pack(">i4", 1) .. str("b1.internal", true) .. string.pack(">i4", 9093) .. tags(true))
      out = assert(wire.rewrite_response(10, 3, v3, MAP))
      assert.are.equal(frame(string.pack(">i4", 7) .. tags(true) .. string.pack(">i4i2", 0, 0) .. str(nil, true)
        .. string.pack(">i4", 1) .. str("127.0.0.1", true) .. string.pack(">i4", 19092) .. tags(true)), out)
    end)

    it("v4-5 (a coordinator per key), leaving a failed lookup's empty host alone", function()
      local function coordinator(key, node, host, port, code)
        return str(key, true) .. string.pack(">i4", node) .. str(host, true) .. string.pack(">i4i2", port, code)
          .. str(nil, true) .. tags(true)
      end
      local function response(list)
        return frame(string.pack(">i4", 7) .. tags(true) .. string.pack(">i4", 0) .. array(list, true) .. tags(true))
      end
      local before = response { coordinator("g1", 1, "b1.internal", 9093, 0), coordinator("g2", -1, "", -1, 15) }
      local after = response { coordinator("g1", 1, "127.0.0.1", 19092, 0), coordinator("g2", -1, "", -1, 15) }
      assert.are.equal(after, assert(wire.rewrite_response(10, 4, before, MAP)))
    end)
  end)

  it("rewrites DescribeCluster v0 and v1", function()
    for _, v in ipairs { 0, 1 } do
      local function response(host, port)
        local b = string.pack(">i4", 1) .. str(host, true) .. string.pack(">i4", port) .. str("rack-a", true) .. tags(true)
        return frame(string.pack(">i4", 9) .. tags(true) .. string.pack(">i4i2", 0, 0) .. str(nil, true)
          .. (v >= 1 and "\1" or "") .. str("cluster-xyz", true) .. string.pack(">i4", 1) .. array({ b }, true)
          .. string.pack(">i4", -2147483648) .. tags(true))
      end
      assert.are.equal(response("127.0.0.1", 19092), assert(wire.rewrite_response(60, v, response("b1.internal", 9093), MAP)))
    end
  end)

  it("caps the versions of the responses it rewrites in ApiVersions", function()
    local ranges = { { key = 0, min = 3, max = 11 }, { key = 3, min = 0, max = 13 }, { key = 10, min = 0, max = 6 },
      { key = 60, min = 0, max = 2 } }
    for _, v in ipairs { 0, 3 } do
      local out = assert(wire.clamp_api_versions(v, wire.api_versions_response(v, 5, 0, ranges)))
      local got = assert(wire.parse_api_versions(v, out))
      assert.are.same({ { key = 0, min = 3, max = 11 }, { key = 3, min = 0, max = 12 }, { key = 10, min = 0, max = 5 },
        { key = 60, min = 0, max = 1 } }, got)
    end
  end)

  describe("answers forbidden requests", function()
    local function request(key, version, body, flexible)
      return frame(string.pack(">i2i2i4", key, version, 77) .. str("client") .. tags(flexible) .. body)
    end

    it("DeleteTopics v1 and v4 with TOPIC_AUTHORIZATION_FAILED per topic", function()
      local out = assert(wire.refusal(request(20, 1, array({ str("a"), str("b") }) .. string.pack(">i4", 30000))))
      assert.are.equal(frame(string.pack(">i4i4", 77, 0) .. array({ str("a") .. string.pack(">i2", 29),
        str("b") .. string.pack(">i2", 29) })), out)
      out = assert(wire.refusal(request(20, 4, array({ str("a", true) }, true) .. string.pack(">i4", 30000) .. tags(true),
        true)))
      assert.are.equal(frame(string.pack(">i4", 77) .. tags(true) .. string.pack(">i4", 0)
        .. array({ str("a", true) .. string.pack(">i2", 29) .. tags(true) }, true) .. tags(true)), out)
    end)

    it("CreateTopics v5 with its error message", function()
      local topic = str("t", true) .. string.pack(">i4i2", 3, 1) .. array({}, true) .. array({ str("retention.ms", true)
        .. str("1000", true) .. tags(true) }, true) .. tags(true)
      local out = assert(wire.refusal(request(19, 5, array({ topic }, true) .. string.pack(">i4", 1000) .. "\0"
        .. tags(true), true)))
      local r = reader(out)
      r:unpack(">i4")
      assert.are.equal(77, r:unpack(">i4"))
      r:uvarint()
      assert.are.equal(0, r:unpack(">i4"))
      assert.are.equal(1, r:count(true))
      assert.are.equal("t", r:str(true))
      assert.are.equal(29, r:unpack(">i2"))
      assert.are.equal("forbidden by kalua proxy", r:str(true))
    end)

    it("Produce v8 per partition, and nothing for acks=0", function()
      local function produce(acks)
        local part = string.pack(">i4", 2) .. string.pack(">s4", "records")
        return request(0, 8, str(nil) .. string.pack(">i2i4", acks, 30000) .. array({ str("t") .. array({ part }) }))
      end
      local r = reader(assert(wire.refusal(produce(-1))))
      r:unpack(">i4")
      assert.are.equal(77, r:unpack(">i4"))
      assert.are.equal(1, r:count())
      assert.are.equal("t", r:str())
      assert.are.equal(1, r:count())
      assert.are.equal(2, r:unpack(">i4"))
      assert.are.equal(29, r:unpack(">i2"))
      assert.are.equal(false, wire.refusal(produce(0)))
    end)

    it("nothing it does not know, and no malformed request", function()
      assert.is_nil(wire.refusal(request(1, 12, "", true)))
      assert.is_false(wire.can_refuse(1))
      local ok, err = wire.refusal(request(20, 1, string.pack(">i4", 5)))
      assert.is_nil(ok)
      assert.matches("malformed", err)
    end)
  end)

  it("reads request headers, PLAIN messages and API names", function()
    local h = assert(wire.parse_request(frame(string.pack(">i2i2i4", 18, 3, 9) .. str("kcat") .. tags(true) .. "body")))
    assert.are.same({ api_key = 18, api_version = 3, correlation = 9, client_id = "kcat", flexible = true,
      body = "body" }, h)
    assert.are.same({ "", "alice", "s3cret" }, { wire.sasl_plain("\0alice\0s3cret") })
    assert.are.same({ "admin", "alice", "" }, { wire.sasl_plain("admin\0alice\0") })
    assert.is_nil(wire.sasl_plain("alice\0s3cret"))
    assert.is_nil(wire.sasl_plain("\0\0pw"))
    assert.are.equal(20, wire.api_key("deletetopics"))
    assert.are.equal("DescribeCluster", wire.api_key_name(60))
    assert.is_nil(wire.api_key("NoSuchApi"))
  end)
end)
