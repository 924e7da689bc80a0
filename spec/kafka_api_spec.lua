-- kalua.kafka's API against the rig's broker (PLAINTEXT): batches, admin,
-- consumer groups and their offsets, positioning, and misuse.
local kafka = require "kalua.kafka"
local rig = require "rig"

local brokers

local function client(extra)
  local conf = { bootstrap_servers = brokers }
  for k, v in pairs(extra or {}) do conf[k] = v end
  return conf
end

local function new_topic(admin, partitions)
  local name = rig.topic("api")
  assert(admin:create_topics { { name = name, partitions = partitions or 1, replication_factor = 1 } })
  return name
end

local function produce_n(topic, n, partition)
  local p <close> = assert(kafka.producer(client()))
  for i = 1, n do
    assert(p:produce { topic = topic, partition = partition or 0, key = "k" .. i, value = "v" .. i,
      timestamp = 1700000000000 + i * 1000, headers = { { "i", tostring(i) } } })
  end
  assert(p:flush(10000))
end

-- Reads until n records arrived (or 30 polls of 500 ms).
local function read_n(consumer, n)
  local got = {}
  for _ = 1, 30 do
    local batch = assert(consumer:poll_batch(1000, 500))
    for r in batch:records() do got[#got + 1] = r end
    if #got >= n then break end
  end
  return got
end

describe("kalua.kafka", function()
  local admin

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    admin = assert(kafka.admin(client()))
  end)

  teardown(function() admin:close() end)

  describe("batches", function()
    it("hold records lazily and describe themselves", function()
      local topic = new_topic(admin)
      produce_n(topic, 5)
      local c <close> = assert(kafka.consumer(client()))
      assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
      local batch
      for _ = 1, 20 do
        batch = assert(c:poll_batch(3, 500))
        if #batch > 0 then break end
      end
      assert.are.equal(3, #batch)
      assert.are.equal(0, batch:first_offset())
      assert.are.equal(2, batch:last_offset())
      assert.are.equal(1, batch:offset(2))
      assert.are.equal(("k1v1k2v2k3v3"):len(), batch:bytes())
      assert.are.equal("v2", batch:record(2).value)
      assert.truthy(tostring(batch):find("3 records, offsets 0..2", 1, true))
      assert.has_error(function() batch:record(4) end)
    end)

    it("go from a consumer into a producer unchanged, without Lua tables", function()
      local from, to = new_topic(admin, 2), new_topic(admin, 2)
      produce_n(from, 4, 1)
      local c <close> = assert(kafka.consumer(client()))
      assert(c:assign { { topic = from, partition = 1, offset = "beginning" } })
      local p <close> = assert(kafka.producer(client()))
      local sent = 0
      for _ = 1, 20 do
        local batch = assert(c:poll_batch(100, 500))
        sent = sent + assert(p:produce_batch(batch, { topic = to }))
        if sent >= 4 then break end
      end
      assert(p:flush(10000))
      local check <close> = assert(kafka.consumer(client()))
      assert(check:assign { { topic = to, partition = 1, offset = "beginning" } })
      local got = read_n(check, 4)
      assert.are.equal(4, #got)
      for i, r in ipairs(got) do
        assert.are.same({ "k" .. i, "v" .. i, 1700000000000 + i * 1000, { { "i", tostring(i) } } },
          { r.key, r.value, r.timestamp, r.headers })
      end
    end)

    it("are emptied, not leaked, when their consumer closes first", function()
      local topic = new_topic(admin)
      produce_n(topic, 2)
      local c = assert(kafka.consumer(client()))
      assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
      local batch
      for _ = 1, 20 do
        batch = assert(c:poll_batch(10, 500))
        if #batch > 0 then break end
      end
      assert.is_true(#batch > 0)
      c:close()
      assert.are.equal(0, #batch)
    end)
  end)

  describe("producers", function()
    for _, codec in ipairs { "none", "gzip", "snappy", "lz4", "zstd" } do
      it("round-trip idempotently with compression " .. codec, function()
        local topic = new_topic(admin)
        local p <close> = assert(kafka.producer(client { idempotence = true, compression = codec, acks = "all" }))
        for i = 1, 50 do assert(p:produce { topic = topic, partition = 0, value = ("record %d "):format(i):rep(20) }) end
        assert(p:flush(10000))
        local c <close> = assert(kafka.consumer(client()))
        assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
        local got = read_n(c, 50)
        assert.are.equal(50, #got)
        assert.are.equal(("record 50 "):rep(20), got[50].value)
      end)
    end

    it("report a failed delivery through flush", function()
      local p <close> = assert(kafka.producer(client { ["message.timeout.ms"] = 2000 }))
      assert(p:produce { topic = rig.topic("api-nopart"), partition = 7, value = "x" })
      local ok, msg, name = p:flush(10000)
      assert.is_nil(ok)
      assert.are.equal("_UNKNOWN_PARTITION", name, msg)
      local d = p:deliveries()
      assert.are.equal("_UNKNOWN_PARTITION", d[1].error)
    end)
  end)

  describe("consumers", function()
    it("start at an offset, a timestamp or the end", function()
      local topic = new_topic(admin)
      produce_n(topic, 5)
      local c <close> = assert(kafka.consumer(client()))
      assert(c:assign { { topic = topic, partition = 0, offset = 3 } })
      assert.are.equal("v4", read_n(c, 1)[1].value)
      assert(c:assign { { topic = topic, partition = 0, offset = { timestamp = 1700000002500 } } })
      assert.are.equal("v3", read_n(c, 1)[1].value)
      assert(c:assign { { topic = topic, partition = 0, offset = "end" } })
      assert.are.equal(0, #assert(c:poll_batch(10, 500)))
    end)

    it("seek, pause and resume", function()
      local topic = new_topic(admin)
      produce_n(topic, 5)
      local c <close> = assert(kafka.consumer(client()))
      assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
      assert.are.equal(5, #read_n(c, 5))
      assert(c:seek(topic, 0, 1))
      assert.are.equal("v2", read_n(c, 1)[1].value)
      assert(c:pause { { topic, 0 } })
      assert(c:seek(topic, 0, 0))
      assert.are.equal(0, #assert(c:poll_batch(10, 300)))
      assert(c:resume { { topic, 0 } })
      assert.are.equal("v1", read_n(c, 1)[1].value)
    end)

    it("report partition ends when asked", function()
      local topic = new_topic(admin)
      produce_n(topic, 1)
      local c <close> = assert(kafka.consumer(client { partition_eof = true }))
      assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
      local seen_record, seen_eof
      for _ = 1, 40 do
        local r = c:poll(250)
        if r and r.eof then seen_eof = r break end
        if r then seen_record = r end
      end
      assert.are.equal("v1", seen_record.value)
      assert.are.same({ eof = true, topic = topic, partition = 0, offset = 1 }, seen_eof)
    end)

    it("subscribe in a group, commit, and the group's offsets are visible to admin", function()
      local topic = new_topic(admin, 2)
      produce_n(topic, 3, 0)
      local group = rig.topic("group")
      local c = assert(kafka.consumer(client { group_id = group, ["auto.offset.reset"] = "earliest" }))
      assert(c:subscribe { topic })
      local got = read_n(c, 3)
      assert.are.equal(3, #got)
      assert(c:commit())
      assert.are.same({ { topic = topic, partition = 0, offset = 3 } }, c:committed { { topic, 0 } })
      assert.are.equal(3, c:position { { topic, 0 } }[1].offset)

      local listed = assert(admin:list_groups())
      local found
      for _, g in ipairs(listed) do if g.group_id == group then found = g end end
      assert.is_table(found)
      local described = assert(admin:describe_groups { group })[1]
      assert.are.equal("Stable", described.state)
      assert.are.equal(1, #described.members)

      -- Moving a group's offsets needs it empty.
      local ok, msg, name = admin:alter_group_offsets(group, { { topic, 0, 1 } })
      assert.is_nil(ok)
      assert.are.equal("UNKNOWN_MEMBER_ID", name, msg)
      c:close()
      assert(admin:alter_group_offsets(group, { { topic, 0, 1 } }))
      local offsets = assert(admin:list_group_offsets(group))
      local p0
      for _, o in ipairs(offsets) do if o.partition == 0 then p0 = o end end
      assert.are.equal(1, p0.offset)
      assert(admin:delete_groups { group })
    end)
  end)

  describe("admin", function()
    it("creates, describes and deletes topics", function()
      local topic = rig.topic("admin")
      assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1, config = { ["cleanup.policy"] = "compact" } } })
      local ok, msg, name = admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } }
      assert.is_nil(ok)
      assert.are.equal("TOPIC_ALREADY_EXISTS", name, msg)
      -- A new partition's leader takes a moment to be known everywhere.
      local md
      for _ = 1, 40 do
        md = assert(admin:metadata { topic = topic, watermarks = true })[1]
        if md.partitions[1] and md.partitions[1].high then break end
        os.execute("sleep 0.25")
      end
      assert.are.equal(3, #md.partitions)
      assert.are.same({ 0, 0 }, { md.partitions[1].low, md.partitions[1].high })
      local cfg = assert(admin:describe_configs { { type = "topic", name = topic } })[topic]
      assert.are.equal("compact", cfg["cleanup.policy"].value)
      assert.is_false(cfg["cleanup.policy"].is_default)
      assert(admin:delete_topics { topic })
      assert.are.equal("UNKNOWN_TOPIC_OR_PART", admin:metadata { topic = topic }[1].error)
    end)

    it("lists brokers, watermarks and offsets for times", function()
      local topic = new_topic(admin)
      produce_n(topic, 3)
      local brokers_list = assert(admin:brokers())
      assert.are.equal(1, #brokers_list)
      assert.are.same({ 0, 3 }, { admin:watermarks(topic, 0) })
      local found = assert(admin:offsets_for_times { { topic = topic, partition = 0, timestamp = 1700000001500 } })
      assert.are.equal(1, found[1].offset)
      local configs = assert(admin:describe_configs { { type = "broker", name = "1" } })
      assert.is_table(configs["1"]["log.dirs"])
    end)
  end)

  describe("transactions", function()
    local function txn_producer(extra)
      return assert(kafka.producer(client(rig.with({ ["transactional.id"] = rig.topic("txn") }, extra or {}))))
    end

    local function values(records)
      local out = {}
      for i, r in ipairs(records) do out[i] = r.value end
      return out
    end

    it("commit makes records visible to a read_committed consumer", function()
      local topic = new_topic(admin)
      local p <close> = txn_producer()
      assert(p:init_transactions(30000))
      assert(p:begin_transaction())
      for i = 1, 3 do assert(p:produce { topic = topic, partition = 0, value = "committed " .. i }) end
      assert(p:commit_transaction(30000))
      local c <close> = assert(kafka.consumer(client { isolation_level = "read_committed" }))
      assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
      assert.are.same({ "committed 1", "committed 2", "committed 3" }, values(read_n(c, 3)))
    end)

    it("abort hides them, even once they are in the log", function()
      local topic = new_topic(admin)
      local p <close> = txn_producer()
      assert(p:init_transactions(30000))
      assert(p:begin_transaction())
      for i = 1, 3 do assert(p:produce { topic = topic, partition = 0, value = "aborted " .. i }) end
      assert(p:flush(10000)) -- written to the log, not yet committed
      assert(p:abort_transaction(30000))
      assert(p:flush(10000)) -- the aborted records are not reported as failed deliveries
      assert(p:begin_transaction())
      assert(p:produce { topic = topic, partition = 0, value = "after" })
      assert(p:commit_transaction(30000))

      local committed <close> = assert(kafka.consumer(client())) -- read_committed by default
      assert(committed:assign { { topic = topic, partition = 0, offset = "beginning" } })
      local got = read_n(committed, 1)
      assert.are.same({ "after" }, values(got))
      assert.are.equal(0, #assert(committed:poll_batch(10, 500)))

      local uncommitted <close> = assert(kafka.consumer(client { isolation_level = "read_uncommitted" }))
      assert(uncommitted:assign { { topic = topic, partition = 0, offset = "beginning" } })
      assert.are.same({ "aborted 1", "aborted 2", "aborted 3", "after" }, values(read_n(uncommitted, 4)))
    end)

    it("report a failed call with what to do next", function()
      local p <close> = assert(kafka.producer { bootstrap_servers = "127.0.0.1:1", ["transactional.id"] = rig.topic("txn") })
      local ok, msg, name, what = p:init_transactions(1000)
      assert.is_nil(ok)
      assert.are.equal("_TIMED_OUT", name, msg)
      assert.truthy(msg:find("^init_transactions: .*%(retriable: call again%)$"), msg)
      assert.are.same({ retriable = true, txn_requires_abort = false, fatal = false }, what)
    end)

    it("raise when used out of order or without a transactional.id", function()
      local p <close> = txn_producer()
      assert.has_error(function() p:begin_transaction() end,
        "begin_transaction: Operation not valid in state Init (the order is init_transactions once, "
          .. "then begin_transaction and commit_transaction or abort_transaction)")
      assert(p:init_transactions(30000))
      assert.has_error(function() p:commit_transaction() end)
      assert.has_error(function() p:init_transactions() end)
      local plain <close> = assert(kafka.producer(client()))
      local ok, err = pcall(plain.init_transactions, plain)
      assert.is_false(ok)
      assert.truthy(err:find('set ["transactional.id"]', 1, true), err)
      assert.has_error(function() plain:begin_transaction() end)
    end)
  end)

  describe("misuse", function()
    it("raises on wrong argument types", function()
      local p <close> = assert(kafka.producer(client()))
      assert.has_error(function() p:produce("not a table") end)
      assert.has_error(function() p:produce { value = "no topic" } end)
      assert.has_error(function() p:produce { topic = "t", headers = { "not a pair" } } end)
      assert.has_error(function() kafka.consumer("nope") end)
      local c <close> = assert(kafka.consumer(client()))
      assert.has_error(function() c:assign { { topic = "t", partition = 0, offset = "middle" } } end)
      assert.has_error(function() c:poll_batch(0) end)
    end)

    it("raises on a closed object, and closing twice is fine", function()
      local p = assert(kafka.producer(client()))
      p:close()
      p:close()
      assert.has_error(function() p:produce { topic = "t", value = "x" } end, "producer is closed")
      assert.are.equal("kalua.kafka.Producer (closed)", tostring(p))
      local a = assert(kafka.admin(client()))
      a:close()
      assert.has_error(function() a:metadata() end, "admin client is closed")
    end)

    it("names a bad librdkafka property", function()
      local p, msg, name = kafka.producer(client { ["no.such.property"] = "1" })
      assert.is_nil(p)
      assert.are.equal("_INVALID_ARG", name)
      assert.truthy(msg:find("no.such.property", 1, true), msg)
    end)
  end)
end)
