--- kalua's own metrics: the names kalua exports, in one place, and what
-- feeds them (a backup run's hooks, a store's request counters, the auth
-- relay's counters) on a kalua.metrics registry.
--
--   local metrics = require "kalua.metrics"
--   local telemetry = require "kalua.telemetry"
--   local reg <close> = metrics.registry()
--   assert(reg:serve("127.0.0.1:9464"))               -- GET /metrics, /healthz
--   local t = telemetry.new(reg)
--   local summary, err = backup.run(cfg, t:backup_hooks { progress = show })
--   if not summary then t:error("backup") end
--   t:sync()                                          -- store and relay counters, now
--   reg:write_textfile("/var/lib/node_exporter/textfile/kalua.prom")
--
-- A script adds its own metrics on the same registry; they are served and
-- written with kalua's:
--
--   local copied = reg:counter("myjob_records_copied_total", "Records myjob copied.", { topic = "orders" })
--   copied:add(#batch)
--   reg:histogram("myjob_batch_seconds", "Time to copy one batch.", { 0.01, 0.1, 1 }):observe(secs)
--
-- Storage requests and relay authentications are counted in C (a store's
-- store:stats(), a client's relay_stats()); they reach the registry at
-- each sync, which the backup hooks run at every progress report, round
-- and close, so a scrape sees them at most one segment late.
local clock = require "kalua.clock"

local M = {}

local TOPIC_PARTITION = { "topic", "partition" }

--- Every metric kalua exports: type, name, help and label names
-- (Prometheus conventions: base units, _total for counters).
M.names = {
  backup_records = { type = "counter", name = "kalua_backup_records_total",
    help = "Records backed up into published segments.", labels = TOPIC_PARTITION },
  backup_bytes = { type = "counter", name = "kalua_backup_bytes_total",
    help = "Bytes of published backup segments (compressed, as stored).", labels = TOPIC_PARTITION },
  backup_segments = { type = "counter", name = "kalua_backup_segments_total",
    help = "Backup segments published.", labels = TOPIC_PARTITION },
  backup_lag = { type = "gauge", name = "kalua_backup_lag_records",
    help = "Records between the partition's high watermark (taken at the round's start) and the backup's next offset.",
    labels = TOPIC_PARTITION },
  backup_throughput = { type = "gauge", name = "kalua_backup_throughput_bytes_per_second",
    help = "Segment bytes per second over the current (or last) backup round." },
  backup_last_success = { type = "gauge", name = "kalua_backup_last_success_timestamp_seconds",
    help = "When a backup round last completed, in seconds since the epoch.", labels = { "backup_id" } },
  restore_records = { type = "counter", name = "kalua_restore_records_total",
    help = "Records restored, by target topic and partition.", labels = TOPIC_PARTITION },
  restore_bytes = { type = "counter", name = "kalua_restore_bytes_total",
    help = "Bytes of backup segments restored (compressed, as stored), by target topic and partition.",
    labels = TOPIC_PARTITION },
  restore_segments = { type = "counter", name = "kalua_restore_segments_total",
    help = "Backup segments restored, by target topic and partition.", labels = TOPIC_PARTITION },
  restore_last_success = { type = "gauge", name = "kalua_restore_last_success_timestamp_seconds",
    help = "When a restore last completed, in seconds since the epoch.", labels = { "backup_id" } },
  schedule_runs = { type = "counter", name = "kalua_schedule_runs_total",
    help = "Scheduled runs by outcome: ok, failed, timeout, killed, stopped, error (could not start), "
      .. "skipped (the last run was still going), interrupted (cut short by a scheduler stop).",
    labels = { "job", "outcome" } },
  schedule_last_run = { type = "gauge", name = "kalua_schedule_last_run_timestamp_seconds",
    help = "When the job's last run ended, whatever its outcome, in seconds since the epoch.", labels = { "job" } },
  schedule_last_success = { type = "gauge", name = "kalua_schedule_last_success_timestamp_seconds",
    help = "When a run of the job last ended with exit code 0, in seconds since the epoch.", labels = { "job" } },
  schedule_running = { type = "gauge", name = "kalua_schedule_running",
    help = "1 while a run of the job is going, else 0.", labels = { "job" } },
  offsets_groups = { type = "counter", name = "kalua_offsets_groups_changed_total",
    help = "Consumer groups whose committed offsets kalua offsets moved, by action (reset, rollback).",
    labels = { "action" } },
  offsets_partitions = { type = "counter", name = "kalua_offsets_partitions_changed_total",
    help = "Partitions whose committed offset kalua offsets moved, by action (reset, rollback).",
    labels = { "action" } },
  errors = { type = "counter", name = "kalua_errors_total",
    help = "Errors by kind: config, auth (SASL, TLS, Kerberos, ACLs), kafka, storage, other.",
    labels = { "kind" } },
  sasl_authentications = { type = "counter", name = "kalua_sasl_authentications_total",
    help = "SASL authentications kalua's auth relay completed." },
  sasl_reauthentications = { type = "counter", name = "kalua_sasl_reauthentications_total",
    help = "KIP-368 re-authentications kalua's auth relay completed." },
  sasl_failures = { type = "counter", name = "kalua_sasl_authentication_failures_total",
    help = "SASL authentications kalua's auth relay failed." },
  storage_requests = { type = "counter", name = "kalua_storage_requests_total",
    help = "Storage requests: HTTP attempts for object stores (status = HTTP status, or error), "
      .. "operations for the filesystem (status = ok or the error name).",
    labels = { "backend", "method", "status" } },
  storage_duration = { type = "histogram", name = "kalua_storage_request_duration_seconds",
    help = "Storage request latency.", labels = { "backend", "method" } },
}

local T = {}
T.__index = T

--- Telemetry over registry reg (kalua.metrics.registry()).
function M.new(reg)
  return setmetatable({
    reg = reg,
    handles = {},                                 -- cache: name and label values -> metric
    stores = setmetatable({}, { __mode = "k" }),  -- store -> the stats last exported
    clients = setmetatable({}, { __mode = "k" }), -- live Kafka clients whose relay we read
    relay_closed = { authentications = 0, reauthentications = 0, failures = 0 },
    relay_exported = { authentications = 0, reauthentications = 0, failures = 0 },
    relay_seen = false,
  }, T)
end

--- The metric M.names[id] for labels (a table by label name), cached.
-- buckets: a histogram's bounds, for its first use.
function T:metric(id, labels, buckets)
  local def = assert(M.names[id], id)
  local key = id
  for _, l in ipairs(def.labels or {}) do key = key .. "\0" .. tostring(labels[l]) end
  local h = self.handles[key]
  if not h then
    if def.type == "histogram" then
      h = self.reg:histogram(def.name, def.help, buckets or def.buckets, labels)
    else
      h = self.reg[def.type](self.reg, def.name, def.help, labels)
    end
    self.handles[key] = h
  end
  return h
end

-- --- errors by kind -----------------------------------------------------------

--- The kinds of kalua_errors_total, each exported (at 0) from the start.
M.error_kinds = { "config", "auth", "kafka", "storage", "other" }
local KINDS = {}
for _, k in ipairs(M.error_kinds) do KINDS[k] = true end

-- Error names (the third value of a failure) by kind.
local STORAGE_NAMES = { IO_ERROR = true, NOT_FOUND = true, PERMISSION_DENIED = true, NO_SPACE = true,
  CORRUPT = true, INVALID_KEY = true, EXISTS = true }
-- Names kalua's own modules give that say nothing of Kafka (librdkafka's
-- are the other upper-case names, and those starting with "_").
local NOT_KAFKA_NAMES = { ERROR = true, UNSUPPORTED = true, INVALID_ADDRESS = true, ADDRESS_IN_USE = true,
  LOCKED = true, NO_PROCESS = true }
local function auth_name(name)
  return name:find("AUTHENTICATION", 1, true) or name:find("AUTHORIZATION", 1, true) or name:find("^_?SASL")
    or name == "_SSL" or name == "GSSAPI" or name == "SASL_CONFIG"
end
-- Words of a message (lower-cased) that say what failed, tried in order.
local AUTH_WORDS = { "sasl", "authenticat", "authoriz", "kerberos", "gssapi", "keytab", "scram", "ssl handshake",
  "certificate verify", "credentials" }
local STORAGE_WORDS = { "storage", "s3://", "az://", "gs://", "bucket", "manifest", "checkpoint", "segment",
  "no such file", "is a directory", "permission denied", "no space left", "cannot open", "cannot write",
  "cannot create" }
local KAFKA_WORDS = { "broker", "kafka", "local: ", "leader", "partition", "topic", "metadata", "timed out",
  "producer", "consumer", "offset" }

local function mentions(message, words)
  for _, w in ipairs(words) do
    if message:find(w, 1, true) then return true end
  end
  return false
end

--- The kind of an error (one of M.error_kinds) from its message, its name
-- (the symbolic name a failure returns third, e.g.
-- "SASL_AUTHENTICATION_FAILED", "_TRANSPORT", "IO_ERROR") and, when the
-- caller knows what it was doing, phase ("kafka", "storage", "config"):
-- a config phase is "config"; authentication and authorization failures
-- are "auth" whatever the other phases; then the phase decides, then the name, then the message's words.
function M.error_kind(message, name, phase)
  local lower = tostring(message or ""):lower()
  name = type(name) == "string" and name or ""
  if phase == "config" then return "config" end
  if auth_name(name) or mentions(lower, AUTH_WORDS) then return "auth" end
  if phase and KINDS[phase] then return phase end
  if name == "CONFIG" then return "config" end
  if STORAGE_NAMES[name] then return "storage" end
  if name:find("^_") or (name:find("^[A-Z][A-Z_]+$") and not NOT_KAFKA_NAMES[name]) then return "kafka" end
  if mentions(lower, STORAGE_WORDS) then return "storage" end
  if mentions(lower, KAFKA_WORDS) then return "kafka" end
  return "other"
end

--- Exports every kind of kalua_errors_total at 0, so that increase() has
-- a start before the first error.
function T:init_errors()
  for _, kind in ipairs(M.error_kinds) do self:metric("errors", { kind = kind }) end
end

--- Counts an error of kind (one of M.error_kinds).
function T:error(kind)
  if not KINDS[kind] then kind = "other" end
  self:metric("errors", { kind = kind }):inc()
end

--- Counts a failure by its message, name and phase (see M.error_kind);
-- returns its kind.
function T:failure(message, name, phase)
  local kind = M.error_kind(message, name, phase)
  self:error(kind)
  return kind
end

--- Counts n restored records of topic/partition.
function T:restore_records(topic, partition, n)
  self:metric("restore_records", { topic = topic, partition = partition }):add(n)
end

--- Exports store's request counters (store:stats()) at every sync until
-- untracked or collected.
function T:track_store(store)
  if self.stores[store] == nil then self.stores[store] = { requests = {}, seconds = {} } end
end

-- Adds what store counted since the last sync.
local function sync_store(self, store, last)
  local ok, stats = pcall(store.stats, store)
  if not ok then return end -- closed
  for key, n in pairs(stats.requests) do
    local method, status = key:match("^(%S+) (.+)$")
    local delta = n - (last.requests[key] or 0)
    if delta > 0 then
      self:metric("storage_requests", { backend = stats.backend, method = method, status = status }):add(delta)
    end
    last.requests[key] = n
  end
  for method, s in pairs(stats.seconds) do
    local before = last.seconds[method] or { count = 0, sum = 0, buckets = {} }
    if s.count > before.count then
      local deltas = {}
      for i, n in ipairs(s.buckets) do deltas[i] = n - (before.buckets[i] or 0) end
      self:metric("storage_duration", { backend = stats.backend, method = method }, stats.bounds)
        :add_buckets(deltas, s.sum - before.sum)
    end
    last.seconds[method] = s
  end
end

--- A final sync of store, then forgets it (call before store:close()).
function T:untrack_store(store)
  local last = self.stores[store]
  if last then sync_store(self, store, last) end
  self.stores[store] = nil
end

--- Reads client:relay_stats() at every sync while the client lives.
function T:track_client(client)
  self.clients[client] = true
end

-- relay_stats() field -> metric, in the order they are exported.
local RELAY_COUNTS = { { "authentications", "sasl_authentications" },
  { "reauthentications", "sasl_reauthentications" }, { "failures", "sasl_failures" } }

--- Folds client's relay counts into the totals (call before client:close()).
function T:client_done(client)
  self.clients[client] = nil
  local ok, s = pcall(client.relay_stats, client)
  if not ok or not s then return end
  self.relay_seen = true
  for _, c in ipairs(RELAY_COUNTS) do
    self.relay_closed[c[1]] = self.relay_closed[c[1]] + (s[c[1]] or 0)
  end
end

local function sync_relay(self)
  local totals = {}
  for _, c in ipairs(RELAY_COUNTS) do totals[c[1]] = self.relay_closed[c[1]] end
  for client in pairs(self.clients) do
    local ok, s = pcall(client.relay_stats, client)
    if ok and s then
      self.relay_seen = true
      for _, c in ipairs(RELAY_COUNTS) do totals[c[1]] = totals[c[1]] + (s[c[1]] or 0) end
    end
  end
  if not self.relay_seen then return end -- no relay carries our clients: nothing to say
  for _, c in ipairs(RELAY_COUNTS) do
    local field = c[1]
    local delta = totals[field] - self.relay_exported[field]
    local counter = self:metric(c[2], {})
    if delta > 0 then
      counter:add(delta)
      self.relay_exported[field] = totals[field]
    end
  end
end

--- Brings the C-side counters (tracked stores and clients) into the registry.
function T:sync()
  for store, last in pairs(self.stores) do sync_store(self, store, last) end
  sync_relay(self)
end

--- Hooks for kalua.backup.run that feed the backup metrics, chained with
-- those of `extra` (progress, round, ...; other fields pass through).
function T:backup_hooks(extra)
  extra = extra or {}
  local hooks = {}
  for k, v in pairs(extra) do hooks[k] = v end
  local round_start, round_bytes, in_round, backup_id = clock.now(), 0, false, nil
  -- Runs ours, then theirs; when both return a value to close (the client
  -- hook), the result closes both.
  local function chain(name, fn)
    local other = extra[name]
    hooks[name] = function(...)
      local mine = fn(...)
      local theirs = other and other(...)
      if mine == nil or theirs == nil then return mine or theirs end
      return setmetatable({}, { __close = function()
        local _ <close> = mine
        local _ <close> = theirs -- closed first
      end })
    end
  end
  local function throughput()
    local elapsed = clock.now() - round_start
    if elapsed > 0 then self:metric("backup_throughput", {}):set(round_bytes / elapsed) end
  end
  chain("open", function(run)
    backup_id = run.backup_id
    self:track_store(run.store)
    self:track_client(run.admin)
    self:metric("backup_throughput", {}):set(0)
    self:init_errors()
    self:sync()
  end)
  chain("partition", function(topic, partition, next_offset, high)
    if not in_round then
      in_round, round_start, round_bytes = true, clock.now(), 0
    end
    self:metric("backup_lag", { topic = topic, partition = partition }):set(math.max(0, high - next_offset))
  end)
  chain("segment", function(topic, partition, stats, high)
    local labels = { topic = topic, partition = partition }
    self:metric("backup_records", labels):add(stats.records)
    self:metric("backup_bytes", labels):add(stats.bytes)
    self:metric("backup_segments", labels):inc()
    if stats.last_offset and high then
      self:metric("backup_lag", labels):set(math.max(0, high - stats.last_offset - 1))
    end
    round_bytes = round_bytes + stats.bytes
  end)
  chain("progress", function()
    throughput()
    self:sync()
  end)
  chain("round", function()
    throughput()
    in_round = false
    self:metric("backup_last_success", { backup_id = backup_id }):set(clock.time())
    self:sync()
  end)
  -- A Kafka client the run opened: its relay counts are read until the
  -- returned value is closed (just before the client is).
  chain("client", function(client)
    self:track_client(client)
    return setmetatable({}, { __close = function() self:client_done(client) end })
  end)
  chain("close", function(run)
    self:client_done(run.admin)
    self:untrack_store(run.store)
    self:sync()
  end)
  return hooks
end

--- Hooks for kalua.restore.run that feed the restore metrics (labels: the
-- target topic and partition), chained with those of `extra`.
function T:restore_hooks(extra)
  extra = extra or {}
  local hooks = {}
  for k, v in pairs(extra) do hooks[k] = v end
  local function chain(name, fn)
    local other = extra[name]
    hooks[name] = function(...)
      fn(...)
      if other then return other(...) end
    end
  end
  chain("open", function(run)
    self:track_store(run.store)
    self:track_client(run.admin)
    self:track_client(run.producer)
    self:init_errors()
    self:sync()
  end)
  chain("segment", function(topic, partition, records, bytes)
    local labels = { topic = topic, partition = partition }
    self:metric("restore_records", labels):add(records)
    self:metric("restore_bytes", labels):add(bytes or 0)
    self:metric("restore_segments", labels):inc()
  end)
  chain("wave", function() self:sync() end)
  chain("close", function(run, summary)
    if summary then self:metric("restore_last_success", { backup_id = run.backup_id }):set(clock.time()) end
    if run.producer then self:client_done(run.producer) end
    if run.admin then self:client_done(run.admin) end
    if run.store then self:untrack_store(run.store) end
    self:sync()
  end)
  return hooks
end

--- A log function for kalua.schedule.new that feeds each job's metrics
-- from the scheduler's events, then passes them on to `log`.
function T:schedule_log(log, jobs)
  local function runs(job, outcome) self:metric("schedule_runs", { job = job, outcome = outcome }):inc() end
  for _, job in ipairs(jobs or {}) do
    for _, outcome in ipairs { "ok", "failed" } do self:metric("schedule_runs", { job = job.name, outcome = outcome }) end
    self:metric("schedule_running", { job = job.name }):set(0)
  end
  self:init_errors()
  return function(e)
    local job = e.job
    if job and e.event == "start" then
      self:metric("schedule_running", { job = job }):set(1)
    elseif job and e.event == "end" then
      local outcome = tostring(e.result)
      if outcome:find("^killed") then outcome = "killed" end
      runs(job, outcome)
      self:metric("schedule_running", { job = job }):set(0)
      self:metric("schedule_last_run", { job = job }):set(e.time)
      if e.result == "ok" then self:metric("schedule_last_success", { job = job }):set(e.time) end
    elseif job and e.event == "skip" then
      runs(job, "skipped")
    elseif job and e.event == "interrupted" then
      runs(job, "interrupted")
    elseif e.event == "error" and job and e.scheduled then -- a run that could not start
      runs(job, "error")
      self:metric("schedule_last_run", { job = job }):set(e.time)
      self:error("other")
    elseif e.event == "error" then -- a state file that cannot be read or written
      self:failure(e.message, nil, "storage")
    end
    if log then return log(e) end
  end
end

--- Counts a `kalua offsets` change applied: groups and partitions moved by
-- action ("reset" or "rollback").
function T:offsets_changed(action, groups, partitions)
  self:metric("offsets_groups", { action = action }):add(groups)
  self:metric("offsets_partitions", { action = action }):add(partitions)
end

--- What `kalua backup` (and any command) does with --metrics-addr and
-- --metrics-textfile: a registry (t.reg), served at opts.addr when given,
-- written to opts.textfile by t:write(), stopped by t:close(). Returns the
-- telemetry (t.address when serving) or nil, message.
function M.start(opts)
  local reg = require("kalua.metrics").registry()
  local t = M.new(reg)
  t.textfile = opts.textfile
  if opts.addr then
    local address, err = reg:serve(opts.addr)
    if not address then
      reg:close()
      return nil, err
    end
    t.address = address
  end
  return t
end

--- The flags of a command that exports metrics (what M.start takes as
-- opts.addr and opts.textfile: opts.metrics_addr, opts.metrics_textfile).
function M.flags(textfile_help)
  return {
    { name = "metrics-addr", key = "metrics_addr", arg = true,
      help = "serve Prometheus metrics at host:port while running (port 0: any free one)" },
    { name = "metrics-textfile", key = "metrics_textfile", arg = true,
      help = textfile_help or "write the metrics to this file at the end (node_exporter's textfile collector)" },
  }
end

--- M.start for a command: serves opts.metrics_addr and says where
-- ("kalua <command>: metrics at http://.../metrics", a log line of level
-- info), writes opts.metrics_textfile; exports every error kind at 0.
-- Dies (cli.die) when the address cannot be served.
function M.command(command, opts)
  local cli = require "kalua.cli"
  local t, err = M.start { addr = opts.metrics_addr, textfile = opts.metrics_textfile }
  if not t then cli.die(command, err) end
  t.command = command
  t:init_errors()
  if t.address then cli.report(command, ("metrics at http://%s/metrics"):format(t.address), "info") end
  return t
end

--- Writes the textfile; one that cannot be written is reported (a line),
-- not fatal.
function T:flush()
  local ok, err = self:write()
  if not ok then require("kalua.cli").report(self.command or "kalua", err) end
end

--- The end of a failed command: counts the error (kind from its message,
-- name and phase: see M.error_kind), writes the textfile, stops serving
-- and exits with cli.die's line.
function T:die(message, name, phase)
  self:failure(message, name, phase)
  self:flush()
  self:close()
  require("kalua.cli").die(self.command or "kalua", message)
end

--- Writes the textfile, when there is one. Returns true or nil, message.
function T:write()
  if not self.textfile then return true end
  self:sync()
  return self.reg:write_textfile(self.textfile)
end

--- Stops serving and frees the registry.
function T:close()
  self.reg:close()
end

return M
