-- The scripts in examples/ run against the rig's broker and do what they say.
local kafka = require "kalua.kafka"
local proc = require "proc"
local rig = require "rig"

describe("examples", function()
  local brokers, dir, topic
  local HOUR = 1795600000000 -- 2026-11-26T07:46:40Z; records every 6 min for 3 hours

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    topic = rig.topic("examples")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, 29 do
      local value = ("order %d card 4111 1111 1111 %04d"):format(i, i)
      if i == 7 then value = nil end -- a tombstone, which the transform drops
      assert(p:produce { topic = topic, partition = i % 2, key = "k" .. i, timestamp = HOUR + i * 360000, value = value })
    end
    assert(p:flush(10000))
    proc.write_file(dir .. "/backup.yaml", ("mode: backup\nbackup_id: ex\nsource:\n  bootstrap_servers: %s\n"
      .. "topics:\n  include: [\"%s\"]\nstorage:\n  backend: filesystem\n  path: %s/store\n"):format(brokers, topic, dir))
    local r = proc.run { proc.kalua(), "backup", "--config", dir .. "/backup.yaml" }
    assert(r.code == 0, r.stderr)
  end)

  teardown(function() proc.rmdir(dir) end)

  it("copy_topic.lua copies with the transform applied", function()
    local target = rig.topic("examples-copy")
    local r = proc.run { proc.kalua(), "examples/copy_topic.lua", brokers, topic, brokers, target }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(("copied 29 records from %s to %s (1 dropped)\n"):format(topic, target), r.stdout)
    local got = rig.read_partition(brokers, target, 1)
    assert.are.equal(14, #got) -- 15 odd records, less the tombstone
    assert.are.equal("order 1 card ****-****-****-0001", got[1].value)
    assert.are.same({ "copied-from", topic }, got[1].headers[1])
    assert.are.equal(HOUR + 360000, got[1].timestamp)
  end)

  it("restore_one_hour.lua restores exactly the records of that hour", function()
    local target = rig.topic("examples-hour")
    local start = HOUR + 3600000 -- records 10..19
    local r = proc.run { proc.kalua(), "examples/restore_one_hour.lua", dir .. "/store", "ex", topic,
      tostring(start), brokers, target }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("restored 10 records", 1, true), r.stdout)
    local keys = {}
    for p = 0, 1 do
      for _, rec in ipairs(rig.read_partition(brokers, target, p)) do
        assert.is_true(rec.timestamp >= start and rec.timestamp < start + 3600000)
        keys[#keys + 1] = rec.key
      end
    end
    table.sort(keys)
    assert.are.same({ "k10", "k11", "k12", "k13", "k14", "k15", "k16", "k17", "k18", "k19" }, keys)
  end)

  it("inspect_backup.lua gives a REPL over a backup", function()
    local r = proc.run({ proc.kalua(), "-i", "examples/inspect_backup.lua", dir .. "/store", "ex" },
      { stdin = ("partitions()\nrecords('%s', 1, 1)\nfind('%s', 0, %d).key\ncheck()\n"):format(topic, topic,
        HOUR + 3600000) })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(("%s [0]: 15 records, offsets 0..14, 1 segment(s)"):format(topic), 1, true), r.stdout)
    assert.truthy(r.stdout:find('key = "k1"', 1, true), r.stdout)
    assert.truthy(r.stdout:find("k10", 1, true), r.stdout)
    assert.truthy(r.stdout:find("valid\ntrue", 1, true), r.stdout)
  end)
end)
