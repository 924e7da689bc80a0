-- The REPL, driven on a real terminal through tmux.
local proc = require "proc"

local function have_tmux()
  return os.execute("command -v tmux >/dev/null 2>&1") == true
end

local Session = {}
Session.__index = Session

local function tmux(...)
  local argv = { "tmux", "-L", "kalua-spec" }
  for _, a in ipairs { ... } do argv[#argv + 1] = a end
  return proc.run(argv)
end

function Session.start(cmd)
  local self = setmetatable({ name = "repl" .. math.random(1e9) }, Session)
  local r = tmux("new-session", "-d", "-s", self.name, "-x", "150", "-y", "50", cmd)
  assert(r.code == 0, r.stderr)
  return self
end

function Session:type(line)
  tmux("send-keys", "-t", self.name, "-l", line)
  tmux("send-keys", "-t", self.name, "Enter")
end

function Session:screen()
  return tmux("capture-pane", "-t", self.name, "-p").stdout
end

-- Waits until the screen holds `pattern` (plain text), for at most 10 s.
function Session:wait_for(text)
  for _ = 1, 100 do
    local s = self:screen()
    if s:find(text, 1, true) then return s end
    os.execute("sleep 0.1")
  end
  error("screen never showed " .. text .. ":\n" .. self:screen())
end

-- Waits until the last non-blank line is the prompt (tmux trims its space).
function Session:wait_prompt(prompt)
  for _ = 1, 100 do
    local last
    for line in self:screen():gmatch("[^\n]+") do
      if line:match("%S") then last = line end
    end
    if last == prompt then return end
    os.execute("sleep 0.1")
  end
  error("no prompt " .. prompt .. " on screen:\n" .. self:screen())
end

function Session:stop()
  tmux("kill-session", "-t", self.name)
end

describe("the REPL on a terminal", function()
  local dir, session

  before_each(function()
    assert(have_tmux(), "tmux is required (tools/install-deps installs it)")
    dir = proc.tmpdir()
    local cmd = ("env HOME=%s KALUA_HISTORY=%s/history %s"):format(dir, dir, proc.kalua())
    session = Session.start(cmd)
    session:wait_prompt(">")
  end)

  after_each(function()
    session:stop()
    proc.rmdir(dir)
  end)

  it("prints the Lua banner and evaluates expressions without return", function()
    local s = session:wait_for("Lua 5.4")
    assert.truthy(s:find("Lua 5.4", 1, true))
    session:type("1 + 1, 'two', nil")
    session:wait_for("2       two     nil")
  end)

  it("pretty-prints tables", function()
    session:type("{b = {1, 2}, a = 'x', [10] = true}")
    session:wait_for('{ [10] = true, a = "x", b = { 1, 2 } }')
  end)

  it("continues unfinished statements", function()
    session:type("for i = 1, 2 do")
    session:wait_prompt(">>")
    session:type("print('line', i)")
    session:type("end")
    session:wait_for("line    2")
  end)

  it("reports errors without leaving", function()
    session:type("error('oops')")
    session:wait_for("stdin:1: oops")
    session:type("40 + 2")
    session:wait_for("42")
  end)

  it("has kalua's modules preloaded", function()
    session:type("type(kafka), type(yaml), type(config), type(pretty)")
    session:wait_for("table   table   table   function")
  end)

  it("keeps a history file", function()
    session:type("history_marker = 1")
    session:wait_prompt(">")
    tmux("send-keys", "-t", session.name, "C-d")
    for _ = 1, 50 do
      local h = proc.read_file(dir .. "/history")
      if h:find("history_marker", 1, true) then return end
      os.execute("sleep 0.1")
    end
    error("history file never got the line")
  end)
end)

describe("the REPL with clients (kalua -i --bootstrap-servers)", function()
  local dir, session, topic
  local rig = require "rig"

  setup(function()
    assert(have_tmux(), "tmux is required (tools/install-deps installs it)")
    local kafka = require "kalua.kafka"
    topic = rig.topic("replcomplete")
    local admin <close> = assert(kafka.admin { bootstrap_servers = rig.env("KAFKA_PLAINTEXT") })
    assert(admin:create_topics { { name = topic, partitions = 1, replication_factor = 1 } })
  end)

  before_each(function()
    dir = proc.tmpdir()
    local cmd = ("env HOME=%s KALUA_HISTORY=%s/history %s -i --bootstrap-servers %s"):format(dir, dir, proc.kalua(),
      rig.env("KAFKA_PLAINTEXT"))
    session = Session.start(cmd)
    session:wait_for("clients admin, producer, consumer -> " .. rig.env("KAFKA_PLAINTEXT"))
    session:wait_prompt(">")
  end)

  after_each(function()
    session:stop()
    proc.rmdir(dir)
  end)

  it("opens clients ready to use", function()
    session:type("producer:produce { topic = '" .. topic .. "', value = 'from the repl' }, producer:flush(5000)")
    session:wait_for("true    true")
    session:type("#admin:list_topics() > 0")
    session:wait_for("true")
  end)

  it("completes module functions and methods with Tab", function()
    tmux("send-keys", "-t", session.name, "-l", "kafka.prod") -- kafka.proxy shares "pro"
    tmux("send-keys", "-t", session.name, "Tab")
    session:wait_for("> kafka.producer")
    tmux("send-keys", "-t", session.name, "C-u")
    tmux("send-keys", "-t", session.name, "-l", "admin:list_t")
    tmux("send-keys", "-t", session.name, "Tab")
    session:wait_for("> admin:list_topics")
  end)

  it("completes topic names after a quote", function()
    session:type("#admin:list_topics() > 0") -- connected: completion asks the broker
    session:wait_for("true")
    tmux("send-keys", "-t", session.name, "-l", "admin:watermarks('" .. topic:sub(1, #topic - 2))
    tmux("send-keys", "-t", session.name, "Tab")
    session:wait_for(topic)
  end)

  it("answers :help, and :help for a module or a client", function()
    session:type(":help")
    session:wait_for("Open clients: admin, producer, consumer")
    session:type(":help admin")
    session:wait_for("methods: alter_group_offsets")
    session:type(":nonsense")
    session:wait_for("unknown command :nonsense")
  end)
end)

describe("the REPL on a pipe", function()
  it("reads lines from stdin with -i", function()
    local r = proc.run({ proc.kalua(), "-i" }, { stdin = "x = 20\nx * 2\n" })
    assert.are.equal(0, r.code)
    assert.truthy(r.stdout:find("40", 1, true))
  end)
end)
