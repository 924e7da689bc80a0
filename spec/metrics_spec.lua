-- kalua.metrics (registry, exposition format, HTTP server, textfile),
-- store:stats() on the filesystem and the rig's S3 peer, and `kalua backup
-- --metrics-addr` scraped while it runs.
local metrics = require "kalua.metrics"
local storage = require "kalua.storage"
local kafka = require "kalua.kafka"
local clock = require "kalua.clock"
local json = require "kalua.json"
local proc = require "proc"
local configs = require "configs"
local rig = require "rig"

-- GET url with curl: status, body, headers (lower-case names).
local function get(url)
  local r = proc.run { "curl", "-sS", "-i", "--max-time", "10", url }
  assert(r.code == 0, r.stderr)
  local head, body = r.stdout:match("^(.-)\r\n\r\n(.*)$")
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r]*)") do headers[k:lower()] = v end
  return tonumber(head:match("^HTTP/1%.1 (%d+)")), body, headers
end

-- The value of every sample, by "name{labels}".
local function samples(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if not line:find("^#") then
      local series, value = line:match("^(.*) (%S+)$")
      out[series] = tonumber(value)
    end
  end
  return out
end

-- The sum of a metric's samples over all its series (nil when it has none).
local function total(text, name)
  local sum
  for series, v in pairs(samples(text)) do
    if series == name or series:sub(1, #name + 1) == name .. "{" then sum = (sum or 0) + v end
  end
  return sum
end

-- Waits (at most `secs`) until fn() returns a truthy value; returns it.
local function eventually(secs, fn)
  local deadline = clock.now() + secs
  repeat
    local v = fn()
    if v then return v end
    clock.sleep(0.05)
  until clock.now() > deadline
  return fn()
end

describe("kalua.metrics", function()
  describe("a registry", function()
    it("renders the text exposition format, escaping labels and help", function()
      local reg <close> = metrics.registry()
      reg:counter("kalua_demo_records_total", "Records seen.\nA second line, a \\ backslash.",
        { topic = 'say "hi"\\now\n', partition = 3 }):add(5)
      reg:counter("kalua_demo_records_total", "Records seen.\nA second line, a \\ backslash.",
        { topic = "b", partition = 0 }):inc()
      reg:gauge("kalua_demo_lag_records", "Lag."):set(-2.5)
      reg:gauge("kalua_demo_up", "Up.", {}):set(1)
      local h = reg:histogram("kalua_demo_request_duration_seconds", "Latency.", { 0.25, 0.5, 1 }, { method = "PUT" })
      for _, v in ipairs { 0.25, 0.5, 0.75, 12 } do h:observe(v) end
      reg:histogram("kalua_demo_request_duration_seconds", "Latency.", nil, { method = "GET" })
      assert.are.equal([[
# HELP kalua_demo_records_total Records seen.\nA second line, a \\ backslash.
# TYPE kalua_demo_records_total counter
kalua_demo_records_total{partition="3",topic="say \"hi\"\\now\n"} 5
kalua_demo_records_total{partition="0",topic="b"} 1
# HELP kalua_demo_lag_records Lag.
# TYPE kalua_demo_lag_records gauge
kalua_demo_lag_records -2.5
# HELP kalua_demo_up Up.
# TYPE kalua_demo_up gauge
kalua_demo_up 1
# HELP kalua_demo_request_duration_seconds Latency.
# TYPE kalua_demo_request_duration_seconds histogram
kalua_demo_request_duration_seconds_bucket{method="PUT",le="0.25"} 1
kalua_demo_request_duration_seconds_bucket{method="PUT",le="0.5"} 2
kalua_demo_request_duration_seconds_bucket{method="PUT",le="1"} 3
kalua_demo_request_duration_seconds_bucket{method="PUT",le="+Inf"} 4
kalua_demo_request_duration_seconds_sum{method="PUT"} 13.5
kalua_demo_request_duration_seconds_count{method="PUT"} 4
kalua_demo_request_duration_seconds_bucket{method="GET",le="0.25"} 0
kalua_demo_request_duration_seconds_bucket{method="GET",le="0.5"} 0
kalua_demo_request_duration_seconds_bucket{method="GET",le="1"} 0
kalua_demo_request_duration_seconds_bucket{method="GET",le="+Inf"} 0
kalua_demo_request_duration_seconds_sum{method="GET"} 0
kalua_demo_request_duration_seconds_count{method="GET"} 0
]], reg:render())
    end)

    it("gives the same series for the same name and labels, in any order", function()
      local reg <close> = metrics.registry()
      local a = reg:counter("x_total", "X.", { a = "1", b = "2" })
      a:add(2)
      reg:counter("x_total", "X.", { b = "2", a = 1 }):add(3)
      assert.are.equal(5, a:value())
      assert.are.equal('x_total{a="1",b="2"} 5\n', reg:render():match("\n(x_total.-\n)"))
      local h = reg:histogram("h_seconds", "H.")
      h:observe(0.003)
      h:observe(7)
      assert.are.same({ 2, 7.003 }, { h:value() })
      assert.truthy(reg:render():find('h_seconds_bucket{le="0.005"} 1\n', 1, true)) -- Prometheus' default buckets
      h:add_buckets({ 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2 }, 100.001)
      assert.truthy(reg:render():find('h_seconds_bucket{le="0.005"} 2\nh_seconds_bucket{le="0.01"} 2\n', 1, true))
      assert.truthy(reg:render():find('h_seconds_bucket{le="+Inf"} 5\n', 1, true))
    end)

    it("holds names to Prometheus' rules", function()
      assert.is_true(metrics.valid_name("kalua_backup_records_total"))
      assert.is_true(metrics.valid_name("job:rate_5m"))
      assert.is_true(metrics.valid_name("_x9"))
      for _, bad in ipairs { "", "9lives", "with-dash", "with space", "caf\195\169", "a.b" } do
        assert.is_false(metrics.valid_name(bad), bad)
      end
      local reg <close> = metrics.registry()
      assert.has_error(function() reg:counter("kalua-records", "X.") end,
        "bad argument #1 to 'counter' (invalid metric name 'kalua-records' (want [a-zA-Z_:][a-zA-Z0-9_:]*))")
      assert.has_error(function() reg:gauge("9g", "X.") end)
      for _, label in ipairs { "__reserved", "9x", "a-b", "a:b" } do
        assert.has_error(function() reg:counter("ok_total", "X.", { [label] = "v" }) end)
      end
      assert.has_error(function() reg:counter("ok_total", "X.", { "positional" }) end)
      assert.has_error(function() reg:counter("ok_total", "X.", { t = {} }) end)
      assert.has_error(function() reg:histogram("h", "H.", nil, { le = "1" }) end)
      assert.has_error(function() reg:histogram("h", "H.", { 1, 0.5 }) end)
      assert.has_error(function() reg:histogram("h", "H.", { 0 / 0 }) end)
    end)

    it("refuses a name registered with another type, help, labels or buckets", function()
      local reg <close> = metrics.registry()
      reg:counter("c_total", "C.", { topic = "t" })
      assert.has_error(function() reg:gauge("c_total", "C.", { topic = "t" }) end,
        "metrics: c_total is a counter, not a gauge")
      assert.has_error(function() reg:counter("c_total", "Other.", { topic = "t" }) end)
      assert.has_error(function() reg:counter("c_total", "C.", { topic = "t", partition = 0 }) end,
        "metrics: c_total has labels {topic}, every series must give exactly those")
      reg:histogram("h_seconds", "H.", { 1, 2 })
      assert.has_error(function() reg:histogram("h_seconds", "H.", { 1, 3 }) end)
      assert.has_no_error(function() reg:histogram("h_seconds", "H.", { 1, 2, math.huge }) end)
    end)

    it("lets a counter only go up", function()
      local reg <close> = metrics.registry()
      local c = reg:counter("c_total", "C.")
      assert.has_error(function() c:add(-1) end)
      assert.has_error(function() c:add(0 / 0) end)
      local g = reg:gauge("g", "G.")
      g:add(-3)
      g:dec()
      assert.are.equal(-4, g:value())
    end)

    it("raises a clear error once closed, and closes twice safely", function()
      local reg = metrics.registry()
      local c = reg:counter("c_total", "C.")
      reg:close()
      reg:close()
      assert.has_error(function() c:inc() end, "metrics registry is closed")
      assert.has_error(function() reg:render() end, "metrics registry is closed")
      assert.are.equal("kalua.metrics.Registry (closed)", tostring(reg))
    end)
  end)

  describe("served over HTTP", function()
    local reg, url

    before_each(function()
      reg = metrics.registry()
      url = "http://" .. assert(reg:serve("127.0.0.1:0"))
    end)

    after_each(function() reg:close() end)

    it("answers /metrics in the text format, /healthz and 404", function()
      reg:counter("kalua_demo_total", "Demo.", { kind = "x" }):add(7)
      assert.truthy(reg:address():match("^127%.0%.0%.1:%d+$"))
      local status, body, headers = get(url .. "/metrics")
      assert.are.equal(200, status)
      assert.are.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
      assert.are.equal(reg:render(), body)
      status, body = get(url .. "/healthz")
      assert.are.same({ 200, "ok\n" }, { status, body })
      reg:health(false, "broker unreachable")
      status, body = get(url .. "/healthz")
      assert.are.same({ 503, "broker unreachable\n" }, { status, body })
      assert.are.same({ false, "broker unreachable" }, { reg:health() })
      reg:health(true)
      assert.are.equal(200, (get(url .. "/healthz")))
      assert.are.equal(404, (get(url .. "/")))
      assert.are.equal(200, (get(url .. "/metrics?name[]=x")))
      local r = proc.run { "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url .. "/metrics" }
      assert.are.equal("405", r.stdout)
    end)

    it("serves concurrent scrapers, one after another, without blocking Lua", function()
      local c = reg:counter("kalua_demo_total", "Demo.")
      -- a client that connects and says nothing holds the server for a while
      local port = reg:address():match(":(%d+)$")
      os.execute(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s; sleep 2' >/dev/null 2>&1 &"):format(port))
      clock.sleep(0.2)
      local started = clock.now()
      for _ = 1, 1000 do c:inc() end
      assert.truthy(reg:render():find("kalua_demo_total 1000", 1, true))
      assert.is_true(clock.now() - started < 0.5)
      local p = assert(io.popen(("for i in 1 2 3 4 5 6; do curl -s --max-time 20 -o /dev/null -w '%%{http_code}\\n' %s/metrics & done; wait")
        :format(url)))
      local codes = p:read("a")
      p:close()
      assert.are.equal(("200\n"):rep(6), codes)
    end)

    it("keeps two registries apart", function()
      local other <close> = metrics.registry()
      local other_url = "http://" .. assert(other:serve(":0")) -- every interface
      other_url = other_url:gsub("0%.0%.0%.0", "127.0.0.1"):gsub("%[::%]", "127.0.0.1")
      reg:counter("first_total", "First."):inc()
      other:counter("second_total", "Second."):inc()
      local _, one = get(url .. "/metrics")
      local _, two = get(other_url .. "/metrics")
      assert.truthy(one:find("first_total 1", 1, true))
      assert.is_nil(one:find("second_total", 1, true))
      assert.truthy(two:find("second_total 1", 1, true))
      assert.is_nil(two:find("first_total", 1, true))
    end)

    it("says why it cannot serve, and stops when closed", function()
      local other <close> = metrics.registry()
      local none, err, name = other:serve(reg:address())
      assert.is_nil(none)
      assert.truthy(err:find("Address already in use", 1, true), err)
      assert.are.equal("ADDRESS_IN_USE", name)
      for _, bad in ipairs { "9464", "localhost", "127.0.0.1:99999", "127.0.0.1:x", "::1:9464" } do
        none, err, name = other:serve(bad)
        assert.is_nil(none, bad)
        assert.are.equal("INVALID_ADDRESS", name, bad)
      end
      assert.is_nil(other:address())
      assert.has_error(function() reg:serve("127.0.0.1:0") end)
      reg:close()
      local r = proc.run { "curl", "-s", "--max-time", "5", url .. "/metrics" }
      assert.are_not.equal(0, r.code)
    end)
  end)

  describe("a textfile", function()
    local dir

    before_each(function() dir = proc.tmpdir() end)
    after_each(function() proc.rmdir(dir) end)

    local function files()
      local p = io.popen("ls -A " .. proc.quote(dir))
      local out = p:read("a")
      p:close()
      return out
    end

    it("is written whole, readable, and replaced atomically", function()
      local reg <close> = metrics.registry()
      local c = reg:counter("kalua_demo_total", "Demo.")
      c:inc()
      local path = dir .. "/kalua.prom"
      assert(reg:write_textfile(path))
      assert.are.equal(reg:render(), proc.read_file(path))
      c:add(41)
      assert(reg:write_textfile(path))
      assert.truthy(proc.read_file(path):find("kalua_demo_total 42\n", 1, true))
      assert.are.equal("kalua.prom\n", files()) -- no temporary file left behind
      local p = io.popen("stat -c %a " .. proc.quote(path))
      assert.are.equal("644", p:read("l"))
      p:close()
      local none, err, name = reg:write_textfile(dir .. "/missing/kalua.prom")
      assert.is_nil(none)
      assert.truthy(err:find("cannot create a file beside " .. dir .. "/missing/kalua.prom", 1, true), err)
      assert.are.equal("IO_ERROR", name)
    end)
  end)
end)

describe("storage request counters", function()
  it("count filesystem operations per store", function()
    local dir = proc.tmpdir()
    local store <close> = assert(storage.open(dir .. "/a"))
    local other <close> = assert(storage.open(dir .. "/b"))
    assert(store:put("k", "v"))
    assert(store:put("k2", "v"))
    assert.are.equal("v", store:get("k"))
    assert.is_nil(store:get("missing"))
    assert.is_nil(store:stat("missing"))
    assert(store:list(""))
    assert(store:delete("k2"))
    local stats = store:stats()
    assert.are.equal("filesystem", stats.backend)
    assert.are.same({ ["PUT ok"] = 2, ["GET ok"] = 1, ["GET NOT_FOUND"] = 1, ["HEAD NOT_FOUND"] = 1, ["LIST ok"] = 1,
      ["DELETE ok"] = 1 }, stats.requests)
    assert.are.equal(2, stats.seconds.PUT.count)
    local in_buckets = 0
    for _, n in ipairs(stats.seconds.PUT.buckets) do in_buckets = in_buckets + n end
    assert.are.equal(2, in_buckets)
    assert.are.equal(#stats.bounds + 1, #stats.seconds.PUT.buckets)
    assert.are.same({}, other:stats().requests)
    proc.rmdir(dir)
  end)

  describe("on S3", function()
    local endpoint, bucket, prefix, store

    local function peer(method, path, body)
      local argv = { "curl", "-sS", "-X", method, endpoint .. path }
      if body then
        argv[#argv + 1] = "-d"
        argv[#argv + 1] = json.encode(body)
      end
      local r = proc.run(argv)
      assert(r.code == 0, r.stderr)
    end

    setup(function()
      endpoint = rig.env("KALUA_RIG_S3_ENDPOINT")
      bucket = rig.env("KALUA_RIG_S3_BUCKET")
    end)

    before_each(function()
      prefix = rig.topic("metrics-s3")
      store = assert(storage.open { backend = "s3", bucket = bucket, prefix = prefix, endpoint = endpoint,
        region = rig.env("KALUA_RIG_S3_REGION"), access_key = rig.env("KALUA_RIG_S3_ACCESS_KEY"),
        secret_key = rig.env("KALUA_RIG_S3_SECRET_KEY") })
    end)

    after_each(function()
      peer("DELETE", "/__faults")
      store:close()
    end)

    it("count every HTTP attempt by method and status, retries included", function()
      peer("POST", "/__faults", { status = 503, count = 2, path = prefix .. "/retry" })
      assert(store:put("retry", "after two 503s"))
      assert.is_nil(store:stat("missing"))
      local requests = store:stats().requests
      assert.are.same({ ["PUT 503"] = 2, ["PUT 200"] = 1, ["HEAD 404"] = 1 }, requests)
      -- a multipart upload: parts go up on the writer's upload thread
      local w = assert(store:open_writer("big"))
      assert(w:write(("m"):rep(9 * 1048576)))
      assert(w:commit())
      local stats = store:stats()
      assert.are.equal("s3", stats.backend)
      assert.are.equal(2, stats.requests["POST 200"]) -- create and complete
      assert.are.equal(3, stats.requests["PUT 200"])  -- the object above and two parts
      assert.are.equal(5, stats.seconds.PUT.count)
      assert.is_true(stats.seconds.PUT.sum > 0)
    end)

    it("reach kalua_storage_requests_total from a backup to S3", function()
      local brokers = rig.env("KAFKA_PLAINTEXT")
      local topic = rig.topic("metrics-s3-src")
      local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
      assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
      local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
      for i = 0, 99 do assert(p:produce { topic = topic, partition = i % 2, value = "v" .. i }) end
      assert(p:flush(10000))
      local dir = proc.tmpdir()
      local cfg = configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "m",
        source = { bootstrap_servers = brokers }, topics = { include = { topic } },
        storage = { backend = "s3", bucket = bucket, prefix = prefix, endpoint = endpoint,
          region = rig.env("KALUA_RIG_S3_REGION"), access_key = "${KALUA_RIG_S3_ACCESS_KEY}",
          secret_key = "${KALUA_RIG_S3_SECRET_KEY}" },
        backup = { segment_max_records = 20 } })
      local r = proc.run { proc.kalua(), "backup", "--config", cfg, "--metrics-textfile", dir .. "/kalua.prom" }
      assert.are.equal(0, r.code, r.stderr)
      local text = proc.read_file(dir .. "/kalua.prom")
      proc.rmdir(dir)
      local s = samples(text)
      -- 3 segments per partition, each a PUT; the checkpoint after each; manifest and group offsets
      assert.is_true(s['kalua_storage_requests_total{backend="s3",method="PUT",status="200"}'] >= 12, text)
      assert.are.equal(s['kalua_storage_requests_total{backend="s3",method="PUT",status="200"}'],
        s['kalua_storage_request_duration_seconds_count{backend="s3",method="PUT"}'])
      assert.are.equal(100, total(text, "kalua_backup_records_total"))
      assert.are.equal(6, total(text, "kalua_backup_segments_total"))
      assert.are.equal(0, total(text, "kalua_errors_total"))
    end)
  end)
end)

describe("kalua backup --metrics-addr", function()
  local brokers, dir, topic, pid

  before_each(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    topic = rig.topic("metrics-backup")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1 } })
  end)

  after_each(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
    pid = nil
    proc.rmdir(dir)
  end)

  local function produce(n, start)
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = start, start + n - 1 do assert(p:produce { topic = topic, partition = i % 3, value = ("record %d"):format(i) }) end
    assert(p:flush(10000))
  end

  local function alive()
    return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
  end

  it("is scraped while a continuous backup runs, and matches what it backed up", function()
    produce(300, 0)
    local cfg = configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "live",
      source = { bootstrap_servers = brokers }, topics = { include = { topic } },
      storage = configs.fs(dir .. "/store"),
      backup = { continuous = true, segment_max_interval_ms = 200, segment_max_records = 40 } })
    local p = assert(io.popen(("%s backup --config %s --metrics-addr 127.0.0.1:0 --metrics-textfile %s </dev/null >%s 2>%s & echo $!")
      :format(proc.kalua(), proc.quote(cfg), proc.quote(dir .. "/kalua.prom"), proc.quote(dir .. "/out"),
        proc.quote(dir .. "/err"))))
    pid = p:read("l")
    p:close()
    local address = eventually(30, function() return proc.read_file(dir .. "/err"):match("metrics at http://(%S+)/metrics") end)
    assert(address, proc.read_file(dir .. "/err"))

    local function records()
      local status, body = get("http://" .. address .. "/metrics")
      assert.are.equal(200, status)
      return total(body, "kalua_backup_records_total") or 0, body
    end
    local first = eventually(30, function()
      local n = records()
      return n == 300 and n
    end)
    assert.are.equal(300, first)
    local health, why = get("http://" .. address .. "/healthz")
    assert.are.same({ 200, "ok\n" }, { health, why })
    produce(150, 300)
    local body
    local second = eventually(30, function()
      local n
      n, body = records()
      return n == 450 and n
    end)
    assert.are.equal(450, second)
    local s = samples(body)
    assert.truthy(s['kalua_backup_records_total{partition="0",topic="' .. topic .. '"}'])
    assert.are.equal(0, total(body, "kalua_backup_lag_records"))
    assert.is_true(s['kalua_storage_requests_total{backend="filesystem",method="PUT",status="ok"}'] > 0)
    assert.is_true(s['kalua_backup_last_success_timestamp_seconds{backup_id="live"}'] >= os.time() - 60)
    assert.truthy(s["kalua_backup_throughput_bytes_per_second"])

    os.execute("kill -TERM " .. pid)
    assert.is_true(eventually(30, function() return not alive() end), "kalua backup did not stop")
    pid = nil
    local out = proc.read_file(dir .. "/out")
    local stopped = tonumber(out:match("stopped by SIGTERM after (%d+) records"))
    assert.are.equal(450, stopped, out .. proc.read_file(dir .. "/err"))
    assert.is_nil(proc.read_file(dir .. "/err"):find("Sanitizer", 1, true), proc.read_file(dir .. "/err"))
    -- the textfile written at the end agrees with the last scrape and with the store
    local text = proc.read_file(dir .. "/kalua.prom")
    assert.are.equal(450, total(text, "kalua_backup_records_total"))
    local store <close> = assert(storage.open(dir .. "/store"))
    local checkpoint = assert(json.decode(assert(store:get("live/checkpoint.json"))))
    local stored, segments = 0, 0
    for _, part in pairs(checkpoint.partitions) do
      for _, seg in ipairs(part.segments) do
        stored, segments = stored + seg.records, segments + 1
      end
    end
    assert.are.equal(450, stored)
    assert.are.equal(segments, total(text, "kalua_backup_segments_total"))
  end)

  it("counts the auth relay's SASL authentications", function()
    produce(30, 0)
    local cfg = configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "sasl",
      source = { bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"), security = { security_protocol = "SASL_PLAINTEXT",
        sasl_mechanism = "SCRAM-SHA-512", sasl_username = rig.env("KAFKA_SCRAM_USER"),
        sasl_password = "${KAFKA_SCRAM_PASSWORD}", sasl_relay = true } },
      topics = { include = { topic } }, storage = configs.fs(dir .. "/store") })
    local r = proc.run { proc.kalua(), "backup", "--config", cfg, "--metrics-textfile", dir .. "/kalua.prom" }
    assert.are.equal(0, r.code, r.stderr)
    local s = samples(proc.read_file(dir .. "/kalua.prom"))
    -- the admin client and a consumer per partition, each through the relay
    assert.is_true(s.kalua_sasl_authentications_total >= 4, tostring(s.kalua_sasl_authentications_total))
    assert.are.equal(0, s.kalua_sasl_authentication_failures_total)
    assert.are.equal(0, s.kalua_sasl_reauthentications_total)
    assert.are.equal(30, total(proc.read_file(dir .. "/kalua.prom"), "kalua_backup_records_total"))
  end)

  it("counts a failed run in kalua_errors_total and still writes the textfile", function()
    local cfg = configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "bad",
      source = { bootstrap_servers = brokers }, topics = { include = { topic } },
      storage = configs.fs(dir .. "/store") })
    os.execute("mkdir -p " .. proc.quote(dir .. "/store/bad/checkpoint.json")) -- a directory where a file must be
    local r = proc.run { proc.kalua(), "backup", "--config", cfg, "--metrics-textfile", dir .. "/kalua.prom" }
    assert.are.equal(1, r.code)
    local s = samples(proc.read_file(dir .. "/kalua.prom"))
    assert.are.equal(1, s['kalua_errors_total{kind="storage"}'])
    assert.are.equal(1, total(proc.read_file(dir .. "/kalua.prom"), "kalua_errors_total"))
  end)

  it("refuses a bad --metrics-addr with one line", function()
    local cfg = configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "x",
      source = { bootstrap_servers = brokers }, storage = configs.fs(dir .. "/store") })
    local r = proc.run { proc.kalua(), "backup", "--config", cfg, "--metrics-addr", "nowhere" }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua backup: metrics: bad address 'nowhere'[^\n]*\n$"), r.stderr)
  end)
end)

describe("errors by kind", function()
  local telemetry = require "kalua.telemetry"

  it("are classed as config, auth, kafka, storage or other from the phase, name and message", function()
    local cases = {
      { "config", "b.yaml:3:1: unknown key 'sasl_pasword'", nil, "config" },
      { "auth", "create_topics: sasl_plaintext://localhost:9092/bootstrap: SASL authentication error: "
        .. "Authentication failed during authentication due to invalid credentials", "_AUTHENTICATION", "kafka" },
      { "auth", "metadata: Broker: Topic authorization failed", "TOPIC_AUTHORIZATION_FAILED" },
      { "kafka", "create_topics: Local: Timed out (127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
        .. "Connection refused)", "_TIMED_OUT" },
      { "kafka", "flush: 3 messages not delivered", nil, "kafka" },
      { "storage", "backup 'nope': cannot open /x/nope/manifest.json: No such file or directory" },
      { "storage", "s3 PUT bucket/key: HTTP 503", "IO_ERROR" },
      { "other", "something odd happened" },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[1], telemetry.error_kind(c[2], c[3], c[4]), c[2])
    end
    local reg <close> = metrics.registry()
    local t = telemetry.new(reg)
    t:init_errors()
    assert.are.equal("auth", t:failure("SASL authentication failed", "SASL_AUTHENTICATION_FAILED"))
    t:error("no such kind")
    local s = samples(reg:render())
    assert.are.same({ 0, 1, 0, 0, 1 }, { s['kalua_errors_total{kind="config"}'], s['kalua_errors_total{kind="auth"}'],
      s['kalua_errors_total{kind="kafka"}'], s['kalua_errors_total{kind="storage"}'], s['kalua_errors_total{kind="other"}'] })
  end)
end)

describe("kalua restore --metrics-addr", function()
  local brokers, dir, topic

  -- A backup of 600 records over 2 partitions, in segments of 20.
  before_each(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    topic = rig.topic("metrics-restore")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, 599 do assert(p:produce { topic = topic, partition = i % 2, value = ("record %d"):format(i) }) end
    assert(p:flush(10000))
    local cfg = configs.write(dir .. "/backup.yaml", { mode = "backup", backup_id = "src",
      source = { bootstrap_servers = brokers }, topics = { include = { topic } },
      storage = configs.fs(dir .. "/store"), backup = { segment_max_records = 20 } })
    local r = proc.run { proc.kalua(), "backup", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
  end)

  after_each(function() proc.rmdir(dir) end)

  local function restore_config(name, extra)
    local t = { mode = "restore", backup_id = "src", target = { bootstrap_servers = brokers },
      storage = configs.fs(dir .. "/store"), restore = { topic_mapping = { [topic] = topic .. "-restored" } } }
    for k, v in pairs(extra or {}) do t[k] = v end
    return configs.write(dir .. "/" .. name, t)
  end

  -- What the manifest says was backed up: records, bytes and segments.
  local function backed_up()
    local store <close> = assert(storage.open(dir .. "/store"))
    local manifest = assert(json.decode(assert(store:get("src/manifest.json"))))
    local records, bytes, segments = 0, 0, 0
    for _, part in pairs(manifest.topics[topic].partitions) do
      for _, seg in ipairs(part.segments) do
        records, bytes, segments = records + seg.records, bytes + seg.bytes, segments + 1
      end
    end
    return records, bytes, segments
  end

  it("is scraped while a restore runs: the counters move, and the textfile holds the totals", function()
    -- a paced restore (200 records/s), so that scrapes see it under way
    local cfg = restore_config("restore.yaml", { restore = { topic_mapping = { [topic] = topic .. "-restored" },
      rate_limit_records_per_sec = 200 } })
    local run = proc.spawn { proc.kalua(), "restore", "--config", cfg, "--metrics-addr", "127.0.0.1:0",
      "--metrics-textfile", dir .. "/restore.prom" }
    local seen = {}
    local ok, err = pcall(function()
      local address = eventually(30, function() return run:stderr():match("metrics at http://(%S+)/metrics") end)
      assert(address, run:stderr())
      -- scrape until the endpoint goes away with the process
      while true do
        local r = proc.run { "curl", "-sf", "--max-time", "5", "http://" .. address .. "/metrics" }
        if r.code ~= 0 then break end
        seen[#seen + 1] = total(r.stdout, "kalua_restore_records_total") or 0
        clock.sleep(0.05)
      end
      assert.are.equal(0, run:wait(60), run:stderr())
    end)
    run:cleanup()
    assert(ok, err)
    local moving = false
    for i = 2, #seen do
      assert.is_true(seen[i] >= seen[i - 1], "a counter went down")
      if seen[i] > 0 and seen[i] < 600 then moving = true end
    end
    assert.is_true(moving, "no scrape saw the restore under way: " .. table.concat(seen, ","))
    local records, bytes, segments = backed_up()
    assert.are.equal(600, records)
    local prom = proc.read_file(dir .. "/restore.prom")
    local s = samples(prom)
    assert.are.equal(600, total(prom, "kalua_restore_records_total"))
    assert.are.equal(300, s['kalua_restore_records_total{partition="1",topic="' .. topic .. '-restored"}'])
    assert.are.equal(bytes, total(prom, "kalua_restore_bytes_total"))
    assert.are.equal(segments, total(prom, "kalua_restore_segments_total"))
    assert.is_true(s['kalua_restore_last_success_timestamp_seconds{backup_id="src"}'] >= os.time() - 120)
    assert.are.equal(0, total(prom, "kalua_errors_total"))
    assert.is_true(s['kalua_storage_requests_total{backend="filesystem",method="GET",status="ok"}'] >= segments)
  end)

  it("writes the textfile of a one-shot restore, and of one that resumes with nothing left", function()
    local cfg = restore_config("restore.yaml")
    local r = proc.run { proc.kalua(), "restore", "--config", cfg, "--metrics-textfile", dir .. "/one.prom" }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(600, total(proc.read_file(dir .. "/one.prom"), "kalua_restore_records_total"))
    r = proc.run { proc.kalua(), "restore", "--config", cfg, "--metrics-textfile", dir .. "/two.prom" }
    assert.are.equal(0, r.code, r.stderr)
    local prom = proc.read_file(dir .. "/two.prom")
    assert.is_nil(total(prom, "kalua_restore_records_total"), prom) -- all done already: nothing restored
    assert.truthy(samples(prom)['kalua_restore_last_success_timestamp_seconds{backup_id="src"}'])
  end)

  it("counts a failed restore in kalua_errors_total by kind, and writes no secret", function()
    local function failed(name, t, kind)
      local cfg = restore_config(name .. ".yaml", t)
      local r = proc.run { proc.kalua(), "restore", "--config", cfg, "--metrics-textfile", dir .. "/" .. name .. ".prom" }
      assert.are.equal(1, r.code, name)
      local prom = proc.read_file(dir .. "/" .. name .. ".prom")
      assert.are.equal(1, total(prom, "kalua_errors_total"), prom)
      assert.are.equal(1, samples(prom)['kalua_errors_total{kind="' .. kind .. '"}'], prom)
      assert.is_nil(total(prom, "kalua_restore_last_success_timestamp_seconds"))
      return r, prom
    end
    failed("config", { mode = "backup" }, "config")
    failed("storage", { backup_id = "no-such-backup" }, "storage")
    local password = "not-the-password-" .. os.time()
    local r, prom = failed("auth", { target = { bootstrap_servers = rig.env("KAFKA_SASL_PLAINTEXT"),
      security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "SCRAM-SHA-512",
        sasl_username = rig.env("KAFKA_SCRAM_USER"), sasl_password = password } } }, "auth")
    assert.truthy(r.stderr:find("SASL authentication", 1, true), r.stderr)
    assert.is_nil(r.stderr:find(password, 1, true))
    assert.is_nil(prom:find(password, 1, true))
  end)
end)

describe("kalua offsets reset --metrics-textfile", function()
  it("counts the groups and partitions an executed reset moved, and none for a dry run", function()
    local brokers = rig.env("KAFKA_PLAINTEXT")
    local dir = proc.tmpdir()
    local topic, group = rig.topic("metrics-offsets"), rig.topic("metrics-offsets-group")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, 29 do assert(p:produce { topic = topic, partition = i % 3, value = "v" .. i }) end
    assert(p:flush(10000))
    assert(admin:alter_group_offsets(group, { { topic, 0, 5 }, { topic, 1, 5 }, { topic, 2, 5 } }))
    local function reset(name, ...)
      local argv = { proc.kalua(), "offsets", "reset", "-b", brokers, "--group", group, "--to-earliest",
        "--metrics-textfile", dir .. "/" .. name, ... }
      local r = proc.run(argv)
      assert.are.equal(0, r.code, r.stderr)
      return proc.read_file(dir .. "/" .. name)
    end
    local dry = reset("dry.prom")
    assert.is_nil(total(dry, "kalua_offsets_partitions_changed_total"), dry)
    assert.are.equal(0, total(dry, "kalua_errors_total"))
    local done = reset("done.prom", "--execute")
    local s = samples(done)
    assert.are.equal(1, s['kalua_offsets_groups_changed_total{action="reset"}'], done)
    assert.are.equal(3, s['kalua_offsets_partitions_changed_total{action="reset"}'], done)
    local committed = assert(admin:list_group_offsets(group))
    for _, o in ipairs(committed) do assert.are.equal(0, o.offset) end
    -- a refusal is counted too, by kind
    local r = proc.run { proc.kalua(), "offsets", "reset", "-b", brokers, "--group", group, "--to-offset", "x",
      "--metrics-textfile", dir .. "/bad.prom" }
    assert.are.equal(1, r.code)
    assert.are.equal(1, samples(proc.read_file(dir .. "/bad.prom"))['kalua_errors_total{kind="config"}'])
    r = proc.run { proc.kalua(), "offsets", "list", "--path", dir, "--metrics-textfile", dir .. "/x.prom" }
    assert.are.equal("kalua offsets: --metrics-textfile goes with reset and rollback\n", r.stderr)
    proc.rmdir(dir)
  end)
end)
