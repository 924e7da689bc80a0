-- kalua's kcat-style commands against the rig's broker.
local proc = require "proc"
local rig = require "rig"

local function kalua(args, opts)
  local argv = { proc.kalua() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.run(argv, opts)
end

describe("kalua topics, produce and consume", function()
  local brokers

  setup(function() brokers = rig.env("KAFKA_PLAINTEXT") end)

  it("creates, lists, describes and deletes a topic", function()
    local topic = rig.topic("cmd-topics")
    local r = kalua { "topics", "create", topic, "-b", brokers, "-p", "3", "--topic-config", "retention.ms=3600000" }
    assert.are.equal(0, r.code, r.stderr)
    r = kalua { "topics", "list", "-b", brokers }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(topic:gsub("%p", "%%%0") .. "%s+partitions=3 "), r.stdout)
    r = kalua { "topics", "describe", topic, "-b", brokers }
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("partition 2 ", 1, true), r.stdout)
    assert.truthy(r.stdout:find("retention.ms = 3600000", 1, true), r.stdout)
    r = kalua { "topics", "delete", topic, "-b", brokers }
    assert.are.equal(0, r.code, r.stderr)
  end)

  it("produces lines with keys and headers and consumes them back", function()
    local topic = rig.topic("cmd-pc")
    assert.are.equal(0, kalua { "topics", "create", topic, "-b", brokers }.code)
    local r = kalua({ "produce", topic, "-b", brokers, "-k", ":", "-H", "via=cli" },
      { stdin = "k1:first\nk2:second: with colon\nno key here\n" })
    assert.are.equal(0, r.code, r.stderr)
    r = kalua { "consume", topic, "-b", brokers, "-e", "-f", "json" }
    assert.are.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(3, #lines)
    assert.truthy(lines[1]:find('"key":"k1","value":"first","headers":[["via","cli"]]', 1, true), lines[1])
    assert.truthy(lines[2]:find('"key":"k2","value":"second: with colon"', 1, true), lines[2])
    assert.truthy(lines[3]:find('"key":null,"value":"no key here"', 1, true), lines[3])
    r = kalua { "consume", topic, "-b", brokers, "-o", "1", "-c", "1" }
    assert.are.equal("second: with colon\n", r.stdout)
  end)

  it("fails with one line and a non-zero exit when no broker answers", function()
    local r = kalua { "topics", "list", "-b", "127.0.0.1:1", "-X", "socket.connection.setup.timeout.ms=1000" }
    assert.are_not.equal(0, r.code)
    assert.truthy(r.stderr:match("^kalua topics: [^\n]+\n$"), r.stderr)
  end)

  it("refuses a password on the command line", function()
    local r = kalua { "topics", "list", "-b", brokers, "--sasl-password", "hunter2" }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("unknown option '--sasl-password'", 1, true), r.stderr)
  end)

  it("takes SCRAM credentials from the environment", function()
    local r = kalua({ "topics", "list", "-b", rig.env("KAFKA_SASL_PLAINTEXT"), "--security-protocol", "SASL_PLAINTEXT",
      "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", rig.env("KAFKA_SCRAM_USER"),
      "--sasl-password-env", "SPEC_PW" }, { env = { SPEC_PW = rig.env("KAFKA_SCRAM_PASSWORD") } })
    assert.are.equal(0, r.code, r.stderr)
  end)
end)

describe("kalua help <command>", function()
  -- Every scripts/<name>.lua is a command; its leading comment block is its help.
  local function commands()
    local names = {}
    local p = io.popen("ls scripts")
    for file in p:lines() do names[#names + 1] = file:match("^(.+)%.lua$") end
    p:close()
    table.sort(names)
    return names
  end

  it("lists every script as a command", function()
    local r = kalua { "-e", "for _, c in ipairs(require('kalua.host').commands()) do print(c) end" }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(table.concat(commands(), "\n") .. "\n", r.stdout)
  end)

  it("starts with the script's one-line summary, for every command", function()
    local listing = kalua { "help" }
    assert.are.equal(0, listing.code, listing.stderr)
    for _, name in ipairs(commands()) do
      local summary = proc.read_file("scripts/" .. name .. ".lua"):match("^%-%-%-? ?([^\n]*)")
      assert.truthy(summary and summary:find("%S"), name .. ".lua has no help comment")
      local r = kalua { "help", name }
      assert.are.equal(0, r.code, name .. ": " .. r.stderr)
      assert.are.equal(summary, r.stdout:match("^[^\n]*"), name)
      assert.truthy(r.stdout:find("\n.", 1) , name .. ": the help is only a summary")
      assert.truthy(listing.stdout:find("\n  " .. name .. " +" .. summary:gsub("%p", "%%%0") .. "\n"),
        name .. " is missing from `kalua help`:\n" .. listing.stdout)
    end
  end)

  it("fails with one line for an unknown command", function()
    local r = kalua { "help", "no-such-command" }
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:match("^kalua help: unknown command 'no%-such%-command'[^\n]*\n$"), r.stderr)
  end)
end)
