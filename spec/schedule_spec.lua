-- kalua schedule: jobs on cron schedules. Most of it on a fake clock (a
-- simulated day takes milliseconds); locks, child processes and SIGTERM
-- for real.
local schedule = require "kalua.schedule"
local cron = require "kalua.cron"
local json = require "kalua.json"
local clock = require "kalua.clock"
local host = require "kalua.host"
local time = require "kalua.time"
local proc = require "proc"

local function utc(s) return time.parse(s) // 1000 end

-- A clock the scheduler's sleep moves forward; on_sleep(t) runs after each.
local function fake_clock(start, on_sleep)
  local c = { t = start }
  c.now = function() return c.t end
  c.sleep = function(secs)
    c.t = c.t + secs
    if on_sleep then on_sleep(c.t) end
  end
  return c
end

-- Fake runs: each takes durations[job] seconds of the fake clock (default
-- 10) and exits with codes[job] (default 0); a SIGTERM ends it at once
-- unless the job is in `stubborn`. Signals sent are recorded.
local function fake_spawn(clk, durations, codes, stubborn, signals)
  local pid = 1000
  return function(job, argv)
    pid = pid + 1
    local started, duration, killed = clk.t, durations and durations[job.name] or 10, nil
    return {
      pid = pid, argv = argv,
      poll = function()
        if killed then return { code = 137, signal = "SIGKILL" } end
        if clk.t >= started + duration then return { code = codes and codes[job.name] or 0 } end
      end,
      signal = function(_, sig)
        if signals then signals[#signals + 1] = { job = job.name, signal = sig, at = clk.t } end
        if sig == "SIGKILL" then killed = true end
        if sig == "SIGTERM" and not (stubborn and stubborn[job.name]) then duration = clk.t - started end
        return true
      end,
    }
  end
end

local function jobs_of(list, timezone)
  return assert(schedule.check_jobs({ jobs = list, timezone = timezone }, nil, "spec"))
end

-- Events of one kind (and job), as a list of the field `field`.
local function pick(events, event, job, field)
  local out = {}
  for _, e in ipairs(events) do
    if e.event == event and (job == nil or e.job == job) then out[#out + 1] = e[field or "time"] end
  end
  return out
end

local function iso_list(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = time.format(t) end
  return out
end

describe("kalua schedule", function()
  local dir

  before_each(function() dir = proc.tmpdir() end)
  after_each(function() proc.rmdir(dir) end)

  local function new(clk, jobs, extra)
    local events = {}
    local opts = { jobs = jobs, state_dir = dir .. "/state", now = clk.now, sleep = clk.sleep,
      stop_requested = function() return nil end, spawn = fake_spawn(clk), poll = 1,
      log = function(e) events[#events + 1] = e end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    if opts.real_spawn then opts.spawn, opts.real_spawn = nil, nil end -- child processes, for real
    return assert(schedule.new(opts)), events
  end

  local function state(name)
    return assert(json.decode(assert(proc.read_file(dir .. "/state/" .. name .. ".json"))))
  end

  describe("on a fake clock", function()
    it("runs every job at its cron times over a simulated day", function()
      local day = utc("2026-03-27T00:00:00Z") -- a Friday
      local clk = fake_clock(day)
      local jobs = jobs_of {
        { name = "half-hourly", cron = "*/30 * * * *", timezone = "UTC", command = { "backup", "--config", "b.yaml" } },
        { name = "office", cron = "0 9 * * MON-FRI", timezone = "Europe/Berlin", command = { "list", "--path", "/b" } },
        { name = "hourly", cron = "@hourly", timezone = "America/New_York", script = "report.lua", args = { "-v" } },
      }
      local s, events = new(clk, jobs)
      local started = clock.now()
      assert.is_nil(s:run { until_time = day + 86400 })
      assert.is_true(clock.now() - started < 10, "a simulated day should take well under 10 s")

      assert.are.same(assert(cron.times("*/30 * * * *", day, day + 86400, "UTC")), pick(events, "start", "half-hourly"))
      assert.are.equal(48, #pick(events, "start", "half-hourly"))
      assert.are.same({ "2026-03-27T08:00:00Z" }, iso_list(pick(events, "start", "office")))
      assert.are.equal(24, #pick(events, "start", "hourly"))
      -- each start is logged with its scheduled time, each end with code and duration
      assert.are.same(pick(events, "start", "office"), pick(events, "start", "office", "scheduled"))
      assert.are.same({ 0 }, pick(events, "end", "office", "code"))
      assert.are.same({ 10 }, pick(events, "end", "office", "duration"))
      assert.are.same({ "ok" }, pick(events, "end", "office", "result"))
      -- the child's command line: the kalua executable, then the command or script
      assert.are.same({ host.executable(), "list", "--path", "/b" }, schedule.argv(jobs[2], host.executable()))
      assert.are.same({ "kalua", "report.lua", "-v" }, schedule.argv(jobs[3], "kalua"))

      local st = state("half-hourly")
      assert.are.equal("ok", st.last.result)
      assert.are.equal(day + 86400 - 1800, st.last.scheduled)
      assert.are.equal(day + 86400, st.next)
      assert.is_nil(st.running)
    end)

    it("never overlaps a job with itself: a run due while the last is running is skipped", function()
      local t0 = utc("2026-05-01T00:00:00Z")
      local clk = fake_clock(t0)
      local jobs = jobs_of { { name = "slow", cron = "*/5 * * * *", timezone = "UTC", command = { "backup" } } }
      local s, events = new(clk, jobs, { spawn = fake_spawn(clk, { slow = 12 * 60 }) })
      s:run { until_time = t0 + 3600 }
      -- 12 minutes a run: 00:00 runs, 00:05 and 00:10 are skipped, 00:15 runs ...
      assert.are.same({ "2026-05-01T00:00:00Z", "2026-05-01T00:15:00Z", "2026-05-01T00:30:00Z", "2026-05-01T00:45:00Z" },
        iso_list(pick(events, "start", "slow")))
      assert.are.same({ "2026-05-01T00:05:00Z", "2026-05-01T00:10:00Z", "2026-05-01T00:20:00Z" },
        { table.unpack(iso_list(pick(events, "skip", "slow", "scheduled")), 1, 3) })
      assert.are.equal("still running (pid 1001)", pick(events, "skip", "slow", "reason")[1])
      s:shutdown("test")
    end)

    it("catches up a run missed while it was down, once, only when asked", function()
      local clk = fake_clock(utc("2026-05-01T02:00:00Z"))
      local list = { { name = "nightly", cron = "0 3 * * *", timezone = "UTC", command = { "backup" }, catch_up = true },
        { name = "no-catch-up", cron = "0 3 * * *", timezone = "UTC", command = { "backup" } } }
      local s, events = new(clk, jobs_of(list))
      s:run { until_time = utc("2026-05-01T04:00:00Z") }
      assert.are.equal(2, #pick(events, "end"))

      -- down for two days; up again at noon
      clk.t = utc("2026-05-03T12:00:00Z")
      s, events = new(clk, jobs_of(list))
      s:run { until_time = utc("2026-05-03T12:01:00Z") }
      assert.are.same({ "2026-05-02T03:00:00Z" }, iso_list(pick(events, "catch-up", "nightly", "scheduled")))
      assert.are.same({ "2026-05-03T12:00:00Z" }, iso_list(pick(events, "start", "nightly")))
      assert.are.same({ "catch-up" }, pick(events, "start", "nightly", "reason"))
      assert.are.same({ "2026-05-02T03:00:00Z" }, iso_list(pick(events, "missed", "no-catch-up", "scheduled")))
      assert.are.same({}, pick(events, "start", "no-catch-up"))
      assert.are.equal(utc("2026-05-04T03:00:00Z"), state("no-catch-up").next)

      -- nothing missed since: no second catch-up
      s, events = new(clk, jobs_of(list))
      s:run { until_time = utc("2026-05-03T12:02:00Z") }
      assert.are.same({}, pick(events, "catch-up"))
      assert.are.same({}, pick(events, "missed"))

      -- a changed schedule is not held to the old one's runs
      clk.t = utc("2026-05-06T12:00:00Z")
      list[1].cron = "0 4 * * *"
      s, events = new(clk, jobs_of(list))
      s:run { until_time = utc("2026-05-06T12:01:00Z") }
      assert.are.same({}, pick(events, "catch-up", "nightly"))
    end)

    it("feeds each job's metrics from its events: outcomes, running, last run and last success", function()
      local metrics, telemetry = require "kalua.metrics", require "kalua.telemetry"
      local reg <close> = metrics.registry()
      local t = telemetry.new(reg)
      local clk = fake_clock(utc("2026-05-01T00:00:00Z"))
      local jobs = jobs_of { { name = "slow", cron = "*/5 * * * *", timezone = "UTC", command = { "backup" } },
        { name = "bad", cron = "0 * * * *", timezone = "UTC", command = { "list" }, timeout = 60 } }
      local s = new(clk, jobs, { spawn = fake_spawn(clk, { slow = 7 * 60, bad = 3600 }, {}, { bad = true }), grace = 30 })
      s.log = t:schedule_log(s.log, jobs)
      s:run { until_time = utc("2026-05-01T00:12:00Z") }
      local v = {}
      for series, value in reg:render():gmatch("\n([%w_]+{[^}]*}) (%S+)") do v[series] = tonumber(value) end
      -- slow: runs at 00:00 (ends 00:07) and 00:10 (still going); 00:05 skipped
      assert.are.equal(1, v['kalua_schedule_runs_total{job="slow",outcome="ok"}'])
      assert.are.equal(1, v['kalua_schedule_runs_total{job="slow",outcome="skipped"}'])
      assert.are.equal(1, v['kalua_schedule_running{job="slow"}'])
      assert.are.equal(utc("2026-05-01T00:07:00Z"), v['kalua_schedule_last_success_timestamp_seconds{job="slow"}'])
      -- bad: timed out at 00:01, killed 30 s later
      assert.are.equal(1, v['kalua_schedule_runs_total{job="bad",outcome="timeout"}'])
      assert.are.equal(0, v['kalua_schedule_runs_total{job="bad",outcome="ok"}'])
      assert.are.equal(0, v['kalua_schedule_running{job="bad"}'])
      assert.is_nil(v['kalua_schedule_last_success_timestamp_seconds{job="bad"}'])
      s:shutdown("test") -- slow's second run gets SIGTERM and ends: stopped
      assert.truthy(reg:render():find('kalua_schedule_runs_total{job="slow",outcome="stopped"} 1\n', 1, true))
      assert.truthy(reg:render():find('kalua_schedule_running{job="slow"} 0\n', 1, true))
    end)

    it("stops a run at its timeout: SIGTERM, then SIGKILL after the grace period", function()
      local t0 = utc("2026-05-01T00:00:00Z")
      local clk = fake_clock(t0)
      local signals = {}
      local jobs = jobs_of {
        { name = "polite", cron = "0 * * * *", timezone = "UTC", command = { "backup" }, timeout = "5m" },
        { name = "stubborn", cron = "0 * * * *", timezone = "UTC", command = { "backup" }, timeout = 120 },
      }
      local s, events = new(clk, jobs, { grace = 30,
        spawn = fake_spawn(clk, { polite = 3600, stubborn = 3600 }, nil, { stubborn = true }, signals) })
      s:run { until_time = t0 + 1000 }
      assert.are.same({ { job = "stubborn", signal = "SIGTERM", at = t0 + 120 }, { job = "stubborn", signal = "SIGKILL",
        at = t0 + 150 }, { job = "polite", signal = "SIGTERM", at = t0 + 300 } }, signals)
      assert.are.same({ "timeout" }, pick(events, "end", "polite", "result"))
      assert.are.same({ "timeout" }, pick(events, "end", "stubborn", "result"))
      assert.are.equal("timeout", state("polite").last.result)
    end)

    it("on a stop request forwards SIGTERM to running jobs, waits for them, then returns", function()
      local t0 = utc("2026-05-01T00:00:00Z")
      local stop_at = t0 + 90
      local clk = fake_clock(t0)
      local signals = {}
      local jobs = jobs_of { { name = "long", cron = "* * * * *", timezone = "UTC", command = { "backup" } } }
      local s, events = new(clk, jobs, { spawn = fake_spawn(clk, { long = 3600 }, nil, nil, signals),
        stop_requested = function() return clk.t >= stop_at and "SIGTERM" or nil end })
      assert.are.equal("SIGTERM", s:run())
      assert.are.same({ { job = "long", signal = "SIGTERM", at = stop_at } }, signals)
      assert.are.same({ "stopped" }, pick(events, "end", "long", "result"))
      assert.are.equal("scheduler-stop", events[#events].event)
      assert.are.equal("stopped", state("long").last.result)
    end)
  end)

  describe("with real processes", function()
    local function wait_until(fn, what)
      local deadline = clock.now() + 20
      while not fn() do
        if clock.now() > deadline then error("timed out waiting for " .. what, 2) end
        clock.sleep(0.02)
      end
    end

    it("holds the job's lock in the child, so a run never overlaps even past a scheduler crash", function()
      local release = dir .. "/release"
      proc.write_file(dir .. "/wait.lua", ([[
        local clock = require "kalua.clock"
        while not io.open(%q) do clock.sleep(0.02) end
      ]]):format(release))
      local t0 = utc("2026-05-01T00:00:00Z")
      local released = false
      local clk = fake_clock(t0, function(t)
        clock.sleep(0.005) -- let the real child run
        if t >= t0 + 150 and not released then
          released = true
          proc.write_file(release, "")
        end
      end)
      local jobs = jobs_of { { name = "waiter", cron = "* * * * *", timezone = "UTC", script = dir .. "/wait.lua" } }
      local s, events = new(clk, jobs, { real_spawn = true })
      s:run { until_time = t0 + 30 }
      local pid = pick(events, "start", "waiter", "pid")[1]
      assert.is_true(math.type(pid) == "integer" and pid ~= host.pid())
      -- the lock file names the child, and the child holds the lock on its own
      local lock_path = dir .. "/state/waiter.lock"
      assert.are.equal(tostring(pid), proc.read_file(lock_path):match("%d+"))
      local held, err = host.lock(lock_path)
      assert.is_nil(held)
      assert.are.equal(lock_path .. ": held by pid " .. pid, err)
      s.jobs[1].run.lock:release() -- as if the scheduler had died: the child still holds it
      held, err = host.lock(lock_path)
      assert.is_nil(held)
      assert.are.equal(lock_path .. ": held by pid " .. pid, err)

      s:run { until_time = t0 + 200 }
      assert.are.same({ "2026-05-01T00:01:00Z", "2026-05-01T00:02:00Z" }, iso_list(pick(events, "skip", "waiter", "scheduled")))
      assert.are.same({ "2026-05-01T00:00:00Z", "2026-05-01T00:03:00Z" }, iso_list(pick(events, "start", "waiter")))
      assert.are.same({ 0 }, { pick(events, "end", "waiter", "code")[1] })
      s:shutdown("test")
      local free <close> = assert(host.lock(lock_path))
    end)

    it("skips a run while another process holds the job's lock", function()
      local lock_path = dir .. "/state/busy.lock"
      os.execute("mkdir -p " .. proc.quote(dir .. "/state"))
      local holder = proc.spawn { proc.kalua(), "-e", ([[
        local host, clock = require "kalua.host", require "kalua.clock"
        local lock = assert(host.lock(%q))
        while not io.open(%q) do clock.sleep(0.02) end
      ]]):format(lock_path, dir .. "/release") }
      local ok, err = pcall(function()
        wait_until(function()
          local l = host.lock(lock_path)
          if l then l:release() end
          return l == nil
        end, "the other process to take the lock")
        local clk = fake_clock(utc("2026-05-01T00:00:00Z"))
        local jobs = jobs_of { { name = "busy", cron = "* * * * *", timezone = "UTC", command = { "backup" } } }
        local s, events = new(clk, jobs)
        s:run { until_time = utc("2026-05-01T00:00:30Z") }
        assert.are.same({}, pick(events, "start"))
        assert.are.same({ lock_path .. ": held by pid " .. holder.pid }, pick(events, "skip", "busy", "reason"))
        proc.write_file(dir .. "/release", "")
        assert.are.equal(0, holder:wait(10))
        s:run { until_time = utc("2026-05-01T00:01:30Z") }
        assert.are.same({ "2026-05-01T00:01:00Z" }, iso_list(pick(events, "start", "busy")))
        s:shutdown("test")
      end)
      holder:cleanup()
      assert(ok, err)
    end)

    it("serves its jobs' outcomes as metrics, and its runs log as it does unless a job says otherwise", function()
      proc.write_file(dir .. "/job.lua", [[
        local log = require "kalua.log"
        log.debug("job debug line", { n = 1 })
        log.info("job info line", { password = "hunter2-secret" })
      ]])
      local function job(name, extra)
        return ("  - name: %s\n    cron: '0 0 1 1 *'\n    catch_up: true\n    output: %s/%s.out\n%s"):format(name, dir,
          name, extra)
      end
      proc.write_file(dir .. "/jobs.yaml", "timezone: UTC\njobs:\n"
        .. job("inherit", ("    script: %s/job.lua\n"):format(dir))
        .. job("override", ("    script: %s/job.lua\n    log_format: text\n    log_level: info\n"):format(dir))
        .. job("broken", ("    command: [restore, --config, %s/missing.yaml]\n"):format(dir)))
      -- runs they missed a while ago, so catch-up starts each right away
      os.execute("mkdir -p " .. proc.quote(dir .. "/state"))
      local long_ago = os.time() - 400 * 86400
      for _, name in ipairs { "inherit", "override", "broken" } do
        proc.write_file(dir .. "/state/" .. name .. ".json",
          json.encode { cron = "0 0 1 1 *", timezone = "UTC", updated = long_ago })
      end
      local run = proc.spawn { proc.kalua(), "schedule", "--jobs", dir .. "/jobs.yaml", "--state-dir", dir .. "/state",
        "--log-format", "json", "-v", "--metrics-addr", "127.0.0.1:0", "--metrics-textfile", dir .. "/schedule.prom" }
      local function samples(text)
        local out = {}
        for series, value in text:gmatch("\n([%w_]+{[^}]*}) (%S+)") do out[series] = tonumber(value) end
        return out
      end
      local scraped
      local ok, err = pcall(function()
        local address
        wait_until(function()
          address = run:stderr():match("metrics at http://(%S+)/metrics")
          return address
        end, "the metrics address")
        wait_until(function()
          local r = proc.run { "curl", "-sf", "--max-time", "5", "http://" .. address .. "/metrics" }
          scraped = samples(r.stdout)
          return scraped['kalua_schedule_runs_total{job="broken",outcome="failed"}'] == 1
            and scraped['kalua_schedule_runs_total{job="inherit",outcome="ok"}'] == 1
            and scraped['kalua_schedule_runs_total{job="override",outcome="ok"}'] == 1
        end, "three runs to end")
        assert(run:kill("TERM"))
        assert.are.equal(0, run:wait(20), run:stderr())
      end)
      local stderr = run:stderr()
      run:cleanup()
      assert(ok, err)
      for _, name in ipairs { "inherit", "override", "broken" } do
        assert.are.equal(0, scraped[('kalua_schedule_running{job="%s"}'):format(name)])
        assert.truthy(scraped[('kalua_schedule_last_run_timestamp_seconds{job="%s"}'):format(name)])
      end
      assert.are.equal(0, scraped['kalua_schedule_runs_total{job="broken",outcome="ok"}'])
      assert.is_true(scraped['kalua_schedule_last_success_timestamp_seconds{job="inherit"}'] >= os.time() - 120)
      assert.is_nil(scraped['kalua_schedule_last_success_timestamp_seconds{job="broken"}'])
      local prom = samples(proc.read_file(dir .. "/schedule.prom"))
      assert.are.equal(1, prom['kalua_schedule_runs_total{job="broken",outcome="failed"}'])
      assert.are.equal(0, prom['kalua_errors_total{kind="other"}'])

      -- the scheduler's lines and those of the runs that inherit its format are JSON
      local function json_lines(text, what)
        local out = {}
        for line in text:gmatch("[^\n]+") do
          local v, jerr = json.decode(line)
          assert(type(v) == "table", ("%s: not a JSON line (%s): %s"):format(what, tostring(jerr), line))
          out[#out + 1] = v
        end
        assert.is_true(#out > 0, what)
        return out
      end
      json_lines(stderr, "the scheduler")
      local inherit = json_lines(proc.read_file(dir .. "/inherit.out"), "inherit")
      assert.are.same({ "debug", "job debug line" }, { inherit[1].level, inherit[1].msg }) -- -v reached it
      assert.truthy(inherit[1].ts:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), inherit[1].ts)
      assert.are.same({ "info", "job info line", "[redacted]" }, { inherit[2].level, inherit[2].msg, inherit[2].password })
      local broken = json_lines(proc.read_file(dir .. "/broken.out"), "broken")
      assert.are.same({ "error", "restore" }, { broken[#broken].level, broken[#broken].component })
      -- a job's own log_format and log_level win
      local override = proc.read_file(dir .. "/override.out")
      assert.truthy(override:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ info job info line password=%[redacted%]\n$"),
        override)
    end)

    it("kalua schedule stops on SIGTERM: the job gets SIGTERM, the scheduler waits and exits 0", function()
      local out = dir .. "/job.out"
      proc.write_file(dir .. "/job.lua", [[
        local host, clock = require "kalua.host", require "kalua.clock"
        host.catch_signals()
        local f = assert(io.open(arg[1], "w"))
        f:write("started\n")
        f:flush()
        while not host.stop_requested() do clock.sleep(0.02) end
        clock.sleep(0.3) -- checkpointing
        f:write("stopped by ", host.stop_requested(), "\n")
        f:close()
      ]])
      -- A run it missed a while ago, so catch-up starts one right away.
      os.execute("mkdir -p " .. proc.quote(dir .. "/state"))
      local long_ago = os.time() - 400 * 86400
      proc.write_file(dir .. "/state/stopper.json", json.encode { cron = "0 0 1 1 *", updated = long_ago,
        last = { scheduled = long_ago, result = "ok" } })
      local run = proc.spawn { proc.kalua(), "schedule", "--state-dir", dir .. "/state", "--log-format", "json",
        "--name", "stopper", "--cron", "0 0 1 1 *", "--catch-up", "--", dir .. "/job.lua", out }
      local ok, err = pcall(function()
        wait_until(function() return proc.read_file(out):find("started", 1, true) end, "the job to start")
        local st = assert(json.decode(proc.read_file(dir .. "/state/stopper.json")))
        assert.is_not_nil(st.running)
        assert(run:kill("TERM"))
        assert.are.equal(0, run:wait(20), run:stderr())
        assert.are.equal("started\nstopped by SIGTERM\n", proc.read_file(out))
        local lines = {}
        for line in run:stderr():gmatch("[^\n]+") do
          local e = assert(json.decode(line), line)
          lines[#lines + 1] = e
        end
        local by_event = {}
        for _, e in ipairs(lines) do by_event[e.event] = e end
        assert.are.equal("stopper", by_event.start.job)
        assert.are.equal("catch-up", by_event.start.reason)
        assert.are.equal("SIGTERM", by_event.forward.signal)
        assert.are.equal("stopped", by_event["end"].result)
        assert.are.equal(0, by_event["end"].code)
        assert.is_true(by_event["end"].duration >= 0.3)
        assert.are.equal("info", by_event.start.level)
        assert.are.equal("scheduler-stop", lines[#lines].event)
        st = assert(json.decode(proc.read_file(dir .. "/state/stopper.json")))
        assert.is_nil(st.running)
        assert.are.equal("stopped", st.last.result)
      end)
      run:cleanup()
      assert(ok, err)
    end)
  end)

  describe("the command", function()
    local function jobs_file(text)
      proc.write_file(dir .. "/jobs.yaml", text)
      return dir .. "/jobs.yaml"
    end

    it("checks a jobs file, with file:line:column in every error", function()
      local cases = {
        { "jobs:\n  - name: a\n    cron: '0 25 * * *'\n    command: [backup]\n",
          "jobs.yaml:3:5: cron: field 2 (hour) '25' is out of range 0-23" },
        { "jobs:\n  - name: a\n    cron: '@daily'\n    comand: [backup]\n",
          "jobs.yaml:4:5: unknown key 'comand' in a job (did you mean 'command'?)" },
        { "jobs:\n  - name: a\n    cron: '@daily'\n",
          "jobs.yaml:2:5: job a needs either 'command' (a kalua command and its arguments) or 'script' (a Lua file)" },
        { "jobs:\n  - name: a\n    cron: '@daily'\n    command: [bakup]\n",
          "jobs.yaml:4:5: 'bakup' is not a kalua command (see `kalua help`)" },
        { "jobs:\n  - name: a\n    cron: '@daily'\n    command: [list]\n  - name: a\n    cron: '@daily'\n    command: [list]\n",
          "jobs.yaml:5:5: a second job is named 'a'" },
        { "timezone: Europe/Berln\njobs:\n  - name: a\n    cron: '@daily'\n    command: [list]\n",
          "jobs.yaml:1:1: unknown time zone 'Europe/Berln'" },
        { "jobs:\n  - name: a\n    cron: '@daily'\n    command: [list]\n    timeout: soon\n",
          "jobs.yaml:5:5: 'timeout' must be seconds or a duration like 90s, 30m, 2h (got 'soon')" },
        { "jobs:\n  - name: 'a b'\n    cron: '@daily'\n    command: [list]\n",
          "jobs.yaml:2:5: job name 'a b' may only have letters, digits, '_', '.' and '-'" },
        { "job: []\n", "jobs.yaml:1:1: unknown key 'job' (did you mean 'jobs'?)" },
      }
      for _, case in ipairs(cases) do
        local path = jobs_file(case[1])
        local r = proc.run { proc.kalua(), "schedule", "--check", "--jobs", path }
        assert.are.equal(1, r.code, case[1])
        assert.are.equal(1, select(2, r.stderr:gsub("\n", "")), r.stderr)
        assert.truthy(r.stderr:find(case[2], 1, true), ("expected %q in %q"):format(case[2], r.stderr))
      end
      local r = proc.run { proc.kalua(), "schedule", "--cron", "61 * * * *", "--", "backup" }
      assert.are.equal(1, r.code)
      assert.are.equal("kalua schedule: --cron: cron: field 1 (minute) '61' is out of range 0-59\n", r.stderr)
    end)

    it("--check prints each job's next runs", function()
      local path = jobs_file("timezone: UTC\njobs:\n  - name: nightly\n    cron: '30 2 * * *'\n"
        .. "    command: [backup, --config, b.yaml]\n  - name: berlin\n    cron: '@daily'\n    timezone: Europe/Berlin\n"
        .. "    script: x.lua\n")
      local r = proc.run { proc.kalua(), "schedule", "--check", "--jobs", path }
      assert.are.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:match("^nightly  30 2 %* %* %* %(UTC%): next %d+%-%d+%-%d+T02:30:00%+00:00, "), r.stdout)
      assert.truthy(r.stdout:match("\nberlin  @daily %(Europe/Berlin%): next %d+%-%d+%-%d+T00:00:00%+0[12]:00, "), r.stdout)
    end)

    it("--status prints each job's last run, result and next run", function()
      local clk = fake_clock(utc("2026-05-01T00:00:00Z"))
      local jobs = jobs_of {
        { name = "good", cron = "0 * * * *", timezone = "UTC", command = { "backup" } },
        { name = "bad", cron = "30 2 * * *", timezone = "Europe/Berlin", command = { "list" } },
      }
      local s = new(clk, jobs, { spawn = fake_spawn(clk, { good = 13, bad = 3 }, { bad = 2 }) })
      s:run { until_time = utc("2026-05-01T01:30:00Z") }
      s:shutdown("test")
      local r = proc.run { proc.kalua(), "schedule", "--status", "--state-dir", dir .. "/state" }
      assert.are.equal(0, r.code, r.stderr)
      local want = "^bad  %(30 2 %* %* %*, Europe/Berlin%)\n"
        .. "  last run: 2026%-05%-01T02:30:00%+02:00, failed %(exit 2, 3%.0s%)\n"
        .. "  next run: %d+%-%d+%-%d+T02:30:00%+0[12]:00\n"
        .. "good  %(0 %* %* %* %*, UTC%)\n"
        .. "  last run: 2026%-05%-01T01:00:00%+00:00, ok %(exit 0, 13%.0s%)\n"
        .. "  next run: %d+%-%d+%-%d+T%d%d:00:00%+00:00\n$"
      assert.truthy(r.stdout:match(want), r.stdout)

      -- with --jobs, a job that never ran shows too
      local path = jobs_file("jobs:\n  - name: good\n    cron: '0 * * * *'\n    timezone: UTC\n    command: [backup]\n"
        .. "  - name: fresh\n    cron: '@weekly'\n    timezone: UTC\n    command: [backup]\n")
      r = proc.run { proc.kalua(), "schedule", "--status", "--jobs", path, "--state-dir", dir .. "/state" }
      assert.are.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:match("^fresh  %(@weekly, UTC%)\n  last run: never\n  next run: %d+%-%d+%-%d+T00:00:00%+00:00\ngood "),
        r.stdout)

      r = proc.run { proc.kalua(), "schedule", "--status", "--state-dir", dir .. "/empty" }
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("no scheduled jobs have run yet (no state files)\n", r.stdout)
    end)

    it("takes the example jobs file, and systemd takes the example units", function()
      local r = proc.run { proc.kalua(), "schedule", "--check", "--jobs", "examples/systemd/jobs.yaml" }
      assert.are.equal(0, r.code, r.stderr)
      assert.truthy(r.stdout:find("nightly  30 2 * * * (Europe/Berlin): next ", 1, true), r.stdout)
      assert.truthy(r.stdout:find("offsets  */15 * * * * (UTC): next ", 1, true), r.stdout)
      -- systemd-analyze checks every key; the only complaint allowed is that
      -- kalua is not installed at /usr/local/bin on this machine.
      r = proc.run({ "systemd-analyze", "verify", "examples/systemd/kalua-backup.service",
        "examples/systemd/kalua-backup.timer", "examples/systemd/kalua-schedule.service" },
        { env = { SYSTEMD_LOG_LEVEL = "warning" } })
      for line in (r.stdout .. r.stderr):gmatch("[^\n]+") do
        assert.truthy(line:find("Command /usr/local/bin/kalua is not executable", 1, true), line)
      end
    end)

    it("has help that says what it does", function()
      local r = proc.run { proc.kalua(), "help", "schedule" }
      assert.are.equal(0, r.code)
      assert.truthy(r.stdout:find("^Run kalua commands on cron schedules"), r.stdout)
      for _, flag in ipairs { "--jobs", "--cron", "--status", "--state-dir", "catch_up", "timeout", "SIGTERM" } do
        assert.truthy(r.stdout:find(flag, 1, true), flag)
      end
      r = proc.run { proc.kalua(), "schedule" }
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:find("usage: kalua schedule", 1, true), r.stderr)
    end)
  end)
end)
