-- The backup catalog: list, describe, validate and prune backups on storage,
-- as a library and as commands. Backups are built here with the segment
-- writer, so no broker is needed.
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local codec = require "kalua.codec"
local json = require "kalua.json"
local catalog = require "kalua.catalog"
local proc = require "proc"

-- The kalua under test: KALUA_BIN, else the interpreter busted runs on (--lua).
local KALUA = os.getenv("KALUA_BIN") or arg[-1] or proc.kalua()
local TS0 = 1700000000000
local DAY = 86400

local function kalua(...)
  return proc.run { KALUA, ... }
end

local function lines(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function write_segment(store, id, topic, partition, first, count, codec_name)
  local key = ("%s/topics/%s/%d/%020d.kseg"):format(id, topic, partition, first)
  local w = assert(segment.writer(assert(store:open_writer(key)), { codec = codec_name or "zstd", level = 3 }))
  for o = first, first + count - 1 do
    assert(w:add { offset = o, timestamp = TS0 + o * 1000, timestamp_type = "create", key = "k" .. o,
      value = ("value %d "):format(o):rep(20), headers = { { "n", "v" } } })
  end
  local stats = assert(w:finish())
  stats.key = key
  return stats
end

-- orders: 2 partitions, partition 1 starts after a gap retention left;
-- events: 2 partitions. 8 segments, 235 records.
local LAYOUT = {
  orders = {
    [0] = { segments = { { 0, 50 }, { 50, 50 } } },
    [1] = { segments = { { 10, 30 }, { 40, 30 }, { 70, 30 } }, gaps = { { from = 0, to = 10 } } },
  },
  events = {
    [0] = { segments = { { 0, 20 }, { 20, 20 } } },
    [1] = { segments = { { 0, 5 } } },
  },
}

local function write_manifest(store, id, manifest)
  assert(store:put(id .. "/manifest.json", json.encode(manifest, { indent = "  " }) .. "\n"))
end

local function read_manifest(store, id)
  return assert(json.decode(assert(store:get(id .. "/manifest.json"))))
end

-- Writes a backup with real segments. opts: started, layout, codec, base, groups.
local function make_backup(store, id, opts)
  opts = opts or {}
  local started = opts.started or 1700000000
  local manifest = { backup_id = id, format = 1, started = started, finished = started + 5, topics = {},
    base = opts.base }
  for topic, parts in pairs(opts.layout or LAYOUT) do
    local t = { partition_count = 0, configs = { ["retention.ms"] = "86400000" }, partitions = {} }
    manifest.topics[topic] = t
    for p, spec in pairs(parts) do
      t.partition_count = t.partition_count + 1
      local segs, high = json.array(), 0
      for _, s in ipairs(spec.segments) do
        segs[#segs + 1] = write_segment(store, id, topic, p, s[1], s[2], opts.codec)
        high = math.max(high, s[1] + s[2])
      end
      local gaps = json.array()
      for _, g in ipairs(spec.gaps or {}) do gaps[#gaps + 1] = g end
      t.partitions[tostring(p)] = { low = spec.segments[1] and spec.segments[1][1] or 0, high = high,
        segments = segs, gaps = gaps }
    end
  end
  assert(store:put(id .. "/checkpoint.json", "{}\n"))
  if opts.groups ~= false then
    assert(store:put(("%s/groups/%d.json"):format(id, started + 5), json.encode {
      billing = { state = "Stable", offsets = { { topic = "orders", partition = 0, offset = 42 } } },
      audit = { state = "Empty", offsets = {} },
    }))
  end
  write_manifest(store, id, manifest)
  return manifest
end

-- A backup with only a manifest (for prune), optionally naming a base.
local function make_manifest_only(store, id, started, base)
  assert(store:put(id .. "/topics/t/0/00000000000000000000.kseg", "segment bytes"))
  write_manifest(store, id, { backup_id = id, format = 1, started = started, finished = started + 1, base = base,
    topics = { t = { partition_count = 1, configs = {}, partitions = {} } } })
end

local function ids_of(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.id end
  return out
end

local function backups_on(store)
  return ids_of(assert(catalog.list(store)))
end

local function poke(path, at, bytes)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", at)
  f:write(bytes)
  f:close()
end

describe("kalua catalog", function()
  local dir, store

  before_each(function()
    dir = proc.tmpdir()
    store = assert(storage.open(dir))
  end)

  after_each(function()
    store:close()
    proc.rmdir(dir)
  end)

  describe("list", function()
    it("lists backups oldest first with totals, and incomplete ones as such", function()
      make_backup(store, "nightly-2", { started = 1700090000 })
      make_backup(store, "nightly-1", { started = 1700000000 })
      assert(store:put("running/checkpoint.json", "{}"))
      local list = assert(catalog.list(store))
      assert.are.same({ "nightly-1", "nightly-2", "running" }, ids_of(list))
      local b = list[1]
      assert.is_true(b.complete)
      assert.are.same({ 1700000000, 1700000005, 2, 4, 8, 235 },
        { b.started, b.finished, b.topics, b.partitions, b.segments, b.records })
      assert.is_true(b.bytes > 0 and b.raw_bytes > b.bytes)
      assert.is_false(list[3].complete)
      assert.is_nil(list[3].started)
    end)

    it("prints a table and JSON through the command", function()
      make_backup(store, "nightly-1")
      assert(store:put("running/checkpoint.json", "{}"))
      local r = kalua("list", "--path", dir)
      assert.are.equal(0, r.code, r.stderr)
      local out = lines(r.stdout)
      assert.are.equal(3, #out)
      assert.truthy(out[1]:match("^BACKUP%s+STATUS%s+STARTED"), out[1])
      assert.truthy(out[2]:match("^nightly%-1%s+complete%s+2023%-11%-14T22:13:20Z%s+2023%-11%-14T22:13:25Z%s+2%s+4%s+235%s+%d+$"),
        out[2])
      assert.truthy(out[3]:match("^running%s+incomplete%s+%-"), out[3])

      r = kalua("list", "--path", "file://" .. dir, "--format", "json")
      assert.are.equal(0, r.code, r.stderr)
      local list = assert(json.decode(r.stdout))
      assert.are.same({ "nightly-1", "running" }, ids_of(list))
      assert.are.equal(235, list[1].records)
      assert.is_true(list[1].complete)
      assert.is_false(list[2].complete)
    end)

    it("takes the storage from a config file", function()
      make_backup(store, "nightly-1")
      local cfg = dir .. "-cfg.yaml"
      proc.write_file(cfg, ("storage:\n  backend: filesystem\n  path: %s\n"):format(dir))
      local r = kalua("list", "--config", cfg, "-f", "json")
      os.remove(cfg)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "nightly-1" }, ids_of(json.decode(r.stdout)))
    end)

    it("says so when there are no backups", function()
      local r = kalua("list", "--path", dir)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("no backups\n", r.stdout)
    end)
  end)

  describe("describe", function()
    it("gives per-partition offsets, times, counts, sizes, ratio, gaps and groups", function()
      local m = make_backup(store, "b1")
      local d = assert(catalog.describe(store, "b1"))
      assert.are.same({ 235, 8, 4, 2 }, { d.records, d.segments, d.partitions, #d.topics })
      assert.are.same({ "events", "orders" }, { d.topics[1].name, d.topics[2].name })
      local o1 = d.topics[2].partitions[2]
      assert.are.same({ 1, 10, 99, 90, 3 }, { o1.partition, o1.first_offset, o1.last_offset, o1.records, o1.segments })
      assert.are.same({ TS0 + 10000, TS0 + 99000 }, { o1.first_timestamp, o1.max_timestamp })
      assert.are.same({ { from = 0, to = 10 } }, o1.gaps)
      local bytes, raw = 0, 0
      for _, s in ipairs(m.topics.orders.partitions["1"].segments) do
        bytes, raw = bytes + s.bytes, raw + s.raw_bytes
      end
      assert.are.same({ bytes, raw }, { o1.bytes, o1.raw_bytes })
      assert.are.equal(raw / bytes, o1.ratio)
      assert.is_true(d.ratio > 2, "repetitive values compress well")
      assert.are.equal(d.raw_bytes / d.bytes, d.ratio)
      assert.are.equal(1, #d.groups)
      assert.are.same({ 1700000005, { "audit", "billing" } }, { d.groups[1].time, d.groups[1].groups })
    end)

    it("prints text and JSON, taking the id as a flag or an argument", function()
      make_backup(store, "b1")
      local r = kalua("describe", "--path", dir, "--backup-id", "b1")
      assert.are.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:find("4 partitions, 8 segments, 235 records", 1, true), r.stdout)
      assert.truthy(r.stdout:find("partition 1: offsets 10..99, times 2023-11-14T22:13:30Z..2023-11-14T22:14:59Z, "
        .. "90 records in 3 segments", 1, true), r.stdout)
      assert.truthy(r.stdout:find("gap: offsets 0..9 were gone", 1, true), r.stdout)
      assert.truthy(r.stdout:find("groups at 2023-11-14T22:13:25Z: 2 (audit, billing)", 1, true), r.stdout)
      r = kalua("describe", "--path", dir, "b1", "--format", "json")
      assert.are.equal(0, r.code, r.stderr)
      local d = assert(json.decode(r.stdout))
      assert.are.equal(235, d.records)
      assert.are.equal(100, d.topics[2].partitions[1].records)
    end)
  end)

  describe("validate", function()
    local function key_of(id, topic, p, first)
      return ("%s/topics/%s/%d/%020d.kseg"):format(id, topic, p, first)
    end

    local function validate(...)
      return kalua("validate", "--path", dir, "--backup-id", "b1", ...)
    end

    local function expect_problem(r, text)
      assert.are.equal(1, r.code, r.stdout .. r.stderr)
      local out = lines(r.stdout)
      assert.truthy(out[1]:match("^backup b1 is NOT valid"), out[1])
      assert.truthy(r.stdout:find(text, 1, true), r.stdout)
    end

    it("passes a good backup, shallow and deep", function()
      make_backup(store, "b1")
      local report = assert(catalog.validate(store, "b1", { deep = true }))
      assert.are.same({ ok = true, problems = {}, warnings = {}, segments = 8, records = 235, id = "b1", deep = true },
        report)
      local r = validate()
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
      assert.are.equal("backup b1 is valid (checksums): 8 segments, 235 records, 0 warnings\n", r.stdout)
      r = validate("--deep", "--format", "json")
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
      assert.is_true(json.decode(r.stdout).ok)
    end)

    it("catches a flipped byte through the block checksum", function()
      make_backup(store, "b1")
      local key = key_of("b1", "orders", 0, 50)
      local rd = assert(segment.open(store, key))
      local pos = rd:index()[1].position
      rd:close()
      local path = dir .. "/" .. key
      local byte = proc.read_file(path):byte(pos + 30)
      poke(path, pos + 29, string.char(byte ~ 0xff))
      expect_problem(validate(), ("orders [0]: %s: block 1 at byte %d: checksum mismatch"):format(key, pos))
    end)

    it("catches a truncated segment", function()
      make_backup(store, "b1")
      local key = key_of("b1", "events", 0, 20)
      local data = proc.read_file(dir .. "/" .. key)
      proc.write_file(dir .. "/" .. key, data:sub(1, #data - 30))
      local r = validate()
      expect_problem(r, ("events [0]: segment %s is %d bytes, the manifest says %d"):format(key, #data - 30, #data))
      assert.truthy(r.stdout:find("truncated", 1, true), r.stdout)
    end)

    it("catches a missing segment", function()
      make_backup(store, "b1")
      local key = key_of("b1", "orders", 1, 40)
      assert(store:delete(key))
      expect_problem(validate(), ("orders [1]: segment %s is missing"):format(key))
    end)

    it("catches a record count the manifest gets wrong", function()
      make_backup(store, "b1")
      local m = read_manifest(store, "b1")
      m.topics.events.partitions["1"].segments[1].records = 6
      write_manifest(store, "b1", m)
      expect_problem(validate(), ("events [1]: segment %s holds records 5, the manifest says 6"):format(
        key_of("b1", "events", 1, 0)))
    end)

    it("catches first and last offsets the manifest gets wrong", function()
      make_backup(store, "b1")
      local m = read_manifest(store, "b1")
      m.topics.orders.partitions["0"].segments[2].last_offset = 100
      write_manifest(store, "b1", m)
      expect_problem(validate(), "holds last offset 99, the manifest says 100")
    end)

    it("catches overlapping segments", function()
      make_backup(store, "b1", { layout = { orders = { [0] = { segments = { { 0, 50 }, { 40, 50 } } } } } })
      local r = validate()
      expect_problem(r, ("orders [0]: segments %s (to 49) and %s (from 40) overlap"):format(
        key_of("b1", "orders", 0, 0), key_of("b1", "orders", 0, 40)))
      assert.are.equal(2, #lines(r.stdout))
    end)

    it("warns about an orphan segment but stays valid", function()
      make_backup(store, "b1")
      local orphan = write_segment(store, "b1", "orders", 0, 100, 3)
      local r = validate()
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
      local out = lines(r.stdout)
      assert.are.same({
        "backup b1 is valid (checksums): 8 segments, 235 records, 1 warnings",
        ("warning: orphan segment %s (%d bytes) is not in the manifest"):format(orphan.key, orphan.bytes),
      }, out)
    end)

    it("with --deep, catches a malformed record whose block checksum is right", function()
      make_backup(store, "b1", { codec = "none", layout = { orders = { [0] = { segments = { { 0, 20 } } } } } })
      local key = key_of("b1", "orders", 0, 0)
      local path = dir .. "/" .. key
      local rd = assert(segment.open(store, key))
      local pos = rd:index()[1].position -- 0-based
      rd:close()
      local data = proc.read_file(path)
      local payload_len = string.unpack("<I4", data, pos + 1)
      local payload = data:sub(pos + 25, pos + 24 + payload_len)
      -- first record: i64 offset, i64 timestamp, i8 type, then i32 key length
      payload = payload:sub(1, 17) .. string.pack("<i4", 0x7ffffff0) .. payload:sub(22)
      poke(path, pos + 12, string.pack("<I4", codec.crc32c(payload)))
      poke(path, pos + 24, payload)
      local r = validate()
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
      expect_problem(validate("--deep"), ("orders [0]: %s: block 1 at byte %d: a record is malformed"):format(key, pos))
    end)

    it("reports a missing base backup", function()
      make_backup(store, "b1", { base = "b0", layout = { orders = { [0] = { segments = { { 0, 5 } } } } } })
      expect_problem(validate(), "base backup 'b0' is missing")
    end)
  end)

  describe("prune", function()
    local now = os.time()

    local function make_ages(ages)
      for id, days in pairs(ages) do make_manifest_only(store, id, now - days * DAY) end
    end

    local function prune(...)
      return kalua("prune", "--path", dir, ...)
    end

    it("keeps the newest N: a dry run deletes nothing, --execute deletes the rest", function()
      make_ages { a = 40, b = 30, c = 20, d = 10 }
      local r = prune("--keep-last", "2")
      assert.are.equal(0, r.code, r.stderr)
      local out = lines(r.stdout)
      assert.are.equal("dry run: would delete 2 of 4 backups (add --execute to delete)", out[1])
      assert.truthy(out[2]:match("^would delete a %(old, started "), out[2])
      assert.truthy(out[3]:match("^would delete b "), out[3])
      assert.are.same({ "keep c (one of the newest 2)", "keep d (one of the newest 2)" }, { out[4], out[5] })
      assert.are.same({ "a", "b", "c", "d" }, backups_on(store))

      r = prune("--keep-last", "2", "--execute")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("deleted 2 of 4 backups", lines(r.stdout)[1])
      assert.are.same({ "c", "d" }, backups_on(store))
      assert.are.same({}, store:list("a/"))
      assert.is_true(assert(catalog.validate(store, "c")).ok)
      assert.are.equal("segment bytes", store:get("d/topics/t/0/00000000000000000000.kseg"))
    end)

    it("removes backups older than N days", function()
      make_ages { a = 40, b = 30, c = 20, d = 10 }
      local plan = assert(catalog.prune(store, { older_than_days = 25, dry_run = true }))
      assert.are.same({ "a", "b" }, ids_of(plan.delete))
      assert.are.same({ "a", "b", "c", "d" }, backups_on(store))
      local r = prune("--older-than-days", "25", "--execute")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "c", "d" }, backups_on(store))
      -- with both rules a backup goes only when neither keeps it
      plan = assert(catalog.prune(store, { older_than_days = 5, keep_last = 1, dry_run = true }))
      assert.are.same({ "c" }, ids_of(plan.delete))
      plan = assert(catalog.prune(store, { older_than = 15 * DAY, keep_last = 0, dry_run = true }))
      assert.are.same({ "c" }, ids_of(plan.delete))
    end)

    it("never deletes a base a kept backup builds on, directly or transitively", function()
      make_manifest_only(store, "full-0", now - 50 * DAY)
      make_manifest_only(store, "full-1", now - 40 * DAY)
      make_manifest_only(store, "incr-2", now - 30 * DAY, "full-1")
      make_manifest_only(store, "incr-3", now - 20 * DAY, "incr-2")
      local plan = assert(catalog.prune(store, { keep_last = 1 }))
      assert.are.same({ "full-0" }, ids_of(plan.delete))
      local reasons = {}
      for _, k in ipairs(plan.keep) do reasons[k.id] = k.reason end
      assert.are.same({ ["incr-3"] = "one of the newest 1", ["incr-2"] = "base of incr-3",
        ["full-1"] = "base of incr-2" }, reasons)
      assert.are.same({ "full-1", "incr-2", "incr-3" }, backups_on(store))
      -- once nothing kept builds on them, the chain goes
      make_manifest_only(store, "full-4", now - 10 * DAY)
      local r = prune("--older-than-days", "15", "--execute")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "full-4" }, backups_on(store))
    end)

    it("leaves incomplete backups alone unless asked", function()
      make_ages { a = 40, b = 30 }
      assert(store:put("crashed/checkpoint.json", "{}"))
      assert(store:put("crashed/topics/t/0/00000000000000000000.kseg", "half"))
      os.execute(("touch -d @%d %s/crashed/checkpoint.json %s/crashed/topics/t/0/*.kseg"):format(now - 60 * DAY,
        proc.quote(dir), proc.quote(dir)))
      local r = prune("--keep-last", "0", "--execute")
      assert.are.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:find("keep crashed (incomplete)", 1, true), r.stdout)
      assert.are.same({ "crashed" }, backups_on(store))
      r = prune("--older-than-days", "30", "--include-incomplete", "--execute")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({}, backups_on(store))
    end)

    it("deletes the manifest first, so an interrupted prune leaves an incomplete backup", function()
      make_ages { a = 40, b = 30 }
      local deleted = {}
      local spy_store = setmetatable({
        delete = function(_, key)
          deleted[#deleted + 1] = key
          return store:delete(key)
        end,
      }, { __index = function(_, k) return function(_, ...) return store[k](store, ...) end end })
      assert(catalog.prune(spy_store, { keep_last = 1 }))
      assert.are.same({ "a/manifest.json", "a/topics/t/0/00000000000000000000.kseg" }, deleted)
    end)

    it("refuses without a rule, and when a manifest cannot be read", function()
      local r = prune()
      assert.are.equal(1, r.code)
      assert.are.equal(1, #lines(r.stderr))
      assert.truthy(r.stderr:match("^kalua prune: usage:"), r.stderr)
      r = prune("--keep-last", "two")
      assert.are.equal("kalua prune: --keep-last wants a whole number >= 0, got 'two'\n", r.stderr)
      make_ages { a = 40 }
      assert(store:put("b/manifest.json", "{not json"))
      r = prune("--keep-last", "0", "--execute")
      assert.are.equal(1, r.code)
      assert.are.equal(1, #lines(r.stderr))
      assert.truthy(r.stderr:find("cannot prune: b/manifest.json: corrupt JSON", 1, true), r.stderr)
      assert.are.same({ "a", "b" }, backups_on(store))
    end)
  end)

  describe("bad input", function()
    local function one_line_error(r, command, text)
      assert.are.equal(1, r.code, r.stdout)
      assert.are.equal("", r.stdout)
      assert.are.equal(1, #lines(r.stderr), r.stderr)
      assert.truthy(r.stderr:find("kalua " .. command .. ": ", 1, true), r.stderr)
      assert.truthy(r.stderr:find(text, 1, true), r.stderr)
    end

    it("names a storage path that does not exist, and does not create it", function()
      for _, command in ipairs { "list", "describe", "validate", "prune" } do
        local r = kalua(command, "--path", dir .. "/missing", "--backup-id", "b1")
        if command == "list" then r = kalua(command, "--path", dir .. "/missing") end
        if command == "prune" then r = kalua(command, "--path", dir .. "/missing", "--keep-last", "1") end
        one_line_error(r, command, dir .. "/missing: no such directory")
      end
      assert.is_nil(io.open(dir .. "/missing/.", "r"))
      one_line_error(kalua("list"), "list", "no storage: give --path")
    end)

    it("names an unknown backup id and an incomplete one", function()
      make_backup(store, "b1", { layout = { t = { [0] = { segments = { { 0, 1 } } } } } })
      assert(store:put("running/checkpoint.json", "{}"))
      one_line_error(kalua("describe", "--path", dir, "--backup-id", "nope"), "describe", "no backup 'nope'")
      one_line_error(kalua("validate", "--path", dir, "nope"), "validate", "no backup 'nope'")
      one_line_error(kalua("validate", "--path", dir, "running"), "validate",
        "backup 'running' is incomplete (no manifest.json)")
      one_line_error(kalua("describe", "--path", dir), "describe", "usage: kalua describe")
      one_line_error(kalua("list", "--path", dir, "--format", "xml"), "list", "unknown format 'xml'")
    end)

    it("names a corrupt manifest", function()
      make_backup(store, "b1", { layout = { t = { [0] = { segments = { { 0, 1 } } } } } })
      assert(store:put("bad/manifest.json", '{"backup_id": "bad", '))
      one_line_error(kalua("describe", "--path", dir, "bad"), "describe", "bad/manifest.json: corrupt JSON")
      one_line_error(kalua("validate", "--path", dir, "bad"), "validate", "bad/manifest.json: corrupt JSON")
      -- list still shows the rest, and fails with one line for the corrupt one
      local r = kalua("list", "--path", dir)
      assert.are.equal(1, r.code)
      assert.truthy(r.stdout:find("\nbad%s+corrupt"), r.stdout)
      assert.truthy(r.stdout:find("\nb1%s+complete"), r.stdout)
      assert.are.equal(1, #lines(r.stderr), r.stderr)
      assert.truthy(r.stderr:find("kalua list: bad/manifest.json: corrupt JSON", 1, true), r.stderr)
    end)
  end)
end)
