-- The whole trip, against the rig's broker: a varied topic is backed up with
-- `kalua backup`, restored under a new name with `kalua restore`, and both
-- topics are read back with kcat (not kalua) and compared record by record.
--
-- Why kcat with `-f '%p %o %K %S %T\n%k%s\n%h\n'`: %K and %S are the key and
-- value lengths (-1 for null), so keys and values are cut by length and are
-- byte-exact, NULs and newlines included. %h prints headers as name=value
-- joined by ',', with a null value as `NULL` and an empty one as nothing, so
-- null and empty stay distinct as long as header names and values hold no
-- ',', '=' or newline and no value is the text NULL: the data set keeps to
-- that and `header` below checks it. (Kafka's ConsoleConsumer has the same
-- delimiter limits for headers and prints keys and values without lengths.)
local kafka = require "kalua.kafka"
local proc = require "proc"
local configs = require "configs"
local rig = require "rig"

local PARTITIONS = 8
local LARGE = 1500000 -- near the topic's max.message.bytes of 2000000
local T0 = 1700000000000

local function header(name, value)
  for _, s in ipairs { name, value } do
    assert(not s:find("[,=\n]") and s ~= "NULL", "header text kcat's %h cannot show exactly: " .. s)
  end
  return { name, value }
end

local function null_header(name)
  assert(not name:find("[,=\n]"))
  return { name, nil }
end

