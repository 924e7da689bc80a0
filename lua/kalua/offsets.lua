--- Consumer-group offsets: snapshots, resets, rollbacks, verification and
-- translation through a restore's offset mapping.
--
--   local offsets = require "kalua.offsets"
--   local snap = assert(offsets.capture(admin, { "billing" }))
--   local plan = assert(offsets.plan_reset(admin, { "billing" }, { to = "earliest" }))
--   offsets.print_plan(plan)              -- what would change
--   assert(offsets.apply(admin, plan))    -- refuses groups with live members
--   local diffs = offsets.verify(admin, snap)
--
-- A plan is { { group=, changes = { {topic=, partition=, from=, to=}, ... } }, ... }:
-- every operation that moves offsets builds one first, so a dry run and
-- the real thing print the same lines.
-- A snapshot is { taken = <epoch s>, groups = { [group] = { state=,
-- offsets = { {topic=, partition=, offset=}, ... } } } }; backups keep one
-- under <backup_id>/groups/, `kalua offsets snapshot` under offsets/.
local json = require "kalua.json"

local M = {}

local function by_partition(list)
  local out = {}
  for _, o in ipairs(list or {}) do out[o.topic .. "/" .. o.partition] = o end
  return out
end

local function sort_changes(changes)
  table.sort(changes, function(a, b)
    if a.topic ~= b.topic then return a.topic < b.topic end
    return a.partition < b.partition
  end)
  return changes
end

