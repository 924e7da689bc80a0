-- kalua offsets against real consumer groups on the rig's broker.
local kafka = require "kalua.kafka"
local proc = require "proc"
local rig = require "rig"

describe("kalua offsets", function()
  local brokers, dir, topic, admin

  local function kalua(...)
    return proc.run { proc.kalua(), "offsets", ... }
  end

  local function committed(group)
    local out = {}
    for _, o in ipairs(assert(admin:list_group_offsets(group))) do
      if o.topic == topic then out[o.partition] = o.offset end
    end
    return out
  end

  -- A group that consumed and committed `n` records of each partition.
  local function group_at(n)
    local group = rig.topic("offsets-group")
    assert(admin:alter_group_offsets(group, { { topic, 0, n }, { topic, 1, n } }))
    return group
  end

  setup(function()
    brokers = rig.env("KAFKA_PLAINTEXT")
    dir = proc.tmpdir()
    topic = rig.topic("offsets")
    admin = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 0, 39 do
      assert(p:produce { topic = topic, partition = i % 2, value = "v" .. i, timestamp = 1700000000000 + i * 1000 })
    end
    assert(p:flush(10000))
  end)

  teardown(function()
    admin:close()
    proc.rmdir(dir)
  end)

  it("snapshots groups, lists and shows the snapshot, and deletes it", function()
    local group = group_at(7)
    local r = kalua("snapshot", "-b", brokers, "--path", dir, "--group", group, "--id", "s-show")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("snapshot s-show: 1 group(s)\n", r.stdout)
    r = kalua("list", "--path", dir)
    assert.truthy(r.stdout:find("s-show  %d%d%d%d%-"), r.stdout)
    r = kalua("show", "--path", dir, "s-show")
    assert.truthy(r.stdout:find(("%s %s [1]: 7"):format(group, topic), 1, true), r.stdout)
    r = kalua("show", "-b", brokers, "--group", group)
    assert.truthy(r.stdout:find(("%s %s [0]: committed 7, end 20, lag 13"):format(group, topic), 1, true), r.stdout)
    assert.are.equal(0, kalua("delete", "--path", dir, "s-show").code)
    r = kalua("delete", "--path", dir, "s-show")
    assert.are.same({ 1, "kalua offsets: no offsets snapshot 's-show'\n" }, { r.code, r.stderr })
  end)

  it("reset is a dry run until --execute, then moves every target", function()
    local group = group_at(10)
    local r = kalua("reset", "-b", brokers, "--group", group, "--to-earliest")
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("dry run: 2 partition(s) would move", 1, true), r.stdout)
    assert.are.same({ [0] = 10, [1] = 10 }, committed(group))

    local cases = {
      { { "--to-earliest" }, { [0] = 0, [1] = 0 } },
      { { "--to-latest" }, { [0] = 20, [1] = 20 } },
      { { "--shift-by", "-5" }, { [0] = 15, [1] = 15 } },
      { { "--to-offset", "3" }, { [0] = 3, [1] = 3 } },
      { { "--to-offset", "999" }, { [0] = 20, [1] = 20 } }, -- kept inside the log
      -- record i has timestamp +i s; partition 0 holds even i, 1 odd i: the
      -- first at or after +9 s is i=10 (offset 5) in 0 and i=9 (offset 4) in 1
      { { "--to-datetime", "2023-11-14T22:13:29Z" }, { [0] = 5, [1] = 4 } },
      { { "--to-datetime", "1700000009000" }, { [0] = 5, [1] = 4 } },
    }
    for _, case in ipairs(cases) do
      local args = { "reset", "-b", brokers, "--group", group, "--execute", table.unpack(case[1]) }
      r = kalua(table.unpack(args))
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same(case[2], committed(group), table.concat(case[1], " "))
    end
  end)

  it("reset covers several groups and only the named topic's partitions", function()
    local a, b = group_at(4), group_at(6)
    local r = kalua("reset", "-b", brokers, "--group", a, "--group", b, "--topic", topic, "--to-offset", "2", "--execute")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ [0] = 2, [1] = 2 }, committed(a))
    assert.are.same({ [0] = 2, [1] = 2 }, committed(b))
  end)

  it("verify finds every difference, rollback undoes them", function()
    local group = group_at(9)
    assert.are.equal(0, kalua("snapshot", "-b", brokers, "--path", dir, "--group", group, "--id", "before").code)
    local r = kalua("verify", "-b", brokers, "--path", dir, "before")
    assert.are.same({ 0, "offsets match the snapshot\n" }, { r.code, r.stdout })

    assert(admin:alter_group_offsets(group, { { topic, 1, 17 } }))
    r = kalua("verify", "-b", brokers, "--path", dir, "before")
    assert.are.equal(1, r.code)
    assert.are.equal(("%s %s [1]: snapshot 9, now 17\n"):format(group, topic), r.stdout)
    assert.are.equal("kalua offsets: 1 partition(s) differ from the snapshot\n", r.stderr)

    r = kalua("rollback", "-b", brokers, "--path", dir, "before")
    assert.truthy(r.stdout:find("dry run", 1, true), r.stdout)
    assert.are.same({ [0] = 9, [1] = 17 }, committed(group))
    r = kalua("rollback", "-b", brokers, "--path", dir, "before", "--execute")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ [0] = 9, [1] = 9 }, committed(group))
    assert.are.equal(0, kalua("verify", "-b", brokers, "--path", dir, "before").code)
  end)

  it("rolls back to the group snapshot a backup took", function()
    local group = group_at(11)
    local cfg = dir .. "/backup.yaml"
    proc.write_file(cfg, ("mode: backup\nbackup_id: with-groups\nsource:\n  bootstrap_servers: %s\n"
      .. "topics:\n  include: [\"%s\"]\nstorage:\n  backend: filesystem\n  path: %s\n"):format(brokers, topic, dir))
    local r = proc.run { proc.kalua(), "backup", "--config", cfg }
    assert.are.equal(0, r.code, r.stderr)
    assert(admin:alter_group_offsets(group, { { topic, 0, 1 }, { topic, 1, 1 } }))
    r = kalua("rollback", "-b", brokers, "--path", dir, "--backup-id", "with-groups", "--group", group, "--execute")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ [0] = 11, [1] = 11 }, committed(group))
  end)

  it("refuses to move a group with active members", function()
    local group = rig.topic("offsets-live")
    local c <close> = assert(kafka.consumer { bootstrap_servers = brokers, group_id = group,
      ["auto.offset.reset"] = "earliest" })
    assert(c:subscribe { topic })
    local seen = 0
    for _ = 1, 40 do
      local rec = c:poll(250)
      if rec and not rec.eof then seen = seen + 1 end
      if seen >= 5 then break end
    end
    assert(c:commit())
    local r = kalua("reset", "-b", brokers, "--group", group, "--to-earliest", "--execute")
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("^kalua offsets: group '.-' has 1 active member%(s%).*stop its consumers first\n$"), r.stderr)
  end)

  it("gives one-line errors for bad input", function()
    local cases = {
      { { "reset", "-b", brokers, "--group", "g" }, "give exactly one of" },
      { { "reset", "-b", brokers, "--group", "g", "--to-offset", "x" }, "--to-offset expects an integer" },
      { { "reset", "-b", brokers, "--group", "g", "--to-datetime", "yesterday" }, "bad time 'yesterday'" },
      { { "reset", "-b", brokers, "--to-earliest" }, "name the groups" },
      { { "verify", "-b", brokers, "--path", dir, "nope" }, "no offsets snapshot 'nope'" },
      { { "rollback", "-b", brokers, "--path", dir, "--backup-id", "nope" }, "backup 'nope' has no consumer-group snapshot" },
      { { "frobnicate" }, "usage: kalua offsets" },
      { { "list" }, "give --path" },
      { { "show", "-b", "127.0.0.1:1", "--group", "g", "-X", "socket.timeout.ms=1500" }, "kalua offsets: " },
    }
    for _, case in ipairs(cases) do
      local r = kalua(table.unpack(case[1]))
      assert.are.equal(1, r.code, table.concat(case[1], " "))
      assert.truthy(r.stderr:find(case[2], 1, true), r.stderr)
      assert.are.equal(1, select(2, r.stderr:gsub("\n", "")), r.stderr)
    end
  end)
end)
