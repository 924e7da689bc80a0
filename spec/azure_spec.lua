-- The Azure Blob backend against Azurite (spec/rig/emulators/azure), which
-- checks every SharedKey signature and SAS against the rig's random account
-- key: round trips, block uploads, aborts, segments, backup and restore,
-- the az:// form, and the one-line errors for a wrong key or a missing
-- container.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local segment = require "kalua.segment"
local json = require "kalua.json"
local proc = require "proc"
local contract = require "storage_contract"
local rig = require "rig"

local azurite = require "azurite"

local rest, new_container = azurite.rest, azurite.new_container
azurite = azurite.settings

local function keys_of(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.key end
  return out
end

local function committed_blocks(az, container, blob)
  local code, body = rest(az, "GET", container .. "/" .. blob, "comp=blocklist&blocklisttype=all")
  assert.are.equal(200, code, body)
  local committed = body:match("<CommittedBlocks>(.-)</CommittedBlocks>") or ""
  local n = 0
  for _ in committed:gmatch("<Block>") do n = n + 1 end
  return n
end

local function random_bytes(n)
  local t = {}
  for i = 1, n // 4 do t[i] = string.pack("<I4", math.random(0, 0xffffffff)) end
  return table.concat(t) .. ("\0"):rep(n % 4)
end

describe("kalua.storage on Azure Blob (Azurite)", function()
  local az, container, store

  local function open(extra)
    local cfg = { backend = "azure", container = container, prefix = "kafka/", endpoint = az.endpoint,
      account_name = az.account, account_key = az.key }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return storage.open(cfg)
  end

  before_each(function()
    az = azurite()
    container = new_container(az)
    store = assert(open())
  end)

  after_each(function()
    if store then store:close() end
    if container then rest(az, "DELETE", container, "restype=container") end
  end)

  it("puts, gets, stats and deletes binary blobs under nested keys", function()
    local _, data = contract.binary_round_trip(store)
    local st = assert(store:stat("backup-1/topics/orders/0/00000000000000000000.kseg"))
    assert.are.equal(#data, st.size)
    assert.is_true(math.abs(st.mtime - os.time()) < 120, st.mtime)
    -- the prefix is part of the blob's name
    assert.are.equal(200, (rest(az, "HEAD", container .. "/kafka/empty")))
    assert(store:put("empty", "now full"))
    assert.are.equal("now full", store:get("empty"))
    assert(store:delete("empty"))
    local ok, msg, name = store:delete("empty")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name)
    assert.truthy(msg:find("kafka/empty", 1, true) and msg:find(container, 1, true), msg)
    ok, msg, name = store:get("empty")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name, msg)
    ok, msg, name = store:stat("empty")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name, msg)
  end)

  it("reads byte ranges, in chunks across a large blob", function()
    contract.ranged_reads(store)
    local big = random_bytes(9 * 1024 * 1024 + 7) -- more than two 4 MiB read chunks
    assert(store:put("big", big))
    assert.is_true(big == store:get("big"))
    assert.is_true(big:sub(4 * 1024 * 1024 - 9, 8 * 1024 * 1024 + 21) ==
      store:get("big", 4 * 1024 * 1024 - 10, 4 * 1024 * 1024 + 31))
    assert.is_true(big:sub(-100) == store:get("big", #big - 100))
  end)

  it("lists keys relative to the prefix, sorted, across pages", function()
    local page = assert(open { max_results = 2 })
    for _, k in ipairs { "b/2", "a/1", "b/1", "b/sub/3", "c", "b/x&y <z>" } do assert(page:put(k, k)) end
    assert.are.same({ "b/1", "b/2", "b/sub/3", "b/x&y <z>" }, keys_of(assert(page:list("b/"))))
    assert.are.equal(6, #assert(page:list()))
    assert.are.same({}, assert(page:list("nothing/")))
    local c = assert(page:list("c"))[1]
    assert.are.equal(1, c.size)
    assert.is_number(c.mtime)
    -- another prefix in the same container sees none of it
    local other = assert(open { prefix = "elsewhere" })
    assert.are.same({}, assert(other:list()))
    assert(other:put("c", "other"))
    assert.are.equal("c", page:get("c"))
    other:close()
    page:close()
  end)

  it("streams a blob larger than the block size as blocks, visible only on commit", function()
    local small = assert(open { block_size = 65536 })
    local data = random_bytes(300000)
    local w = assert(small:open_writer("seg/1.kseg"))
    local pos = 1
    for _, n in ipairs { 1000, 70000, 65536, 200, 131072 } do -- odd sizes, one bigger than a block
      assert(w:write(data:sub(pos, pos + n - 1)))
      pos = pos + n
    end
    assert(w:write(data:sub(pos)))
    local none, _, name = small:stat("seg/1.kseg")
    assert.is_nil(none)
    assert.are.equal("NOT_FOUND", name)
    assert.are.same({}, assert(small:list("seg/")))
    assert(w:commit())
    assert.is_true(data == small:get("seg/1.kseg"))
    assert.are.equal(5, committed_blocks(az, container, "kafka/seg/1.kseg")) -- ceil(300000 / 65536)
    assert.has_error(function() w:write("more") end, "writer is committed or closed")
    assert(small:put("seg/small", ("s"):rep(65536)))
    assert.are.equal(("s"):rep(65536), small:get("seg/small"))
    small:close()
  end)

  it("leaves nothing under the key when a writer is aborted, even after blocks went up", function()
    local small = assert(open { block_size = 4096 })
    assert(small:put("seg/kept", "old whole"))
    do
      local w <close> = assert(small:open_writer("seg/2.kseg"))
      assert(w:write(random_bytes(20000)))
    end
    local ok = pcall(function()
      local w <close> = assert(small:open_writer("seg/kept"))
      w:write(random_bytes(10000))
      error("crash in the middle")
    end)
    assert.is_false(ok)
    local w = assert(small:open_writer("seg/3.kseg"))
    assert(w:write(random_bytes(9000)))
    w:abort()
    assert.are.same({ "seg/kept" }, keys_of(assert(small:list())))
    assert.are.equal("old whole", small:get("seg/kept"))
    local _, _, name = small:stat("seg/2.kseg")
    assert.are.equal("NOT_FOUND", name)
    small:close()
  end)

  it("carries segments: written through blocks, read back by range, verified", function()
    local small = assert(open { block_size = 16384 })
    local records = {}
    for i = 0, 999 do
      records[#records + 1] = { offset = 100 + i, timestamp = 1700000000000 + i, timestamp_type = "create",
        key = "k" .. i, value = random_bytes(64 + i % 50), headers = { { "i", tostring(i) } } }
    end
    local w = assert(segment.writer(assert(small:open_writer("b/topics/t/0/100.kseg")), { block_bytes = 8192 }))
    for _, r in ipairs(records) do assert(w:add(r)) end
    local stats = assert(w:finish())
    assert.is_true(stats.bytes > 16384 * 3, stats.bytes)
    assert.is_true(committed_blocks(az, container, "kafka/b/topics/t/0/100.kseg") > 3)
    local r = assert(segment.open(small, "b/topics/t/0/100.kseg"))
    assert.are.equal(1000, r:info().records)
    assert.is_true(r:verify(true))
    local got = {}
    for rec in r:records(900) do got[#got + 1] = rec end
    assert.are.equal(200, #got)
    assert.are.same(records[801], got[1])
    small:close()
  end)

  it("opens az://container/prefix with credentials from the table, a connection string or the environment", function()
    assert(store:put("x/y", "through the prefix"))
    local by_url = assert(storage.open { url = ("az://%s/kafka"):format(container), endpoint = az.endpoint,
      account_name = az.account, account_key = az.key })
    assert.are.equal("through the prefix", by_url:get("x/y"))
    assert.truthy(tostring(by_url):find(("az://%s/kafka"):format(container), 1, true))
    local cs = ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;")
      :format(az.account, az.key, az.endpoint)
    local by_cs = assert(storage.open { url = ("az://%s/kafka/"):format(container), connection_string = cs })
    assert.are.same({ "x/y" }, keys_of(assert(by_cs:list())))
    local by_sas = assert(storage.open { url = ("az://%s/kafka"):format(container), endpoint = az.endpoint,
      sas_token = "?" .. az.sas })
    assert(by_sas:put("x/z", "by SAS"))
    local by_cs_sas = assert(storage.open { backend = "azure", container = container, prefix = "kafka",
      connection_string = ("BlobEndpoint=%s;SharedAccessSignature=%s"):format(az.endpoint, az.sas) })
    assert.are.equal("by SAS", by_cs_sas:get("x/z"))
    for _, s in ipairs { by_url, by_cs, by_sas, by_cs_sas } do s:close() end
    -- a bare URL (as --path gives it) takes the environment's connection string
    local r = proc.run({ proc.kalua(), "-e", ([[
      local s = assert(require("kalua.storage").open("az://%s/kafka"))
      for _, e in ipairs(assert(s:list())) do print(e.key, e.size) end]]):format(container) },
      { env = { AZURE_STORAGE_CONNECTION_STRING = cs } })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("x/y\t18\nx/z\t6\n", r.stdout)
  end)

  it("says in one line, without the key, that the key is wrong or the SAS expired", function()
    local wrong = az.key:sub(1, 10) .. (az.key:sub(11, 11) == "A" and "B" or "A") .. az.key:sub(12)
    local bad = assert(open { account_key = wrong })
    for _, call in ipairs {
      function() return bad:put("k", "v") end, function() return bad:get("k") end,
      function() return bad:list() end, function() return bad:stat("k") end,
    } do
      local ok, msg, name = call()
      assert.is_nil(ok)
      assert.are.equal("PERMISSION_DENIED", name, msg)
      assert.truthy(msg:find("check account_key / sas_token", 1, true), msg)
      assert.truthy(msg:find(container, 1, true), msg)
      assert.is_nil(msg:find("\n", 1, true), msg)
      assert.is_nil(msg:find(wrong, 1, true))
      assert.is_nil(msg:find(az.key, 1, true))
    end
    bad:close()
    local expired = assert(open { account_key = false, sas_token = az.sas_expired })
    local ok, msg, name = expired:get("k")
    assert.is_nil(ok)
    assert.are.equal("PERMISSION_DENIED", name, msg)
    assert.is_nil(msg:find("sig=", 1, true), msg)
    expired:close()
    ok, msg = storage.open { backend = "azure", container = container, endpoint = az.endpoint,
      account_name = az.account, account_key = "not base64!" }
    assert.is_nil(ok)
    assert.truthy(msg:find("not base64", 1, true), msg)
    ok, msg = storage.open { backend = "azure", container = container, endpoint = az.endpoint }
    assert.is_nil(ok)
    assert.truthy(msg:find("account_key, sas_token or a connection_string", 1, true), msg)
  end)

  it("names a missing container in one line", function()
    local missing = assert(open { container = "no-such-container" })
    for _, call in ipairs {
      function() return missing:put("k", "v") end, function() return missing:list() end,
      function() return missing:get("k") end,
    } do
      local ok, msg, name = call()
      assert.is_nil(ok)
      assert.are.equal("NOT_FOUND", name, msg)
      assert.truthy(msg:find("container 'no-such-container' does not exist", 1, true), msg)
      assert.is_nil(msg:find("\n", 1, true), msg)
    end
    missing:close()
  end)
end)

describe("kalua backup and restore on Azure Blob (Azurite)", function()
  local az, container, brokers, dir, source

  local function produce(topic, partitions, n)
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, n - 1 do
      assert(p:produce { topic = topic, partition = i % partitions, key = "k" .. i,
        value = ("value %d "):format(i) .. ("x"):rep(i % 300), timestamp = 1700000000000 + i,
        headers = { { "i", tostring(i) } } })
    end
    assert(p:flush(10000))
  end

  -- The account key stays in the environment: the YAML says ${KALUA_SPEC_AZURE_KEY}.
  local function config(mode, extra, storage_extra)
    local path = dir .. "/" .. mode .. ".yaml"
    proc.write_file(path, ([[
mode: %s
backup_id: nightly
%s:
  bootstrap_servers: %s
topics:
  include: ["%s"]
storage:
  backend: azure
  container: %s
  prefix: backups
  endpoint: %s
  account_name: %s
  account_key: ${KALUA_SPEC_AZURE_KEY}
%s%s]]):format(mode, mode == "backup" and "source" or "target", brokers, source, container, az.endpoint,
      az.account, storage_extra or "", extra or ""))
    return path
  end

  local function run(argv, key)
    return proc.run(argv, { env = { KALUA_SPEC_AZURE_KEY = key or az.key, KALUA_AZURE_BLOCK_SIZE = "65536" } })
  end

  setup(function()
    az = azurite()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    container = new_container(az)
    source = rig.topic("azure-src")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = source, partitions = 2, replication_factor = 1 } })
    produce(source, 2, 1200)
  end)

  teardown(function()
    if container then rest(az, "DELETE", container, "restype=container") end
    if dir then proc.rmdir(dir) end
  end)

  it("backs a topic up into blocks and restores it exactly under a new name", function()
    local r = run { proc.kalua(), "backup", "--config",
      config("backup", "backup:\n  compression: none\n  segment_max_records: 500\n") }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1200 new records", 1, true), r.stdout)

    local store <close> = assert(storage.open { backend = "azure", container = container, prefix = "backups",
      endpoint = az.endpoint, account_name = az.account, account_key = az.key })
    local manifest = assert(json.decode(assert(store:get("nightly/manifest.json"))))
    assert.are.equal(2, manifest.topics[source].partition_count)
    local segs = store:list(("nightly/topics/%s/0/"):format(source))
    assert.are.equal(2, #segs)
    assert.is_true(segs[1].size > 65536, segs[1].size) -- went up as Put Block + Put Block List
    assert.is_true(committed_blocks(az, container, "backups/" .. segs[1].key) > 1)

    -- validate reads the credentials from the environment's connection string
    r = proc.run({ proc.kalua(), "validate", "--path", ("az://%s/backups"):format(container), "nightly", "--deep" },
      { env = { AZURE_STORAGE_CONNECTION_STRING = ("AccountName=%s;AccountKey=%s;BlobEndpoint=%s")
        :format(az.account, az.key, az.endpoint) } })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)

    local target = rig.topic("azure-dst")
    r = run { proc.kalua(), "restore", "--config",
      config("restore", ("restore:\n  topic_mapping:\n    %s: %s\n"):format(source, target)) }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("1200 records", 1, true), r.stdout)
    for p = 0, 1 do
      local want, got = rig.read_partition(brokers, source, p), rig.read_partition(brokers, target, p)
      assert.are.equal(600, #got)
      assert.are.same(want, got)
    end
  end)

  it("fails a backup with a wrong key in one line, exit 1, never printing the key", function()
    local wrong = az.key:sub(1, 20) .. (az.key:sub(21, 21) == "Q" and "R" or "Q") .. az.key:sub(22)
    local r = run({ proc.kalua(), "backup", "--config", config("backup") }, wrong)
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert.truthy(out:find("check account_key / sas_token", 1, true), out)
    assert.are.equal(1, select(2, r.stderr:gsub("\n", "")), r.stderr)
    assert.is_nil(out:find(wrong, 1, true))
    assert.is_nil(out:find(az.key, 1, true))
  end)

  it("fails a backup to a missing container in one line naming it", function()
    local path = config("backup")
    proc.write_file(path, (proc.read_file(path):gsub("container: " .. container:gsub("%-", "%%-"), "container: no-such-container")))
    local r = run { proc.kalua(), "backup", "--config", path }
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.truthy(r.stderr:find("container 'no-such-container' does not exist", 1, true), r.stderr)
    assert.are.equal(1, select(2, r.stderr:gsub("\n", "")), r.stderr)
  end)
end)

describe("kalua.storage on Azure Blob through a faulty network", function()
  local az, container, proxy, store, state

  -- Queues a fault in the proxy (spec/rig/emulators/azure/faultproxy.js).
  local function fault(mode, count)
    local p = io.popen(("curl -s -X PUT 'http://127.0.0.1:%d/__fault/%s?count=%d'"):format(proxy.port, mode, count or 1))
    assert.are.equal("ok", p:read("a"))
    p:close()
  end

  local function stats()
    local p = io.popen(("curl -s 'http://127.0.0.1:%d/__stats'"):format(proxy.port))
    local s = assert(json.decode(p:read("a")))
    p:close()
    return s
  end

  setup(function()
    az = azurite()
    container = new_container(az)
    local upstream = assert(az.endpoint:match("^http://127%.0%.0%.1:(%d+)/"), az.endpoint)
    state = os.tmpname()
    os.remove(state)
    assert(os.execute(("node spec/rig/emulators/azure/faultproxy.js %s %s >/dev/null 2>&1 &"):format(
      upstream, proc.quote(state))))
    for _ = 1, 100 do
      local line = proc.read_file(state)
      if line:find("\n") then
        local port, pid = line:match("^(%d+) (%d+)")
        proxy = { port = tonumber(port), pid = pid }
        break
      end
      os.execute("sleep 0.1")
    end
    assert(proxy, "the fault proxy did not start (node spec/rig/emulators/azure/faultproxy.js)")
    store = assert(storage.open { backend = "azure", container = container, prefix = "faults",
      endpoint = az.endpoint:gsub("^http://127%.0%.0%.1:%d+", "http://127.0.0.1:" .. proxy.port),
      account_name = az.account, account_key = az.key, block_size = 4096 })
  end)

  teardown(function()
    if store then store:close() end
    if proxy then os.execute("kill " .. proxy.pid) end
    if state then os.remove(state) end
    if container then rest(az, "DELETE", container, "restype=container") end
  end)

  it("retries 503s, dropped requests and responses cut mid-body, and gets the data right", function()
    local data = random_bytes(20000) -- 5 blocks of 4096
    local before = stats()
    fault("503", 2)
    fault("drop-request", 1)
    local w = assert(store:open_writer("retried"))
    assert(w:write(data))
    fault("503", 1)
    fault("drop-request", 1)
    assert(w:commit())
    fault("drop-response", 2)
    assert.is_true(data == store:get("retried"))
    fault("503", 1)
    assert.are.equal(20000, store:stat("retried").size)
    fault("drop-response", 1)
    assert.are.same({ "retried" }, keys_of(assert(store:list())))
    local after = stats()
    assert.are.equal(0, after.queued)
    assert.are.equal(9, after.faults - before.faults)
  end)

  it("gives up after the last attempt in one line and publishes nothing", function()
    fault("503", 1000)
    local w = assert(store:open_writer("never"))
    local ok, msg, name = w:write(random_bytes(5000)) -- the first block fails every attempt
    assert.is_nil(ok)
    assert.are.equal("IO_ERROR", name)
    assert.truthy(msg:find("HTTP 503 ServerBusy", 1, true) and msg:find(container, 1, true), msg)
    assert.is_nil(msg:find("\n", 1, true), msg)
    ok = w:commit()
    assert.is_nil(ok)
    fault("clear")
    local _, _, missing = store:stat("never")
    assert.are.equal("NOT_FOUND", missing)
    -- a commit that fails leaves the key as it was
    assert(store:put("kept", "old"))
    w = assert(store:open_writer("kept"))
    assert(w:write(random_bytes(9000)))
    fault("503", 1000)
    assert.is_nil((w:commit()))
    fault("clear")
    assert.are.equal("old", store:get("kept"))
  end)
end)