local function all_bytes(reverse)
  local t = {}
  for b = 0, 255 do t[#t + 1] = string.char(reverse and 255 - b or b) end
  return table.concat(t)
end

-- Deterministic binary filler (a small LCG), n bytes.
local function filler(n, seed)
  local t, x = {}, seed
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = x >> 16 & 0xff
  end
  local parts = {}
  for i = 1, n, 4096 do parts[#parts + 1] = string.char(table.unpack(t, i, math.min(i + 4095, n))) end
  return table.concat(parts)
end

-- The records written outside transactions, per partition, in order.
local function plain_records(p)
  local ts = T0 + p * 100000
  local recs = {
    { key = all_bytes(), value = all_bytes(true) .. "\0\0middle\0" .. all_bytes() },
    { key = nil, value = "null key " .. p },
    { key = "", value = "empty key " .. p },
    { key = "tombstone " .. p, value = nil },
    { key = "empty value " .. p, value = "" },
    { key = nil, value = nil },
    { key = "\0", value = "\n\r\0\255",
      headers = { header("h", "one"), null_header("h"), header("h", ""), header("other", "x y"), header("h", "two") } },
    { key = "only null header", value = "v", headers = { null_header("n") } },
    { key = "only empty header", value = "v", headers = { header("e", "") } },
  }
  if p % 3 == 0 then
    recs[#recs + 1] = { key = "large " .. p, value = filler(LARGE, p + 1), headers = { header("size", tostring(LARGE)) } }
  end
  for i, r in ipairs(recs) do r.timestamp = ts + i end
  return recs
end

local function produce_all(p, recs, topic, partition)
  for _, r in ipairs(recs) do
    assert(p:produce { topic = topic, partition = partition, key = r.key, value = r.value,
      headers = r.headers or {}, timestamp = r.timestamp })
  end
end

-- Produces the data set and returns what a read_committed reader must see,
-- per partition (index p + 1).
local function produce_data_set(brokers, topic)
  local expected = {}
  local big = { bootstrap_servers = brokers, ["message.max.bytes"] = 3000000, idempotence = true, acks = "all" }
  do
    local p <close> = assert(kafka.producer(big))
    for part = 0, PARTITIONS - 1 do
      expected[part + 1] = plain_records(part)
      produce_all(p, expected[part + 1], topic, part)
    end
    assert(p:flush(30000))
  end

  local tx <close> = assert(kafka.producer(rig.with(big, { ["transactional.id"] = rig.topic("roundtrip-txn") })))
  assert(tx:init_transactions(30000))
  assert(tx:begin_transaction())
  for part = 0, PARTITIONS - 1 do
    local recs = {
      { key = "txn", value = "committed " .. part .. " a", timestamp = T0 + 900000 + part, headers = { header("txn", "commit") } },
      { key = "txn", value = "committed " .. part .. " b", timestamp = T0 + 900100 + part },
    }
    produce_all(tx, recs, topic, part)
    for _, r in ipairs(recs) do table.insert(expected[part + 1], r) end
  end
  assert(tx:commit_transaction(30000))

  assert(tx:begin_transaction())
  for part = 0, PARTITIONS - 1 do
    produce_all(tx, { { key = "txn", value = "ABORTED " .. part, timestamp = T0 + 950000 + part,
      headers = { header("txn", "abort") } } }, topic, part)
  end
  assert(tx:flush(30000)) -- in the log, then aborted
  assert(tx:abort_transaction(30000))

  -- Even partitions go on after the abort marker; odd ones end with it.
  local p <close> = assert(kafka.producer(big))
  for part = 0, PARTITIONS - 1, 2 do
    local recs = { { key = "after", value = "after abort " .. part, timestamp = T0 + 990000 + part } }
    produce_all(p, recs, topic, part)
    table.insert(expected[part + 1], recs[1])
  end
  assert(p:flush(30000))
  return expected
end

local function parse_headers(line)
  local out = {}
  if line == "" then return out end
  for item in (line .. ","):gmatch("([^,]*),") do
    local name, value = item:match("^([^=]*)=(.*)$")
    assert(name, "unexpected kcat header text: " .. item)
    out[#out + 1] = value == "NULL" and { name } or { name, value }
  end
  return out
end

-- Every record of a topic as kcat reads it, by partition (index p + 1),
-- each { offset=, key=, value=, timestamp=, headers= }.
local function kcat_read(brokers, topic, isolation)
  local r = proc.run { "kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q",
    "-X", "isolation.level=" .. isolation, "-X", "fetch.message.max.bytes=4000000",
    "-f", "%p %o %K %S %T\n%k%s\n%h\n" }
  assert(r.code == 0, "kcat failed: " .. r.stderr)
  local out, s, pos = {}, r.stdout, 1
  for part = 1, PARTITIONS do out[part] = {} end
  while pos <= #s do
    local part, offset, klen, vlen, ts, at = s:match("^(%d+) (%d+) (%-?%d+) (%-?%d+) (%-?%d+)\n()", pos)
    assert(part, ("unexpected kcat output at byte %d: %q"):format(pos, s:sub(pos, pos + 60)))
    klen, vlen = tonumber(klen), tonumber(vlen)
    local rec = { offset = tonumber(offset), timestamp = tonumber(ts) }
    if klen >= 0 then rec.key = s:sub(at, at + klen - 1) end
    at = at + math.max(klen, 0)
    if vlen >= 0 then rec.value = s:sub(at, at + vlen - 1) end
    at = at + math.max(vlen, 0)
    assert(s:sub(at, at) == "\n", "kcat record not where its lengths say")
    local eol = assert(s:find("\n", at + 1, true))
    rec.headers = parse_headers(s:sub(at + 1, eol - 1))
    pos = eol + 1
    table.insert(out[tonumber(part) + 1], rec)
  end
  return out
end

-- Records without offsets (they differ: markers take offsets in the source).
local function sequence(recs)
  local out = {}
  for i, r in ipairs(recs) do
    out[i] = { key = r.key, value = r.value, timestamp = r.timestamp, headers = r.headers or {} }
  end
  return out
end

-- Short, printable text for a possibly long binary field.
local function show(v)
  if v == nil then return "nil" end
  local head = ("%q"):format(v:sub(1, 40)):gsub("\n", "n")
  return ("%d bytes %s%s"):format(#v, head, #v > 40 and "..." or "")
end

local function show_headers(h)
  local out = {}
  for i, kv in ipairs(h) do out[i] = kv[1] .. "=" .. (kv[2] == nil and "<null>" or ("%q"):format(kv[2])) end
  return "{" .. table.concat(out, ", ") .. "}"
end

-- Asserts two record sequences are equal field by field, byte for byte,
-- naming the first difference without dumping megabytes of binary.
local function assert_same_records(want, got, label)
  want, got = sequence(want), sequence(got)
  for i = 1, math.max(#want, #got) do
    local w, g = want[i], got[i]
    assert(w and g, ("%s: %d records expected, %d found"):format(label, #want, #got))
    for _, f in ipairs { "key", "value", "timestamp" } do
      assert(w[f] == g[f], ("%s record %d: %s %s expected, %s found"):format(label, i, f,
        show(w[f] and tostring(w[f])), show(g[f] and tostring(g[f]))))
    end
    local wh, gh = show_headers(w.headers), show_headers(g.headers)
    assert(wh == gh, ("%s record %d: headers %s expected, %s found"):format(label, i, wh, gh))
  end
end

local function count_values(parts, pattern)
  local n = 0
  for _, recs in ipairs(parts) do
    for _, r in ipairs(recs) do
      if r.value and r.value:find(pattern) then n = n + 1 end
    end
  end
  return n
end

describe("backup then restore", function()
  local brokers, dir, source, target, expected

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    source, target = rig.topic("roundtrip-src"), rig.topic("roundtrip-dst")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = source, partitions = PARTITIONS, replication_factor = 1,
      config = { ["max.message.bytes"] = "2000000" } } })
    expected = produce_data_set(brokers, source)

    configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "trip",
      source = { bootstrap_servers = brokers }, topics = { include = { source } },
      storage = configs.fs(dir .. "/store"), backup = { segment_max_records = 4 } })
    configs.write(dir .. "/restore.yaml", { mode = "restore", backup_id = "trip",
      target = { bootstrap_servers = brokers }, topics = { include = { source } },
      storage = configs.fs(dir .. "/store"), restore = { topic_mapping = { [source] = target } } })
  end)

  teardown(function() proc.rmdir(dir) end)

  it("reads the source as it was written (the reader is right)", function()
    local committed = kcat_read(brokers, source, "read_committed")
    for part = 1, PARTITIONS do assert_same_records(expected[part], committed[part], "source partition " .. part - 1) end
    local all = kcat_read(brokers, source, "read_uncommitted")
    assert.are.equal(PARTITIONS, count_values(all, "^ABORTED "))
  end)

  it("restores every committed record, per partition and in order, and nothing aborted", function()
    local r = proc.run { proc.kalua(), "backup", "--config", dir .. "/backup.yaml" }
    assert.are.equal(0, r.code, r.stderr)
    r = proc.run { proc.kalua(), "restore", "--config", dir .. "/restore.yaml" }
    assert.are.equal(0, r.code, r.stderr)

    local want = kcat_read(brokers, source, "read_committed")
    local got = kcat_read(brokers, target, "read_committed")
    local total = 0
    for part = 1, PARTITIONS do
      assert.are.equal(#want[part], #got[part], "records in partition " .. part - 1)
      assert_same_records(want[part], got[part], "partition " .. part - 1)
      total = total + #got[part]
    end
    assert.are.equal(PARTITIONS * 11 + 3 + PARTITIONS // 2, total) -- 9 plain + 2 committed each, 3 large, 4 after
    assert.are.equal(2 * PARTITIONS, count_values(got, "^committed "))

    -- Even a read_uncommitted reader finds no aborted record in the restored
    -- topic, and its offsets have no holes: no control marker was restored.
    local raw = kcat_read(brokers, target, "read_uncommitted")
    assert.are.equal(0, count_values(raw, "ABORTED"))
    for part = 1, PARTITIONS do
      assert_same_records(got[part], raw[part], "read_uncommitted partition " .. part - 1)
      for i, rec in ipairs(raw[part]) do assert.are.equal(i - 1, rec.offset) end
    end
  end)
end)
