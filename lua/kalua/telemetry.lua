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
    help = "Records restored.", labels = TOPIC_PARTITION },
  errors = { type = "counter", name = "kalua_errors_total",
    help = "Failed runs and operations, by kind.", labels = { "kind" } },
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

--- Counts a failure of kind (e.g. "backup", "restore", "storage").
function T:error(kind)
  self:metric("errors", { kind = kind }):inc()
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
    self:metric("errors", { kind = "backup" }) -- 0 until one: increase() needs a start
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
    self:metric("backup_last_success", { backup_id = backup_id }):set(os.time())
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
