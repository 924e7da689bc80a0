-- kalua.storage on S3, against the rig's S3 peer (gofakes3 behind a
-- Signature V4 check and fault injection: spec/rig/emulators/s3/peer).
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local json = require "kalua.json"
local proc = require "proc"
local contract = require "storage_contract"
local rig = require "rig"

local endpoint, access_key, secret_key, region, bucket

local function conf(prefix, extra)
  local c = { backend = "s3", bucket = bucket, prefix = prefix, endpoint = endpoint, region = region,
    access_key = access_key, secret_key = secret_key }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function peer(method, path, body)
  local argv = { "curl", "-sS", "-X", method, endpoint .. path }
  if body then
    argv[#argv + 1] = "-d"
    argv[#argv + 1] = json.encode(body)
  end
  local r = proc.run(argv)
  assert(r.code == 0, r.stderr)
  return r.stdout
end

local function fault(f) peer("POST", "/__faults", f) end

-- The requests the peer saw for paths containing `part`.
local function seen(part)
  local out = {}
  for _, e in ipairs(assert(json.decode(peer("GET", "/__log")))) do
    if e.path:find(part, 1, true) then out[#out + 1] = e end
  end
  return out
end

local function count(entries, pred)
  local n = 0
  for _, e in ipairs(entries) do if pred(e) then n = n + 1 end end
  return n
end

local function keys_of(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.key end
  return out
end

-- Runs a Lua chunk in a child kalua with env; returns { code, stdout, stderr }.
local function child(script, env)
  local base = { KALUA_RIG_S3_ENDPOINT = endpoint, KALUA_RIG_S3_ACCESS_KEY = access_key,
    KALUA_RIG_S3_SECRET_KEY = secret_key, AWS_ACCESS_KEY_ID = "", AWS_SECRET_ACCESS_KEY = "",
    AWS_SESSION_TOKEN = "", AWS_PROFILE = "", AWS_EC2_METADATA_DISABLED = "true" } -- empty: unset
  for k, v in pairs(env or {}) do base[k] = v end
  return proc.run({ proc.kalua(), "-e", script }, { env = base })
end

describe("kalua.storage on S3", function()
  local store, prefix

  setup(function()
    endpoint = rig.env("KALUA_RIG_S3_ENDPOINT")
    access_key = rig.env("KALUA_RIG_S3_ACCESS_KEY")
    secret_key = rig.env("KALUA_RIG_S3_SECRET_KEY")
    region = rig.env("KALUA_RIG_S3_REGION")
    bucket = rig.env("KALUA_RIG_S3_BUCKET")
  end)

  before_each(function()
    prefix = rig.topic("s3")
    store = assert(storage.open(conf(prefix)))
  end)

  after_each(function()
    peer("DELETE", "/__faults")
    store:close()
  end)

  it("puts, gets, stats, lists and deletes objects", function()
    local _, data = contract.binary_round_trip(store)
    assert(store:put("odd name/with spaces+plus&amp;", "x"))
    assert.are.equal("x", store:get("odd name/with spaces+plus&amp;"))
    local st = assert(store:stat("backup-1/topics/orders/0/00000000000000000000.kseg"))
    assert.are.equal(#data, st.size)
    assert.is_true(math.abs(st.mtime - os.time()) < 300)
    assert.are.same({ "backup-1/topics/orders/0/00000000000000000000.kseg", "empty", "odd name/with spaces+plus&amp;" },
      keys_of(store:list()))
    assert.are.same({ "backup-1/topics/orders/0/00000000000000000000.kseg" }, keys_of(store:list("backup-1/")))
    assert.are.same({}, store:list("nothing/"))
    assert.are.equal(0, store:list("empty")[1].size)
    assert(store:delete("empty"))
    local ok, msg, name = store:delete("empty")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name, msg)
    ok, msg, name = store:get("empty")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name)
    assert.truthy(msg:find("s3://" .. bucket .. "/" .. prefix .. "/empty", 1, true), msg)
  end)

  it("reads byte ranges with ranged GETs", function()
    contract.ranged_reads(store)
    local ranges = {}
    for _, e in ipairs(seen(prefix .. "/r")) do
      if e.method == "GET" then ranges[#ranges + 1] = e.headers.range end
    end
    assert.are.same({ "bytes=3-6", "bytes=7-4194310", "bytes=20-24", "bytes=10-4194313", "bytes=2-6" }, ranges)
  end)

  it("presigns URLs that work without credentials and only for what they name", function()
    assert(store:put("shared", "for your eyes"))
    local url = assert(store:presign("GET", "shared", 300))
    assert.truthy(url:find("X-Amz-Signature=", 1, true), url)
    local r = proc.run { "curl", "-sf", url }
    assert.are.same({ 0, "for your eyes" }, { r.code, r.stdout })
    local tampered = proc.run { "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", (url:gsub("shared", "other")) }
    assert.are.equal("403", tampered.stdout)
    local fs <close> = assert(storage.open(proc.tmpdir()))
    assert.are.same({ nil, "presigned URLs are for s3 storage, not filesystem", "UNSUPPORTED" },
      { fs:presign("GET", "x", 60) })
  end)

  it("refuses keys that could escape the prefix", function()
    for _, key in ipairs { "../outside", "/etc/passwd", "a//b", "a/./b", "", "x.tmp-1" } do
      local ok, msg, name = store:put(key, "x")
      assert.is_nil(ok, key)
      assert.are.equal("INVALID_KEY", name, msg)
    end
  end)

  it("lists page after page with continuation tokens", function()
    for i = 1, 23 do assert(store:put(("p/%03d"):format(i), tostring(i))) end
    local r = child(([[
      local st = assert(require("kalua.storage").open { backend = "s3", bucket = %q, prefix = %q, endpoint = %q,
        access_key = os.getenv("KALUA_RIG_S3_ACCESS_KEY"), secret_key = os.getenv("KALUA_RIG_S3_SECRET_KEY") })
      local l = assert(st:list("p/"))
      print(#l, l[1].key, l[23].key, l[23].size)
    ]]):format(bucket, prefix, endpoint), { KALUA_S3_LIST_PAGE = "5" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("23\tp/001\tp/023\t2\n", r.stdout)
    local pages = count(seen("/" .. bucket), function(e)
      return e.method == "GET" and e.query:find("prefix=" .. prefix, 1, true) and e.query:find("max-keys=5", 1, true)
    end)
    assert.are.equal(5, pages)
  end)

  it("streams a writer bigger than a part as a multipart upload, visible only on commit", function()
    local chunk = ("0123456789abcdef"):rep(65536) -- 1 MiB
    local w = assert(store:open_writer("big/1.kseg"))
    for i = 1, 19 do assert(w:write(chunk:sub(i, -1) .. chunk:sub(1, i - 1))) end
    local none, _, name = store:stat("big/1.kseg")
    assert.is_nil(none)
    assert.are.equal("NOT_FOUND", name)
    assert.are.same({}, store:list("big/"))
    assert(w:commit())
    local got = assert(store:get("big/1.kseg"))
    assert.are.equal(19 * 1048576, #got)
    for i = 1, 19 do
      assert(got:sub((i - 1) * 1048576 + 1, i * 1048576) == chunk:sub(i, -1) .. chunk:sub(1, i - 1), "chunk " .. i)
    end
    local log = seen(prefix .. "/big/1.kseg")
    assert.are.equal(1, count(log, function(e) return e.method == "POST" and e.query == "uploads=" end))
    assert.are.equal(3, count(log, function(e) return e.method == "PUT" and e.query:find("partNumber=") end))
    assert.are.equal(1, count(log, function(e) return e.method == "POST" and e.query:find("^uploadId=") end))
    assert.are.equal(0, count(log, function(e) return e.method == "PUT" and e.query == "" end))
    assert.are.equal(chunk:sub(17, 18), store:get("big/1.kseg", 19 * 1048576 - 2, 10))
  end)

  it("uploads many small parts in the background (KALUA_S3_PART_SIZE)", function()
    local r = child(([[
      local st = assert(require("kalua.storage").open { backend = "s3", bucket = %q, prefix = %q, endpoint = %q,
        access_key = os.getenv("KALUA_RIG_S3_ACCESS_KEY"), secret_key = os.getenv("KALUA_RIG_S3_SECRET_KEY") })
      local w = assert(st:open_writer("parts"))
      local want = {}
      for i = 1, 100 do local s = ("%%05d"):format(i):rep(2000); want[#want + 1] = s; assert(w:write(s)) end
      assert(w:commit())
      assert(st:get("parts") == table.concat(want))
      print("ok")
    ]]):format(bucket, prefix, endpoint), { KALUA_S3_PART_SIZE = tostring(65536) })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("ok\n", r.stdout)
    assert.are.equal(16, count(seen(prefix .. "/parts"), function(e) return e.query:find("partNumber=") end))
  end)

  it("aborts the multipart upload of a writer closed without commit, leaving nothing", function()
    do
      local w <close> = assert(store:open_writer("seg/2.kseg"))
      assert(w:write(("x"):rep(9 * 1048576)))
      assert(w:write("more"))
    end
    local ok = pcall(function()
      local w <close> = assert(store:open_writer("seg/3.kseg"))
      w:write("interrupted")
      error("crash in the middle")
    end)
    assert.is_false(ok)
    assert.are.same({}, store:list())
    local log = seen(prefix .. "/seg/2.kseg")
    assert.are.equal(1, count(log, function(e) return e.method == "DELETE" and e.query:find("uploadId=") and e.status == 204 end))
    assert.are.equal(0, #seen(prefix .. "/seg/3.kseg"))
  end)

  it("sends server-side encryption headers on PUT and CreateMultipartUpload", function()
    local kms = assert(storage.open(conf(prefix, { server_side_encryption = "aws:kms", kms_key_id = "alias/kalua" })))
    assert(kms:put("small", "x"))
    local w = assert(kms:open_writer("large"))
    assert(w:write(("y"):rep(9 * 1048576)))
    assert(w:commit())
    kms:close()
    local aes = assert(storage.open(conf(prefix, { server_side_encryption = "AES256" })))
    assert(aes:put("aes", "x"))
    aes:close()
    local put = seen(prefix .. "/small")[1]
    assert.are.equal("aws:kms", put.headers["x-amz-server-side-encryption"])
    assert.are.equal("alias/kalua", put.headers["x-amz-server-side-encryption-aws-kms-key-id"])
    for _, e in ipairs(seen(prefix .. "/large")) do
      if e.query == "uploads=" then assert.are.equal("alias/kalua", e.headers["x-amz-server-side-encryption-aws-kms-key-id"]) end
    end
    assert.are.equal("AES256", seen(prefix .. "/aes")[1].headers["x-amz-server-side-encryption"])
    local s, msg = storage.open(conf(prefix, { server_side_encryption = "rot13" }))
    assert.is_nil(s)
    assert.truthy(msg:find("AES256 or aws:kms", 1, true), msg)
  end)

  it("writes kalua segments through S3 and reads them back", function()
    local records = {}
    for i = 0, 499 do
      records[#records + 1] = { offset = 1000 + i, timestamp = 1700000000000 + i, timestamp_type = "create",
        key = "k" .. i, value = ("v"):rep(i % 50), headers = { { "h", tostring(i) } } }
    end
    local w = assert(segment.writer(assert(store:open_writer("t/0/1000.kseg")), { codec = "zstd", block_bytes = 2048 }))
    for _, r in ipairs(records) do assert(w:add(r)) end
    local stats = assert(w:finish())
    assert.are.equal(500, stats.records)
    local r = assert(segment.open(store, "t/0/1000.kseg"))
    assert.is_true(r:verify(true))
    local out = {}
    for rec in r:records(1250) do out[#out + 1] = rec end
    assert.are.equal(250, #out)
    assert.are.same(records[251], out[1])
  end)

  describe("credentials", function()
    local script = [[
      local st, msg = require("kalua.storage").open(%s)
      if not st then io.stderr:write(msg, "\n") os.exit(1) end
      assert(st:put("c", "creds"))
      print(st:get("c"))
    ]]
    local function open_expr(p) return ("{ backend = 's3', bucket = %q, prefix = %q, endpoint = %q %s }"):format(bucket, prefix, endpoint, p or "") end

    it("come from the AWS environment variables, with the s3:// URL form", function()
      local r = child(script:format(("'s3://%s/%s'"):format(bucket, prefix)),
        { AWS_ACCESS_KEY_ID = access_key, AWS_SECRET_ACCESS_KEY = secret_key, AWS_ENDPOINT_URL_S3 = endpoint })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("creds\n", r.stdout)
    end)

    it("come from the shared credentials file and a profile", function()
      local dir = proc.tmpdir()
      proc.write_file(dir .. "/credentials", ("[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = nope\n\n" ..
        "[backup]\naws_access_key_id = %s\naws_secret_access_key = %s\n"):format(access_key, secret_key))
      local r = child(script:format(open_expr(", profile = 'backup'")), { AWS_SHARED_CREDENTIALS_FILE = dir .. "/credentials" })
      assert.are.equal(0, r.code, r.stderr)
      r = child(script:format(open_expr()), { AWS_SHARED_CREDENTIALS_FILE = dir .. "/credentials", AWS_PROFILE = "backup" })
      assert.are.equal(0, r.code, r.stderr)
      r = child(script:format(open_expr()), { AWS_SHARED_CREDENTIALS_FILE = dir .. "/credentials" })
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:find("InvalidAccessKeyId: check access_key", 1, true), r.stderr)
      r = child(script:format(open_expr(", profile = 'nope'")), { AWS_SHARED_CREDENTIALS_FILE = dir .. "/credentials" })
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:find("no profile 'nope'", 1, true), r.stderr)
      proc.rmdir(dir)
    end)

    it("come from the container credentials endpoint, with a session token", function()
      local r = child(script:format(open_expr()), { AWS_CONTAINER_CREDENTIALS_FULL_URI = endpoint .. "/__creds/container",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = rig.env("KALUA_RIG_S3_CONTAINER_TOKEN") })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("creds\n", r.stdout)
      local put = seen(prefix .. "/c")[1]
      assert.truthy(put.headers["x-amz-security-token"] == nil) -- the peer logs no tokens
      r = child(script:format(open_expr()), { AWS_CONTAINER_CREDENTIALS_FULL_URI = endpoint .. "/__creds/container",
        AWS_CONTAINER_AUTHORIZATION_TOKEN = "wrong" })
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:find("HTTP 401", 1, true), r.stderr)
    end)

    it("come from IMDSv2", function()
      local r = child(script:format(open_expr()), { AWS_EC2_METADATA_DISABLED = "",
        AWS_EC2_METADATA_SERVICE_ENDPOINT = endpoint, HOME = "/nonexistent" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("creds\n", r.stdout)
    end)

    it("say so in one line when there are none", function()
      local r = child(script:format(open_expr()), { HOME = "/nonexistent" })
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:find("no credentials", 1, true), r.stderr)
    end)
  end)

  describe("faults", function()
    it("retries 503s, then succeeds", function()
      fault { status = 503, count = 2, path = prefix .. "/retry" }
      assert(store:put("retry", "after two 503s"))
      fault { status = 503, count = 2, path = prefix .. "/retry" }
      assert.are.equal("after two 503s", store:get("retry"))
      local statuses = {}
      for _, e in ipairs(seen(prefix .. "/retry")) do statuses[#statuses + 1] = e.method .. e.status end
      assert.are.same({ "PUT503", "PUT503", "PUT200", "GET503", "GET503", "GET206" }, statuses)
    end)

    it("gives up after five 503s with one line naming the object", function()
      fault { status = 503, count = 5, path = prefix .. "/down" }
      local ok, msg, name = store:put("down", "x")
      assert.is_nil(ok)
      assert.are.equal("IO_ERROR", name)
      assert.truthy(msg:find("s3://" .. bucket .. "/" .. prefix .. "/down", 1, true), msg)
      assert.truthy(msg:find("503", 1, true), msg)
      assert.is_nil(msg:find("\n", 1, true))
    end)

    it("retries a part whose connection dropped mid-body", function()
      fault { drop = 1, method = "PUT", path = prefix .. "/dropped" }
      local w = assert(store:open_writer("dropped"))
      local data = ("d"):rep(8 * 1048576) .. ("e"):rep(1048576)
      assert(w:write(data))
      assert(w:commit())
      assert.are.equal(data, store:get("dropped"))
      fault { drop = 1, method = "GET", path = prefix .. "/dropped" }
      assert.are.equal(data, store:get("dropped"))
    end)

    it("reports a stall beyond the request timeout", function()
      assert(store:put("slow", "x"))
      fault { stall_ms = 4000, count = 10, path = prefix .. "/slow" }
      local t0 = os.time()
      local r = child(([[
        local st = assert(require("kalua.storage").open { backend = "s3", bucket = %q, prefix = %q, endpoint = %q,
          access_key = os.getenv("KALUA_RIG_S3_ACCESS_KEY"), secret_key = os.getenv("KALUA_RIG_S3_SECRET_KEY") })
        print(st:get("slow"))
      ]]):format(bucket, prefix, endpoint), { KALUA_S3_TIMEOUT_MS = "300" })
      assert.is_true(os.time() - t0 < 30)
      assert.are.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:find("nil\ts3: cannot read s3://" .. bucket .. "/" .. prefix .. "/slow", 1, true), r.stdout)
      assert.truthy(r.stdout:find("Timeout was reached (after 5 attempts)", 1, true), r.stdout)
      peer("DELETE", "/__faults")
      assert.are.equal("x", store:get("slow"))
    end)
  end)

  describe("errors", function()
    it("names a missing bucket", function()
      local nb = assert(storage.open(conf(prefix, { bucket = "no-such-bucket-kalua" })))
      local ok, msg, name = nb:put("x", "y")
      assert.is_nil(ok)
      assert.are.equal("NOT_FOUND", name)
      assert.truthy(msg:find("bucket 'no-such-bucket-kalua' does not exist", 1, true), msg)
      nb:close()
    end)

    it("says check secret_key for a wrong secret, and check access_key for an unknown key", function()
      local bad = assert(storage.open(conf(prefix, { secret_key = "not-the-secret" })))
      local ok, msg, name = bad:put("x", "y")
      assert.is_nil(ok)
      assert.are.equal("PERMISSION_DENIED", name)
      assert.truthy(msg:find("SignatureDoesNotMatch: check secret_key", 1, true), msg)
      assert.is_nil(msg:find("not-the-secret", 1, true))
      bad:close()
      bad = assert(storage.open(conf(prefix, { access_key = "AKIAUNKNOWN" })))
      ok, msg = bad:put("x", "y")
      assert.is_nil(ok)
      assert.truthy(msg:find("check access_key", 1, true), msg)
      bad:close()
    end)
  end)
end)

describe("kalua backup and restore on S3", function()
  local brokers, dir, source, target, prefix

  local function config(mode, secret, extra)
    local path = dir .. "/" .. mode .. ".yaml"
    proc.write_file(path, ([[
mode: %s
backup_id: s3-nightly
%s:
  bootstrap_servers: %s
topics:
  include: ["%s"]
storage:
  backend: s3
  bucket: %s
  prefix: %s
  endpoint: %s
  region: %s
  access_key: ${KALUA_RIG_S3_ACCESS_KEY}
  secret_key: ${%s}
%s]]):format(mode, mode == "backup" and "source" or "target", brokers, source, bucket, prefix, endpoint, region,
      secret, extra or ""))
    return path
  end

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    endpoint = rig.env("KALUA_RIG_S3_ENDPOINT")
    bucket = rig.env("KALUA_RIG_S3_BUCKET")
    region = rig.env("KALUA_RIG_S3_REGION")
    secret_key = rig.env("KALUA_RIG_S3_SECRET_KEY")
    dir = proc.tmpdir()
    prefix = rig.topic("s3-backup")
    source = rig.topic("s3-src")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = source, partitions = 2, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, 299 do
      assert(p:produce { topic = source, partition = i % 2, key = "k" .. i, value = ("value %d "):format(i):rep(20),
        timestamp = 1700000000000 + i, headers = { { "i", tostring(i) } } })
    end
    assert(p:flush(10000))
  end)

  teardown(function() proc.rmdir(dir) end)

  it("backs a topic up to S3 and restores it exactly", function()
    local r = proc.run { proc.kalua(), "backup", "--config", config("backup", "KALUA_RIG_S3_SECRET_KEY",
      "backup:\n  segment_max_records: 40\n") }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("300 new records", 1, true), r.stdout)
    local store <close> = assert(storage.open { backend = "s3", bucket = bucket, prefix = prefix, endpoint = endpoint,
      access_key = rig.env("KALUA_RIG_S3_ACCESS_KEY"), secret_key = secret_key })
    assert(store:stat("s3-nightly/manifest.json"))
    assert.are.equal(4, #store:list(("s3-nightly/topics/%s/0/"):format(source)))

    r = proc.run { proc.kalua(), "validate", "--config", dir .. "/backup.yaml", "s3-nightly", "--deep" }
    assert.are.equal(0, r.code, r.stdout .. r.stderr)

    target = rig.topic("s3-dst")
    r = proc.run { proc.kalua(), "restore", "--config", config("restore", "KALUA_RIG_S3_SECRET_KEY",
      ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("300 records", 1, true), r.stdout)
    for p = 0, 1 do
      local want, got = rig.read_partition(brokers, source, p), rig.read_partition(brokers, target, p)
      assert.are.equal(150, #got)
      assert.are.same(want, got)
    end
  end)

  it("names no partial object when uploads keep failing, and resumes once they work", function()
    local cfg = config("backup", "KALUA_RIG_S3_SECRET_KEY", "backup:\n  segment_max_records: 40\n")
    proc.write_file(cfg, proc.read_file(cfg):gsub("backup_id: s3%-nightly", "backup_id: s3-faulty"))
    -- every upload of partition 1's segments answers 503, past every retry
    fault { status = 503, count = 1000, method = "PUT", path = ("/s3-faulty/topics/%s/1/"):format(source) }
    local r = proc.run { proc.kalua(), "backup", "--config", cfg }
    peer("DELETE", "/__faults")
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua backup: [^\n]*503[^\n]*\n$"), r.stderr)
    local store <close> = assert(storage.open { backend = "s3", bucket = bucket, prefix = prefix, endpoint = endpoint,
      access_key = rig.env("KALUA_RIG_S3_ACCESS_KEY"), secret_key = secret_key })
    assert.is_nil((store:stat("s3-faulty/manifest.json")))
    -- the checkpoint (when partition 0 got one out first) names only whole segments
    local data = store:get("s3-faulty/checkpoint.json")
    for key, p in pairs(data and assert(json.decode(data)).partitions or {}) do
      for _, seg in ipairs(p.segments) do
        local rd <close> = assert(segment.open(store, seg.key))
        assert(rd:verify(true))
      end
      if key:match("/1$") then assert.are.equal(0, #p.segments) end
    end
    assert.are.same({}, store:list(("s3-faulty/topics/%s/1/"):format(source)))

    r = proc.run { proc.kalua(), "backup", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
    r = proc.run { proc.kalua(), "validate", "--config", cfg, "s3-faulty", "--deep" }
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stdout:find("300 records", 1, true), r.stdout)
  end)

  it("fails in one line, exit 1, without the secret, on a wrong secret_key", function()
    local wrong = "wrong-" .. secret_key:reverse()
    local path = config("backup", "WRONG_SECRET")
    local r = proc.run({ proc.kalua(), "backup", "--config", path }, { env = { WRONG_SECRET = wrong } })
    assert.are.equal(1, r.code)
    local out = r.stdout .. r.stderr
    assert.truthy(out:find("check secret_key", 1, true), out)
    assert.is_nil(out:find(wrong, 1, true))
    assert.is_nil(out:find(secret_key, 1, true))
    local lines = 0
    for _ in r.stderr:gmatch("[^\n]+") do lines = lines + 1 end
    assert.are.equal(1, lines, r.stderr)
  end)

  it("names a missing bucket in one line", function()
    local path = config("backup", "KALUA_RIG_S3_SECRET_KEY")
    local text = proc.read_file(path):gsub("bucket: " .. bucket, "bucket: kalua-missing-bucket")
    proc.write_file(path, text)
    local r = proc.run { proc.kalua(), "backup", "--config", path }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("bucket 'kalua-missing-bucket' does not exist", 1, true), r.stderr)
  end)

  it("lists backups through an s3:// URL with credentials from the environment", function()
    local r = proc.run({ proc.kalua(), "list", "--path", ("s3://%s/%s"):format(bucket, prefix) },
      { env = { AWS_ACCESS_KEY_ID = rig.env("KALUA_RIG_S3_ACCESS_KEY"), AWS_SECRET_ACCESS_KEY = secret_key,
        AWS_ENDPOINT_URL_S3 = endpoint, AWS_REGION = region } })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("s3-nightly", 1, true), r.stdout)
  end)
end)
