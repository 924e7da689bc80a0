--- Run kalua commands on cron schedules, and show their last and next runs.
-- Usage: kalua schedule --jobs jobs.yaml [--state-dir DIR] [--log-format json] [--metrics-addr HOST:PORT]
--        kalua schedule --cron "*/5 * * * *" [--timezone TZ] [--name NAME] -- backup --config b.yaml
--        kalua schedule --status [--jobs jobs.yaml] [--state-dir DIR]
--        kalua schedule --check --jobs jobs.yaml      (check the file, print each job's next runs)
--
-- A jobs file:
--   timezone: Europe/Berlin            # default for every job (else the machine's zone)
--   jobs:
--     - name: nightly
--       cron: "30 2 * * *"             # minute hour day-of-month month day-of-week, or @daily ...
--       command: [backup, --config, /etc/kalua/nightly.yaml]
--       catch_up: true                 # run once at start if a run was missed while down
--       timeout: 2h                    # then SIGTERM, and SIGKILL 30 s later
--     - name: report
--       cron: "@hourly"
--       script: /etc/kalua/report.lua  # a Lua file, run by kalua, with args: [...]
-- Other job keys: timezone, directory (working directory), output (a file
-- the job's stdout and stderr are appended to), log_format (text, json)
-- and log_level (error, warn, info, debug, trace).
--
-- Each run is a child process (`kalua <command>`), logged when it starts
-- and ends (exit code, duration). A job never overlaps itself: a run that
-- comes due while the last is still going is skipped. Cron fields follow
-- Vixie cron, time zones the system's zoneinfo, with DST handled as Vixie
-- cron does. SIGTERM or SIGINT stops the scheduler: it forwards SIGTERM to
-- running jobs (a backup then finishes its segment and checkpoints), waits
-- for them and exits 0. The jobs' last runs are kept in --state-dir
-- (default ~/.local/state/kalua/schedule).
--
-- Runs log the way the scheduler does: its --log-format, -v and -q reach
-- them (as KALUA_LOG_FORMAT and KALUA_LOG_LEVEL); a job's log_format and
-- log_level, or its command's own flags, override them.
--
-- --metrics-addr 127.0.0.1:9464 serves Prometheus metrics for all the jobs
-- (GET /metrics, /healthz) while the scheduler runs; --metrics-textfile
-- PATH writes them after each run and at the stop. Per job:
-- kalua_schedule_runs_total{job,outcome} (ok, failed, timeout, killed,
-- stopped, error, skipped, interrupted), kalua_schedule_running{job},
-- kalua_schedule_last_run_timestamp_seconds{job} and
-- kalua_schedule_last_success_timestamp_seconds{job} (when a run ended);
-- and kalua_errors_total{kind}.
local cli = require "kalua.cli"
local schedule = require "kalua.schedule"
local host = require "kalua.host"
local log = require "kalua.log"
local telemetry = require "kalua.telemetry"

local flags = {
  { name = "jobs", short = "j", key = "jobs", arg = true, help = "YAML file of jobs" },
  { name = "cron", key = "cron", arg = true, help = "one job: its cron expression (command after --)" },
  { name = "timezone", key = "timezone", arg = true, help = "one job: IANA zone, e.g. Europe/Berlin (default local)" },
  { name = "name", key = "name", arg = true, help = "one job: its name (default: made from the command)" },
  { name = "catch-up", key = "catch_up", help = "one job: run once at start if a run was missed" },
  { name = "timeout", key = "timeout", arg = true, help = "one job: stop a run after this long (90s, 30m, 2h)" },
  { name = "output", key = "output", arg = true, help = "one job: append its output to this file" },
  { name = "state-dir", key = "state_dir", arg = true, help = "where last runs and locks are kept" },
  { name = "status", key = "status", help = "print each job's last run, result and next run" },
  { name = "check", key = "check", help = "check the jobs and print their next runs, then exit" },
}
flags = cli.flags(flags, telemetry.flags("write the metrics to this file after each run and at the stop"))

local opts, err = cli.parse({ ... }, flags)
if not opts then
  if err:find("^unknown option") then err = err .. " (a job's own command goes after --)" end
  cli.die("schedule", err)
end
local USAGE = "usage: kalua schedule --jobs jobs.yaml | --cron EXPR -- COMMAND [ARGS] | --status"

local jobs
if opts.jobs then
  if opts.cron then cli.die("schedule", "give --jobs or --cron, not both") end
  jobs, err = schedule.load_jobs(opts.jobs)
elseif opts.cron then
  local command = {}
  for i = 1, #opts do command[i] = opts[i] end
  if #command == 0 then cli.die("schedule", "--cron needs a command after --, e.g. -- backup --config b.yaml") end
  jobs, err = schedule.flag_job { cron = opts.cron, timezone = opts.timezone, name = opts.name,
    catch_up = opts.catch_up, timeout = opts.timeout, output = opts.output, command = command }
elseif not opts.status then
  cli.die("schedule", USAGE)
end
if err then cli.die("schedule", err) end

if opts.status then
  local rows
  rows, err = schedule.status { state_dir = opts.state_dir, jobs = jobs }
  if not rows then cli.die("schedule", err) end
  io.write(schedule.format_status(rows))
  os.exit(0)
end

if opts.check then
  for _, job in ipairs(jobs) do
    local runs, t = {}, os.time()
    for i = 1, 3 do
      t = job.spec:next(t, job.zone)
      runs[i] = schedule.local_time(t, job.zone)
    end
    print(("%s  %s (%s): next %s"):format(job.name, job.cron, job.zone.name, table.concat(runs, ", ")))
  end
  os.exit(0)
end

host.catch_signals()
local tele = telemetry.command("schedule", opts)
local settings = log.settings()
local feed = tele:schedule_log(schedule.logger(), jobs)
local scheduler
scheduler, err = schedule.new { jobs = jobs, state_dir = opts.state_dir,
  env = { KALUA_LOG_FORMAT = settings.format, KALUA_LOG_LEVEL = settings.level },
  log = function(e)
    feed(e)
    if e.job or e.event == "scheduler-stop" then tele:flush() end
  end }
if not scheduler then tele:die(err, nil, "storage") end
scheduler:run()
tele:close()
