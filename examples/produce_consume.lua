-- Produce a few records to a fresh topic, read them back, print them.
--
--   kalua examples/produce_consume.lua [bootstrap-servers]
--
-- With no argument it uses $KAFKA_PLAINTEXT (set by `eval "$(spec/rig/rig env)"`).
local kafka = require "kalua.kafka"
local repl = require "kalua.repl"

local brokers = arg[1] or os.getenv("KAFKA_PLAINTEXT") or "localhost:9092"
local topic = string.format("kalua-demo-%d-%d", os.time(), math.random(1e6))

local admin = assert(kafka.admin { bootstrap_servers = brokers })
assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })

local producer <close> = assert(kafka.producer { bootstrap_servers = brokers, idempotence = true })
for i = 1, 5 do
  assert(producer:produce {
    topic = topic,
    partition = i % 2,
    key = "key-" .. i,
    value = i == 5 and "" or ("hello kafka #" .. i),
    headers = { { "source", "kalua-demo" }, { "n", tostring(i) } },
  })
end
assert(producer:flush(10000))
print(("produced 5 records to %s on %s"):format(topic, brokers))

local consumer <close> = assert(kafka.consumer { bootstrap_servers = brokers })
assert(consumer:assign {
  { topic = topic, partition = 0, offset = "beginning" },
  { topic = topic, partition = 1, offset = "beginning" },
})
local seen = 0
while seen < 5 do
  local batch = assert(consumer:poll_batch(100, 5000))
  if #batch == 0 then error("no records within 5 s: is the broker up?") end
  for record in batch:records() do
    seen = seen + 1
    print(repl.pretty {
      partition = record.partition, offset = record.offset,
      key = record.key, value = record.value, headers = record.headers,
    })
  end
end

assert(admin:delete_topics { topic })
print(("consumed %d records back and deleted %s"):format(seen, topic))
