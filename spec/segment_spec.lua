-- The segment format: records in exactly, records out exactly, damage named.
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local proc = require "proc"

local function sample(n, first)
  local out = {}
  for i = 0, n - 1 do
    out[#out + 1] = {
      offset = first + i * 2, -- gaps, as compaction and transactions leave
      timestamp = 1700000000000 + i * 10,
      timestamp_type = i % 7 == 0 and "log_append" or "create",
      key = i % 3 == 0 and nil or (i % 3 == 1 and "" or ("k\0" .. i)),
      value = i % 5 == 0 and nil or ("v\255"):rep(i),
      headers = { { "h", tostring(i) }, { "h", nil }, { "e", "" } },
    }
  end
  return out
end

local function write_segment(store, key, records, opts)
  local w = assert(segment.writer(assert(store:open_writer(key)), opts))
  for _, r in ipairs(records) do assert(w:add(r)) end
  return assert(w:finish())
end

local function read_all(reader, from)
  local out = {}
  for rec in reader:records(from) do out[#out + 1] = rec end
  return out
end

describe("kalua.segment", function()
  local dir, store

  before_each(function()
    dir = proc.tmpdir()
    store = assert(storage.open(dir))
  end)

  after_each(function()
    store:close()
    proc.rmdir(dir)
  end)

  for _, codec in ipairs { "zstd", "none" } do
    it("round-trips records exactly across many blocks with codec " .. codec, function()
      local records = sample(300, 5000)
      local stats = write_segment(store, "s.kseg", records, { codec = codec, block_bytes = 2048 })
      assert.are.equal(300, stats.records)
      assert.is_true(stats.blocks > 5)
      local r = assert(segment.open(store, "s.kseg"))
      assert.are.same({ records = 300, blocks = stats.blocks, bytes = stats.bytes, codec = codec,
        first_offset = 5000, last_offset = 5598, first_timestamp = 1700000000000, max_timestamp = 1700000002990 },
        r:info())
      assert.are.same(records, read_all(r))
      assert.is_true(r:verify(true))
    end)
  end

  it("seeks to an offset or a time through the index", function()
    write_segment(store, "s.kseg", sample(200, 0), { block_bytes = 1024 })
    local r = assert(segment.open(store, "s.kseg"))
    local block = r:find_offset(301)
    local entry = r:index()[block]
    assert.is_true(entry.first_offset <= 302 and entry.last_offset >= 302)
    local from = read_all(r, 301)
    assert.are.equal(302, from[1].offset)
    assert.are.equal(49, #from)
    local tb = r:find_time(1700000001505)
    assert.is_true(r:index()[tb].max_timestamp >= 1700000001505)
    assert.is_nil(r:find_offset(10 ^ 9))
  end)

  it("publishes nothing until finish, and nothing when abandoned", function()
    local w = assert(segment.writer(assert(store:open_writer("a.kseg"))))
    assert(w:add { offset = 1, value = "x" })
    assert.are.same({}, store:list())
    w:abort()
    do
      local w2 <close> = assert(segment.writer(assert(store:open_writer("b.kseg"))))
      assert(w2:add { offset = 1, value = "y" })
    end
    assert.are.same({}, store:list())
    assert.has_error(function() w:add { offset = 2 } end, "segment writer is finished or aborted")
  end)

  it("writes an empty segment that reads back empty", function()
    write_segment(store, "e.kseg", {})
    local r = assert(segment.open(store, "e.kseg"))
    assert.are.same({ records = 0, blocks = 0, bytes = 40, codec = "zstd" }, r:info())
    assert.are.same({}, read_all(r))
  end)

  describe("damage", function()
    local path

    before_each(function()
      write_segment(store, "d.kseg", sample(100, 0), { block_bytes = 1024 })
      path = dir .. "/d.kseg"
    end)

    local function poke(at, byte)
      local f = assert(io.open(path, "r+b"))
      f:seek("set", at)
      f:write(byte)
      f:close()
    end

    it("names the file, block and byte of a checksum mismatch", function()
      local r = assert(segment.open(store, "d.kseg"))
      local second = r:index()[2].position
      poke(second + 30, "\255")
      local ok, msg, name = r:verify()
      assert.is_nil(ok)
      assert.are.equal("CORRUPT", name)
      assert.are.equal(("d.kseg: block 2 at byte %d: checksum mismatch"):format(second), msg)
      local err = select(2, pcall(read_all, r))
      assert.truthy(tostring(err):find("block 2 at byte", 1, true), err)
    end)

    it("refuses a truncated segment", function()
      local data = proc.read_file(path)
      proc.write_file(path, data:sub(1, #data - 30))
      local r, msg, name = segment.open(store, "d.kseg")
      assert.is_nil(r)
      assert.are.equal("CORRUPT", name)
      assert.truthy(msg:find("d.kseg", 1, true) and msg:find("truncated", 1, true), msg)
    end)

    it("refuses a file that is not a segment, and a missing one", function()
      proc.write_file(path, ("not a segment"):rep(10))
      local r, msg = segment.open(store, "d.kseg")
      assert.is_nil(r)
      assert.truthy(msg:find("bad magic", 1, true), msg)
      local _, _, name = segment.open(store, "missing.kseg")
      assert.are.equal("NOT_FOUND", name)
    end)

    it("catches a damaged index", function()
      local size = #proc.read_file(path)
      poke(size - 24 - 10, "\1")
      local r, msg = segment.open(store, "d.kseg")
      assert.is_nil(r)
      assert.truthy(msg:find("index checksum mismatch", 1, true), msg)
    end)
  end)
end)

describe("kalua.segment with a Kafka consumer batch", function()
  local kafka = require "kalua.kafka"
  local rig = require "rig"

  it("stores consumed records without a Lua table per record, exactly", function()
    local brokers = rig.env("KAFKA_PLAINTEXT")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    local topic = rig.topic("segment")
    assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 1, 50 do
      assert(p:produce { topic = topic, partition = 0, key = i % 2 == 0 and "" or nil, value = ("\0x"):rep(i),
        timestamp = 1700000000000 + i, headers = { { "n", tostring(i) }, { "null", nil } } })
    end
    assert(p:flush(10000))

    local dir = proc.tmpdir()
    local store <close> = assert(storage.open(dir))
    local w = assert(segment.writer(assert(store:open_writer(topic .. "/0/0.kseg")), { block_bytes = 1024 }))
    local c <close> = assert(kafka.consumer { bootstrap_servers = brokers })
    assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
    local consumed = {}
    for _ = 1, 30 do
      local batch = assert(c:poll_batch(100, 500))
      assert(w:add_batch(batch))
      for rec in batch:records() do consumed[#consumed + 1] = rec end
      if #consumed >= 50 then break end
    end
    assert.are.equal(50, assert(w:finish()).records)

    local r = assert(segment.open(store, topic .. "/0/0.kseg"))
    local stored = read_all(r)
    assert.are.equal(50, #stored)
    for i, rec in ipairs(consumed) do
      rec.topic, rec.partition = nil, nil -- a segment's path says which partition it is
      assert.are.same(rec, stored[i])
    end
    assert(admin:delete_topics { topic })
    proc.rmdir(dir)
  end)
end)
