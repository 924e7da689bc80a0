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
end)
