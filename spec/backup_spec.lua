-- kalua backup (snapshot mode) against the rig's broker.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local json = require "kalua.json"
local backup = require "kalua.backup"
local proc = require "proc"
local rig = require "rig"

local function produce(brokers, topic, partitions, n, start)
  local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
  for i = start, start + n - 1 do
    assert(p:produce { topic = topic, partition = i % partitions, key = i % 4 == 0 and nil or ("k" .. i),
      value = i % 9 == 0 and "" or ("value " .. i), timestamp = 1700000000000 + i,
      headers = { { "i", tostring(i) }, { "null", nil } } })
  end
  assert(p:flush(10000))
end

-- Every record of a partition as the segments hold it, in order.
local function stored(store, id, topic, partition)
  local out = {}
  for _, e in ipairs(store:list(("%s/topics/%s/%d/"):format(id, topic, partition))) do
    local r = assert(segment.open(store, e.key))
    assert(r:verify(true))
    for rec in r:records() do out[#out + 1] = rec end
  end
  return out
end

local consumed = rig.read_partition

describe("kalua backup", function()
  local brokers, dir, topic, cfg_path

  before_each(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    topic = rig.topic("backup")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1,
      config = { ["cleanup.policy"] = "delete", ["max.message.bytes"] = "2000000" } } })
    cfg_path = dir .. "/backup.yaml"
    proc.write_file(cfg_path, ([[
mode: backup
backup_id: nightly
source:
  bootstrap_servers: %s
topics:
  include: ["%s"]
storage:
  backend: filesystem
  path: %s/store
backup:
  compression: zstd
  compression_level: 3
  segment_max_records: 40
]]):format(brokers, topic, dir))
  end)

  after_each(function() proc.rmdir(dir) end)

  it("backs up every partition exactly, and resumes with only new records", function()
    produce(brokers, topic, 3, 150, 0)
    local r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1 topics, 3 partitions, 150 new records", 1, true), r.stdout)

    local store <close> = assert(storage.open(dir .. "/store"))
    for p = 0, 2 do assert.are.same(consumed(brokers, topic, p), stored(store, "nightly", topic, p)) end

    local manifest = assert(json.decode(assert(store:get("nightly/manifest.json"))))
    local t = manifest.topics[topic]
    assert.are.equal(3, t.partition_count)
    assert.are.equal("2000000", t.configs["max.message.bytes"])
    assert.are.equal(50, t.partitions["0"].high)
    assert.are.equal(2, #t.partitions["0"].segments) -- 40 + 10 records
    local checkpoint = assert(json.decode(assert(store:get("nightly/checkpoint.json"))))
    assert.are.equal(50, checkpoint.partitions[topic .. "/1"].next_offset)

    r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("0 new records in 0 segments", 1, true), r.stdout)

    produce(brokers, topic, 3, 30, 150)
    r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("30 new records in 3 segments", 1, true), r.stdout)
    for p = 0, 2 do assert.are.same(consumed(brokers, topic, p), stored(store, "nightly", topic, p)) end
  end)

  it("stops at the high watermarks taken at the start", function()
    produce(brokers, topic, 3, 30, 0)
    local cfg = assert(require("kalua.config").load(cfg_path))
    local summary = assert(backup.run(cfg))
    assert.are.equal(30, summary.records)
    produce(brokers, topic, 3, 3, 30)
    local store <close> = assert(storage.open(dir .. "/store"))
    assert.are.equal(10, #stored(store, "nightly", topic, 0))
  end)

  it("selects topics by include and exclude globs, never internal ones by '*'", function()
    local topics = {
      { name = "orders", partitions = {} }, { name = "orders-dlq", partitions = {} },
      { name = "payments", partitions = {} }, { name = "__consumer_offsets", internal = true, partitions = {} },
    }
    local names = function(list)
      local out = {}
      for _, t in ipairs(list) do out[#out + 1] = t.name end
      return out
    end
    assert.are.same({ "orders", "orders-dlq", "payments" }, names(backup.select_topics(topics, {})))
    assert.are.same({ "orders" }, names(backup.select_topics(topics, { include = { "orders*" }, exclude = { "*-dlq" } })))
    assert.are.same({ "__consumer_offsets" }, names(backup.select_topics(topics, { include = { "__consumer_offsets" } })))
  end)

  it("fails with one line on a bad config or an unreachable broker", function()
    proc.write_file(cfg_path, "mode: backup\nbackup_id: x\nsource:\n  bootstrap_servers: a:1\n  securty: {}\nstorage: {backend: filesystem, path: /tmp}\n")
    local r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua backup: [^\n]*backup%.yaml:5:3: unknown key 'securty' in source %(did you mean 'security'%?%)\n$"), r.stderr)
    proc.write_file(cfg_path, ("mode: backup\nbackup_id: x\nsource:\n  bootstrap_servers: 127.0.0.1:1\n  properties: {socket.connection.setup.timeout.ms: 1000}\nstorage: {backend: filesystem, path: %s/s}\n"):format(dir))
    r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua backup: [^\n]+\n$"), r.stderr)
  end)

  it("reads partitions concurrently and closes segments by size", function()
    produce(brokers, topic, 3, 300, 0)
    for _, concurrency in ipairs { 1, 2, 8 } do
      local cfg = assert(require("kalua.config").load(cfg_path))
      cfg.backup_id = "c" .. concurrency
      cfg.backup.segment_max_records = nil
      cfg.backup.segment_max_bytes = 1500
      cfg.backup.max_concurrent_partitions = concurrency
      cfg.backup.batch_size = 10
      local summary = assert(backup.run(cfg))
      assert.are.equal(300, summary.records)
      local store <close> = assert(storage.open(dir .. "/store"))
      for p = 0, 2 do
        assert.are.same(consumed(brokers, topic, p), stored(store, cfg.backup_id, topic, p))
      end
      -- each segment is closed at the first batch (10 records) past 1500 bytes
      local manifest = assert(json.decode(assert(store:get(cfg.backup_id .. "/manifest.json"))))
      local segments = manifest.topics[topic].partitions["0"].segments
      assert.is_true(#segments >= 4, #segments)
      for i = 1, #segments - 1 do assert.is_true(segments[i].records <= 100, segments[i].records) end
    end
  end)

  it("continuous mode keeps backing up new records until it is killed", function()
    proc.write_file(cfg_path, proc.read_file(cfg_path) .. "  continuous: true\n  segment_max_interval_ms: 300\n")
    produce(brokers, topic, 3, 30, 0)
    local clock = require "kalua.clock"
    local pid_file = dir .. "/pid"
    os.execute(("%s backup --config %s >%s/out 2>&1 & echo $! > %s"):format(proc.kalua(), cfg_path, dir, pid_file))
    local store <close> = assert(storage.open(dir .. "/store"))
    -- Waits (at most 30 s) until the manifest holds n records.
    local function wait_for(n)
      local deadline, have = clock.now() + 30, 0
      while clock.now() < deadline do
        local data = store:get("nightly/manifest.json")
        local manifest = data and json.decode(data)
        have = 0
        for _, p in pairs(manifest and manifest.topics[topic].partitions or {}) do
          for _, seg in ipairs(p.segments) do have = have + seg.records end
        end
        if have >= n then return have end
        clock.sleep(0.1)
      end
      return have
    end
    assert.are.equal(30, wait_for(30))
    produce(brokers, topic, 3, 45, 30)
    assert.are.equal(75, wait_for(75))
    os.execute(("kill -9 $(cat %s)"):format(pid_file))
    for p = 0, 2 do assert.are.same(consumed(brokers, topic, p), stored(store, "nightly", topic, p)) end
    local manifest = assert(json.decode(assert(store:get("nightly/manifest.json"))))
    assert.are.equal("continuous", manifest.mode)
  end)

  it("draws a progress line on a terminal and none into a pipe", function()
    produce(brokers, topic, 3, 60, 0)
    -- script(1) gives the command a pseudo-terminal
    local r = proc.run { "script", "-qec", proc.kalua() .. " backup --config " .. proc.quote(cfg_path), "/dev/null" }
    assert.are.equal(0, r.code, r.stdout)
    assert.truthy(r.stdout:find("\r\27%[Kbackup nightly: %d/3 partitions, %d+ records"), r.stdout)
    local piped = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal("", piped.stderr)
  end)

  it("records what retention deleted before it was read as a gap, not a failure", function()
    produce(brokers, topic, 3, 30, 0)
    assert.are.equal(0, proc.run { proc.kalua(), "backup", "--config", cfg_path }.code)
    produce(brokers, topic, 3, 30, 30)
    -- partition 0 held 10 records when backed up; 20 now, the first 15 deleted
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:delete_records { { topic, 0, 15 } })
    local r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("25 new records in %d+ segments %(%d+ bytes%), 1 gaps"), r.stdout)
    local store <close> = assert(storage.open(dir .. "/store"))
    local manifest = assert(json.decode(assert(store:get("nightly/manifest.json"))))
    assert.are.same({ { from = 10, to = 15 } }, manifest.topics[topic].partitions["0"].gaps)
    local offsets = {}
    for _, rec in ipairs(stored(store, "nightly", topic, 0)) do offsets[#offsets + 1] = rec.offset end
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 18, 19 }, offsets)
  end)

  it("fails with one line on a full disk, and resumes once there is room", function()
    do -- 600 KB that does not compress
      local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
      for i = 0, 599 do
        local bytes = {}
        for j = 1, 1000 do bytes[j] = string.char(math.random(0, 255)) end
        assert(p:produce { topic = topic, partition = i % 3, value = table.concat(bytes) })
      end
      assert(p:flush(10000))
    end
    local mnt = dir .. "/small"
    os.execute("mkdir -p " .. proc.quote(mnt))
    assert(os.execute("mount -t tmpfs -o size=96k tmpfs " .. proc.quote(mnt)),
      "mounting a small tmpfs needs root (CI and dev machines run as root)")
    local ok, err = pcall(function()
      proc.write_file(cfg_path, proc.read_file(cfg_path):gsub("path: [^\n]+", "path: " .. mnt))
      local r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:match("^kalua backup: [^\n]*No space left on device\n$"), r.stderr)
      -- what was published before the disk filled is intact and named
      local store <close> = assert(storage.open(mnt))
      local checkpoint = assert(json.decode(assert(store:get("nightly/checkpoint.json"))))
      local published = 0
      for _, p in pairs(checkpoint.partitions) do
        for _, seg in ipairs(p.segments) do
          local rd <close> = assert(segment.open(store, seg.key))
          assert(rd:verify(true))
          published = published + seg.records
        end
      end
      assert.is_true(published > 0 and published < 600, published)
      -- room again: the same backup carries on and ends with every record
      assert(os.execute("mount -o remount,size=16m " .. proc.quote(mnt)))
      r = proc.run { proc.kalua(), "backup", "--config", cfg_path }
      assert.are.equal(0, r.code, r.stderr)
      for p = 0, 2 do assert.are.same(consumed(brokers, topic, p), stored(store, "nightly", topic, p)) end
    end)
    os.execute("umount " .. proc.quote(mnt))
    assert(ok, err)
  end)

  it("fails with one line and no secret on a wrong password", function()
    proc.write_file(cfg_path, ([[
mode: backup
backup_id: sasl
source:
  bootstrap_servers: %s
  security:
    security_protocol: SASL_PLAINTEXT
    sasl_mechanism: SCRAM-SHA-512
    sasl_username: %s
    sasl_password: ${WRONG_PASSWORD}
storage:
  backend: filesystem
  path: %s/store
]]):format(rig.env("KAFKA_SASL_PLAINTEXT"), rig.env("KAFKA_SCRAM_USER"), dir))
    local r = proc.run({ proc.kalua(), "backup", "--config", cfg_path }, { env = { WRONG_PASSWORD = "not-the-s3cret" } })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua backup: [^\n]*SASL authentication[^\n]*\n$"), r.stderr)
    assert.falsy(r.stderr:find("not-the-s3cret", 1, true))
    local store <close> = assert(storage.open(dir .. "/store"))
    assert.are.same({}, store:list("sasl/"))
  end)
end)