--- Committed offsets of a group, sorted; partitions with no commit left out.
function M.committed(admin, group)
  local list, err = admin:list_group_offsets(group)
  if not list then return nil, err end
  local out = {}
  for _, o in ipairs(list) do
    if o.offset >= 0 then out[#out + 1] = { topic = o.topic, partition = o.partition, offset = o.offset } end
  end
  return sort_changes(out)
end

--- Every group id on the cluster, sorted.
function M.groups(admin)
  local listed, err = admin:list_groups()
  if not listed then return nil, err end
  local out = {}
  for _, g in ipairs(listed) do out[#out + 1] = g.group_id end
  table.sort(out)
  return out
end

--- Snapshot of the named groups (default: all).
function M.capture(admin, groups)
  local err
  if not groups or #groups == 0 then
    groups, err = M.groups(admin)
    if not groups then return nil, err end
  end
  local snap = { taken = os.time(), groups = {} }
  for _, g in ipairs(groups) do
    local described = admin:describe_groups { g }
    local committed
    committed, err = M.committed(admin, g)
    if not committed then return nil, err end
    snap.groups[g] = { state = described and described[1] and described[1].state or "Unknown",
      offsets = json.array(committed) }
  end
  return snap
end

-- --- snapshots in a store -----------------------------------------------------

local SNAPSHOTS = "offsets/"

--- A fresh snapshot id from the clock: 20261125T170102Z.
function M.new_id(store)
  local base = os.date("!%Y%m%dT%H%M%SZ")
  local id, n = base, 1
  while store:stat(SNAPSHOTS .. id .. ".json") do
    n = n + 1
    id = base .. "-" .. n
  end
  return id
end

function M.save(store, id, snap)
  snap.id = id
  return store:put(SNAPSHOTS .. id .. ".json", json.encode(snap, { indent = "  " }) .. "\n")
end

local function decode(key, data)
  local snap, err = json.decode(data)
  if type(snap) ~= "table" or type(snap.groups) ~= "table" then
    return nil, ("%s: not an offsets snapshot%s"):format(key, err and (": " .. err) or "")
  end
  return snap
end

--- Loads snapshot `id`, or with backup_id the newest groups snapshot of that backup.
function M.load(store, id, backup_id)
  local key = SNAPSHOTS .. tostring(id) .. ".json"
  if backup_id then
    local listed = store:list(backup_id .. "/groups/")
    if not listed or #listed == 0 then return nil, ("backup '%s' has no consumer-group snapshot"):format(backup_id) end
    table.sort(listed, function(a, b) return a.key < b.key end)
    key = listed[#listed].key
  end
  local data, err, name = store:get(key)
  if not data then
    if name == "NOT_FOUND" then return nil, ("no offsets snapshot '%s'"):format(backup_id or id) end
    return nil, err
  end
  return decode(key, data)
end

--- Snapshots in the store: { {id=, taken=, groups=<count>}, ... } oldest first.
function M.list(store)
  local out = {}
  for _, e in ipairs(store:list(SNAPSHOTS) or {}) do
    local id = e.key:match("^offsets/(.+)%.json$")
    local snap = id and decode(e.key, store:get(e.key) or "")
    if snap then
      local n = 0
      for _ in pairs(snap.groups) do n = n + 1 end
      out[#out + 1] = { id = id, taken = snap.taken, groups = n }
    end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

function M.delete(store, id)
  local key = SNAPSHOTS .. id .. ".json"
  if not store:stat(key) then return nil, ("no offsets snapshot '%s'"):format(id) end
  return store:delete(key)
end

-- --- plans --------------------------------------------------------------------

local function topic_partitions(admin, topic)
  local md, err = admin:metadata { topic = topic }
  if not md or not md[1] or md[1].error then
    return nil, ("topic '%s': %s"):format(topic, err or (md and md[1] and md[1].error) or "not found")
  end
  local out = {}
  for _, p in ipairs(md[1].partitions) do out[#out + 1] = p.id end
  return out
end

-- The partitions a reset touches: those the group committed (limited to
-- `topics` when given) plus every partition of each named topic.
local function reset_partitions(admin, committed, topics)
  local wanted, out, seen = {}, {}, {}
  for _, t in ipairs(topics or {}) do wanted[t] = true end
  for _, o in ipairs(committed) do
    if not topics or wanted[o.topic] then
      out[#out + 1] = { topic = o.topic, partition = o.partition, from = o.offset }
      seen[o.topic .. "/" .. o.partition] = true
    end
  end
  for _, t in ipairs(topics or {}) do
    local ids, err = topic_partitions(admin, t)
    if not ids then return nil, err end
    for _, id in ipairs(ids) do
      if not seen[t .. "/" .. id] then out[#out + 1] = { topic = t, partition = id } end
    end
  end
  return sort_changes(out)
end

local function clamp(v, low, high)
  if v < low then return low end
  if v > high then return high end
  return v
end

-- Where `target` puts one partition: earliest, latest, a time (first
-- offset at or after it), an offset or a shift, kept inside the log.
local function reset_to(admin, c, target)
  local low, high = admin:watermarks(c.topic, c.partition)
  if not low then return nil, high end
  local to = target.to
  if to == "earliest" then return low end
  if to == "latest" then return high end
  if to == "offset" then return clamp(target.value, low, high) end
  if to == "shift" then return clamp((c.from or low) + target.value, low, high) end
  if to == "timestamp" then
    local found, err = admin:offsets_for_times { { topic = c.topic, partition = c.partition, timestamp = target.value } }
    if not found then return nil, err end
    local o = found[1].offset
    return o < 0 and high or o
  end
  error("unknown reset target '" .. tostring(to) .. "'", 3)
end

--- Plan moving each group's offsets to target: {to="earliest"|"latest"},
-- {to="timestamp", value=<ms>}, {to="offset", value=n} or {to="shift", value=n}.
function M.plan_reset(admin, groups, target, topics)
  local plan = {}
  for _, g in ipairs(groups) do
    local committed, err = M.committed(admin, g)
    if not committed then return nil, err end
    local changes
    changes, err = reset_partitions(admin, committed, topics)
    if not changes then return nil, err end
    if #changes == 0 then return nil, ("group '%s' has no committed offsets; name the topics with --topic"):format(g) end
    for _, c in ipairs(changes) do
      c.to, err = reset_to(admin, c, target)
      if not c.to then return nil, err end
    end
    plan[#plan + 1] = { group = g, changes = changes }
  end
  return plan
end

-- The groups named, or every group of the snapshot, sorted.
local function chosen_groups(snap, groups)
  if groups and #groups > 0 then return groups end
  local names = {}
  for g in pairs(snap.groups) do names[#names + 1] = g end
  table.sort(names)
  return names
end

--- Plan putting groups back where snapshot has them (default: all its groups).
function M.plan_rollback(admin, snap, groups)
  local plan = {}
  local names = chosen_groups(snap, groups)
  for _, g in ipairs(names) do
    local saved = snap.groups[g]
    if not saved then return nil, ("group '%s' is not in the snapshot"):format(g) end
    local current, err = M.committed(admin, g)
    if not current then return nil, err end
    current = by_partition(current)
    local changes = {}
    for _, o in ipairs(saved.offsets) do
      local now = current[o.topic .. "/" .. o.partition]
      changes[#changes + 1] = { topic = o.topic, partition = o.partition, from = now and now.offset, to = o.offset }
    end
    plan[#plan + 1] = { group = g, changes = sort_changes(changes) }
  end
  return plan
end

--- Differences between the cluster and snapshot: { {group=, topic=,
-- partition=, expected=, actual=}, ... } (actual nil: no commit now).
function M.verify(admin, snap, groups)
  local plan, err = M.plan_rollback(admin, snap, groups)
  if not plan then return nil, err end
  local diffs = {}
  for _, g in ipairs(plan) do
    for _, c in ipairs(g.changes) do
      if c.from ~= c.to then
        diffs[#diffs + 1] = { group = g.group, topic = c.topic, partition = c.partition, expected = c.to, actual = c.from }
      end
    end
  end
  return diffs
end

--- Plan for the target cluster from snapshot groups and a restore's offset
-- mapping ({ ["topic/partition"] = { target_topic=, target_partition=,
-- runs = { {source_first, count, target_first}, ... } } }). A committed
-- offset C means "next to read is C": it becomes the target offset of the
-- first restored record at or after C, or the end of what was restored.
function M.translate(snap, mapping, groups)
  local plan, skipped = {}, {}
  local names = chosen_groups(snap, groups)
  for _, g in ipairs(names) do
    local changes = {}
    for _, o in ipairs(snap.groups[g] and snap.groups[g].offsets or {}) do
      local m = mapping[o.topic .. "/" .. o.partition]
      local to = m and M.translate_offset(m.runs, o.offset)
      if to then
        changes[#changes + 1] = { topic = m.target_topic, partition = m.target_partition, source_topic = o.topic,
          source_partition = o.partition, source = o.offset, to = to }
      else
        skipped[#skipped + 1] = ("%s %s [%d]: not restored"):format(g, o.topic, o.partition)
      end
    end
    if #changes > 0 then plan[#plan + 1] = { group = g, changes = sort_changes(changes) } end
  end
  return plan, skipped
end

--- The target offset for source offset c through runs (sorted by source).
function M.translate_offset(runs, c)
  if not runs or #runs == 0 then return nil end
  for _, r in ipairs(runs) do
    local first, count, target = r[1], r[2], r[3]
    if c <= first then return target end
    if c < first + count then return target + (c - first) end
  end
  local last = runs[#runs]
  return last[3] + last[2]
end

--- Applies a plan. Refuses, before changing anything, when a group has
-- live members: moving offsets under running consumers is lost work.
function M.apply(admin, plan)
  for _, g in ipairs(plan) do
    local described, err = admin:describe_groups { g.group }
    if not described then return nil, err end
    local d = described[1]
    if d and d.members and #d.members > 0 then
      return nil, ("group '%s' has %d active member(s) (state %s): stop its consumers first"):format(
        g.group, #d.members, tostring(d.state))
    end
  end
  for _, g in ipairs(plan) do
    local list = {}
    for _, c in ipairs(g.changes) do list[#list + 1] = { c.topic, c.partition, c.to } end
    local ok, err = admin:alter_group_offsets(g.group, list)
    if not ok then return nil, err end
  end
  return true
end

--- Lines describing a plan, one per partition.
function M.plan_lines(plan)
  local lines = {}
  for _, g in ipairs(plan) do
    for _, c in ipairs(g.changes) do
      lines[#lines + 1] = ("%s %s [%d]: %s -> %d"):format(g.group, c.topic, c.partition,
        c.from and tostring(c.from) or (c.source and ("source " .. c.source) or "none"), c.to)
    end
  end
  return lines
end

return M
