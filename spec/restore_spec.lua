-- kalua restore against the rig's broker: backup, then restore elsewhere.
local kafka = require "kalua.kafka"
local proc = require "proc"
local rig = require "rig"

local function produce(brokers, topic, partitions, n)
  local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
  for i = 0, n - 1 do
    assert(p:produce { topic = topic, partition = i % partitions, key = i % 4 == 0 and nil or ("k" .. i),
      value = i % 9 == 0 and "" or ("value " .. i), timestamp = 1700000000000 + i * 1000,
      headers = { { "i", tostring(i) }, { "null", nil } } })
  end
  assert(p:flush(10000))
end

local consumed = rig.read_partition

describe("kalua restore", function()
  local brokers, dir, source, target

  local function config(mode, extra)
    local path = dir .. "/" .. mode .. ".yaml"
    proc.write_file(path, ([[
mode: %s
backup_id: b1
%s:
  bootstrap_servers: %s
topics:
  include: ["%s"]
storage:
  backend: filesystem
  path: %s/store
%s]]):format(mode, mode == "backup" and "source" or "target", brokers, source, dir, extra or ""))
    return path
  end

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    source = rig.topic("restore-src")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = source, partitions = 2, replication_factor = 1,
      config = { ["retention.ms"] = "-1" } } })
    produce(brokers, source, 2, 60)
    local r = proc.run { proc.kalua(), "backup", "--config", config("backup", "backup:\n  segment_max_records: 7\n") }
    assert(r.code == 0, r.stderr)
  end)

  teardown(function() proc.rmdir(dir) end)

  before_each(function() target = rig.topic("restore-dst") end)

  it("restores every record exactly into a mapped, newly created topic", function()
    local r = proc.run { proc.kalua(), "restore", "--config",
      config("restore", ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1 topics (1 created), 2 partitions, 60 records", 1, true), r.stdout)
    for p = 0, 1 do
      local want, got = consumed(brokers, source, p), consumed(brokers, target, p)
      assert.are.equal(30, #got)
      assert.are.same(want, got) -- offsets, timestamps, keys, values, headers
    end
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    local cfg = assert(admin:describe_configs { { type = "topic", name = target } })[target]
    assert.are.equal("-1", cfg["retention.ms"].value)
  end)

  it("restores only a time window, with the original offsets as headers", function()
    -- records 10..19 by time: 1700000010000 .. 1700000019000
    local r = proc.run { proc.kalua(), "restore", "--config", config("restore", ([[
restore:
  topic_mapping:
    %s: %s
  time_window_start: "2023-11-14T22:13:30Z"
  time_window_end: 1700000019000
  include_original_offset_header: true
]]):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    local got = consumed(brokers, target, 0)
    assert.are.equal(5, #got) -- even records 10,12,14,16,18 live in partition 0
    assert.are.same({ "kalua.original.offset", "5" }, got[1].headers[3])
    assert.are.equal(1700000010000, got[1].timestamp)
  end)

  it("restores an offset window", function()
    local r = proc.run { proc.kalua(), "restore", "--config", config("restore",
      ("restore:\n  topic_mapping:\n    %s: %s\n  start_offset: 20\n  end_offset: 24\n"):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    local got = consumed(brokers, target, 1)
    assert.are.equal(5, #got)
    assert.are.equal("value 41", got[1].value) -- partition 1 offset 20 is record 41
  end)

  it("prints a plan and writes nothing on a dry run", function()
    local r = proc.run { proc.kalua(), "restore", "--dry-run", "--config",
      config("restore", ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(("topic %s -> %s (2 partitions"):format(source, target), 1, true), r.stdout)
    assert.truthy(r.stdout:find("partition 0 -> 0: 5 segments, up to 30 records", 1, true), r.stdout)
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert.are.equal("UNKNOWN_TOPIC_OR_PART", admin:metadata { topic = target }[1].error)
  end)

  it("refuses a mapping for a topic the backup does not have, in one line", function()
    local r = proc.run { proc.kalua(), "restore", "--config",
      config("restore", "restore:\n  topic_mapping:\n    no-such-topic: x\n") }
    assert.are.equal(1, r.code)
    assert.are.equal("kalua restore: topic_mapping names 'no-such-topic', which is not in backup 'b1'\n", r.stderr)
  end)
end)
