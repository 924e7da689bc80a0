-- kalua status: a backup's progress from its manifest and checkpoint.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local json = require "kalua.json"
local clock = require "kalua.clock"
local status = require "kalua.status"
local proc = require "proc"
local configs = require "configs"
local rig = require "rig"

local function segment(id, topic, p, first, last, bytes)
  return { key = ("%s/topics/%s/%d/%020d.kseg"):format(id, topic, p, first), first_offset = first,
    last_offset = last, records = last - first + 1, bytes = bytes or 100, first_timestamp = 1779000000000,
    max_timestamp = 1779000000000 + last }
end

describe("kalua status", function()
  local dir, store

  before_each(function()
    dir = proc.tmpdir()
    store = assert(storage.open(dir .. "/store"))
  end)

  after_each(function()
    store:close()
    proc.rmdir(dir)
  end)

  -- A backup "b" half way: partition 0 done (100 of 100), 1 at 40 of 80 with a gap.
  local function half_way(mode, with_manifest)
    local segs0 = json.array { segment("b", "orders", 0, 0, 49), segment("b", "orders", 0, 50, 99) }
    local segs1 = json.array { segment("b", "orders", 1, 5, 39, 70) }
    local gaps1 = json.array { { from = 0, to = 5 } }
    assert(store:put("b/checkpoint.json", json.encode { partitions = {
      ["orders/0"] = { next_offset = 100, segments = segs0, gaps = json.array() },
      ["orders/1"] = { next_offset = 40, segments = segs1, gaps = gaps1 } } }))
    if with_manifest ~= false then
      assert(store:put("b/manifest.json", json.encode { backup_id = "b", format = 1, mode = mode, started = 1779000000,
        finished = 1779000100, cluster_id = "c-1", topics = { orders = { partition_count = 2, partitions = {
          ["0"] = { low = 0, high = 100, segments = segs0, gaps = json.array() },
          ["1"] = { low = 0, high = 80, segments = json.array(), gaps = gaps1 } } } } }))
    end
  end

  local function age_checkpoint(seconds)
    os.execute(("touch -d @%d %s"):format(os.time() - seconds, proc.quote(dir .. "/store/b/checkpoint.json")))
  end

  local function run(...)
    return proc.run { proc.kalua(), "status", "--path", dir .. "/store", ... }
  end

  it("shows partitions done, records, bytes, segments and gaps of a stopped snapshot", function()
    half_way("snapshot")
    age_checkpoint(3600)
    local r = run("--backup-id", "b")
    assert.are.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal("backup b (snapshot, cluster c-1)", lines[1])
    assert.are.equal("  state:      incomplete: stopped or crashed before the end; run the backup again to resume", lines[2])
    assert.truthy(lines[3]:match("^  checkpoint: %d+%-%d+%-%d+T%d+:%d+:%d+Z %(60m ago%)$"), lines[3])
    assert.are.equal("  started:    2026-05-17T06:40:00Z; manifest written 2026-05-17T06:41:40Z", lines[4])
    assert.are.equal("  progress:   1 topics, 1/2 partitions done, 135 records, 270 B in 3 segments, 1 gaps", lines[5])
    assert.are.equal("  newest record: 2026-05-17T06:40:00Z", lines[6])
    assert.are.equal("  topic orders: 1/2 partitions done, 135 records, 270 B in 3 segments", lines[7])
    assert.are.equal("    partition 1: next offset 40 of 80, 35 records in 1 segments", lines[8])
    assert.are.equal("      gap: offsets 0..4 were deleted before the backup read them", lines[9])
    assert.are.equal(9, #lines)

    r = run("--backup-id", "b", "--format", "json")
    assert.are.equal(0, r.code, r.stderr)
    local s = assert(json.decode(r.stdout))
    assert.are.same({ topics = 1, partitions = 2, done = 1, records = 135, bytes = 270, segments = 3, gaps = 1 }, s.totals)
    assert.are.equal("incomplete", s.state)
    assert.is_false(s.active)
  end)

  it("tells running, idle, complete and not-yet-planned backups apart", function()
    half_way("continuous")
    assert.are.equal("running", assert(status.read(store, "b")).state)
    age_checkpoint(600)
    assert.are.equal("idle", assert(status.read(store, "b")).state)
    assert.are.equal("running", assert(status.read(store, "b", { active_within = 3600 })).state)
    local r = run("--backup-id", "b")
    assert.truthy(r.stdout:find("state:      idle: continuous, and no run is active", 1, true), r.stdout)

    proc.rmdir(dir .. "/store/b")
    half_way(nil, false) -- a first run that has not written its manifest yet
    local s = assert(status.read(store, "b"))
    assert.are.equal("running", s.state)
    assert.are.equal(0, s.totals.done)
    r = run("b")
    assert.truthy(r.stdout:find("backup b (no manifest yet)", 1, true), r.stdout)
    assert.truthy(r.stdout:find("partition 0: next offset 100 (no target until the manifest is written)", 1, true), r.stdout)
    age_checkpoint(3600)
    assert.are.equal("incomplete", assert(status.read(store, "b")).state)
  end)

  it("fails with one line for a backup the storage does not have", function()
    local r = run("--backup-id", "nope")
    assert.are.equal(1, r.code)
    assert.are.equal("kalua status: no backup 'nope' in this storage\n", r.stderr)
    r = proc.run { proc.kalua(), "status", "--path", dir .. "/missing", "--backup-id", "b" }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("no such directory", 1, true), r.stderr)
    assert(store:put("bad/manifest.json", "{"))
    r = run("--backup-id", "bad")
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua status: bad/manifest%.json: corrupt JSON"), r.stderr)
    r = proc.run { proc.kalua(), "status", "--path", dir .. "/store" }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("usage: kalua status", 1, true), r.stderr)
  end)

  it("takes storage URLs: file:// and s3://", function()
    half_way("snapshot")
    local r = proc.run { proc.kalua(), "status", "--path", "file://" .. dir .. "/store", "--backup-id", "b" }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1/2 partitions done", 1, true), r.stdout)

    local endpoint, bucket = rig.env("KALUA_RIG_S3_ENDPOINT"), rig.env("KALUA_RIG_S3_BUCKET")
    local prefix = rig.topic("status")
    local s3 <close> = assert(storage.open { backend = "s3", bucket = bucket, prefix = prefix, endpoint = endpoint,
      region = rig.env("KALUA_RIG_S3_REGION"), access_key = rig.env("KALUA_RIG_S3_ACCESS_KEY"),
      secret_key = rig.env("KALUA_RIG_S3_SECRET_KEY") })
    for _, key in ipairs { "b/manifest.json", "b/checkpoint.json" } do assert(s3:put(key, assert(store:get(key)))) end
    r = proc.run({ proc.kalua(), "status", "--path", ("s3://%s/%s"):format(bucket, prefix), "--backup-id", "b" }, {
      env = { AWS_ACCESS_KEY_ID = rig.env("KALUA_RIG_S3_ACCESS_KEY"), AWS_SECRET_ACCESS_KEY = rig.env("KALUA_RIG_S3_SECRET_KEY"),
        AWS_ENDPOINT_URL_S3 = endpoint, AWS_REGION = rig.env("KALUA_RIG_S3_REGION"), AWS_SESSION_TOKEN = false,
        AWS_PROFILE = false, AWS_EC2_METADATA_DISABLED = "true" } })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("progress:   1 topics, 1/2 partitions done, 135 records", 1, true), r.stdout)
    assert.truthy(r.stdout:find("state:      running", 1, true), r.stdout) -- S3's Last-Modified is now
  end)

  it("follows a live continuous backup with --watch until interrupted", function()
    local brokers = rig.env("KAFKA_PLAINTEXT")
    local topic = rig.topic("status")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
    local function produce(n, start)
      local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
      for i = start, start + n - 1 do assert(p:produce { topic = topic, partition = i % 2, value = "v" .. i }) end
      assert(p:flush(10000))
    end
    produce(100, 0)
    local cfg = configs.write(dir .. "/live.yaml", { mode = "backup", backup_id = "live",
      source = { bootstrap_servers = brokers }, topics = { include = { topic } }, storage = configs.fs(dir .. "/store"),
      backup = { continuous = true, segment_max_interval_ms = 200 } })
    local backup = proc.spawn { proc.kalua(), "backup", "--config", cfg }
    local watch
    local ok, err = pcall(function()
      local function records(text)
        local n
        for m in text:gmatch("progress:   %d+ topics, %d+/%d+ partitions done, (%d+) records") do n = tonumber(m) end
        return n
      end
      watch = proc.spawn { proc.kalua(), "status", "--path", dir .. "/store", "--backup-id", "live", "--watch",
        "--interval", "0.1" }
      local deadline = clock.now() + 30
      while (records(watch:stdout()) or 0) < 100 and clock.now() < deadline do clock.sleep(0.05) end
      assert.are.equal(100, records(watch:stdout()), watch:stdout() .. watch:stderr())
      produce(50, 100)
      while (records(watch:stdout()) or 0) < 150 and clock.now() < deadline do clock.sleep(0.05) end
      assert.are.equal(150, records(watch:stdout()), watch:stdout())
      local text = watch:stdout()
      assert.truthy(text:find("state:      running", 1, true), text)
      assert.truthy(text:find("backup live (continuous", 1, true), text)
      assert(watch:kill("INT"))
      assert.are.equal(0, watch:wait(10), watch:stderr())
      assert(backup:kill("TERM"))
      assert.are.equal(0, backup:wait(30), backup:stderr())
    end)
    if watch then watch:cleanup() end
    backup:cleanup()
    assert(ok, err)
  end)

  it("has help that says what it does", function()
    local r = proc.run { proc.kalua(), "help", "status" }
    assert.are.equal(0, r.code)
    assert.truthy(r.stdout:find("^Show a backup's progress"), r.stdout)
    for _, flag in ipairs { "--path", "--backup-id", "--watch", "--interval", "s3://" } do
      assert.truthy(r.stdout:find(flag, 1, true), flag)
    end
  end)
end)
