--- Produce and consume throughput through kalua's auth relay beside the
-- direct paths, on the rig's broker, in one run; prints each path's MiB/s
-- and its ratio to PLAINTEXT (and to librdkafka's own SASL where it has
-- one). Never asserts a time. Run by bench/relay (see bench/README.md).
--   BENCH_RELAY_MIB      MiB to produce per path (default 256)
--   BENCH_RECORD_SIZE    value bytes per record (default 1024)
--   BENCH_RELAY_ROUNDS   rounds over all paths; each path's best round counts
--                        (default 2: a shared machine's noise is one-sided)
local kafka = require "kalua.kafka"
local clock = require "kalua.clock"

local function env(name)
  return assert(os.getenv(name), name .. " is not set: eval \"$(spec/rig/rig env)\"")
end

local mib = tonumber(os.getenv("BENCH_RELAY_MIB") or "") or 256
local size = tonumber(os.getenv("BENCH_RECORD_SIZE") or "") or 1024
local records = mib * 1024 * 1024 // size
local value = ("x"):rep(size)
local rounds = tonumber(os.getenv("BENCH_RELAY_ROUNDS") or "") or 2

local scram = { sasl_username = env("KAFKA_SCRAM_USER"), sasl_password = env("KAFKA_SCRAM_PASSWORD") }
local function sec(t, extra)
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local paths = {
  { name = "PLAINTEXT (direct)", conf = { bootstrap_servers = env("KAFKA_PLAINTEXT") } },
  { name = "SCRAM-SHA-512, librdkafka", conf = { bootstrap_servers = env("KAFKA_SASL_PLAINTEXT"),
    security = sec({ security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "SCRAM-SHA-512" }, scram) } },
  { name = "SCRAM-SHA-512, kalua relay", conf = { bootstrap_servers = env("KAFKA_SASL_PLAINTEXT"),
    security = sec({ security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "SCRAM-SHA-512", sasl_relay = true },
      scram) } },
  { name = "GSSAPI, kalua relay", conf = { bootstrap_servers = env("KAFKA_GSSAPI"),
    security = { security_protocol = "SASL_PLAINTEXT", sasl_mechanism = "GSSAPI",
      sasl_keytab_path = env("KALUA_RIG_ALICE_KEYTAB"), sasl_principal = env("KALUA_RIG_ALICE_PRINCIPAL"),
      sasl_krb5_config_path = env("KRB5_RIG_CONFIG") } } },
  { name = "SASL_SSL SCRAM, librdkafka", conf = { bootstrap_servers = env("KAFKA_SASL_SSL"),
    security = sec({ security_protocol = "SASL_SSL", sasl_mechanism = "SCRAM-SHA-512",
      ssl_ca_location = env("KALUA_RIG_CA") }, scram) } },
  { name = "SASL_SSL SCRAM, kalua relay", conf = { bootstrap_servers = env("KAFKA_SASL_SSL"),
    security = sec({ security_protocol = "SASL_SSL", sasl_mechanism = "SCRAM-SHA-512", sasl_relay = true,
      ssl_ca_location = env("KALUA_RIG_CA") }, scram) } },
}

local admin = assert(kafka.admin { bootstrap_servers = env("KAFKA_PLAINTEXT") })

local function with(conf, extra)
  local out = {}
  for k, v in pairs(conf) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

local function produce(path, topic)
  local p = assert(kafka.producer(with(path.conf, { acks = "all", ["linger.ms"] = 20,
    ["batch.size"] = 1000000, ["compression.type"] = "none" })))
  local t0 = clock.now()
  for i = 1, records do
    while true do
      local ok, _, name = p:produce { topic = topic, value = value }
      if ok then break end
      if name ~= "_QUEUE_FULL" then error(("produce %d failed: %s"):format(i, tostring(name))) end
      p:poll(10)
    end
  end
  assert(p:flush(120000))
  local t = clock.now() - t0
  p:close()
  return t
end

local function consume(path, topic)
  local c = assert(kafka.consumer(path.conf))
  local parts = {}
  for i = 0, 2 do parts[#parts + 1] = { topic = topic, partition = i, offset = "beginning" } end
  assert(c:assign(parts))
  local got, t0 = 0, clock.now()
  while got < records do
    local batch <close> = assert(c:poll_batch(10000, 1000))
    got = got + #batch
  end
  local t = clock.now() - t0
  c:close()
  return t
end

local rows = {}
for round = 1, rounds do
  for i, path in ipairs(paths) do
    local topic = ("kalua-bench-relay-%d-%d-%d"):format(os.time(), round, i)
    assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1 } })
    local tp = produce(path, topic)
    local tc = consume(path, topic)
    assert(admin:delete_topics { topic })
    local r = rows[i] or { name = path.name, produce = 0, consume = 0 }
    r.produce, r.consume = math.max(r.produce, mib / tp), math.max(r.consume, mib / tc)
    rows[i] = r
    collectgarbage()
  end
end
admin:close()

local base = rows[1]
local function ratio(a, b) return ("%.2f"):format(a / b) end
print(("relay bench: %d records of %d bytes (%d MiB) per path, 3 partitions, acks=all, best of %d rounds"):format(
  records, size, mib, rounds))
print(("%-28s %12s %12s %10s %10s"):format("path", "produce MiB/s", "consume MiB/s", "prod/plain", "cons/plain"))
for _, r in ipairs(rows) do
  print(("%-28s %12.1f %12.1f %10s %10s"):format(r.name, r.produce, r.consume, ratio(r.produce, base.produce),
    ratio(r.consume, base.consume)))
end
local function find(name) for _, r in ipairs(rows) do if r.name == name then return r end end end
local pairs_ = {
  { "SCRAM-SHA-512, kalua relay", "SCRAM-SHA-512, librdkafka" },
  { "SASL_SSL SCRAM, kalua relay", "SASL_SSL SCRAM, librdkafka" },
}
for _, pr in ipairs(pairs_) do
  local a, b = find(pr[1]), find(pr[2])
  print(("%s vs %s: produce %s, consume %s"):format(pr[1], pr[2], ratio(a.produce, b.produce),
    ratio(a.consume, b.consume)))
end
