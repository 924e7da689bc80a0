-- Fast unit checks on librdkafka's in-process mock cluster. The real broker
-- specs are the proof; these catch regressions in the binding quickly.
local kafka = require "kalua.kafka"

describe("kalua.kafka on librdkafka's mock cluster", function()
  local function mock(extra)
    local conf = { ["test.mock.num.brokers"] = 1 }
    for k, v in pairs(extra or {}) do conf[k] = v end
    return conf
  end

  it("produces and reports deliveries", function()
    local p <close> = assert(kafka.producer(mock()))
    for i = 1, 10 do assert(p:produce { topic = "mock-t", partition = 0, key = tostring(i), value = ("x"):rep(i) }) end
    assert(p:flush(5000))
    local d = p:deliveries()
    assert.are.equal(10, #d)
    for i, r in ipairs(d) do
      assert.are.equal("mock-t", r.topic)
      assert.are.equal(i - 1, r.offset)
      assert.is_nil(r.error)
    end
    assert.are.same({}, p:deliveries())
  end)

  it("reports the library version", function()
    assert.truthy(kafka.version():match("^%d+%.%d+%.%d+"))
    assert.are.equal("_TIMED_OUT", kafka.err2name(-185))
  end)

  it("prints objects readably", function()
    local p <close> = assert(kafka.producer(mock()))
    assert.truthy(tostring(p):match("^kalua%.kafka%.Producer %(rdkafka#producer%-%d+, 0 queued%)$"))
  end)
end)
