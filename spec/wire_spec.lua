-- kalua proxy's Kafka messages (kafka.wire, core/kafka/wire.c), byte for
-- byte: frames built here with string.pack as Kafka's message definitions
-- (clients/src/main/resources/common/message/*.json) lay them out,
-- rewritten or answered, and compared with the frame expected, whole.
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

local function i8(v) return string.pack(">i1", v) end
local function i16(v) return string.pack(">i2", v) end
local function i32(v) return string.pack(">i4", v) end
local function i64(v) return string.pack(">i8", v) end

-- A string, classic (int16 length) or compact (uvarint length + 1); nil is null.
local function str(s, compact)
  if compact then return s and (uvarint(#s + 1) .. s) or uvarint(0) end
  return s and string.pack(">s2", s) or string.pack(">i2", -1)
end

-- Bytes: int32 length, or compact.
local function bytes(b, compact)
  if compact then return uvarint(#b + 1) .. b end
  return string.pack(">s4", b)
end

-- An array of encoded items; nil is a null array.
local function array(items, compact)
  if items == nil then return compact and uvarint(0) or i32(-1) end
  return (compact and uvarint(#items + 1) or i32(#items)) .. table.concat(items)
end

local function int32s(list, compact)
  local items = {}
  for i, v in ipairs(list) do items[i] = i32(v) end
  return array(items, compact)
end

-- Tagged fields: none, or the given { {tag, data}, ... } (flexible versions only).
local function tags(compact, fields)
  if not compact then return "" end
  fields = fields or {}
  local out = { uvarint(#fields) }
  for _, f in ipairs(fields) do out[#out + 1] = uvarint(f[1]) .. uvarint(#f[2]) .. f[2] end
  return table.concat(out)
end

local function frame(body) return string.pack(">s4", body) end

-- A request frame: header v1, or v2 (tagged fields) when flexible.
local function request(key, version, body, flexible, correlation)
  return frame(string.pack(">i2i2i4", key, version, correlation or 77) .. str("client") .. tags(flexible) .. body)
end

-- A response frame's start: header v0, or v1 (tagged fields) when flexible.
local function response_head(flexible, correlation) return i32(correlation or 77) .. tags(flexible) end

local REFUSED = "forbidden by kalua proxy"

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
  local n = compact and self:uvarint() - 1 or self:unpack(">i2")
  if n < 0 then return nil end
  local s = self.s:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end
function Reader:count(compact) return compact and self:uvarint() - 1 or self:unpack(">i4") end
function Reader:rest() return self.s:sub(self.pos) end

-- Every shorter frame made of the first bytes of body (with its own size).
local function cuts(body)
  local i = -1
  return function()
    i = i + 1
    if i < #body then return i, frame(body:sub(1, i)) end
  end
end

-- --- fixtures ------------------------------------------------------------------

local LONG = ("proxy-"):rep(30) .. "example.net" -- 191 bytes: a 2-byte compact length
local BROKERS = { { 1, "b1.internal", 9093, "rack-a" }, { 2, "b2.internal", 9093, nil }, { 3, "b3.internal", 9093, "c" } }
-- b3 is not in the map: left as it is.
local MAP = { ["b1.internal:9093"] = "127.0.0.1:19092", ["b2.internal:9093"] = LONG .. ":19093" }
local MAPPED = { { 1, "127.0.0.1", 19092, "rack-a" }, { 2, LONG, 19093, nil }, { 3, "b3.internal", 9093, "c" } }

-- What follows the brokers in a Metadata response: cluster id, controller,
-- topics with partitions, tagged fields. Copied untouched by a rewrite.
local function metadata_tail(v)
  local fl = v >= 9
  local function partition(index, leader)
    local p = i16(0) .. i32(index) .. i32(leader)
    if v >= 7 then p = p .. i32(5) end
    p = p .. int32s({ 1, 2, 3 }, fl) .. int32s({ leader, 2 }, fl)
    if v >= 5 then p = p .. int32s({ 3 }, fl) end
    return p .. tags(fl)
  end
  local function topic(name, internal, partitions)
    local t = i16(0) .. str(name, fl)
    if v >= 10 then t = t .. ("\1"):rep(15) .. "\2" end
    if v >= 1 then t = t .. (internal and "\1" or "\0") end
    t = t .. array(partitions, fl)
    if v >= 8 then t = t .. i32(-2147483648) end
    return t .. tags(fl, { { 7, "future" } })
  end
  local tail = ""
  if v >= 2 then tail = tail .. str("cluster-xyz", fl) end
  if v >= 1 then tail = tail .. i32(1) end
  tail = tail .. array({ topic("orders", false, { partition(0, 1), partition(1, 2) }),
    topic("__consumer_offsets", true, { partition(0, 3) }) }, fl)
  if v >= 8 and v <= 10 then tail = tail .. i32(-2147483648) end
  return tail .. tags(fl, { { 3, "\0\1\2" } })
end

local function metadata_body(v, brokers)
  local fl = v >= 9
  local list = {}
  for _, b in ipairs(brokers) do
    local e = i32(b[1]) .. str(b[2], fl) .. i32(b[3])
    if v >= 1 then e = e .. str(b[4], fl) end
    list[#list + 1] = e .. tags(fl)
  end
  local head = i32(42) .. tags(fl, fl and { { 0, "hdr" } } or nil)
  if v >= 3 then head = head .. i32(0) end
  return head .. array(list, fl), metadata_tail(v)
end

local function metadata(v, brokers)
  local head, tail = metadata_body(v, brokers or BROKERS)
  return frame(head .. tail)
end

-- Reads a rewritten Metadata response: its brokers and the bytes after them.
local function read_metadata(s, v)
  local fl = v >= 9
  local r = reader(s)
  assert.are.equal(#s - 4, r:unpack(">i4"))
  assert.are.equal(42, r:unpack(">i4"))
  if fl then
    assert.are.equal(1, r:uvarint())
    assert.are.same({ 0, 3, "hdr" }, { r:uvarint(), r:uvarint(), r:unpack("c3") })
  end
  if v >= 3 then r:unpack(">i4") end
  local brokers = {}
  for _ = 1, r:count(fl) do
    local b = { r:unpack(">i4"), r:str(fl), r:unpack(">i4") }
    if v >= 1 then b[4] = r:str(fl) end
    if fl then assert.are.equal(0, r:uvarint()) end
    brokers[#brokers + 1] = b
  end
  return brokers, r:rest()
end

-- FindCoordinator: v0 (header v0, no throttle), v1-2 (throttle, message), v3 flexible, v4+ a list.
local function coordinator(key, node, host, port, code)
  return str(key, true) .. i32(node) .. str(host, true) .. i32(port) .. i16(code) .. str(nil, true) .. tags(true)
end

local function find_coordinator(v, node, host, port)
  local fl = v >= 3
  local body = response_head(fl, 7)
  if v >= 1 then body = body .. i32(0) end
  body = body .. i16(0)
  if v >= 1 then body = body .. str(nil, fl) end
  return frame(body .. i32(node) .. str(host, fl) .. i32(port) .. tags(fl))
end

local function describe_cluster(v, brokers)
  local list = {}
  for _, b in ipairs(brokers) do
    list[#list + 1] = i32(b[1]) .. str(b[2], true) .. i32(b[3]) .. str(b[4], true) .. tags(true)
  end
  return frame(response_head(true, 9) .. i32(0) .. i16(0) .. str(nil, true) .. (v >= 1 and "\1" or "")
    .. str("cluster-xyz", true) .. i32(1) .. array(list, true) .. i32(-2147483648) .. tags(true, { { 0, "x" } }))
end

local function api_versions(v, code, ranges)
  local fl = v >= 3
  local items = {}
  for i, r in ipairs(ranges) do items[i] = i16(r.key) .. i16(r.min) .. i16(r.max) .. tags(fl) end
  local body = i32(5) .. i16(code) .. array(items, fl)
  if v >= 1 then body = body .. i32(0) end
  return frame(body .. tags(fl))
end

describe("kafka.wire", function()
  describe("rewrites Metadata", function()
    for v = 0, 12 do
      it("v" .. v .. ": broker addresses to the proxy's, every other byte as it was", function()
        local out = assert(wire.rewrite_response(3, v, metadata(v), MAP))
        assert.are.equal(metadata(v, MAPPED), out)
        local brokers, rest = read_metadata(out, v)
        assert.are.same({ 1, "127.0.0.1", 19092 }, { brokers[1][1], brokers[1][2], brokers[1][3] })
        assert.are.same({ 2, LONG, 19093 }, { brokers[2][1], brokers[2][2], brokers[2][3] })
        assert.are.same({ 3, "b3.internal", 9093 }, { brokers[3][1], brokers[3][2], brokers[3][3] })
        if v >= 1 then
          assert.are.same({ "rack-a", nil, "c" }, { brokers[1][4], brokers[2][4], brokers[3][4] })
        end
        assert.are.equal(metadata_tail(v), rest)
      end)
    end

    it("asks the map for each broker, and fails when it says so", function()
      local asked = {}
      assert(wire.rewrite_response(3, 12, metadata(12), function(node, host, port)
        asked[#asked + 1] = ("%d %s:%d"):format(node, host, port)
        return "proxy", 1000 + node
      end))
      assert.are.same({ "1 b1.internal:9093", "2 b2.internal:9093", "3 b3.internal:9093" }, asked)
      for _, refuse in ipairs { function() return nil, "no" end, function() error("boom") end } do
        local ok, err = wire.rewrite_response(3, 12, metadata(12), refuse)
        assert.is_nil(ok)
        assert.matches("no proxy address", err)
      end
    end)

    it("leaves everything as it is when the map keeps every broker", function()
      for _, v in ipairs { 0, 8, 12 } do
        assert.are.equal(metadata(v), assert(wire.rewrite_response(3, v, metadata(v), {})))
      end
    end)

    it("refuses versions it cannot read", function()
      local ok, err = wire.rewrite_response(3, 13, metadata(12), MAP)
      assert.is_nil(ok)
      assert.matches("Metadata v13", err)
      assert.is_nil(wire.rewrite_response(3, -1, metadata(0), MAP))
      assert.is_nil(wire.rewrite_response(1, 0, metadata(0), MAP))
    end)

    for _, v in ipairs { 0, 1, 8, 9, 12 } do
      it("v" .. v .. " cut anywhere: malformed up to the last broker, the rest copied as it came", function()
        local head, tail = metadata_body(v, BROKERS)
        local body = head .. tail
        local whole = assert(wire.rewrite_response(3, v, frame(body), MAP))
        local grown = #whole - 4 - #body
        for cut, short in cuts(body) do
          local ok, err = wire.rewrite_response(3, v, short, MAP)
          if cut < #head then
            assert.is_nil(ok, "cut at " .. cut)
            assert.matches("malformed Metadata v" .. v, err)
          else
            assert.are.equal(frame(whole:sub(5, 4 + cut + grown)), ok, "cut at " .. cut)
          end
        end
      end)
    end

    it("refuses a broker count larger than the frame, without allocating it", function()
      for _, v in ipairs { 0, 9 } do
        local fl = v >= 9
        local body = i32(42) .. tags(fl) .. (v >= 3 and i32(0) or "")
          .. (fl and uvarint(0x7ffffffe) or i32(0x7fffffff)) .. i32(1)
        local ok, err = wire.rewrite_response(3, v, frame(body), MAP)
        assert.is_nil(ok)
        assert.matches("malformed", err)
      end
    end)
  end)

  describe("rewrites FindCoordinator", function()
    for v = 0, 3 do
      it("v" .. v .. " (one coordinator)", function()
        local out = assert(wire.rewrite_response(10, v, find_coordinator(v, 1, "b1.internal", 9093), MAP))
        assert.are.equal(find_coordinator(v, 1, "127.0.0.1", 19092), out)
        out = assert(wire.rewrite_response(10, v, find_coordinator(v, 2, "b2.internal", 9093), MAP))
        assert.are.equal(find_coordinator(v, 2, LONG, 19093), out)
        -- COORDINATOR_NOT_AVAILABLE: node -1, no host
        assert.are.equal(find_coordinator(v, -1, "", -1),
          assert(wire.rewrite_response(10, v, find_coordinator(v, -1, "", -1), MAP)))
      end)
    end

    for _, v in ipairs { 4, 5 } do
      it("v" .. v .. " (a coordinator per key), leaving a failed lookup's empty host alone", function()
        local function response(list)
          return frame(response_head(true, 7) .. i32(0) .. array(list, true) .. tags(true))
        end
        local before = response { coordinator("g1", 1, "b1.internal", 9093, 0), coordinator("g2", -1, "", -1, 15),
          coordinator("txn-1", 2, "b2.internal", 9093, 0) }
        local after = response { coordinator("g1", 1, "127.0.0.1", 19092, 0), coordinator("g2", -1, "", -1, 15),
          coordinator("txn-1", 2, LONG, 19093, 0) }
        assert.are.equal(after, assert(wire.rewrite_response(10, v, before, MAP)))
      end)
    end

    it("fails truncated frames and v6", function()
      local body = find_coordinator(2, 1, "b1.internal", 9093):sub(5)
      for cut, short in cuts(body) do
        local ok, err = wire.rewrite_response(10, 2, short, MAP)
        assert.is_nil(ok, "cut at " .. cut)
        assert.matches("malformed FindCoordinator v2", err)
      end
      assert.is_nil(wire.rewrite_response(10, 6, find_coordinator(3, 1, "b1.internal", 9093), MAP))
    end)
  end)

  describe("rewrites DescribeCluster", function()
    for _, v in ipairs { 0, 1 } do
      it("v" .. v, function()
        assert.are.equal(describe_cluster(v, MAPPED), assert(wire.rewrite_response(60, v, describe_cluster(v, BROKERS), MAP)))
      end)
    end

    it("fails frames cut before the end of the brokers", function()
      local body = describe_cluster(1, BROKERS):sub(5)
      local brokers_end = #body - 4 - 4 -- authorized operations, tagged fields {0: "x"}
      for cut, short in cuts(body) do
        local ok = wire.rewrite_response(60, 1, short, MAP)
        if cut < brokers_end then assert.is_nil(ok, "cut at " .. cut) else assert.is_string(ok) end
      end
    end)
  end)

  describe("ApiVersions", function()
    local RANGES = { { key = 0, min = 3, max = 11 }, { key = 1, min = 4, max = 17 }, { key = 3, min = 0, max = 13 },
      { key = 10, min = 0, max = 6 }, { key = 18, min = 0, max = 4 }, { key = 60, min = 0, max = 2 } }
    local CAPPED = { { key = 0, min = 3, max = 9 }, { key = 1, min = 4, max = 15 }, { key = 3, min = 0, max = 12 },
      { key = 10, min = 0, max = 5 }, { key = 18, min = 0, max = 4 }, { key = 60, min = 0, max = 1 } }

    it("caps what clients may use: the rewritten responses, and Produce and Fetch before KIP-951", function()
      assert.are.same({ 9, 15, 12, 5, 1 }, { wire.client_max_version(0), wire.client_max_version(1),
        wire.client_max_version(3), wire.client_max_version(10), wire.client_max_version(60) })
      assert.is_nil(wire.client_max_version(19))
      for v = 0, 4 do
        local out = assert(wire.clamp_api_versions(v, api_versions(v, 0, RANGES)))
        assert.are.equal(api_versions(v, 0, CAPPED), out)
        assert.are.same(CAPPED, assert(wire.parse_api_versions(v, out)))
      end
    end)

    it("keeps v3's tagged fields (supported features) as they are", function()
      local function with_features(ranges)
        local s = api_versions(3, 0, ranges)
        -- SupportedFeatures (tag 0): one feature "metadata.version" 1-21
        local features = array({ str("metadata.version", true) .. i16(1) .. i16(21) .. tags(true) }, true)
        return s:sub(1, -2):gsub("^....", "") -- the body without its empty tagged fields
          .. tags(true, { { 0, features }, { 1, i64(12) } })
      end
      local out = assert(wire.clamp_api_versions(3, frame(with_features(RANGES))))
      assert.are.equal(frame(with_features(CAPPED)), out)
    end)

    it("reads an UNSUPPORTED_VERSION answer in the v0 layout (KIP-511)", function()
      local out = assert(wire.clamp_api_versions(4, api_versions(0, 35, RANGES)))
      assert.are.equal(api_versions(0, 35, CAPPED), out)
      assert.is_nil(wire.parse_api_versions(3, api_versions(0, 35, RANGES)))
    end)

    it("fails malformed responses", function()
      local body = api_versions(3, 0, RANGES):sub(5)
      for cut, short in cuts(body) do
        if cut < #body - 5 then -- the throttle and tagged fields are not read
          assert.is_nil(wire.parse_api_versions(3, short), "cut at " .. cut)
          assert.is_nil(wire.clamp_api_versions(3, short), "cut at " .. cut)
        end
      end
      assert.is_nil(wire.parse_api_versions(0, frame(i32(5) .. i16(0) .. i32(0x7fffffff))))
    end)

    it("builds v0-4 responses, and v0 with UNSUPPORTED_VERSION for a client asking too high", function()
      for v = 0, 4 do
        assert.are.equal(api_versions(v, 0, CAPPED), wire.api_versions_response(v, 5, 0, CAPPED))
      end
      assert.are.equal(frame(i32(5) .. i16(35) .. i32(1) .. i16(18) .. i16(0) .. i16(4)),
        wire.api_versions_response(0, 5, 35, { { key = 18, min = 0, max = 4 } }))
    end)
  end)

  describe("answers forbidden requests", function()
    it("knows which APIs it can refuse", function()
      for _, k in ipairs { 0, 19, 20, 21, 30, 31, 33, 37, 42, 44, 45 } do assert.is_true(wire.can_refuse(k), k) end
      for _, k in ipairs { 1, 3, 10, 18, 22, 32, 36, 46, 60, -1, 200 } do assert.is_false(wire.can_refuse(k), k) end
    end)

    describe("Produce", function()
      local function produce(v, acks)
        local fl = v >= 9
        local function part(i) return i32(i) .. bytes("record batch " .. i, fl) .. tags(fl) end
        local body = (v >= 3 and str(nil, fl) or "") .. i16(acks) .. i32(30000)
          .. array({ str("orders", fl) .. array({ part(0), part(3) }, fl) .. tags(fl),
            str("audit", fl) .. array({ part(1) }, fl) .. tags(fl) }, fl)
        return request(0, v, body, fl)
      end
      local function expected(v)
        local fl = v >= 9
        local function part(i)
          local p = i32(i) .. i16(29) .. i64(-1)
          if v >= 2 then p = p .. i64(-1) end
          if v >= 5 then p = p .. i64(-1) end
          if v >= 8 then p = p .. array({}, fl) .. str(REFUSED, fl) end
          return p .. tags(fl)
        end
        local body = response_head(fl) .. array({ str("orders", fl) .. array({ part(0), part(3) }, fl) .. tags(fl),
          str("audit", fl) .. array({ part(1) }, fl) .. tags(fl) }, fl)
        if v >= 1 then body = body .. i32(0) end
        return frame(body .. tags(fl))
      end

      for v = 0, 11 do
        it("v" .. v .. ": TOPIC_AUTHORIZATION_FAILED for every partition", function()
          assert.are.equal(expected(v), assert(wire.refusal(produce(v, -1))))
          assert.are.equal(expected(v), assert(wire.refusal(produce(v, 1))))
        end)
      end

      it("no answer at all for acks=0", function()
        for _, v in ipairs { 3, 8, 9, 11 } do assert.are.equal(false, wire.refusal(produce(v, 0))) end
      end)

      it("fails when cut inside its topics, and v12", function()
        local body = produce(9, -1):sub(5)
        for cut, short in cuts(body) do
          if cut < #body - 1 then -- only the request's tagged fields follow its topics
            local ok, err = wire.refusal(short)
            assert.is_nil(ok, "cut at " .. cut)
            assert.matches("malformed", err)
          end
        end
        assert.is_nil(wire.refusal(produce(12, -1)))
      end)
    end)

    describe("CreateTopics", function()
      local function create(v)
        local fl = v >= 5
        local function topic(name, assignments)
          return str(name, fl) .. i32(assignments and -1 or 3) .. i16(assignments and -1 or 2)
            .. array(assignments or {}, fl)
            .. array({ str("retention.ms", fl) .. str("1000", fl) .. tags(fl), str("cleanup.policy", fl) .. str(nil, fl)
              .. tags(fl) }, fl) .. tags(fl)
        end
        local body = array({ topic("t1"), topic("t2", { i32(0) .. int32s({ 1, 2 }, fl) .. tags(fl) }) }, fl)
          .. i32(60000) .. (v >= 1 and "\0" or "") .. tags(fl)
        return request(19, v, body, fl)
      end
      local function expected(v)
        local fl = v >= 5
        local function result(name)
          local r = str(name, fl)
          if v >= 7 then r = r .. ("\0"):rep(16) end
          r = r .. i16(29)
          if v >= 1 then r = r .. str(REFUSED, fl) end
          if v >= 5 then r = r .. i32(-1) .. i16(-1) .. array(nil, true) end
          return r .. tags(fl)
        end
        return frame(response_head(fl) .. (v >= 2 and i32(0) or "") .. array({ result("t1"), result("t2") }, fl)
          .. tags(fl))
      end
      for v = 0, 7 do
        it("v" .. v .. ": TOPIC_AUTHORIZATION_FAILED per topic, named", function()
          assert.are.equal(expected(v), assert(wire.refusal(create(v))))
        end)
      end
    end)

    describe("DeleteTopics", function()
      for v = 0, 5 do
        it("v" .. v .. ": by name", function()
          local fl = v >= 4
          local req = request(20, v, array({ str("a", fl), str("b", fl) }, fl) .. i32(30000) .. tags(fl), fl)
          local function result(name)
            return str(name, fl) .. i16(29) .. (v >= 5 and str(REFUSED, fl) or "") .. tags(fl)
          end
          assert.are.equal(frame(response_head(fl) .. (v >= 1 and i32(0) or "") .. array({ result("a"), result("b") }, fl)
            .. tags(fl)), assert(wire.refusal(req)))
        end)
      end

      it("v6: by name or by id, both echoed", function()
        local id = ("\171"):rep(8) .. ("\205"):rep(8)
        local req = request(20, 6, array({ str("a", true) .. ("\0"):rep(16) .. tags(true), str(nil, true) .. id
          .. tags(true) }, true) .. i32(30000) .. tags(true), true)
        assert.are.equal(frame(response_head(true) .. i32(0) .. array({
          str("a", true) .. ("\0"):rep(16) .. i16(29) .. str(REFUSED, true) .. tags(true),
          str(nil, true) .. id .. i16(29) .. str(REFUSED, true) .. tags(true) }, true) .. tags(true)),
          assert(wire.refusal(req)))
      end)
    end)

    it("DeleteRecords v0-2: TOPIC_AUTHORIZATION_FAILED per partition", function()
      for v = 0, 2 do
        local fl = v >= 2
        local req = request(21, v, array({ str("t", fl) .. array({ i32(0) .. i64(10) .. tags(fl), i32(4) .. i64(-1)
          .. tags(fl) }, fl) .. tags(fl) }, fl) .. i32(30000) .. tags(fl), fl)
        local function part(i) return i32(i) .. i64(-1) .. i16(29) .. tags(fl) end
        assert.are.equal(frame(response_head(fl) .. i32(0) .. array({ str("t", fl) .. array({ part(0), part(4) }, fl)
          .. tags(fl) }, fl) .. tags(fl)), assert(wire.refusal(req)), "v" .. v)
      end
    end)

    it("CreateAcls v0-3 and DeleteAcls v0-3: CLUSTER_AUTHORIZATION_FAILED per ACL or filter", function()
      for v = 0, 3 do
        local fl = v >= 2
        local function acl(name, nullable)
          return i8(2) .. str(name, fl) .. (v >= 1 and i8(3) or "") .. str(nullable and nil or "User:bob", fl)
            .. str("*", fl) .. i8(3) .. i8(3) .. tags(fl)
        end
        local create = request(30, v, array({ acl("t1"), acl("t2") }, fl) .. tags(fl), fl)
        local result = i16(31) .. str(REFUSED, fl) .. tags(fl)
        assert.are.equal(frame(response_head(fl) .. i32(0) .. array({ result, result }, fl) .. tags(fl)),
          assert(wire.refusal(create)), "CreateAcls v" .. v)
        local delete = request(31, v, array({ acl("t1", true) }, fl) .. tags(fl), fl)
        assert.are.equal(frame(response_head(fl) .. i32(0) .. array({ i16(31) .. str(REFUSED, fl) .. array({}, fl)
          .. tags(fl) }, fl) .. tags(fl)), assert(wire.refusal(delete)), "DeleteAcls v" .. v)
      end
    end)

    it("AlterConfigs v0-2 and IncrementalAlterConfigs v0-1: by resource type", function()
      local cases = { { 33, 0 }, { 33, 1 }, { 33, 2 }, { 44, 0 }, { 44, 1 } }
      for _, c in ipairs(cases) do
        local key, v = c[1], c[2]
        local fl = (key == 33 and v >= 2) or (key == 44 and v >= 1)
        local op = key == 44 and i8(0) or ""
        local function resource(type, name)
          return i8(type) .. str(name, fl) .. array({ str("retention.ms", fl) .. op .. str("1", fl) .. tags(fl),
            str("x", fl) .. op .. str(nil, fl) .. tags(fl) }, fl) .. tags(fl)
        end
        local req = request(key, v, array({ resource(2, "orders"), resource(4, "1"), resource(32, "g"),
          resource(8, "2") }, fl) .. "\0" .. tags(fl), fl)
        local function result(code, type, name) return i16(code) .. str(REFUSED, fl) .. i8(type) .. str(name, fl) .. tags(fl) end
        assert.are.equal(frame(response_head(fl) .. i32(0) .. array({ result(29, 2, "orders"), result(31, 4, "1"),
          result(30, 32, "g"), result(31, 8, "2") }, fl) .. tags(fl)), assert(wire.refusal(req)), key .. " v" .. v)
      end
    end)

    it("CreatePartitions v0-3: TOPIC_AUTHORIZATION_FAILED per topic", function()
      for v = 0, 3 do
        local fl = v >= 2
        local req = request(37, v, array({ str("t1", fl) .. i32(6) .. array(nil, fl) .. tags(fl),
          str("t2", fl) .. i32(2) .. array({ int32s({ 1, 2 }, fl) .. tags(fl) }, fl) .. tags(fl) }, fl)
          .. i32(30000) .. "\0" .. tags(fl), fl)
        local function result(name) return str(name, fl) .. i16(29) .. str(REFUSED, fl) .. tags(fl) end
        assert.are.equal(frame(response_head(fl) .. i32(0) .. array({ result("t1"), result("t2") }, fl) .. tags(fl)),
          assert(wire.refusal(req)), "v" .. v)
      end
    end)

    it("DeleteGroups v0-2: GROUP_AUTHORIZATION_FAILED per group", function()
      for v = 0, 2 do
        local fl = v >= 2
        local req = request(42, v, array({ str("g1", fl), str("g2", fl) }, fl) .. tags(fl), fl)
        local function result(name) return str(name, fl) .. i16(30) .. tags(fl) end
        assert.are.equal(frame(response_head(fl) .. i32(0) .. array({ result("g1"), result("g2") }, fl) .. tags(fl)),
          assert(wire.refusal(req)), "v" .. v)
      end
    end)

    it("AlterPartitionReassignments v0: CLUSTER_AUTHORIZATION_FAILED, at the top and per partition", function()
      local req = request(45, 0, i32(60000) .. array({ str("t", true) .. array({ i32(0) .. int32s({ 1, 2 }, true)
        .. tags(true), i32(1) .. array(nil, true) .. tags(true) }, true) .. tags(true) }, true) .. tags(true), true)
      local function part(i) return i32(i) .. i16(31) .. str(REFUSED, true) .. tags(true) end
      assert.are.equal(frame(response_head(true) .. i32(0) .. i16(31) .. str(REFUSED, true) .. array({ str("t", true)
        .. array({ part(0), part(1) }, true) .. tags(true) }, true) .. tags(true)), assert(wire.refusal(req)))
    end)

    it("nothing it does not know, and no malformed request", function()
      local ok, err = wire.refusal(request(1, 12, "", true))
      assert.is_nil(ok)
      assert.matches("no refusal for Fetch v12", err)
      assert.is_nil(wire.refusal(request(19, 8, array({}, true) .. i32(0) .. "\0" .. tags(true), true)))
      ok, err = wire.refusal(request(20, 1, i32(5)))
      assert.is_nil(ok)
      assert.matches("malformed DeleteTopics v1 request", err)
      assert.is_nil(wire.refusal(request(42, 0, i32(0x7fffffff))))
      assert.is_nil(wire.refusal(frame(i16(20))))
    end)

    it("fails any cut of a request inside its entities, and never crashes on one", function()
      local reqs = {
        request(19, 5, array({ str("t", true) .. i32(1) .. i16(1) .. array({}, true) .. array({}, true) .. tags(true) },
          true) .. i32(0) .. "\0" .. tags(true), true),
        request(33, 1, array({ i8(2) .. str("t") .. array({ str("a") .. str("b") }) }) .. "\0"),
        request(45, 0, i32(0) .. array({ str("t", true) .. array({ i32(0) .. array(nil, true) .. tags(true) }, true)
          .. tags(true) }, true) .. tags(true), true),
      }
      for _, req in ipairs(reqs) do
        local body = req:sub(5)
        for _, short in cuts(body) do
          local ok, err = wire.refusal(short)
          assert(ok == nil and type(err) == "string" or type(ok) == "string")
        end
      end
    end)
  end)

  describe("the SASL server side", function()
    it("reads the mechanism a client asks for, and answers with the enabled ones", function()
      for v = 0, 1 do
        assert.are.equal("PLAIN", wire.sasl_handshake_mechanism(request(17, v, str("PLAIN"))))
      end
      assert.is_nil(wire.sasl_handshake_mechanism(request(17, 1, i16(9) .. "PLA")))
      assert.are.equal(frame(i32(8) .. i16(0) .. i32(1) .. str("PLAIN")),
        wire.sasl_handshake_response(8, 0, { "PLAIN" }))
      assert.are.equal(frame(i32(8) .. i16(33) .. i32(2) .. str("PLAIN") .. str("SCRAM-SHA-512")),
        wire.sasl_handshake_response(8, 33, { "PLAIN", "SCRAM-SHA-512" }))
    end)

    it("reads SaslAuthenticate's bytes, v0-1 classic and v2 compact", function()
      local msg = "\0alice\0s3cret"
      assert.are.equal(msg, wire.sasl_authenticate_bytes(request(36, 0, bytes(msg))))
      assert.are.equal(msg, wire.sasl_authenticate_bytes(request(36, 1, bytes(msg))))
      assert.are.equal(msg, wire.sasl_authenticate_bytes(request(36, 2, bytes(msg, true) .. tags(true), true)))
      assert.is_nil(wire.sasl_authenticate_bytes(request(36, 1, i32(20) .. msg)))
      assert.is_nil(wire.sasl_authenticate_bytes(request(36, 2, uvarint(0) .. tags(true), true)))
    end)

    it("answers SaslAuthenticate v0-2", function()
      assert.are.equal(frame(i32(4) .. i16(0) .. str(nil) .. bytes("")),
        wire.sasl_authenticate_response(0, 4, 0, nil, "", 0))
      assert.are.equal(frame(i32(4) .. i16(58) .. str("bad password") .. bytes("") .. i64(0)),
        wire.sasl_authenticate_response(1, 4, 58, "bad password", "", 0))
      assert.are.equal(frame(i32(4) .. tags(true) .. i16(0) .. str(nil, true) .. bytes("ok", true) .. i64(3600000)
        .. tags(true)), wire.sasl_authenticate_response(2, 4, 0, nil, "ok", 3600000))
    end)

    it("reads PLAIN messages (RFC 4616)", function()
      assert.are.same({ "", "alice", "s3cret" }, { wire.sasl_plain("\0alice\0s3cret") })
      assert.are.same({ "admin", "alice", "pw" }, { wire.sasl_plain("admin\0alice\0pw") })
      for _, bad in ipairs { "alice\0s3cret", "\0\0pw", "\0alice\0", "a\0b\0c\0d", "", "\0" } do
        assert.is_nil(wire.sasl_plain(bad), ("%q"):format(bad))
      end
    end)
  end)

  describe("request headers", function()
    it("v1 and v2 (tagged fields after the client id, by the API's first flexible version)", function()
      local h = assert(wire.parse_request(frame(string.pack(">i2i2i4", 18, 3, 9) .. str("kcat") .. tags(true, { { 0,
        "sw" } }) .. "body")))
      assert.are.same({ api_key = 18, api_version = 3, correlation = 9, client_id = "kcat", flexible = true,
        body = "body" }, h)
      h = assert(wire.parse_request(frame(string.pack(">i2i2i4", 3, 8, -5) .. str(nil) .. "\0\0\0\1")))
      assert.are.same({ api_key = 3, api_version = 8, correlation = -5, flexible = false, body = "\0\0\0\1" }, h)
      h = assert(wire.parse_request(frame(string.pack(">i2i2i4", 3, 9, 1) .. str("c") .. tags(true) .. "\1")))
      assert.are.same({ true, "\1" }, { h.flexible, h.body })
      h = assert(wire.parse_request(frame(string.pack(">i2i2i4", 17, 1, 1) .. str("c") .. "\0")))
      assert.are.same({ false, "\0" }, { h.flexible, h.body }) -- SaslHandshake is never flexible
    end)

    it("fails truncated headers", function()
      local body = string.pack(">i2i2i4", 3, 9, 1) .. str("client") .. tags(true, { { 1, "abc" } })
      for cut, short in cuts(body) do assert.is_nil(wire.parse_request(short), "cut at " .. cut) end
      assert.is_nil(wire.parse_request(frame(string.pack(">i2i2i4", -1, 0, 1) .. str("c"))))
    end)

    it("knows which responses have header v1 (ApiVersions never)", function()
      assert.is_true(wire.response_flexible(3, 9))
      assert.is_false(wire.response_flexible(3, 8))
      assert.is_false(wire.response_flexible(18, 3))
      assert.is_false(wire.response_flexible(17, 1))
      assert.is_true(wire.response_flexible(60, 0))
      assert.is_true(wire.response_flexible(53, 1))
      assert.is_false(wire.response_flexible(53, 0))
    end)
  end)

  it("names every API of Kafka 3.9, and parses names back in any case", function()
    local names = { [0] = "Produce", [3] = "Metadata", [10] = "FindCoordinator", [20] = "DeleteTopics",
      [36] = "SaslAuthenticate", [44] = "IncrementalAlterConfigs", [60] = "DescribeCluster", [68] = "ConsumerGroupHeartbeat",
      [75] = "DescribeTopicPartitions", [87] = "ReadShareGroupStateSummary" }
    for k, name in pairs(names) do assert.are.equal(name, wire.api_key_name(k)) end
    for k = 0, 87 do assert.are.equal(k, wire.api_key(wire.api_key_name(k))) end
    assert.are.equal(20, wire.api_key("deletetopics"))
    assert.are.equal("UnknownApi", wire.api_key_name(88))
    assert.are.equal("UnknownApi", wire.api_key_name(-1))
    assert.is_nil(wire.api_key("NoSuchApi"))
  end)
end)
