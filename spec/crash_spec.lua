-- Crash safety: kill -9 kalua backup and kalua restore at random points,
-- run them again, and every source record is there exactly once.
-- KALUA_CRASH_TRIALS sets the number of kills per command (default 10);
-- tools/crash-soak runs many more.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local clock = require "kalua.clock"
local json = require "kalua.json"
local proc = require "proc"
local configs = require "configs"
local rig = require "rig"

local TRIALS = tonumber(os.getenv("KALUA_CRASH_TRIALS")) or 10
local PARTITIONS, PER_PARTITION = 4, 4000

-- Runs argv in the background, kills it with SIGKILL after `delay` seconds.
-- Returns true when the kill landed (the process was still running).
local function run_and_kill(argv, delay)
  local words = {}
  for i, a in ipairs(argv) do words[i] = proc.quote(a) end
  local script = ("exec 2>/dev/null; %s >/dev/null 2>&1 & pid=$!; sleep %.3f; kill -9 $pid 2>/dev/null; wait $pid; echo $?")
    :format(table.concat(words, " "), delay)
  local p = assert(io.popen(script))
  local status = tonumber(p:read("a"):match("%d+"))
  p:close()
  return status == 137
end

-- Runs argv to completion, returning its duration in seconds.
local function timed(argv)
  local started = clock.now()
  local r = proc.run(argv)
  assert(r.code == 0, r.stderr)
  return clock.now() - started, r
end

-- Asserts got is want, naming the first difference instead of dumping
-- thousands of records: a duplicate or a gap shows as where it starts.
local function same_records(want, got, what)
  for i = 1, math.max(#want, #got) do
    if want[i] ~= got[i] then
      error(("%s: %d records where %d were expected; first difference at #%d: expected %s, got %s"):format(
        what, #got, #want, i, tostring(want[i]):sub(1, 24), tostring(got[i]):sub(1, 24)), 2)
    end
  end
end

-- Values of one partition, in order, from the broker.
local function values(brokers, topic, partition)
  local out = {}
  for i, rec in ipairs(rig.read_partition(brokers, topic, partition)) do out[i] = rec.value end
  return out
end

describe("crash safety (kill -9) #noasan", function()
  local brokers, dir, source, source_values

  local function backup_config(id)
    return configs.write(("%s/backup-%s.yaml"):format(dir, id), { mode = "backup", backup_id = id,
      source = { bootstrap_servers = brokers }, topics = { include = { source } },
      storage = configs.fs(dir .. "/store"), backup = { segment_max_records = 300 } })
  end

  local function restore_config(id, target)
    return configs.write(("%s/restore-%s.yaml"):format(dir, target), { mode = "restore", backup_id = id,
      target = { bootstrap_servers = brokers }, storage = configs.fs(dir .. "/store"),
      restore = { topic_mapping = { [source] = target } } })
  end

  -- Every record the backup's manifest names, per partition, as offsets and values.
  local function backed_up(id)
    local store <close> = assert(storage.open { backend = "filesystem", path = dir .. "/store" })
    local manifest = assert(json.decode(assert(store:get(id .. "/manifest.json"))))
    local out = {}
    for p = 0, PARTITIONS - 1 do
      local got = {}
      for _, seg in ipairs(manifest.topics[source].partitions[tostring(p)].segments) do
        local r <close> = assert(segment.open(store, seg.key))
        assert(r:verify(true))
        for rec in r:records() do got[#got + 1] = rec.value end
      end
      out[p] = got
    end
    return out
  end

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    source = rig.topic("crash")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = source, partitions = PARTITIONS, replication_factor = 1 } })
    -- Idempotent, so a retried batch cannot land after a later one: on a
    -- loaded machine a plain producer's retries reorder the source itself.
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers, idempotence = true, acks = "all" })
    for i = 0, PARTITIONS * PER_PARTITION - 1 do
      local v = ("record %d %s"):format(i, ("x"):rep(100 + i % 50))
      assert(p:produce { topic = source, partition = i % PARTITIONS, key = tostring(i), value = v })
    end
    assert(p:flush(30000))
    -- What a backup must hold is the source as the broker has it.
    source_values = {}
    for part = 0, PARTITIONS - 1 do
      source_values[part] = values(brokers, source, part)
      assert.are.equal(PER_PARTITION, #source_values[part])
    end
  end)

  teardown(function() proc.rmdir(dir) end)

  it(("backup: %d kills, each resumed, hold every record exactly once"):format(TRIALS), function()
    local full = timed { proc.kalua(), "backup", "--config", backup_config("uninterrupted") }
    local landed, kills = 0, 0
    for trial = 1, TRIALS do
      local id = "killed-" .. trial
      local cfg = backup_config(id)
      -- Kill somewhere inside an uninterrupted run's span, and sometimes twice.
      for _ = 1, 1 + trial % 2 do
        kills = kills + 1
        if run_and_kill({ proc.kalua(), "backup", "--config", cfg }, 0.05 + math.random() * full * 0.9) then
          landed = landed + 1
        end
      end
      timed { proc.kalua(), "backup", "--config", cfg }
      local got = backed_up(id)
      for p = 0, PARTITIONS - 1 do
        same_records(source_values[p], got[p], ("backup trial %d partition %d"):format(trial, p))
      end
      local v = proc.run { proc.kalua(), "validate", "--path", dir .. "/store", id }
      assert.are.equal(0, v.code, v.stdout .. v.stderr)
    end
    assert.is_true(landed >= 1, "no kill landed while the backup ran")
    print(("\n  backup: %d of %d kills landed mid-run (uninterrupted run %.2f s)"):format(landed,
      kills, full))
  end)

  it(("restore: %d kills, each resumed, write every record exactly once"):format(TRIALS), function()
    timed { proc.kalua(), "backup", "--config", backup_config("for-restore") }
    local full = timed { proc.kalua(), "restore", "--config", restore_config("for-restore", rig.topic("crash-full")) }
    local landed, kills = 0, 0
    for trial = 1, TRIALS do
      local target = rig.topic("crash-restored")
      local cfg = restore_config("for-restore", target)
      for _ = 1, 1 + trial % 2 do
        kills = kills + 1
        if run_and_kill({ proc.kalua(), "restore", "--config", cfg }, 0.05 + math.random() * full * 0.9) then
          landed = landed + 1
        end
      end
      timed { proc.kalua(), "restore", "--config", cfg }
      for p = 0, PARTITIONS - 1 do
        same_records(source_values[p], values(brokers, target, p), ("restore trial %d partition %d"):format(trial, p))
      end
    end
    assert.is_true(landed >= 1, "no kill landed while the restore ran")
    print(("\n  restore: %d of %d kills landed mid-run (uninterrupted run %.2f s)"):format(landed,
      kills, full))
  end)
end)
