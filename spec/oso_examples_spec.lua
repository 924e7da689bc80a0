-- OSO Kafka Backup's own example config runs against the rig: its keys and
-- its storage section unchanged (S3 with an IAM role: no static
-- credentials), only the addresses, paths and topic list swapped for the
-- rig's. The same backup, written the OSO way for Azure and GCS, lands in
-- those emulators. Each is checked with kalua validate --deep and counted.
local kafka = require "kalua.kafka"
local storage = require "kalua.storage"
local json = require "kalua.json"
local proc = require "proc"
local rig = require "rig"
local azurite = require "azurite"

local RECORDS = 240

-- The fixture with its cluster, certificates and topic list made the rig's.
local function oso_secure(topic)
  local text = proc.read_file("spec/fixtures/config/oso-secure.yaml")
  local brokers = "\n    - " .. rig.env("KAFKA_SASL_SSL") .. "\n"
  text = text:gsub("\n    %- kafka%-0[^\n]+\n    %- kafka%-1[^\n]+\n    %- kafka%-2[^\n]+\n", brokers)
  text = text:gsub("sasl_username: backup%-service", "sasl_username: " .. rig.env("KAFKA_SCRAM_USER"))
  text = text:gsub("/certs/ca%.crt", rig.env("KALUA_RIG_CA"))
  text = text:gsub("/certs/client%.crt", rig.env("KALUA_RIG_CLIENT_CERT"))
  text = text:gsub("/certs/client%.key", rig.env("KALUA_RIG_CLIENT_KEY"))
  text = text:gsub('include:\n    %- "%*"', ('include:\n    - "%s"'):format(topic))
  text = text:gsub("region: us%-west%-2", "region: " .. rig.env("KALUA_RIG_S3_REGION"))
  return text
end

local function run(args, env)
  local r = proc.run(args, { env = env })
  assert(r.code == 0, table.concat(args, " ") .. ": " .. r.stderr)
  return r
end

local function records_in(url, id, env)
  local r = run({ proc.kalua(), "describe", "--path", url, id, "--format", "json" }, env)
  local d = assert(json.decode(r.stdout))
  return d.records or (d.totals and d.totals.records)
end

describe("OSO Kafka Backup's example configs", function()
  local dir, topic

  setup(function()
    dir = proc.tmpdir()
    topic = rig.topic("oso")
    local brokers = rig.env("KAFKA_PLAINTEXT")
    local admin <close> = assert(kafka.admin { bootstrap_servers = brokers })
    assert(admin:create_topics { { name = topic, partitions = 3, replication_factor = 1 } })
    local p <close> = assert(kafka.producer { bootstrap_servers = brokers })
    for i = 1, RECORDS do assert(p:produce { topic = topic, key = "k" .. i, value = ("oso %d"):format(i) }) end
    assert(p:flush(10000))
  end)

  teardown(function() proc.rmdir(dir) end)

  it("the secure example backs up to S3 with role credentials only", function()
    local endpoint = rig.env("KALUA_RIG_S3_ENDPOINT")
    local cfg = dir .. "/oso-secure.yaml"
    proc.write_file(cfg, oso_secure(topic))
    -- The IAM role of a container: the peer's credentials endpoint, as ECS sets it.
    local env = {
      KAFKA_PASSWORD = rig.env("KAFKA_SCRAM_PASSWORD"),
      AWS_ENDPOINT_URL_S3 = endpoint,
      AWS_CONTAINER_CREDENTIALS_FULL_URI = endpoint .. "/__creds/container",
      AWS_CONTAINER_AUTHORIZATION_TOKEN = rig.env("KALUA_RIG_S3_CONTAINER_TOKEN"),
      AWS_ACCESS_KEY_ID = false, AWS_SECRET_ACCESS_KEY = false,
    }
    local r = run({ proc.kalua(), "backup", "--config", cfg }, env)
    assert.truthy(r.stdout:find(RECORDS .. " new records", 1, true), r.stdout)
    run({ proc.kalua(), "validate", "--path", "s3://secure-kafka-backups", "secure-production-backup", "--deep" }, env)
    assert.are.equal(RECORDS, records_in("s3://secure-kafka-backups", "secure-production-backup", env))
  end)

  it("the same backup, OSO style, to Azure Blob", function()
    local az = azurite.settings()
    local container = azurite.new_container(az)
    local cfg = dir .. "/oso-azure.yaml"
    proc.write_file(cfg, ([[
mode: backup
backup_id: "azure-production-backup"
source:
  bootstrap_servers: ["%s"]
topics:
  include: ["%s"]
storage:
  backend: azure
  container: %s
  account_name: %s
  account_key: ${AZURE_STORAGE_KEY}
  endpoint: %s
backup:
  compression: zstd
  compression_level: 3
  include_offset_headers: true
]]):format(rig.env("KAFKA_PLAINTEXT"), topic, container, az.account, az.endpoint))
    local env = { AZURE_STORAGE_KEY = az.key }
    run({ proc.kalua(), "backup", "--config", cfg }, env)
    -- the catalog commands take the az:// form with the az CLI's variables
    local cli = { AZURE_STORAGE_CONNECTION_STRING = ("AccountName=%s;AccountKey=%s;BlobEndpoint=%s"):format(
      az.account, az.key, az.endpoint) }
    run({ proc.kalua(), "validate", "--path", "az://" .. container, "azure-production-backup", "--deep" }, cli)
    assert.are.equal(RECORDS, records_in("az://" .. container, "azure-production-backup", cli))
  end)

  it("the same backup, OSO style, to GCS", function()
    local bucket = rig.env("KALUA_RIG_GCS_BUCKET")
    local cfg = dir .. "/oso-gcs.yaml"
    local id = "gcs-production-backup-" .. math.random(1e8)
    proc.write_file(cfg, ([[
mode: backup
backup_id: "%s"
source:
  bootstrap_servers: ["%s"]
topics:
  include: ["%s"]
storage:
  backend: gcs
  bucket: %s
  credentials_file: %s
  endpoint: %s
backup:
  compression: zstd
]]):format(id, rig.env("KAFKA_PLAINTEXT"), topic, bucket, rig.env("KALUA_RIG_GCS_KEY_FILE"),
      rig.env("KALUA_RIG_GCS_ENDPOINT")))
    run({ proc.kalua(), "backup", "--config", cfg })
    local env = { GOOGLE_APPLICATION_CREDENTIALS = rig.env("KALUA_RIG_GCS_KEY_FILE"),
      STORAGE_EMULATOR_HOST = rig.env("KALUA_RIG_GCS_ENDPOINT") }
    run({ proc.kalua(), "validate", "--path", "gs://" .. bucket, id, "--deep" }, env)
    assert.are.equal(RECORDS, records_in("gs://" .. bucket, id, env))
  end)
end)
