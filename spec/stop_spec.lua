-- A clean stop: kalua backup under SIGTERM (and SIGINT) against the rig's
-- broker. It publishes what it read, checkpoints, says so, and a rerun
-- carries on with no record lost or duplicated.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local clock = require "kalua.clock"
local json = require "kalua.json"
local proc = require "proc"
local configs = require "configs"
local rig = require "rig"

local PARTITIONS = 3

local function produce(brokers, topic, n, start)
  local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
  for i = start, start + n - 1 do
    assert(p:produce { topic = topic, partition = i % PARTITIONS, key = "k" .. i, value = ("value %d %s"):format(i, ("x"):rep(i % 40)) })
  end
  assert(p:flush(10000))
end

-- Values of every record the checkpoint's segments hold, per partition.
local function stored(store, id, topic)
  local checkpoint = assert(json.decode(assert(store:get(id .. "/checkpoint.json"))))
  local out = {}
  for p = 0, PARTITIONS - 1 do
    local values = {}
    local state = checkpoint.partitions[topic .. "/" .. p]
    for _, seg in ipairs(state and state.segments or {}) do
      local r <close> = assert(segment.open(store, seg.key))
      assert(r:verify(true))
      for rec in r:records() do values[#values + 1] = rec.value end
    end
    out[p] = values
  end
  return out
end

local function count(per_partition)
  local n = 0
  for p = 0, PARTITIONS - 1 do n = n + #per_partition[p] end
  return n
end

-- Every value of a partition, read up to its high watermark.
local function broker_values(brokers, topic, partition)
  local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
  local _, high = assert(admin:watermarks(topic, partition))
  local c <close> = assert(kafka.consumer { bootstrap_servers = brokers })
  assert(c:assign { { topic = topic, partition = partition, offset = "beginning" } })
  local out, deadline = {}, clock.now() + 30
  while #out < high and clock.now() < deadline do
    for rec in assert(c:poll_batch(1000, 200)):records() do out[#out + 1] = rec.value end
  end
  return out
end

-- Each partition's stored values are the first values of the broker's,
-- in order, with nothing missing or repeated; `complete` asks for all.
local function assert_prefix(brokers, topic, got, complete)
  for p = 0, PARTITIONS - 1 do
    local want = broker_values(brokers, topic, p)
    if complete then assert.are.equal(#want, #got[p], ("partition %d: record count"):format(p)) end
    assert.is_true(#got[p] <= #want, ("partition %d holds %d records, the broker %d"):format(p, #got[p], #want))
    for i = 1, #got[p] do
      if got[p][i] ~= want[i] then
        error(("partition %d: record #%d is %q, expected %q"):format(p, i, got[p][i], want[i]), 2)
      end
    end
  end
end

-- Waits (at most 30 s) until the manifest's segments hold n records.
local function wait_for_manifest(store, id, topic, n)
  local deadline, have = clock.now() + 30, 0
  while clock.now() < deadline do
    local data = store:get(id .. "/manifest.json")
    local m = data and json.decode(data)
    have = 0
    for _, p in pairs(m and m.topics[topic] and m.topics[topic].partitions or {}) do
      for _, seg in ipairs(p.segments) do have = have + seg.records end
    end
    if have >= n then return have end
    clock.sleep(0.05)
  end
  return have
end

describe("kalua backup stopped by a signal", function()
  local brokers, dir, topic, store

  before_each(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    topic = rig.topic("stop")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = PARTITIONS, replication_factor = 1 } })
    store = assert(storage.open(dir .. "/store"))
  end)

  after_each(function()
    store:close()
    proc.rmdir(dir)
  end)

  local function config(id, backup)
    return configs.write(dir .. "/" .. id .. ".yaml", { mode = "backup", backup_id = id,
      source = { bootstrap_servers = brokers }, topics = { include = { topic } },
      storage = configs.fs(dir .. "/store"), backup = backup })
  end

  it("continuous: finishes the segment, checkpoints, exits 0; a rerun resumes exactly", function()
    local cfg = config("live", { continuous = true, segment_max_interval_ms = 200, segment_max_records = 40 })
    produce(brokers, topic, 300, 0)
    local run = proc.spawn { proc.kalua(), "backup", "--config", cfg }
    local ok, err = pcall(function()
      assert.are.equal(300, wait_for_manifest(store, "live", topic, 300))
      produce(brokers, topic, 3000, 300) -- in flight when the signal lands
      assert(run:kill("TERM"))
      assert.are.equal(0, run:wait(30), run:stderr())
      local n = tonumber(run:stdout():match("^backup live: stopped by SIGTERM after (%d+) records\n$"))
      assert.is_not_nil(n, run:stdout() .. run:stderr())
      local got = stored(store, "live", topic)
      assert.are.equal(n, count(got))
      assert_prefix(brokers, topic, got)
      -- The manifest ends where the segments end.
      local m = assert(json.decode(assert(store:get("live/manifest.json"))))
      local checkpoint = assert(json.decode(assert(store:get("live/checkpoint.json"))))
      for p = 0, PARTITIONS - 1 do
        assert.are.equal(checkpoint.partitions[topic .. "/" .. p].next_offset, m.topics[topic].partitions[tostring(p)].high)
      end
    end)
    run:cleanup()
    assert(ok, err)

    -- Again, and stopped again once it caught up: every record exactly once.
    local rerun = proc.spawn { proc.kalua(), "backup", "--config", cfg }
    ok, err = pcall(function()
      assert.are.equal(3300, wait_for_manifest(store, "live", topic, 3300), rerun:stdout() .. rerun:stderr())
      assert(rerun:kill("TERM"))
      assert.are.equal(0, rerun:wait(30), rerun:stderr())
      assert.truthy(rerun:stdout():match("stopped by SIGTERM after %d+ records"), rerun:stdout())
      assert_prefix(brokers, topic, stored(store, "live", topic), true)
    end)
    rerun:cleanup()
    assert(ok, err)
  end)

  it("continuous: SIGINT (Ctrl-C) stops it the same way, between rounds too", function()
    -- Rounds back to back, each longer than the interval, nothing new to read.
    local cfg = config("ctrl-c", { continuous = true, segment_max_interval_ms = 1 })
    produce(brokers, topic, 90, 0)
    local run = proc.spawn { proc.kalua(), "backup", "--config", cfg }
    local ok, err = pcall(function()
      assert.are.equal(90, wait_for_manifest(store, "ctrl-c", topic, 90))
      assert(run:kill("INT"))
      assert.are.equal(0, run:wait(30), run:stderr())
      assert.are.equal("backup ctrl-c: stopped by SIGINT after 90 records\n", run:stdout())
    end)
    run:cleanup()
    assert(ok, err)
  end)

  it("snapshot: stops between segments, exits 1 saying to run again; the rerun completes it", function()
    -- Small segments, one partition at a time: slow enough to stop halfway.
    local cfg = config("snap", { segment_max_records = 20, max_concurrent_partitions = 1 })
    produce(brokers, topic, 6000, 0)
    local run = proc.spawn { proc.kalua(), "backup", "--config", cfg }
    local ok, err = pcall(function()
      local deadline = clock.now() + 30
      while not store:get("snap/checkpoint.json") and clock.now() < deadline do clock.sleep(0.01) end
      assert(run:kill("TERM"))
      assert.are.equal(1, run:wait(30))
      local n = tonumber(run:stderr():match(
        "^kalua backup: stopped by SIGTERM after (%d+) records, before the snapshot completed; run again to resume\n$"))
      assert.is_not_nil(n, run:stderr())
      assert.is_true(n > 0 and n < 6000, n)
      assert.is_nil(store:get("snap/manifest.json")) -- not a finished backup
      local got = stored(store, "snap", topic)
      assert.are.equal(n, count(got))
      assert_prefix(brokers, topic, got)
    end)
    run:cleanup()
    assert(ok, err)

    local r = proc.run { proc.kalua(), "backup", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("new records", 1, true), r.stdout)
    assert_prefix(brokers, topic, stored(store, "snap", topic), true)
    assert.is_not_nil(store:get("snap/manifest.json"))
  end)
end)
