--- Kafka's own Java console clients, and kcat, as independent peers for
-- specs: the producer and consumer from the rig's Kafka distribution (the
-- broker's jars, KALUA_RIG_JARS) and librdkafka's kcat, neither of them
-- kalua's code. Plain clients only (no SASL or TLS settings): point them at
-- a PLAINTEXT listener or at a proxy's local listener.
--
--   local jc = require "java_clients"
--   jc.produce(bootstrap, topic, { "a", "b" })                       -- Java
--   local lines = jc.consume(bootstrap, topic, { group = "g", max_messages = 2 })
--   local m = jc.start_consumer(bootstrap, topic, { group = "g" })   -- a group member
--   m:wait_assignment(function(parts) return #parts == 1 end)
--   m:wait_records(5); m:stop()
--   jc.kcat_produce(bootstrap, topic, lines, { partition = 0 })
--   jc.kcat_consume(bootstrap, topic, { count = 10 })
--
-- Every call is bounded by a timeout (coreutils `timeout`) and raises an
-- error naming the tool, its exit code and the tail of its stderr when the
-- tool fails. A JVM takes ~1-4 s to start on the 2-core machines: keep the
-- number of Java runs in a spec small.
local proc = require "proc"
local clock = require "kalua.clock"

local M = {}

-- The classes Kafka 3.9.1's kafka-console-producer.sh and
-- kafka-console-consumer.sh run (the producer is still the Scala one there).
M.PRODUCER_CLASS = "kafka.tools.ConsoleProducer"
M.CONSUMER_CLASS = "org.apache.kafka.tools.consumer.ConsoleConsumer"

local JVM_OPTS = { "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1" }

--- Directory of the Kafka jars: KALUA_RIG_JARS (`spec/rig/rig env`), else
-- the rig's own target/jars beside this checkout.
function M.jars()
  local dir = os.getenv("KALUA_RIG_JARS")
  if dir == nil or dir == "" then dir = "spec/rig/target/jars" end
  local f = io.open(dir .. "/kafka-clients-" .. (os.getenv("KAFKA_VERSION") or "3.9.1") .. ".jar", "rb")
  if not f then
    error(("java_clients: no Kafka jars in %s (KALUA_RIG_JARS; `spec/rig/rig up` copies them there)"):format(dir), 3)
  end
  f:close()
  return dir
end

local function java_bin()
  local home = os.getenv("JAVA_HOME")
  if home and home ~= "" then return home .. "/bin/java" end
  return "java"
end

-- One temp dir for the log4j configs, removed when the Lua state closes.
local workdir
local function work()
  if workdir then return workdir end
  workdir = proc.tmpdir()
  -- Warnings and errors only, to stderr; with `coordinator`, also the
  -- consumer coordinator's INFO lines, which name each new assignment.
  local base = table.concat({
    "log4j.rootLogger=WARN, stderr",
    "log4j.appender.stderr=org.apache.log4j.ConsoleAppender",
    "log4j.appender.stderr.Target=System.err",
    "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout",
    "log4j.appender.stderr.layout.ConversionPattern=%p %m%n",
  }, "\n") .. "\n"
  proc.write_file(workdir .. "/log4j.properties", base)
  proc.write_file(workdir .. "/log4j-coordinator.properties", base
    .. "log4j.logger.org.apache.kafka.clients.consumer.internals.ConsumerCoordinator=INFO\n")
  M._gc = setmetatable({}, { __gc = function() proc.rmdir(workdir) end })
  return workdir
end

-- argv for `timeout ... java ... CLASS args...`, bounded by `seconds`.
local function java_argv(class, args, seconds, log4j)
  local argv = { "timeout", "--kill-after=5", tostring(math.ceil(seconds)), java_bin() }
  for _, o in ipairs(JVM_OPTS) do argv[#argv + 1] = o end
  argv[#argv + 1] = "-Dlog4j.configuration=file:" .. work() .. "/" .. (log4j or "log4j.properties")
  argv[#argv + 1] = "-cp"
  argv[#argv + 1] = M.jars() .. "/*"
  argv[#argv + 1] = class
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return argv
end

local function split_lines(s)
  local out = {}
  for line in s:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  local rest = s:match("([^\n]+)$")
  if rest then out[#out + 1] = rest end
  return out
end
M.split_lines = split_lines

--- The last n (default 20) lines of s, for error messages.
function M.tail(s, n)
  local lines = split_lines(s or "")
  n = n or 20
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

local function fail(what, r, extra, level)
  local how = r.code == 124 and " (killed by its timeout)" or ""
  error(("%s failed (exit %s%s)%s\n--- stderr (tail) ---\n%s"):format(what, tostring(r.code), how,
    extra and (": " .. extra) or "", M.tail(r.stderr)), (level or 2) + 1)
end

local function check_args(bootstrap, topic)
  assert(type(bootstrap) == "string" and bootstrap ~= "", "bootstrap (host:port) is required")
  assert(type(topic) == "string" and topic ~= "", "topic is required")
end

-- opts.properties = { ["k"] = "v" } -> { flag, "k=v", ... } in a stable order
local function property_args(flag, props)
  local keys, out = {}, {}
  for k in pairs(props or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    out[#out + 1] = flag
    out[#out + 1] = k .. "=" .. tostring(props[k])
  end
  return out
end

local function append(t, more)
  for _, v in ipairs(more) do t[#t + 1] = v end
  return t
end

--- Produces `lines` (a list of strings, one record each) with Kafka's
-- console producer, synchronously (each send waits for its ack, so a
-- failure fails the run), acks=all. opts:
--   key_separator  each line is KEY<sep>VALUE (parse.key=true)
--   properties     extra producer properties { name = value }
--   timeout        seconds for the whole run (default 60)
function M.produce(bootstrap, topic, lines, opts)
  check_args(bootstrap, topic)
  opts = opts or {}
  local args = { "--bootstrap-server", bootstrap, "--topic", topic, "--sync",
    "--producer-property", "acks=all", "--producer-property", "max.block.ms=20000" }
  if opts.key_separator then
    append(args, { "--property", "parse.key=true", "--property", "key.separator=" .. opts.key_separator })
  end
  append(args, property_args("--producer-property", opts.properties))
  local r = proc.run(java_argv(M.PRODUCER_CLASS, args, opts.timeout or 60),
    { stdin = #lines > 0 and (table.concat(lines, "\n") .. "\n") or "" })
  local what = ("java console producer (%d lines to %s on %s)"):format(#lines, topic, bootstrap)
  if r.code ~= 0 then fail(what, r) end
  if r.stderr:match("ERROR") then fail(what, r, "it logged an error") end
  return true
end

-- Formatter properties: which fields the consumer prints, tab-separated, in
-- the formatter's order (partition, offset, key, value).
local function print_args(opts)
  local args = {}
  if opts.print_partition then append(args, { "--property", "print.partition=true" }) end
  if opts.print_offset then append(args, { "--property", "print.offset=true" }) end
  if opts.print_key then append(args, { "--property", "print.key=true" }) end
  return args
end

--- Parses a console consumer line printed with print_partition,
-- print_offset and/or print_key into { partition=, offset=, key=, value= }
-- (the value is the rest of the line, tabs and all).
function M.parse_record(line, opts)
  local rec, rest = {}, line
  if opts.print_partition then
    local p, r = rest:match("^Partition:(%d+)\t(.*)$")
    assert(p, "no Partition: field in " .. line)
    rec.partition, rest = tonumber(p), r
  end
  if opts.print_offset then
    local o, r = rest:match("^Offset:(%d+)\t(.*)$")
    assert(o, "no Offset: field in " .. line)
    rec.offset, rest = tonumber(o), r
  end
  if opts.print_key then
    local k, r = rest:match("^([^\t]*)\t(.*)$")
    assert(k, "no key field in " .. line)
    rec.key, rest = k, r
  end
  rec.value = rest
  return rec
end

local function consumer_args(bootstrap, topic, opts)
  local args = { "--bootstrap-server", bootstrap, "--topic", topic }
  if opts.group then append(args, { "--group", opts.group }) end
  if opts.from_beginning then args[#args + 1] = "--from-beginning" end
  if opts.partition then append(args, { "--partition", tostring(opts.partition) }) end
  if opts.max_messages then append(args, { "--max-messages", tostring(opts.max_messages) }) end
  if opts.timeout_ms then append(args, { "--timeout-ms", tostring(opts.timeout_ms) }) end
  append(args, print_args(opts))
  append(args, property_args("--consumer-property", opts.properties))
  return args
end

--- Consumes with Kafka's console consumer and returns the printed lines
-- (values, unless print_* ask for more; with records = true, parsed
-- records as M.parse_record gives). opts:
--   group           consumer group (default: the tool's own random one)
--   from_beginning  start at the earliest offset when the group has none
--   partition       read only this partition (no group then)
--   max_messages    stop after this many; fewer by the end is an error
--                   unless allow_fewer = true
--   timeout_ms      stop after this long without a record (default 10000)
--   print_partition, print_offset, print_key, records
--   properties      extra consumer properties { name = value }
--   timeout         seconds for the whole run (default timeout_ms/1000 + 60)
function M.consume(bootstrap, topic, opts)
  check_args(bootstrap, topic)
  opts = setmetatable({}, { __index = opts or {} })
  opts.timeout_ms = opts.timeout_ms or 10000
  local r = proc.run(java_argv(M.CONSUMER_CLASS, consumer_args(bootstrap, topic, opts),
    opts.timeout or (opts.timeout_ms / 1000 + 60)))
  local what = ("java console consumer (%s on %s%s)"):format(topic, bootstrap,
    opts.group and (", group " .. opts.group) or "")
  -- The idle timeout ends the tool with exit 0 and an ERROR line about a
  -- TimeoutException: that is an end, not a failure.
  if r.code ~= 0 then fail(what, r) end
  local lines = split_lines(r.stdout)
  if opts.max_messages and #lines < opts.max_messages and not opts.allow_fewer then
    fail(what, r, ("got %d of %d messages within an idle timeout of %d ms"):format(#lines,
      opts.max_messages, opts.timeout_ms))
  end
  if opts.records then
    for i, line in ipairs(lines) do lines[i] = M.parse_record(line, opts) end
  end
  return lines, r.stderr
end

--- Starts a console consumer that stays in its group until stopped, for
-- rebalance tests (two handles with one group). It prints partition and
-- offset with each value, and logs the coordinator's assignments. opts as
-- consume (group is required; max_messages and timeout_ms are optional:
-- without them it runs until stopped), plus timeout: seconds after which
-- it is killed anyway (default 180). Returns a handle:
--   h:records()                     { partition=, offset=, value= } so far
--   h:wait_records(n [, seconds])   waits for n records (default 30 s), returns them
--   h:assignment()                  partition numbers assigned now ({} between
--                                   a revoke and the next assignment)
--   h:wait_assignment(pred [, s])   waits until pred(partitions) is true, returns them
--   h:alive(), h:stderr()
--   h:stop([seconds])               SIGTERM (it leaves the group), waits;
--                                   returns the records
--   h:cleanup()                     kills it if still running, removes its files
-- Every wait raises with the stderr tail when it times out or the
-- consumer died.
function M.start_consumer(bootstrap, topic, opts)
  check_args(bootstrap, topic)
  opts = opts or {}
  assert(opts.group, "start_consumer needs opts.group")
  local o = setmetatable({ print_partition = true, print_offset = true }, { __index = opts })
  local argv = java_argv(M.CONSUMER_CLASS, consumer_args(bootstrap, topic, o), opts.timeout or 180,
    "log4j-coordinator.properties")
  local p = proc.spawn(argv)
  local what = ("java console consumer (%s on %s, group %s, pid %d)"):format(topic, bootstrap, opts.group, p.pid)
  local h = { process = p, group = opts.group }

  function h:stderr() return p:stderr() end
  function h:alive() return p:alive() end

  function h:records()
    local out = {}
    for _, line in ipairs(split_lines(p:stdout())) do out[#out + 1] = M.parse_record(line, o) end
    return out
  end

  function h:assignment()
    local current = {}
    for _, line in ipairs(split_lines(p:stderr())) do
      local list = line:match("Notifying assignor about the new Assignment%(partitions=%[(.-)%]%)")
      if list then
        current = {}
        for tp in list:gmatch("[^,%s]+") do current[#current + 1] = tonumber(tp:match("%-(%d+)$")) end
        table.sort(current)
      elseif line:match("Revoke previously assigned partitions") or line:match("Lost previously assigned partitions") then
        current = {}
      end
    end
    return current
  end

  local function wait_for(check, seconds, waiting_for)
    local deadline = clock.now() + (seconds or 30)
    while true do
      local v = check()
      if v then return v end
      if not p:alive() then
        fail(what, { code = p:code(), stderr = p:stderr() }, "it ended while waiting for " .. waiting_for, 3)
      end
      if clock.now() > deadline then
        fail(what, { code = "none, still running", stderr = p:stderr() },
          ("no %s within %s s"):format(waiting_for, seconds or 30), 3)
      end
      clock.sleep(0.1)
    end
  end

  function h:wait_records(n, seconds)
    return wait_for(function()
      local recs = self:records()
      return #recs >= n and recs or nil
    end, seconds, ("%d records"):format(n))
  end

  function h:wait_assignment(pred, seconds)
    return wait_for(function()
      local parts = self:assignment()
      return pred(parts) and parts or nil
    end, seconds, "the expected assignment")
  end

  function h:stop(seconds)
    if p:alive() then
      p:kill("TERM") -- `timeout` passes it on; the consumer closes and leaves its group
      if not p:wait(seconds or 15) then
        p:kill("KILL")
        p:wait(5)
      end
    end
    return self:records()
  end

  function h:cleanup() p:cleanup() end

  return h
end

--- kcat (librdkafka) as a second independent client.

local function kcat_argv(seconds, args)
  local argv = { "timeout", "--kill-after=5", tostring(math.ceil(seconds)), os.getenv("KCAT") or "kcat" }
  return append(argv, args)
end

--- Produces `lines` with `kcat -P`, acks=all. opts: partition (default:
-- librdkafka's partitioner), key_delimiter (-K: KEY<delim>VALUE lines),
-- properties (-X name=value), timeout (seconds, default 30).
function M.kcat_produce(bootstrap, topic, lines, opts)
  check_args(bootstrap, topic)
  opts = opts or {}
  local args = { "-P", "-b", bootstrap, "-t", topic, "-X", "acks=all" }
  if opts.partition then append(args, { "-p", tostring(opts.partition) }) end
  if opts.key_delimiter then append(args, { "-K", opts.key_delimiter }) end
  append(args, property_args("-X", opts.properties))
  local r = proc.run(kcat_argv(opts.timeout or 30, args),
    { stdin = #lines > 0 and (table.concat(lines, "\n") .. "\n") or "" })
  local what = ("kcat -P (%d lines to %s on %s)"):format(#lines, topic, bootstrap)
  if r.code ~= 0 then fail(what, r) end
  -- librdkafka's own log lines (a refused ::1 before 127.0.0.1, say) are no
  -- failure; kcat's are.
  if r.stderr:match("%% ERROR") or r.stderr:match("Delivery failed") then fail(what, r, "it reported an error") end
  return true
end

--- Consumes with `kcat -C -e` (to the end of the partitions, then exit) and
-- returns the printed lines. opts: partition (-p), offset (-o, default
-- beginning), count (-c: stop after this many; fewer is an error unless
-- allow_fewer), format (-f, default "%s\n", one line per record), properties
-- (-X), timeout (seconds, default 30).
function M.kcat_consume(bootstrap, topic, opts)
  check_args(bootstrap, topic)
  opts = opts or {}
  local args = { "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-o", tostring(opts.offset or "beginning"),
    "-f", opts.format or "%s\n" }
  if opts.partition then append(args, { "-p", tostring(opts.partition) }) end
  if opts.count then append(args, { "-c", tostring(opts.count) }) end
  append(args, property_args("-X", opts.properties))
  local r = proc.run(kcat_argv(opts.timeout or 30, args))
  local what = ("kcat -C -e (%s on %s)"):format(topic, bootstrap)
  if r.code ~= 0 then fail(what, r) end
  local lines = split_lines(r.stdout)
  if opts.count and #lines < opts.count and not opts.allow_fewer then
    fail(what, r, ("got %d of %d records before the end of the partitions"):format(#lines, opts.count))
  end
  return lines
end

return M
