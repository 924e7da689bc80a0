--- kalua's scheduler: jobs on cron schedules, each run a child process.
--
--   local schedule = require "kalua.schedule"
--   local jobs = assert(schedule.load_jobs("jobs.yaml"))     -- errors name file:line:column
--   local s = assert(schedule.new { jobs = jobs, state_dir = dir })
--   host.catch_signals()
--   s:run()                      -- until SIGTERM or SIGINT; returns the signal's name
--   for _, row in ipairs(assert(schedule.status { state_dir = dir })) do ... end
--
-- A job: { name=, cron=, timezone=, command = { "backup", "--config", "b.yaml" }
-- (a kalua command and its arguments) or script = "job.lua" (with args =
-- {...}), catch_up=, timeout= (seconds), directory= (working directory),
-- output= (file the job's stdout and stderr are appended to), log_format=,
-- log_level= (the run's log settings; default: the scheduler's) }.
--
-- A run never overlaps another run of the same job: each run holds
-- <state_dir>/<name>.lock (flock), which the child inherits, so the lock is
-- held until both have exited, even if the scheduler dies first. The last
-- run of each job (and the one in progress) is kept in
-- <state_dir>/<name>.json; with catch_up a run missed while the scheduler
-- was down runs once at start. A stop request forwards SIGTERM to running
-- jobs, waits for them, then returns.
--
-- Time and processes come from the options, so a spec runs a day of
-- schedule in milliseconds: now() -> epoch seconds, sleep(seconds),
-- stop_requested() -> signal name or nil, spawn(job, argv, lock, env) -> handle
-- or nil, message (handle.pid, handle:poll() -> nil while running or
-- { code=, signal= }, handle:signal(name)), log(event).
local cron = require "kalua.cron"
local tz = require "kalua.tz"
local json = require "kalua.json"
local yaml = require "kalua.yaml"
local storage = require "kalua.storage"
local clock = require "kalua.clock"

local M = {}

local has_host, host = pcall(require, "kalua.host")
if not has_host then host = nil end

local function iso(t)
  if not t then return "-" end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end
M.iso = iso

--- Seconds from an integer, or a string like "90", "90s", "30m", "2h",
-- "1d", "1h30m". Returns nil for anything else.
function M.duration(v)
  if math.type(v) == "integer" then return v >= 0 and v or nil end
  if type(v) ~= "string" then return nil end
  if v:match("^%d+$") then return tonumber(v) end
  local total, rest = 0, v
  local units = { s = 1, m = 60, h = 3600, d = 86400 }
  while rest ~= "" do
    local n, unit, after = rest:match("^(%d+)([smhd])(.*)$")
    if not n then return nil end
    total, rest = total + tonumber(n) * units[unit], after
  end
  return v ~= "" and total or nil
end

--- The default state directory: $XDG_STATE_HOME/kalua/schedule, or
-- ~/.local/state/kalua/schedule.
function M.default_state_dir()
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then base = (os.getenv("HOME") or ".") .. "/.local/state" end
  return base .. "/kalua/schedule"
end

-- --- jobs files ----------------------------------------------------------------

local JOB_KEYS = { name = true, cron = true, timezone = true, command = true, script = true, args = true,
  catch_up = true, timeout = true, directory = true, output = true, log_format = true, log_level = true }
local LOG_FORMATS = { text = true, json = true }
local LOG_LEVELS = { error = true, warn = true, info = true, debug = true, trace = true }
local TOP_KEYS = { jobs = true, timezone = true }

local suggestion = require("kalua.config").suggestion

-- Checks one job table; c.fail(parent, key, fmt, ...) raises with a position.
local function check_job(c, t, list, index, defaults)
  if type(t) ~= "table" or #t > 0 then c.fail(list, index, "a job must be a mapping of settings") end
  for k in pairs(t) do
    if not JOB_KEYS[k] then
      c.fail(t, k, "unknown key '%s' in a job%s", tostring(k), suggestion(tostring(k), JOB_KEYS))
    end
  end
  local job = {}
  local function str(key, required)
    local v = t[key]
    if v == nil then
      if required then c.fail(list, index, "job %s has no '%s'", tostring(t.name or index), key) end
      return nil
    end
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" or v == "" then c.fail(t, key, "'%s' must be a string", key) end
    return v
  end
  local function strings(key)
    local v = t[key]
    if v == nil then return nil end
    if type(v) ~= "table" or (next(v) ~= nil and #v == 0) then c.fail(t, key, "'%s' must be a list", key) end
    local out = {}
    for i, item in ipairs(v) do
      if type(item) == "table" or type(item) == "boolean" then c.fail(v, i, "'%s' items must be strings", key) end
      out[i] = tostring(item)
    end
    return out
  end
  job.name = str("name", true)
  if not job.name:match("^[%w][%w_.%-]*$") then
    c.fail(t, "name", "job name '%s' may only have letters, digits, '_', '.' and '-'", job.name)
  end
  job.cron = str("cron", true)
  local spec, err = cron.parse(job.cron)
  if not spec then c.fail(t, "cron", "%s", err) end
  job.spec = spec
  job.timezone = str("timezone") or defaults.timezone
  local zone
  zone, err = tz.load(job.timezone)
  if not zone then c.fail(t.timezone and t or defaults.parent, "timezone", "%s", err) end
  job.zone = zone
  job.command, job.script, job.args = strings("command"), str("script"), strings("args")
  if (job.command == nil) == (job.script == nil) then
    c.fail(list, index, "job %s needs either 'command' (a kalua command and its arguments) or 'script' (a Lua file)",
      job.name)
  end
  if job.command then
    if #job.command == 0 then c.fail(t, "command", "'command' is empty") end
    local name = job.command[1]
    if c.command_exists and not name:find("[/.]") and not c.command_exists(name) then
      c.fail(t, "command", "'%s' is not a kalua command (see `kalua help`)", name)
    end
  end
  if job.args and not job.script then c.fail(t, "args", "'args' goes with 'script'; put a command's arguments in 'command'") end
  if t.catch_up ~= nil then
    local v = t.catch_up
    if v == "true" then v = true elseif v == "false" then v = false end
    if type(v) ~= "boolean" then c.fail(t, "catch_up", "'catch_up' must be true or false") end
    job.catch_up = v
  end
  if t.timeout ~= nil then
    job.timeout = M.duration(t.timeout)
    if not job.timeout or job.timeout == 0 then
      c.fail(t, "timeout", "'timeout' must be seconds or a duration like 90s, 30m, 2h (got '%s')", tostring(t.timeout))
    end
  end
  job.directory, job.output = str("directory"), str("output")
  job.log_format, job.log_level = str("log_format"), str("log_level")
  if job.log_format and not LOG_FORMATS[job.log_format] then
    c.fail(t, "log_format", "'log_format' must be text or json (got '%s')", job.log_format)
  end
  if job.log_level and not LOG_LEVELS[job.log_level] then
    c.fail(t, "log_level", "'log_level' must be error, warn, info, debug or trace (got '%s')", job.log_level)
  end
  return job
end

local function checker(name, positions)
  local c = { positions = positions or {} }
  function c.fail(parent, key, fmt, ...)
    local p = parent and c.positions[parent] and c.positions[parent][key]
    local where = p and ("%s:%d:%d"):format(name, p.line, p.column) or name
    error({ message = where .. ": " .. fmt:format(...) }, 0)
  end
  if host then c.command_exists = host.command_path end
  return c
end

local function protect(fn)
  local ok, res = pcall(fn)
  if ok then return res end
  if type(res) == "table" then return nil, res.message end
  error(res, 0)
end

--- Checks a loaded jobs document ({ jobs = {...}, timezone = default }).
-- Returns the jobs (a list) or nil, "name:line:column: message".
function M.check_jobs(doc, positions, name)
  local c = checker(name or "jobs", positions)
  return protect(function()
    if type(doc) ~= "table" then c.fail(nil, nil, "expected a mapping with a 'jobs' list") end
    for k in pairs(doc) do
      if not TOP_KEYS[k] then c.fail(doc, k, "unknown key '%s'%s", tostring(k), suggestion(tostring(k), TOP_KEYS)) end
    end
    if type(doc.jobs) ~= "table" or (next(doc.jobs) ~= nil and #doc.jobs == 0) then
      c.fail(doc, "jobs", "'jobs' must be a list of jobs")
    end
    if #doc.jobs == 0 then c.fail(doc, "jobs", "'jobs' is empty") end
    if doc.timezone ~= nil and type(doc.timezone) ~= "string" then c.fail(doc, "timezone", "'timezone' must be a string") end
    local defaults = { timezone = doc.timezone, parent = doc }
    local jobs, seen = {}, {}
    for i, t in ipairs(doc.jobs) do
      local job = check_job(c, t, doc.jobs, i, defaults)
      if seen[job.name] then c.fail(t, "name", "a second job is named '%s'", job.name) end
      seen[job.name] = true
      jobs[i] = job
    end
    return jobs
  end)
end

--- Loads a jobs file. Returns the jobs or nil, "path:line:column: message".
function M.load_jobs(path)
  local doc, positions = yaml.load_file(path)
  if doc == nil then return nil, positions end
  return M.check_jobs(doc, positions, path)
end

--- One job from command-line settings ({ cron=, timezone=, name=,
-- catch_up=, timeout=, command = {...} }). The name defaults to one made
-- from the command. Returns { job } or nil, message.
function M.flag_job(o)
  local t = { cron = o.cron, timezone = o.timezone, catch_up = o.catch_up, timeout = o.timeout, output = o.output,
    directory = o.directory }
  if o.command and o.command[1] and o.command[1]:match("%.lua$") then
    t.script, t.args = o.command[1], table.move(o.command, 2, #o.command, 1, {})
  else
    t.command = o.command
  end
  t.name = o.name
  if not t.name and o.command and #o.command > 0 then
    t.name = table.concat(o.command, " "):gsub("[^%w_.]+", "-"):gsub("^[-.]+", ""):gsub("-+$", ""):sub(1, 60)
    if t.name == "" then t.name = "job" end
  end
  local c = checker("kalua schedule")
  c.fail = function(_, key, fmt, ...)
    local flag = type(key) == "string" and ("--" .. key:gsub("_", "-") .. ": ") or ""
    error({ message = flag .. fmt:format(...) }, 0)
  end
  return protect(function() return { check_job(c, t, nil, 1, {}) } end)
end

--- The argv that runs a job: the kalua executable, then the command (or
-- the script and its args).
function M.argv(job, executable)
  local argv = { executable }
  if job.command then
    table.move(job.command, 1, #job.command, 2, argv)
  else
    argv[2] = job.script
    table.move(job.args or {}, 1, #(job.args or {}), 3, argv)
  end
  return argv
end

-- --- logging --------------------------------------------------------------------

local MESSAGES = {
  start = "run started", ["end"] = "run finished", skip = "run skipped: the last one is still running",
  missed = "run missed while the scheduler was down", ["catch-up"] = "catching up a run missed while the scheduler was down",
  timeout = "run timed out: sending SIGTERM", kill = "run still going after SIGTERM: sending SIGKILL",
  forward = "stopping: forwarding SIGTERM to the run", interrupted = "the last run was cut short by a scheduler stop",
  error = "run could not start", ["scheduler-start"] = "scheduler started",
  ["scheduler-stopping"] = "scheduler stopping", ["scheduler-stop"] = "scheduler stopped",
}
local TIMES = { scheduled = true }

--- A log function over kalua.log (text or JSON lines on stderr, as
-- --log-format says): one line an event, e.g.
-- "... info run finished job=nightly event=end code=0 result=ok duration=12.3".
-- The event's time is the line's own.
function M.logger(logger)
  logger = logger or require("kalua.log")
  return function(e)
    local fields = {}
    for k, v in pairs(e) do
      if k ~= "time" then fields[k] = TIMES[k] and iso(v) or v end
    end
    local level = "info"
    if e.event == "error" then
      level = "error"
    elseif e.event == "skip" or e.event == "missed" or e.event == "timeout" or e.event == "kill"
      or e.event == "interrupted" or (e.event == "end" and e.result ~= "ok") then
      level = "warn"
    end
    logger[level](MESSAGES[e.event] or e.event, fields)
  end
end

-- --- state files -----------------------------------------------------------------

local function read_state(store, name)
  local data, err, ename = store:get(name .. ".json")
  if not data then
    if ename == "NOT_FOUND" then return {} end
    return nil, err
  end
  local v, derr = json.decode(data)
  if type(v) ~= "table" then return nil, ("%s.json: %s"):format(name, derr or "not a JSON object") end
  return v
end

-- --- the scheduler ------------------------------------------------------------------

local Scheduler = {}
Scheduler.__index = Scheduler

local function round3(x) return math.floor(x * 1000 + 0.5) / 1000 end

-- Wall-clock seconds with a fraction (CLOCK_REALTIME).
local function wall_clock()
  return clock.time
end

local function spawn_child(job, argv, lock, env)
  local proc, err = host.spawn(argv, { keep = { lock }, cwd = job.directory, stdout = job.output,
    stderr = job.output, env = env })
  if not proc then return nil, err end
  lock:set_pid(proc:pid())
  return {
    pid = proc:pid(),
    poll = function()
      local how, code, name = proc:wait(0)
      if not how then return nil end
      if how == "signal" then return { code = 128 + code, signal = name } end
      return { code = code }
    end,
    signal = function(_, sig) return proc:kill(sig) end,
  }
end

--- The variables a run of job gets in its environment: env (the
-- scheduler's, e.g. { KALUA_LOG_FORMAT = "json", KALUA_LOG_LEVEL = "debug" })
-- with the job's own log_format and log_level laid over it. A command's
-- own --log-format, -v or -q still win: flags beat the environment.
function M.job_env(job, env)
  local out = {}
  for k, v in pairs(env or {}) do out[k] = v end
  if job.log_format then out.KALUA_LOG_FORMAT = job.log_format end
  if job.log_level then out.KALUA_LOG_LEVEL = job.log_level end
  return next(out) and out or nil
end

--- A scheduler over opts.jobs (see the top of this file for the options).
-- opts.state_dir defaults to M.default_state_dir(); opts.poll is how often
-- (seconds) running jobs are checked (1); opts.grace how long a job that
-- timed out gets between SIGTERM and SIGKILL (30); opts.env variables set
-- in every run's environment (see M.job_env).
function M.new(opts)
  if not opts.jobs or #opts.jobs == 0 then return nil, "no jobs" end
  local s = setmetatable({
    jobs = opts.jobs, state_dir = opts.state_dir or M.default_state_dir(),
    now = opts.now or wall_clock(), stop_requested = opts.stop_requested or (host and host.stop_requested)
      or function() return nil end,
    spawn = opts.spawn or spawn_child, log = opts.log or M.logger(),
    lock = opts.lock or (host and host.lock), poll = opts.poll or 1, grace = opts.grace or 30,
    executable = opts.executable or (host and host.executable()) or arg and arg[-1],
    env = opts.env, states = {},
  }, Scheduler)
  if not s.lock then return nil, "the scheduler needs kalua.host (run it with kalua)" end
  s.sleep = opts.sleep or function(secs)
    local deadline = clock.now() + secs
    while true do
      local left = deadline - clock.now()
      if left <= 0 or (not s.stopping and s.stop_requested()) then return end
      clock.sleep(math.min(left, 0.2))
    end
  end
  local store, err = storage.open { backend = "filesystem", path = s.state_dir }
  if not store then return nil, err end
  s.store = store
  return s
end

function Scheduler:save(job)
  local st = self.states[job.name]
  st.name, st.cron, st.timezone, st.next = job.name, job.cron, job.timezone, job.next
  st.command, st.script = job.command, job.script
  st.updated = self.now()
  local ok, err = self.store:put(job.name .. ".json", json.encode(st, { indent = "  " }) .. "\n")
  if not ok then self.log { time = self.now(), job = job.name, event = "error", message = err } end
end

function Scheduler:emit(job, event, fields)
  local e = fields or {}
  e.time, e.job, e.event = self.now(), job and job.name, event
  self.log(e)
end

-- Reads each job's state, plans its next run and decides on catch-up.
function Scheduler:start()
  local now = self.now()
  self:emit(nil, "scheduler-start", { jobs = #self.jobs, state_dir = self.state_dir, pid = host and host.pid() })
  for _, job in ipairs(self.jobs) do
    local st, err = read_state(self.store, job.name)
    if not st then
      self:emit(job, "error", { message = err .. " (starting with no record)" })
      st = {}
    end
    self.states[job.name] = st
    -- The record was last saved while the scheduler was up and had dealt
    -- with every run due by then: runs after it were missed while down.
    local same = st.cron == job.cron and st.timezone == job.timezone
    local ref = same and st.updated
    if st.running then
      self:emit(job, "interrupted", { pid = st.running.pid, scheduled = st.running.scheduled,
        reason = "the scheduler stopped while it ran" })
      st.last = { scheduled = st.running.scheduled, started = st.running.started, pid = st.running.pid,
        result = "interrupted" }
      st.running = nil
    end
    job.next = job.spec:next(now - 1, job.zone) -- a run due this very second runs now
    local missed = ref and job.spec:next(ref, job.zone)
    if missed and job.next and missed < job.next then
      if job.catch_up then
        job.catch_up_at = missed
        self:emit(job, "catch-up", { scheduled = missed })
      else
        self:emit(job, "missed", { scheduled = missed, reason = "catch_up is off" })
      end
    end
    self:save(job)
  end
end

local function result_of(run, res)
  if run.timed_out then return "timeout" end
  if run.stopping then return "stopped" end
  if res.signal then return "killed by " .. res.signal end
  return res.code == 0 and "ok" or "failed"
end

function Scheduler:finish(job, res)
  local run, now = job.run, self.now()
  job.run = nil
  run.lock:release()
  local st = self.states[job.name]
  st.running = nil
  st.last = { scheduled = run.scheduled, started = run.started, finished = now, pid = run.pid,
    duration = round3(now - run.started), code = res.code, signal = res.signal, result = result_of(run, res) }
  self:save(job)
  self:emit(job, "end", { pid = run.pid, code = res.code, signal = res.signal, result = st.last.result,
    duration = st.last.duration })
end

-- Reaps a finished run, or enforces the job's timeout.
function Scheduler:check(job)
  local run = job.run
  local res = run.handle:poll()
  if res then return self:finish(job, res) end
  local now = self.now()
  if job.timeout and not run.term_at and now - run.started >= job.timeout then
    run.timed_out, run.term_at = true, now
    self:emit(job, "timeout", { pid = run.pid, after = job.timeout })
    run.handle:signal("SIGTERM")
  elseif run.term_at and not run.killed and now - run.term_at >= self.grace then
    run.killed = true
    self:emit(job, "kill", { pid = run.pid, reason = ("still running %ds after SIGTERM"):format(self.grace) })
    run.handle:signal("SIGKILL")
  end
end

-- Starts a run, unless one is still going (here or, by its lock, anywhere).
function Scheduler:launch(job, scheduled, reason)
  if job.run then
    self:emit(job, "skip", { scheduled = scheduled, reason = ("still running (pid %s)"):format(job.run.pid) })
    return
  end
  local lock, err = self.lock(self.state_dir .. "/" .. job.name .. ".lock")
  if not lock then
    self:emit(job, "skip", { scheduled = scheduled, reason = err })
    return
  end
  local handle
  handle, err = self.spawn(job, M.argv(job, self.executable), lock, M.job_env(job, self.env))
  local now, st = self.now(), self.states[job.name]
  if not handle then
    lock:release()
    st.last = { scheduled = scheduled, started = now, finished = now, duration = 0, result = "error", error = err }
    self:save(job)
    self:emit(job, "error", { scheduled = scheduled, message = err })
    return
  end
  job.run = { handle = handle, lock = lock, pid = handle.pid, started = now, scheduled = scheduled }
  st.running = { pid = handle.pid, started = now, scheduled = scheduled }
  self:save(job)
  self:emit(job, "start", { pid = handle.pid, scheduled = scheduled, reason = reason })
end

--- One pass: reaps finished runs, enforces timeouts, starts due jobs.
-- Returns the seconds until something is due (a run, or a check of a
-- running job).
function Scheduler:step()
  for _, job in ipairs(self.jobs) do
    if job.run then self:check(job) end
  end
  local now = self.now()
  for _, job in ipairs(self.jobs) do
    if job.catch_up_at then
      local missed = job.catch_up_at
      job.catch_up_at = nil
      self:launch(job, missed, "catch-up")
    end
    if job.next and job.next <= now then
      local scheduled = job.next
      job.next = job.spec:next(now, job.zone) -- runs missed while busy are not stacked up
      self:launch(job, scheduled)
      self:save(job)
    end
  end
  local wait = math.huge
  for _, job in ipairs(self.jobs) do
    if job.next then wait = math.min(wait, job.next - now) end
    if job.run then wait = math.min(wait, self.poll) end
  end
  if wait == math.huge then wait = 60 end
  return math.max(wait, 0)
end

function Scheduler:running()
  local n = 0
  for _, job in ipairs(self.jobs) do
    if job.run then n = n + 1 end
  end
  return n
end

--- Stops: forwards SIGTERM to every running job and waits for them.
function Scheduler:shutdown(signal)
  self.stopping = true
  self:emit(nil, "scheduler-stopping", { signal = signal, running = self:running() })
  for _, job in ipairs(self.jobs) do
    if job.run then
      job.run.stopping = true
      self:emit(job, "forward", { pid = job.run.pid, signal = "SIGTERM" })
      job.run.handle:signal("SIGTERM")
    end
  end
  while self:running() > 0 do
    for _, job in ipairs(self.jobs) do
      if job.run then self:check(job) end
    end
    if self:running() > 0 then self.sleep(math.min(self.poll, 0.1)) end
  end
  for _, job in ipairs(self.jobs) do self:save(job) end -- the time it stopped, for catch-up
  self:emit(nil, "scheduler-stop", { signal = signal })
  self.store:close()
  return signal
end

--- Runs until a stop is requested (then shuts down and returns the
-- signal's name), or, with opts.until_time, until now() reaches it (runs
-- in progress are left running: call run again to go on, or shutdown()).
function Scheduler:run(opts)
  opts = opts or {}
  if not self.started then
    self.started = true
    self:start()
  end
  while true do
    local signal = self.stop_requested()
    if signal then return self:shutdown(signal) end
    if opts.until_time and self.now() >= opts.until_time then return nil end
    local wait = self:step()
    if opts.until_time then wait = math.min(wait, opts.until_time - self.now()) end
    if wait > 0 then self.sleep(wait) end
  end
end

-- --- status ---------------------------------------------------------------------------

local function alive(pid)
  if not (host and math.type(pid) == "integer" and pid > 0) then return false end
  local ok, _, name = host.kill(pid, 0)
  return ok or name ~= "NO_PROCESS"
end

--- Each job's last run, the one in progress and the next, from the state
-- directory (opts.state_dir) and, when given, opts.jobs (jobs without a
-- record yet show too). Returns a list of rows sorted by name: { name=,
-- cron=, timezone=, last=, running=, next= } or nil, message.
function M.status(opts)
  local dir = opts.state_dir or M.default_state_dir()
  local store, err = storage.open { backend = "filesystem", path = dir }
  if not store then return nil, err end
  local rows, by_name = {}, {}
  local function add(name, job)
    if by_name[name] then return by_name[name] end
    local st, serr = read_state(store, name)
    if not st then st = { error = serr } end
    local row = { name = name, cron = job and job.cron or st.cron, timezone = job and job.timezone or st.timezone,
      last = st.last, running = st.running, error = st.error, next = st.next }
    if row.running and not alive(row.running.pid) then row.running.gone = true end
    by_name[name] = row
    rows[#rows + 1] = row
    return row
  end
  for _, job in ipairs(opts.jobs or {}) do add(job.name, job) end
  if not opts.jobs then
    local entries
    entries, err = store:list("")
    if not entries then return nil, err end
    for _, e in ipairs(entries) do
      local name = e.key:match("^([^/]+)%.json$")
      if name then add(name) end
    end
  end
  store:close()
  local now = opts.now or os.time()
  for _, row in ipairs(rows) do
    if row.cron then
      local zone = tz.load(row.timezone)
      local nxt = zone and cron.next(row.cron, now, zone)
      if nxt then row.next = nxt end
    end
  end
  table.sort(rows, function(a, b) return a.name < b.name end)
  return rows
end

--- "2026-01-02T03:04:05+01:00": t (epoch seconds) in a zone (a name or a kalua.tz zone).
function M.local_time(t, zone_name)
  if not t then return "-" end
  local zone = tz.load(zone_name) or tz.load("UTC")
  local f = zone:localtime(math.floor(t))
  local off = f.offset
  local sign = off < 0 and "-" or "+"
  off = math.abs(off)
  return ("%04d-%02d-%02dT%02d:%02d:%02d%s%02d:%02d"):format(f.year, f.month, f.day, f.hour, f.min, f.sec, sign,
    off // 3600, off % 3600 // 60)
end

local function describe_last(last)
  if not last then return "never run" end
  if last.result == "ok" then return ("ok (exit 0, %.1fs)"):format(last.duration or 0) end
  if last.result == "failed" then return ("failed (exit %s, %.1fs)"):format(tostring(last.code), last.duration or 0) end
  if last.result == "timeout" then return ("timed out (%.1fs)"):format(last.duration or 0) end
  if last.result == "error" then return "could not start: " .. tostring(last.error) end
  if last.result == "interrupted" then return "interrupted (the scheduler stopped while it ran)" end
  return ("%s (exit %s, %.1fs)"):format(tostring(last.result), tostring(last.code), last.duration or 0)
end

--- The status rows as text: one block per job.
function M.format_status(rows)
  if #rows == 0 then return "no scheduled jobs have run yet (no state files)\n" end
  local out = {}
  for _, r in ipairs(rows) do
    out[#out + 1] = ("%s  (%s%s)"):format(r.name, tostring(r.cron or "?"), r.timezone and (", " .. r.timezone) or "")
    if r.error then out[#out + 1] = "  state:    " .. r.error end
    if r.last then
      out[#out + 1] = ("  last run: %s, %s"):format(M.local_time(r.last.started, r.timezone), describe_last(r.last))
    else
      out[#out + 1] = "  last run: never"
    end
    if r.running then
      out[#out + 1] = ("  running:  since %s, pid %s%s"):format(M.local_time(r.running.started, r.timezone),
        tostring(r.running.pid), r.running.gone and " (no such process: the scheduler stopped while it ran)" or "")
    end
    out[#out + 1] = ("  next run: %s"):format(M.local_time(r.next, r.timezone))
  end
  return table.concat(out, "\n") .. "\n"
end

return M
