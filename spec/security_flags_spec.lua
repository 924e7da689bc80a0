-- The connection flags that `kalua sasl probe` takes also work on backup,
-- restore and offsets, over a config that names only the brokers: a
-- Kerberized backup, a SCRAM-over-TLS restore, and offsets through GSSAPI.
local kafka = require "kalua.kafka"
local configs = require "configs"
local proc = require "proc"
local rig = require "rig"

local function kalua(args, env)
  local argv = { proc.kalua() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.run(argv, { env = env })
end

local function gssapi_flags()
  return { "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "GSSAPI",
    "--sasl-keytab", rig.env("KALUA_RIG_ALICE_KEYTAB"), "--sasl-krb5-config", rig.env("KRB5_RIG_CONFIG") }
end

local function append(list, more)
  for _, v in ipairs(more) do list[#list + 1] = v end
  return list
end

describe("security flags on backup, restore and offsets", function()
  local dir, topic

  setup(function()
    dir = proc.tmpdir()
    topic = rig.topic("flags")
    local admin <close> = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
    assert(admin:create_topics { { name = topic, partitions = 2, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
    for i = 1, 300 do assert(p:produce { topic = topic, partition = i % 2, key = "k" .. i, value = "v" .. i }) end
    assert(p:flush(10000))
  end)

  teardown(function() proc.rmdir(dir) end)

  it("backs up through GSSAPI given by flags, restores through SCRAM over TLS given by flags", function()
    local backup_cfg = configs.write(dir .. "/backup.yaml", {
      mode = "backup", backup_id = "flags", source = { bootstrap_servers = rig.env("KAFKA_GSSAPI") },
      topics = { include = { topic } }, storage = configs.fs(dir .. "/store"),
    })
    local r = kalua(append({ "backup", "--config", backup_cfg, "--quiet" }, gssapi_flags()))
    assert.are.equal(0, r.code, r.stderr)

    -- without the flags the same config cannot talk to a SASL listener
    r = kalua { "backup", "--config", backup_cfg, "--quiet" }
    assert.are_not.equal(0, r.code)

    local target = topic .. "-restored"
    local restore_cfg = configs.write(dir .. "/restore.yaml", {
      mode = "restore", backup_id = "flags", target = { bootstrap_servers = rig.env("KAFKA_SASL_SSL") },
      storage = configs.fs(dir .. "/store"), restore = { topic_mapping = { [topic] = target } },
    })
    r = kalua({ "restore", "--config", restore_cfg, "--security-protocol", "SASL_SSL",
      "--ssl-ca-location", rig.env("KALUA_RIG_CA"), "--sasl-mechanism", "SCRAM-SHA-512",
      "--sasl-username", rig.env("KAFKA_SCRAM_USER"), "--sasl-password-env", "RESTORE_PW" },
      { RESTORE_PW = rig.env("KAFKA_SCRAM_PASSWORD") })
    assert.are.equal(0, r.code, r.stderr .. r.stdout)
    local n = #rig.read_partition(rig.env("KAFKA_PLAINTEXT"), target, 0) + #rig.read_partition(rig.env("KAFKA_PLAINTEXT"), target, 1)
    assert.are.equal(300, n)
    assert.falsy((r.stdout .. r.stderr):find(rig.env("KAFKA_SCRAM_PASSWORD"), 1, true))
  end)

  it("snapshots consumer-group offsets through GSSAPI given by flags", function()
    local group = rig.topic("flags-group")
    local c <close> = assert(kafka.consumer { bootstrap_servers = rig.env("KAFKA_PLAINTEXT"), group_id = group })
    assert(c:assign { { topic = topic, partition = 0, offset = "beginning" } })
    for _ = 1, 20 do
      local batch <close> = assert(c:poll_batch(500, 100))
      if #batch > 0 then break end
    end
    assert(c:commit())
    c:close()
    local r = kalua(append({ "offsets", "show", "--group", group, "-b", rig.env("KAFKA_GSSAPI") }, gssapi_flags()))
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(topic, 1, true), r.stdout)
  end)
end)
