local json = require "kalua.json"

describe("kalua.json", function()
  it("encodes objects with sorted keys and round-trips", function()
    local v = { b = { 1, 2, { c = "d" } }, a = "x\n\"\1", n = -3, f = 0.25, t = true, e = json.array(), o = {} }
    local s = json.encode(v)
    assert.are.equal('{"a":"x\\n\\"\\u0001","b":[1,2,{"c":"d"}],"e":[],"f":0.25,"n":-3,"o":{},"t":true}', s)
    assert.are.same(v, json.decode(s))
    assert.are.same(v, json.decode(json.encode(v, { indent = "  " })))
  end)

  it("keeps 64-bit integers exact", function()
    local big = 9007199254740993
    local v = json.decode(json.encode { offset = big })
    assert.are.equal(big, v.offset)
    assert.are.equal("integer", math.type(v.offset))
  end)

  it("decodes escapes, null and whitespace", function()
    assert.are.same({ s = "é\t/", list = { 1, 2 } }, json.decode(' { "s" : "\\u00e9\\t\\/", "list":[1 ,2], "z": null } '))
  end)

  it("names the byte of a syntax error", function()
    assert.are.same({ nil, "json: expected ',' or ']' at byte 7" }, { json.decode("[1, 2 3]") })
    assert.are.same({ nil, "json: unterminated string at byte 6" }, { json.decode('["abc') })
    assert.are.same({ nil, "json: trailing data at byte 4" }, { json.decode("{} x") })
  end)

  it("refuses what JSON cannot say", function()
    assert.has_error(function() json.encode { [1.5] = true } end)
    assert.has_error(function() json.encode(0 / 0) end)
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end)
  end)
end)
