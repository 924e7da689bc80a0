-- Copy a topic from one cluster to another, changing records on the way.
--
--   kalua examples/copy_topic.lua SOURCE_BROKERS TOPIC TARGET_BROKERS TARGET_TOPIC
--
-- Every partition is copied to the same partition of TARGET_TOPIC (created
-- with the source's partition count if missing), keys, timestamps and
-- headers kept. `transform` below is the part to edit: return the record
-- (changed or not) to copy it, or nil to drop it. Records become Lua tables
-- here only because a transform needs them; a plain copy would hand the
-- batch straight to produce_batch and stay in C.
local kafka = require "kalua.kafka"

local source_brokers, topic, target_brokers, target_topic = table.unpack(arg)
if not target_topic then
  io.stderr:write("usage: kalua examples/copy_topic.lua SOURCE_BROKERS TOPIC TARGET_BROKERS TARGET_TOPIC\n")
  os.exit(2)
end

-- Masks anything that looks like a card number and tags the copy; drops tombstones.
local function transform(rec)
  if rec.value == nil then return nil end
  rec.value = rec.value:gsub("%d%d%d%d[ -]?%d%d%d%d[ -]?%d%d%d%d[ -]?(%d%d%d%d)", "****-****-****-%1")
  rec.headers = rec.headers or {}
  rec.headers[#rec.headers + 1] = { "copied-from", topic }
  return rec
end

local src_admin <close> = assert(kafka.admin { bootstrap_servers = source_brokers })
local dst_admin <close> = assert(kafka.admin { bootstrap_servers = target_brokers })
local md = assert(src_admin:metadata { topic = topic, watermarks = true })[1]
if not md or md.error then error(("topic %s: %s"):format(topic, md and md.error or "not found"), 0) end
local exists = dst_admin:metadata { topic = target_topic }[1]
if not exists or exists.error then
  assert(dst_admin:create_topics { { name = target_topic, partitions = #md.partitions, replication_factor = -1 } })
end

local producer <close> = assert(kafka.producer { bootstrap_servers = target_brokers, idempotence = true })
local copied, dropped = 0, 0
for _, p in ipairs(md.partitions) do
  local consumer <close> = assert(kafka.consumer { bootstrap_servers = source_brokers })
  assert(consumer:assign { { topic = topic, partition = p.id, offset = p.low } })
  local position = p.low
  while position < p.high do   -- up to the end as it was when we started
    local batch <close> = assert(consumer:poll_batch(5000, 1000))
    for rec in batch:records() do
      position = rec.offset + 1
      if rec.offset < p.high then
        local out = transform(rec)
        if out then
          assert(producer:produce { topic = target_topic, partition = p.id, key = out.key, value = out.value,
            timestamp = out.timestamp, headers = out.headers })
          copied = copied + 1
        else
          dropped = dropped + 1
        end
      end
    end
  end
end
assert(producer:flush(60000))
print(("copied %d records from %s to %s (%d dropped)"):format(copied, topic, target_topic, dropped))
