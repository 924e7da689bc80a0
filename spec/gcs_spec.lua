-- The GCS backend against the rig's emulator (spec/rig/emulators/gcs: fake-gcs-server
-- behind real OAuth: RS256 JWTs checked against the rig's service account, bearer
-- tokens with a lifetime, GCS's resumable-upload rules).
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local kafka = require "kalua.kafka"
local json = require "kalua.json"
local proc = require "proc"
local contract = require "storage_contract"
local rig = require "rig"

local CHUNK = 256 * 1024

local endpoint, key_file, bucket

-- The emulator's test controls (see peer/main.go).
local function control(path)
  local r = proc.run { "curl", "-sf", "-X", "POST", endpoint .. "/_rig/" .. path }
  assert(r.code == 0, "the GCS emulator did not answer " .. path)
  return json.decode(r.stdout)
end

local function open(prefix, extra)
  local cfg = { backend = "gcs", bucket = bucket, prefix = prefix, endpoint = endpoint, credentials_file = key_file }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(storage.open(cfg))
end

local function keys(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.key end
  return out
end

local function one_line(s)
  local lines = 0
  for line in s:gmatch("[^\n]+") do if line:find("%S") then lines = lines + 1 end end
  return lines == 1
end

-- A service-account key file like the rig's, with another RSA key.
local function wrong_key_file(dir)
  local pem = dir .. "/other.pem"
  assert(proc.run { "openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem }
    .code == 0)
  local account = assert(json.decode(proc.read_file(key_file)))
  account.private_key = proc.read_file(pem)
  proc.write_file(dir .. "/wrong.json", json.encode(account))
  return dir .. "/wrong.json", account.private_key
end

local function assert_no_secret(text, private_key)
  assert.falsy(text:find("PRIVATE KEY", 1, true), text)
  assert.falsy(text:find("ya29.", 1, true), text)
  assert.falsy(text:find("Bearer", 1, true), text)
  assert.falsy(text:find("assertion=", 1, true), text)
  if private_key then
    local body = private_key:match("KEY%-%-%-%-%-\n([^\n]+)")
    assert.falsy(text:find(body, 1, true), text)
  end
end

describe("kalua.storage on GCS", function()
  local prefix, store

  setup(function()
    endpoint = rig.env("KALUA_RIG_GCS_ENDPOINT")
    key_file = rig.env("KALUA_RIG_GCS_KEY_FILE")
    bucket = os.getenv("KALUA_RIG_GCS_BUCKET") or "kalua-rig"
  end)

  before_each(function()
    prefix = rig.topic("gcs")
    store = open(prefix, { chunk_size = CHUNK, page_size = 2 })
  end)

  after_each(function() store:close() end)

  it("puts, gets, stats, lists page by page and deletes", function()
    local data = ("\0\1\2\255kalua"):rep(10000)
    assert(store:put("b1/topics/orders/0/00000000000000000000.kseg", data))
    assert.are.equal(data, store:get("b1/topics/orders/0/00000000000000000000.kseg"))
    assert(store:put("empty", ""))
    assert.are.equal("", store:get("empty"))
    for _, k in ipairs { "b/2", "a/1", "b/1", "b/sub/3", "c", "b/4", "b/5" } do assert(store:put(k, k)) end
    local listed = {}
    for _, e in ipairs(assert(store:list("b/"))) do listed[#listed + 1] = e.key .. "=" .. e.size end
    assert.are.same({ "b/1=3", "b/2=3", "b/4=3", "b/5=3", "b/sub/3=7" }, listed) -- three pages of two
    assert.are.equal(9, #store:list())
    assert.are.same({}, store:list("nothing/"))
    local st = assert(store:stat("b/sub/3"))
    assert.are.equal(7, st.size)
    assert.is_true(math.abs(st.mtime - os.time()) < 300, tostring(st.mtime))
    assert(store:delete("b/sub/3"))
    local ok, msg, name = store:delete("b/sub/3")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name)
    assert.truthy(msg:find("gs://" .. bucket .. "/" .. prefix .. "/b/sub/3", 1, true), msg)
    ok, msg, name = store:get("b/sub/3")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name, msg)
    ok, _, name = store:put("../escape", "x")
    assert.is_nil(ok)
    assert.are.equal("INVALID_KEY", name)
  end)

  it("reads byte ranges, across chunk-sized windows", function()
    contract.ranged_reads(store)
    local big = {}
    for i = 1, 3 * CHUNK / 8 + 123 do big[#big + 1] = ("%08d"):format(i) end
    big = table.concat(big)
    assert(store:put("big", big))
    local got = store:get("big")
    assert.are.equal(#big, #got)
    assert.is_true(big == got)
    got = store:get("big", CHUNK - 10, CHUNK + 31)
    assert.are.equal(CHUNK + 31, #got)
    assert.is_true(big:sub(CHUNK - 9, 2 * CHUNK + 21) == got)
  end)

  it("streams an object larger than the chunk through a resumable upload, visible only on commit", function()
    local before = control("stats").requests
    local w = assert(store:open_writer("seg/1.kseg"))
    local parts = {}
    for i = 1, 45 do
      local part = ("%05d"):format(i):rep(6000) -- 30000 bytes; 1.35 MB in all: six chunks
      parts[#parts + 1] = part
      assert(w:write(part))
    end
    local none, msg, name = store:stat("seg/1.kseg")
    assert.is_nil(none)
    assert.are.equal("NOT_FOUND", name, msg)
    assert.are.same({}, store:list("seg/"))
    assert(w:commit())
    assert.are.equal(table.concat(parts), store:get("seg/1.kseg"))
    assert.are.equal(1350000, store:stat("seg/1.kseg").size)
    -- a session, five full chunks and the last: more than one request
    assert.is_true(control("stats").requests - before >= 7)
    assert.has_error(function() w:write("more") end, "writer is committed or closed")
  end)

  it("leaves nothing behind a writer closed without commit, whatever it had sent", function()
    do
      local w <close> = assert(store:open_writer("seg/2.kseg"))
      assert(w:write(("x"):rep(3 * CHUNK))) -- two chunks already in the session
    end
    local ok = pcall(function()
      local w <close> = assert(store:open_writer("seg/3.kseg"))
      w:write("interrupted")
      error("crash in the middle")
    end)
    assert.is_false(ok)
    assert.are.same({}, store:list())
  end)

  it("replaces an object whole and retries the service's 503s", function()
    assert(store:put("k", ("old"):rep(100000)))
    control("fail?n=2")
    assert(store:put("k", "new"))
    assert.are.equal("new", store:get("k"))
  end)

  it("carries segments: written through a streaming writer, read back by ranges", function()
    local records = {}
    for i = 0, 399 do
      records[#records + 1] = { offset = 7000 + i * 2, timestamp = 1700000000000 + i, timestamp_type = "create",
        key = i % 3 == 0 and nil or ("k" .. i), value = ("v%d "):format(i):rep(300),
        headers = { { "h", tostring(i) } } }
    end
    local w = assert(segment.writer(assert(store:open_writer("t/0/7000.kseg")), { codec = "none", block_bytes = 65536 }))
    for _, r in ipairs(records) do assert(w:add(r)) end
    local stats = assert(w:finish())
    assert.are.equal(400, stats.records)
    assert.is_true(store:stat("t/0/7000.kseg").size > 2 * CHUNK)
    local r = assert(segment.open(store, "t/0/7000.kseg"))
    assert(r:verify(true))
    local i = 0
    for rec in r:records() do
      i = i + 1
      assert.are.equal(records[i].offset, rec.offset)
      assert.are.equal(records[i].value, rec.value)
      assert.are.equal(records[i].key, rec.key)
    end
    assert.are.equal(400, i)
    local from = 0
    for rec in r:records(7600) do from = from == 0 and rec.offset or from end
    assert.are.equal(7600, from)
  end)

  it("caches the access token across requests and fetches a new one after it expires", function()
    control("ttl?seconds=3")
    local ok, err = pcall(function()
      local s <close> = open(prefix .. "-ttl")
      local first = control("stats").tokens_issued
      assert(s:put("x", "1"))
      assert(s:get("x"))
      assert(s:stat("x"))
      assert(s:list())
      assert.are.equal(first + 1, control("stats").tokens_issued)
      os.execute("sleep 3.3")
      assert.are.equal("1", s:get("x"))
      assert(s:stat("x"))
      assert.are.equal(first + 2, control("stats").tokens_issued)
    end)
    control("ttl?seconds=3600")
    assert(ok, err)
  end)

  it("replaces a revoked token once, and names a refused one in one line without the token", function()
    assert(store:put("x", "1"))
    local issued = control("stats").tokens_issued
    control("revoke")
    assert.are.equal("1", store:get("x"))
    assert.are.equal(issued + 1, control("stats").tokens_issued)
    control("reject?on=1")
    local got, msg, name = store:get("x")
    control("reject?on=0")
    assert.is_nil(got)
    assert.are.equal("PERMISSION_DENIED", name)
    assert.truthy(msg:find("HTTP 401", 1, true), msg)
    assert.truthy(msg:find("gs://" .. bucket .. "/" .. prefix .. "/x", 1, true), msg)
    assert.truthy(msg:find("service account key", 1, true), msg)
    assert.is_true(one_line(msg))
    assert_no_secret(msg)
    assert.are.equal("1", store:get("x"))
  end)

  it("refuses a key that is not the service account's, naming the account and not the key", function()
    local dir = proc.tmpdir()
    local wrong, pem = wrong_key_file(dir)
    local s <close> = assert(storage.open { backend = "gcs", bucket = bucket, endpoint = endpoint,
      credentials_file = wrong })
    local got, msg, name = s:stat("anything")
    proc.rmdir(dir)
    assert.is_nil(got)
    assert.are.equal("PERMISSION_DENIED", name)
    assert.truthy(msg:find("Invalid JWT Signature", 1, true), msg)
    assert.truthy(msg:find("kalua-backup@kalua-test.iam.gserviceaccount.com", 1, true), msg)
    assert.is_true(one_line(msg))
    assert_no_secret(msg, pem)
  end)

  it("names a missing bucket, a missing key file and missing credentials", function()
    local s <close> = assert(storage.open { backend = "gcs", bucket = "no-such-bucket", endpoint = endpoint,
      credentials_file = key_file })
    local got, msg, name = s:list("")
    assert.is_nil(got)
    assert.are.equal("NOT_FOUND", name)
    assert.truthy(msg:find("bucket 'no-such-bucket' does not exist", 1, true), msg)
    got, msg = s:put("k", "v")
    assert.is_nil(got)
    assert.truthy(msg:find("bucket 'no-such-bucket' does not exist", 1, true), msg)
    got, msg, name = storage.open { backend = "gcs", bucket = bucket, credentials_file = "/nonexistent/key.json" }
    assert.is_nil(got)
    assert.are.equal("NOT_FOUND", name)
    assert.truthy(msg:find("/nonexistent/key.json", 1, true), msg)
    local r = proc.run({ proc.kalua(), "-e", [[
      local s, msg = require("kalua.storage").open("gs://b/p")
      io.write(tostring(s), " ", msg)]] }, { env = { GOOGLE_APPLICATION_CREDENTIALS = false } })
    assert.truthy(r.stdout:find("nil GCS bucket 'b': no credentials", 1, true), r.stdout .. r.stderr)
  end)

  it("opens gs://bucket/prefix URLs with GOOGLE_APPLICATION_CREDENTIALS and STORAGE_EMULATOR_HOST", function()
    assert(store:put("via/url", "found me"))
    local r = proc.run({ proc.kalua(), "-e", ([[
      local s = assert(require("kalua.storage").open("gs://%s/%s/via"))
      io.write(tostring(s), " ", assert(s:get("url")))]]):format(bucket, prefix) },
      { env = { GOOGLE_APPLICATION_CREDENTIALS = key_file, STORAGE_EMULATOR_HOST = endpoint:gsub("^http://", "") } })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(("kalua.storage.Store (gcs gs://%s/%s/via) found me"):format(bucket, prefix), r.stdout)
    r = proc.run({ proc.kalua(), "-e", ([[
      local s = assert(require("kalua.storage").open { url = "gs://%s/%s", endpoint = "%s" })
      io.write(assert(s:get("via/url")))]]):format(bucket, prefix, endpoint) },
      { env = { GOOGLE_APPLICATION_CREDENTIALS = key_file } })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("found me", r.stdout)
  end)
end)

describe("kalua backup and restore through GCS", function()
  local brokers, dir, source, prefix

  local function config(mode, storage_yaml, extra)
    local path = dir .. "/" .. mode .. ".yaml"
    proc.write_file(path, ([[
mode: %s
backup_id: g1
%s:
  bootstrap_servers: %s
topics:
  include: ["%s"]
storage:
%s
%s]]):format(mode, mode == "backup" and "source" or "target", brokers, source, storage_yaml, extra or ""))
    return path
  end

  local function gcs_yaml(b)
    return ("  backend: gcs\n  bucket: %s\n  prefix: %s\n  endpoint: %s\n  credentials_file: %s\n")
      :format(b or bucket, prefix, endpoint, key_file)
  end

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    endpoint = rig.env("KALUA_RIG_GCS_ENDPOINT")
    key_file = rig.env("KALUA_RIG_GCS_KEY_FILE")
    bucket = os.getenv("KALUA_RIG_GCS_BUCKET") or "kalua-rig"
    dir = proc.tmpdir()
    prefix = rig.topic("gcs-backups")
    source = rig.topic("gcs-src")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = source, partitions = 2, replication_factor = 1,
      config = { ["retention.ms"] = "-1" } } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, 1199 do
      assert(p:produce { topic = source, partition = i % 2, key = "k" .. i,
        value = ("value %d "):format(i):rep(60), timestamp = 1700000000000 + i,
        headers = { { "i", tostring(i) } } })
    end
    assert(p:flush(10000))
  end)

  teardown(function() proc.rmdir(dir) end)

  it("backs up to a gs:// URL and restores every record from backend: gcs", function()
    local chunk_env = { KALUA_GCS_CHUNK_SIZE = tostring(CHUNK), GOOGLE_APPLICATION_CREDENTIALS = key_file }
    local r = proc.run({ proc.kalua(), "backup", "--config", config("backup",
      ("  url: gs://%s/%s\n  endpoint: %s\n"):format(bucket, prefix, endpoint),
      "backup:\n  compression: none\n  segment_max_records: 500\n") }, { env = chunk_env })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1 topics, 2 partitions, 1200 new records", 1, true), r.stdout)

    local store <close> = open(prefix)
    local segs = store:list("g1/topics/" .. source .. "/0/")
    assert.are.equal(2, #segs) -- 500 + 100 records
    assert.is_true(segs[1].size > CHUNK, tostring(segs[1].size)) -- a resumable upload
    assert(store:stat("g1/manifest.json"))

    local target = rig.topic("gcs-dst")
    r = proc.run({ proc.kalua(), "restore", "--config", config("restore", gcs_yaml(),
      ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target)) }, { env = chunk_env })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1200 records", 1, true), r.stdout)
    for p = 0, 1 do
      local want, got = rig.read_partition(brokers, source, p), rig.read_partition(brokers, target, p)
      assert.are.equal(600, #got)
      for i = 1, #want do
        assert.are.equal(want[i].key, got[i].key)
        assert.are.equal(want[i].value, got[i].value)
        assert.are.equal(want[i].timestamp, got[i].timestamp)
      end
    end

    r = proc.run({ proc.kalua(), "list", "--path", ("gs://%s/%s"):format(bucket, prefix) },
      { env = { GOOGLE_APPLICATION_CREDENTIALS = key_file, STORAGE_EMULATOR_HOST = endpoint } })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("g1", 1, true), r.stdout)
  end)

  it("stops with one line and exit 1 on a wrong service-account key, showing no secret", function()
    local wrong, pem = wrong_key_file(dir)
    local r = proc.run { proc.kalua(), "backup", "--config", config("backup",
      ("  backend: gcs\n  bucket: %s\n  prefix: %s-wrong\n  endpoint: %s\n  credentials_file: %s\n")
        :format(bucket, prefix, endpoint, wrong)) }
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.is_true(one_line(r.stderr), r.stderr)
    assert.truthy(r.stderr:find("Invalid JWT Signature", 1, true), r.stderr)
    assert_no_secret(r.stdout .. r.stderr, pem)
    assert.are.same({}, open(prefix .. "-wrong"):list())
  end)

  it("stops with one line naming a missing bucket", function()
    local r = proc.run { proc.kalua(), "backup", "--config", config("backup", gcs_yaml("no-such-bucket-kalua")) }
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.is_true(one_line(r.stderr), r.stderr)
    assert.truthy(r.stderr:find("bucket 'no-such-bucket-kalua' does not exist", 1, true), r.stderr)
  end)
end)
