-- kalua.log: text and JSON lines, levels, child loggers, redaction, and the
-- global flags (--log-format, -v, -q) of real commands against the rig,
-- with librdkafka's own lines routed through the same logger.
local log = require "kalua.log"
local json = require "kalua.json"
local proc = require "proc"
local rig = require "rig"

local TS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

-- A stream that keeps what is written, one entry per line.
local function buffer()
  local b = { lines = {} }
  function b:write(...)
    local s = table.concat({ ... })
    for line in s:gmatch("([^\n]*)\n") do self.lines[#self.lines + 1] = line end
    return self
  end
  return b
end

local function lines(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function json_lines(s)
  local out = {}
  for _, line in ipairs(lines(s)) do
    local v, err = json.decode(line)
    assert(v, ("not a JSON line (%s): %s"):format(tostring(err), line))
    out[#out + 1] = v
  end
  return out
end

local function kalua(args, opts)
  local argv = { proc.kalua() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.run(argv, opts)
end

describe("kalua.log", function()
  local out, saved

  before_each(function()
    saved = log.settings()
    out = buffer()
    log.configure { stream = out, tty = false, color = false, level = "info", format = "text", fields = {} }
  end)

  after_each(function()
    log.configure { stream = io.stderr, level = saved.level, format = saved.format, fields = saved.fields }
  end)

  describe("timestamps", function()
    it("have milliseconds from the wall clock (kalua.clock.time), in UTC", function()
      local clock = require "kalua.clock"
      local function ms_of(ts)
        local y, mo, d, h, mi, sec, ms = ts:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d%d%d)Z$")
        assert(y, ts)
        local days = require("kalua.time").days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
        return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(sec) * 1000 + tonumber(ms)
      end
      -- clock.time agrees with os.time and has a fraction; time_ms is the same clock
      local t, ms, secs = clock.time(), clock.time_ms(), os.time()
      assert.is_true(math.abs(t - secs) <= 1)
      assert.is_true(ms >= math.floor(t * 1000) and ms - t * 1000 < 1000)
      assert.are.equal("integer", math.type(ms))
      local fractions = {}
      for i = 1, 20 do
        local before = clock.time_ms()
        log.info("tick", { i = i })
        local after = clock.time_ms()
        local at = ms_of(out.lines[i]:match("^(%S+) "))
        assert.is_true(before <= at and at <= after, ("%d <= %d <= %d"):format(before, at, after))
        fractions[at % 1000] = true
        clock.sleep(0.0037)
      end
      assert.is_true(next(fractions, next(fractions)) ~= nil, "every line had the same milliseconds")
      log.configure { format = "json" }
      log.info("json tick")
      local v = json.decode(out.lines[#out.lines])
      assert.truthy(v.ts:match("%.%d%d%dZ$"), v.ts)
    end)
  end)

  describe("text lines", function()
    it("write time, level, message and key=value fields off a terminal", function()
      log.info("backup done", { topics = 3, note = "two words", component = "backup" })
      assert.are.equal(1, #out.lines)
      local ts, rest = out.lines[1]:match("^(%S+) (.*)$")
      assert.truthy(ts:match(TS), ts)
      assert.are.equal('info backup done component=backup note="two words" topics=3', rest)
    end)

    it("write HH:MM:SS and a padded level on a terminal, in colour only when asked", function()
      log.configure { tty = true, color = false }
      log.warn("slow", { ms = 1200 })
      assert.truthy(out.lines[1]:match("^%d%d:%d%d:%d%d warn  slow ms=1200$"), out.lines[1])
      log.configure { color = true }
      log.error("boom")
      assert.truthy(out.lines[2]:find("\27[31merror\27[0m boom", 1, true), out.lines[2])
    end)
  end)

  describe("JSON lines", function()
    it("hold ts, level, msg and the fields, ts first", function()
      log.configure { format = "json" }
      log.info("restored", { records = 12, topic = "t", nested = { a = 1 } })
      assert.are.equal(1, #out.lines)
      assert.truthy(out.lines[1]:find('^{"ts":"'), out.lines[1])
      local v = assert(json.decode(out.lines[1]))
      assert.truthy(v.ts:match(TS), v.ts)
      assert.are.same({ level = "info", msg = "restored", records = 12, topic = "t", nested = { a = 1 } },
        { level = v.level, msg = v.msg, records = v.records, topic = v.topic, nested = v.nested })
    end)

    it("keep a message with newlines on one line", function()
      log.configure { format = "json" }
      log.error("first\nsecond")
      assert.are.equal(1, #out.lines)
      assert.are.equal("first\nsecond", json.decode(out.lines[1]).msg)
    end)
  end)

  describe("levels", function()
    it("filter below the configured level", function()
      log.debug("hidden")
      log.trace("hidden")
      log.info("shown")
      assert.are.equal(1, #out.lines)
      log.configure { level = "debug" }
      log.debug("now shown")
      log.trace("still hidden")
      assert.are.equal(2, #out.lines)
      log.configure { level = "error" }
      log.warn("hidden")
      log.error("shown")
      assert.are.equal(3, #out.lines)
      assert.is_true(log.enabled("error"))
      assert.is_false(log.enabled("warn"))
    end)

    it("refuse an unknown level or format", function()
      assert.has_error(function() log.configure { level = "loud" } end)
      assert.has_error(function() log.configure { format = "xml" } end)
    end)
  end)

  describe("child loggers", function()
    it("add their fields to every line, and nest", function()
      log.configure { format = "json" }
      local b = log.child { component = "backup", backup_id = "b1" }
      b.info("round", { records = 5 })
      b.child({ topic = "t" }).warn("stalled")
      local first, second = json.decode(out.lines[1]), json.decode(out.lines[2])
      assert.are.same({ "backup", "b1", 5 }, { first.component, first.backup_id, first.records })
      assert.are.same({ "backup", "b1", "t", "warn" },
        { second.component, second.backup_id, second.topic, second.level })
    end)
  end)

  describe("redaction", function()
    it("redacts fields named like secrets, at any depth, whatever their case", function()
      log.configure { format = "json" }
      log.info("config", {
        sasl_password = "p1-value", Authorization = "Bearer abc", client_secret = "cs-value",
        security = { SASL_PASSWORD = "p2-value", ssl_key_password = "p3-value", sasl_username = "alice" },
        sasl_password_env = "MY_VAR", token = "t-value",
      })
      local v = json.decode(out.lines[1])
      assert.are.equal("[redacted]", v.sasl_password)
      assert.are.equal("[redacted]", v.Authorization)
      assert.are.equal("[redacted]", v.client_secret)
      assert.are.equal("[redacted]", v.token)
      assert.are.same({ SASL_PASSWORD = "[redacted]", ssl_key_password = "[redacted]", sasl_username = "alice" },
        v.security)
      assert.are.equal("MY_VAR", v.sasl_password_env) -- where the password is, not the password
    end)

    it("masks registered secrets in the message and every field", function()
      log.secret("hunter2-log-spec")
      log.info("login with hunter2-log-spec failed", { detail = "pw=hunter2-log-spec;", list = { "hunter2-log-spec" } })
      local line = out.lines[1]
      assert.falsy(line:find("hunter2-log-spec", 1, true), line)
      assert.truthy(line:find("login with [redacted] failed", 1, true), line)
      assert.truthy(line:find('detail="pw=[redacted];"', 1, true), line)
      assert.are.equal("[redacted] x", log.mask("hunter2-log-spec x"))
    end)

    it("registers the secrets of a config section", function()
      log.secrets_in { security = { sasl_password = "from-config-pw" }, storage = { secret_key = "s3-key-value" } }
      log.info("from-config-pw and s3-key-value")
      assert.truthy(out.lines[1]:find(" info [redacted] and [redacted]", 1, true), out.lines[1])
    end)
  end)

  describe("librdkafka lines", function()
    it("are dropped at the default level unless the client asked for them", function()
      log.rdkafka(7, "BROKER", "debug chatter", false, "rdkafka#producer-1", 1764100800123)
      log.rdkafka(3, "FAIL", "connect refused", false, "rdkafka#producer-1", 1764100800123)
      assert.are.equal(0, #out.lines)
      log.rdkafka(7, "BROKER", "asked for", true, "rdkafka#producer-1", 1764100800123)
      assert.are.equal(1, #out.lines)
      assert.truthy(out.lines[1]:find("^2025%-11%-25T20:00:00%.123Z debug asked for component=rdkafka " ..
        "client=rdkafka#producer%-1 facility=BROKER$"), out.lines[1])
    end)

    it("map syslog severities with -v, and give way to -q", function()
      log.configure { level = "debug", format = "json" }
      log.rdkafka(3, "FAIL", "refused", false, "c", nil)
      log.rdkafka(4, "CONFWARN", "odd", false, "c", nil)
      log.rdkafka(6, "INIT", "hello", false, "c", nil)
      log.rdkafka(7, "BROKER", "chatter", false, "c", nil)
      local got = {}
      for i, line in ipairs(out.lines) do got[i] = json.decode(line).level end
      assert.are.same({ "error", "warn", "info", "debug" }, got)
      log.configure { level = "error" }
      log.rdkafka(7, "BROKER", "asked, but -q", true, "c", nil)
      assert.are.equal(4, #out.lines)
    end)
  end)
end)

describe("kalua commands' log flags", function()
  local brokers

  setup(function() brokers = rig.env("KAFKA_PLAINTEXT") end)

  it("stay silent on success, and log in JSON with -v", function()
    local r = kalua { "topics", "list", "-b", brokers, "--log-format", "json" }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("", r.stderr)
    r = kalua { "topics", "list", "-b", brokers, "--log-format", "json", "-v" }
    assert.are.equal(0, r.code, r.stderr)
    local entries = json_lines(r.stderr)
    assert.is_true(#entries >= 1, r.stderr)
    assert.are.same({ "debug", "connecting", "topics", "admin" },
      { entries[1].level, entries[1].msg, entries[1].component, entries[1].client })
    assert.truthy(entries[1].ts:match(TS), entries[1].ts)
  end)

  it("route librdkafka's debug lines through the logger with -v and a debug property", function()
    local r = kalua { "topics", "list", "-b", brokers, "--log-format", "json", "-v", "-X", "debug=broker" }
    assert.are.equal(0, r.code, r.stderr)
    local rdkafka = 0
    for _, e in ipairs(json_lines(r.stderr)) do
      assert.truthy(e.ts:match(TS) and e.level and e.msg, json.encode(e))
      if e.component == "rdkafka" then
        rdkafka = rdkafka + 1
        assert.truthy(e.facility and e.client:find("^rdkafka#"), json.encode(e))
      end
    end
    assert.is_true(rdkafka > 0, r.stderr)
    assert.truthy(r.stdout:find("partitions=", 1, true), r.stdout)
  end)

  it("write text lines by default, and one JSON error line for a failure", function()
    local args = { "topics", "list", "-b", "127.0.0.1:1", "-X", "socket.connection.setup.timeout.ms=1000" }
    local r = kalua(args)
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:match("^kalua topics: [^\n]+\n$"), r.stderr)
    table.insert(args, "--log-format=json")
    r = kalua(args)
    assert.are.equal(1, r.code)
    local entries = json_lines(r.stderr)
    assert.are.equal(1, #entries, r.stderr)
    assert.are.same({ "error", "topics" }, { entries[1].level, entries[1].component })
    assert.truthy(entries[1].msg:find("^metadata: "), entries[1].msg)
  end)

  it("take -q for errors only, and -vv for trace", function()
    local topic = rig.topic("log-q")
    assert.are.equal(0, kalua { "topics", "create", topic, "-b", brokers }.code)
    local r = kalua({ "produce", topic, "-b", brokers, "--log-format", "json" }, { stdin = "a\nb\n" })
    assert.are.equal(0, r.code, r.stderr)
    local entries = json_lines(r.stderr)
    assert.are.equal(1, #entries, r.stderr)
    assert.are.same({ "info", 2, topic, "produce" }, { entries[1].level, entries[1].records, entries[1].topic,
      entries[1].component })
    r = kalua({ "produce", topic, "-b", brokers, "-q" }, { stdin = "c\n" })
    assert.are.same({ 0, "" }, { r.code, r.stderr })
    r = kalua { "consume", topic, "-b", brokers, "-e", "-vv" }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("a\nb\nc\n", r.stdout)
    assert.truthy(r.stderr:find(" trace client config ", 1, true), r.stderr)
    assert.are.equal(0, kalua { "topics", "delete", topic, "-b", brokers }.code)
  end)

  it("reject an unknown log format", function()
    local r = kalua { "list", "--path", "/nonexistent", "--log-format", "xml" }
    assert.are.equal(1, r.code)
    assert.are.equal("kalua list: unknown log format 'xml' (expected text or json)\n", r.stderr)
  end)

  it("never write a SASL password, while the failure is logged as JSON", function()
    local password = ("wrong-pw-%d-%d"):format(os.time(), math.random(1e6))
    local r = kalua({ "topics", "list", "-b", rig.env("KAFKA_SASL_PLAINTEXT"), "--security-protocol", "SASL_PLAINTEXT",
      "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", rig.env("KAFKA_SCRAM_USER"),
      "--sasl-password-env", "SPEC_PW", "--log-format", "json", "-vv", "-X", "debug=security,broker" },
      { env = { SPEC_PW = password } })
    assert.are.equal(1, r.code, r.stderr)
    assert.falsy((r.stdout .. r.stderr):find(password, 1, true))
    local entries = json_lines(r.stderr)
    local last = entries[#entries]
    assert.are.same({ "error", "topics" }, { last.level, last.component })
    assert.truthy(last.msg:find("authentication", 1, true), last.msg)
    local traced = false
    for _, e in ipairs(entries) do
      if e.msg == "client config" then
        traced = true
        assert.are.equal("[redacted]", e.security.sasl_password)
      end
    end
    assert.is_true(traced, r.stderr)
  end)
end)
