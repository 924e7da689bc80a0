-- spec/support/java_clients.lua on the rig's PLAINTEXT listener: Kafka's
-- own console producer and consumer (the broker's jars) and kcat, the
-- independent peers later specs (the proxy's) point at kalua. Four JVM
-- starts in all; the two group members start side by side.
local jc = require "java_clients"
local rig = require "rig"
local kafka = require "kalua.kafka"
local clock = require "kalua.clock"

local function sorted(t)
  local c = table.move(t, 1, #t, 1, {})
  table.sort(c)
  return c
end

local function eventually(check, seconds, explain)
  local deadline = clock.now() + seconds
  while not check() do
    if clock.now() > deadline then error("timed out after " .. seconds .. " s: " .. explain(), 2) end
    clock.sleep(0.1)
  end
end

describe("java_clients on the PLAINTEXT listener #noasan", function() -- peers only: no kalua code to sanitize
  local bootstrap, admin, topic
  local values = {}
  for i = 1, 10 do values[i] = ("line %02d"):format(i) end

  setup(function()
    bootstrap = rig.env("KAFKA_PLAINTEXT")
    admin = assert(kafka.admin { bootstrap_servers = bootstrap })
    topic = rig.topic("java-clients")
    assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
  end)

  teardown(function()
    if admin then
      admin:delete_topics { topic }
      admin:close()
    end
  end)

  it("produces with the Java producer and reads it back with kcat and a Java group consumer", function()
    local lines = {}
    for i, v in ipairs(values) do lines[i] = ("k%d:%s"):format(i, v) end
    jc.produce(bootstrap, topic, lines, { key_separator = ":" })

    local seen, parts = {}, {}
    for _, line in ipairs(jc.kcat_consume(bootstrap, topic, { count = 10, format = "%p\t%k\t%s\n" })) do
      local p, k, v = line:match("^(%d+)\t([^\t]*)\t(.*)$")
      assert.are.equal("k" .. tonumber(v:match("%d+$")), k)
      parts[p] = true
      seen[#seen + 1] = v
    end
    assert.are.same(values, sorted(seen))
    assert.is_true(parts["0"] and parts["1"], "the keys spread over both partitions")

    local got = jc.consume(bootstrap, topic, { group = rig.topic("jc-group"), from_beginning = true,
      max_messages = 10, timeout_ms = 20000 })
    assert.are.same(values, sorted(got))
  end)

  it("shares the 2-partition topic between two members of one group", function()
    local group = rig.topic("jc-members")
    local a = jc.start_consumer(bootstrap, topic, { group = group, from_beginning = true })
    local b = jc.start_consumer(bootstrap, topic, { group = group, from_beginning = true })
    finally(function()
      a:cleanup()
      b:cleanup()
    end)
    local function state()
      return ("member a: %s\n%s\nmember b: %s\n%s"):format(table.concat(a:assignment(), ","), jc.tail(a:stderr(), 8),
        table.concat(b:assignment(), ","), jc.tail(b:stderr(), 8))
    end
    -- One partition each is only ever a two-member generation's assignment.
    eventually(function()
      assert.is_true(a:alive() and b:alive(), state())
      return #a:assignment() == 1 and #b:assignment() == 1
    end, 60, state)
    local pa, pb = a:assignment()[1], b:assignment()[1]
    assert.are_not.equal(pa, pb)

    -- New records on each partition reach only the member that owns it.
    for p = 0, 1 do
      local lines = {}
      for i = 1, 5 do lines[i] = ("new p%d %d"):format(p, i) end
      jc.kcat_produce(bootstrap, topic, lines, { partition = p })
    end
    local function fresh(h)
      local out = {}
      for _, r in ipairs(h:records()) do
        if r.value:match("^new ") then out[#out + 1] = r end
      end
      return out
    end
    eventually(function() return #fresh(a) + #fresh(b) >= 10 end, 30, state)
    for _, m in ipairs { { a, pa }, { b, pb } } do
      local recs = fresh(m[1])
      assert.are.equal(5, #recs)
      for _, r in ipairs(recs) do
        assert.are.equal(m[2], r.partition)
        assert.are.equal(("new p%d"):format(m[2]), r.value:match("^new p%d"))
      end
    end
    a:stop()
    b:stop()
    assert.is_false(a:alive())
    assert.is_false(b:alive())
  end)
end)
