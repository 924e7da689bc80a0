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
  local brokers, dir, source, target, group

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
    -- A group that had read part of each partition, for the three-phase restore.
    group = rig.topic("restore-group")
    assert(admin:alter_group_offsets(group, { { source, 0, 12 }, { source, 1, 20 } }))
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
    assert.are.same({ "kalua.original.timestamp", "1700000010000" }, got[1].headers[4])
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert.are.same({ "kalua.original.cluster", assert(admin:cluster_id()) }, got[1].headers[5])
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

  it("runs once: the same restore again writes nothing more", function()
    local cfg = config("restore", ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target))
    assert.are.equal(0, proc.run { proc.kalua(), "restore", "--config", cfg }.code)
    local r = proc.run { proc.kalua(), "restore", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(" 0 records", 1, true), r.stdout)
    assert.are.equal(30, #consumed(brokers, target, 0))
  end)

  it("keeps to restore.rate_limit_records_per_sec", function()
    local clock = require "kalua.clock"
    local started = clock.now()
    local r = proc.run { proc.kalua(), "restore", "--config", config("restore",
      ("restore:\n  topic_mapping:\n    %s: %s\n  rate_limit_records_per_sec: 40\n"):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    -- 60 records at 40/s cannot take less than 1.5 s (the first is free);
    -- only a lower bound: a busy machine may take longer.
    assert.is_true(clock.now() - started >= 59 / 40, "restore was faster than its rate limit")
    assert.are.equal(30, #consumed(brokers, target, 1))
  end)

  it("three-phase: a group resumes on the restored topic exactly where it stopped", function()
    local cfg = config("restore", ([[
restore:
  topic_mapping:
    %s: %s
  start_offset: 5
  consumer_groups: ["%s"]
]]):format(source, target, group))
    local r = proc.run { proc.kalua(), "restore", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1 groups", 1, true), r.stdout)
    -- offsets 5..29 of each source partition now sit at 0..24
    local shown = proc.run { proc.kalua(), "restore", "--config", cfg, "--show-offset-mapping" }
    assert.are.equal(0, shown.code, shown.stderr)
    assert.truthy(shown.stdout:find(("%s/0 5..29 -> %s/0 0..24"):format(source, target), 1, true), shown.stdout)
    assert.truthy(shown.stdout:find(("group %s %s [1]: source 20 -> 15"):format(group, target), 1, true), shown.stdout)

    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    local committed = {}
    for _, o in ipairs(assert(admin:list_group_offsets(group))) do
      if o.topic == target then committed[o.partition] = o.offset end
    end
    assert.are.same({ [0] = 7, [1] = 15 }, committed)

    -- A member of the group reads exactly what it had not read in the source.
    local c <close> = assert(kafka.consumer { bootstrap_servers = brokers, group_id = group,
      ["auto.offset.reset"] = "latest" })
    assert(c:subscribe { target })
    local got, empty = {}, 0
    while empty < 10 and #got < 28 do
      local batch = assert(c:poll_batch(100, 500))
      if #batch == 0 then empty = empty + 1 end
      for rec in batch:records() do got[#got + 1] = rec.value end
    end
    local want = {}
    for p, from in pairs { [0] = 12, [1] = 20 } do
      for _, rec in ipairs(consumed(brokers, source, p)) do
        if rec.offset >= from then want[#want + 1] = rec.value end
      end
    end
    table.sort(got)
    table.sort(want)
    assert.are.equal(18 + 10, #want)
    assert.are.same(want, got)
  end)

  it("refuses to move a group that has live members on the target", function()
    local busy = rig.topic("restore-busy")
    local c <close> = assert(kafka.consumer { bootstrap_servers = brokers, group_id = busy })
    assert(c:subscribe { source })
    for _ = 1, 20 do c:poll(200) end
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    local offsets = require "kalua.offsets"
    local ok, err = offsets.apply(admin, { { group = busy, changes = { { topic = source, partition = 0, to = 1 } } } })
    assert.is_nil(ok)
    assert.truthy(err:find("active member", 1, true), err)
  end)

  it("maps partitions", function()
    local r = proc.run { proc.kalua(), "restore", "--config", config("restore", ([[
restore:
  topic_mapping:
    %s: %s
  partition_mapping:
    0: 1
    1: 0
]]):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    local function values(list)
      local out = {}
      for i, rec in ipairs(list) do out[i] = rec.value end
      return out
    end
    assert.are.same(values(consumed(brokers, source, 0)), values(consumed(brokers, target, 1)))
    assert.are.same(values(consumed(brokers, source, 1)), values(consumed(brokers, target, 0)))
  end)

  it("stops at a corrupt segment with one line, keeping what it restored, and resumes once it is fixed", function()
    local storage = require "kalua.storage"
    local store <close> = assert(storage.open(dir .. "/store"))
    local keys = store:list(("b1/topics/%s/0/"):format(source))
    local victim = keys[3].key -- records 14..20 of partition 0
    local good = assert(store:get(victim))
    local bad = good:sub(1, 60) .. string.char((good:byte(61) + 1) % 256) .. good:sub(62)
    assert(store:put(victim, bad))
    local cfg = config("restore", ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target))
    local r = proc.run { proc.kalua(), "restore", "--config", cfg }
    store:put(victim, good)
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua restore: [^\n]*" .. victim:gsub("%p", "%%%0") .. ": block 1 at byte %d+: [^\n]*\n$"),
      r.stderr)
    assert.are.equal(14, #consumed(brokers, target, 0)) -- the two segments before it
    r = proc.run { proc.kalua(), "restore", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(consumed(brokers, source, 0), consumed(brokers, target, 0)) -- each record once
  end)

  it("names a backup that is not there, in one line", function()
    local path = config("restore", "")
    proc.write_file(path, proc.read_file(path):gsub("backup_id: b1", "backup_id: nope"))
    local r = proc.run { proc.kalua(), "restore", "--config", path }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua restore: backup 'nope': [^\n]+\n$"), r.stderr)
  end)
end)
