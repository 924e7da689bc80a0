-- Restore one hour of one topic from a backup into a new topic.
--
--   kalua examples/restore_one_hour.lua BACKUP_DIR BACKUP_ID TOPIC START BROKERS [NEW_TOPIC]
--
-- START is the hour's beginning, "2026-11-25T14:00:00Z" or epoch ms. The
-- same as `kalua restore` with a config file, written as a script: the
-- config is a Lua table, and the plan is printed before anything is
-- written. NEW_TOPIC defaults to TOPIC-<start>.
local restore = require "kalua.restore"
local time = require "kalua.time"

local dir, backup_id, topic, start, brokers, new_topic = table.unpack(arg)
if not brokers then
  io.stderr:write("usage: kalua examples/restore_one_hour.lua BACKUP_DIR BACKUP_ID TOPIC START BROKERS [NEW_TOPIC]\n")
  os.exit(2)
end
local from = assert(time.parse(start))
new_topic = new_topic or ("%s-%s"):format(topic, os.date("!%Y%m%dT%H%M", from // 1000))

local cfg = {
  backup_id = backup_id,
  storage = { backend = "filesystem", path = dir },
  target = { bootstrap_servers = brokers },
  restore = {
    topics = { include = { topic } },
    topic_mapping = { [topic] = new_topic },
    start_time = from,
    end_time = from + 3600 * 1000 - 1,   -- the window is inclusive
    include_original_offset_header = true,
  },
}

local plan = assert(restore.plan(cfg))
for _, t in ipairs(plan.topics) do
  for _, p in ipairs(t.partitions) do
    print(("plan: %s [%d] -> %s [%d]: %d segment(s) to read"):format(t.source, p.source, t.target, p.target, #p.segments))
  end
end
local summary = assert(restore.run(cfg))
print(("restored %d records of %s between %s and %s into %s"):format(summary.records, topic,
  time.format(from // 1000), time.format((from + 3600 * 1000) // 1000), new_topic))
