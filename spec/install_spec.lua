-- `cmake --install` produces a tree where kalua finds its modules and
-- commands, and where a stock lua5.4 can require the C modules.
local proc = require "proc"

describe("an installed kalua", function()
  local prefix

  setup(function()
    prefix = proc.tmpdir()
    local build = proc.kalua():match("^(.*)/kalua$")
    local r = proc.run({ "cmake", "--install", build, "--prefix", prefix })
    assert(r.code == 0, r.stderr)
  end)

  teardown(function() proc.rmdir(prefix) end)

  it("finds its Lua modules and C modules", function()
    local r = proc.run({ prefix .. "/bin/kalua", "-e",
      "print(package.searchpath('kalua.repl', package.path), type(require('kalua.kafka')))" })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find(prefix .. "/bin/../share/kalua/lua/kalua/repl.lua\ttable", 1, true), r.stdout)
  end)

  it("runs built-in commands", function()
    local r = proc.run({ prefix .. "/bin/kalua", "help" })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("help", 1, true))
  end)

  -- A sanitized build's modules need the ASan runtime loaded first.
  local function sanitizer_env(env)
    local p = io.popen("ldd " .. proc.quote(proc.kalua()) .. " | grep -o '/[^ ]*libasan[^ ]*'")
    local asan = p:read("l")
    p:close()
    if asan then env.LD_PRELOAD = asan end
    return env
  end

  it("lets stock lua5.4 require the C modules", function()
    local r = proc.run({ "lua5.4", "-e", "local k = require 'kalua.kafka' print(type(k), package.searchpath('kalua.kafka', package.cpath))" },
      { env = sanitizer_env { LUA_CPATH = prefix .. "/lib/lua/5.4/?.so;;" } })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("table\t" .. prefix .. "/lib/lua/5.4/kalua/kafka.so", 1, true), r.stdout)
  end)
end)
