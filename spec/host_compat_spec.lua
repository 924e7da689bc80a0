-- kalua must behave as Lua 5.4's `lua`: the same cases run through both and
-- must print the same output and exit with the same code.
local proc = require "proc"

local LUA = os.getenv("LUA54") or "lua5.4"
local KALUA = proc.kalua()

describe("kalua as a drop-in lua5.4", function()
  local dir

  setup(function()
    dir = proc.tmpdir()
    proc.write_file(dir .. "/args.lua", [[
      local keys = {}
      for k in pairs(arg) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        if k >= 0 then print(k, arg[k]) end
      end
      print("varargs", select("#", ...), ...)
    ]])
    proc.write_file(dir .. "/fail.lua", "local t = nil\nlocal function f() return t.x end\nf()\n")
    proc.write_file(dir .. "/syntax.lua", "print(1\n")
    proc.write_file(dir .. "/exit.lua", "io.write('bye')\nos.exit(7)\n")
    proc.write_file(dir .. "/init.lua", "INIT_FROM_FILE = 42\n")
    proc.write_file(dir .. "/mod_x.lua", "return { name = 'mod_x' }\n")
  end)

  teardown(function() proc.rmdir(dir) end)

  -- Each case: argv after the interpreter, optional stdin and env.
  local cases = {
    { name = "-v", args = { "-v" } },
    { name = "-e statement", args = { "-e", "print(1, 'two', nil, 3.5)" } },
    { name = "-e joined", args = { "-eprint(10//3, 2^10, 7 % 3)" } },
    { name = "several -e in order", args = { "-e", "x = 1", "-e", "x = x + 1", "-e", "print(x)" } },
    { name = "-e runtime error", args = { "-e", "error('boom')" } },
    { name = "-e error with table", args = { "-e", "error({})" } },
    { name = "-e error with __tostring",
      args = { "-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))" } },
    { name = "-e error with nil", args = { "-e", "error()" } },
    { name = "-e syntax error", args = { "-e", "x = = 1" } },
    { name = "-e missing argument", args = { "-e" } },
    { name = "-l missing argument", args = { "-l" } },
    { name = "-e followed by option", args = { "-e", "-v" } },
    { name = "unknown option", args = { "-x" } },
    { name = "unknown long option", args = { "--x" } },
    { name = "-v with extra chars", args = { "-vx" } },
    { name = "-E with extra chars", args = { "-Ex" } },
    { name = "-l module", args = { "-l", "mod_x", "-e", "print(mod_x.name)" }, cwd = true },
    { name = "-l g=module", args = { "-l", "m=mod_x", "-e", "print(m.name, mod_x)" }, cwd = true },
    -- kalua searches its own module directories too, so only the search
    -- list may differ.
    { name = "-l missing module", args = { "-l", "no_such_module_xyz" }, drop = "\tno file '[^\n]*\n" },
    { name = "script with args", args = { "@/args.lua", "a", "b c", "" } },
    { name = "-- then script", args = { "--", "@/args.lua", "-e" } },
    { name = "script runtime error", args = { "@/fail.lua" } },
    { name = "script syntax error", args = { "@/syntax.lua" } },
    { name = "missing script", args = { "@/nope.lua" } },
    { name = "os.exit code", args = { "@/exit.lua" } },
    { name = "os.exit(false)", args = { "-e", "os.exit(false)" } },
    { name = "os.exit(true)", args = { "-e", "os.exit(true)" } },
    { name = "stdin as script with -", args = { "-", "x", "y" }, stdin = "print('stdin', ...)\n" },
    { name = "stdin with no args", args = {}, stdin = "print('piped', #arg, arg[0])\n" },
    { name = "stdin syntax error", args = { "-" }, stdin = "print(1\n" },
    { name = "LUA_INIT string", args = { "-e", "print(INIT)" }, env = { LUA_INIT = "INIT = 'set'" } },
    { name = "LUA_INIT_5_4 wins", args = { "-e", "print(INIT)" },
      env = { LUA_INIT = "INIT = 'generic'", LUA_INIT_5_4 = "INIT = 'versioned'" } },
    { name = "LUA_INIT @file", args = { "-e", "print(INIT_FROM_FILE)" }, env = { LUA_INIT = "@@/init.lua" } },
    { name = "LUA_INIT error", args = { "-e", "print('not reached')" }, env = { LUA_INIT = "error('init failed')" } },
    { name = "-E ignores LUA_INIT", args = { "-E", "-e", "print(INIT)" }, env = { LUA_INIT = "INIT = 'set'" } },
    { name = "-W turns warnings on", args = { "-W", "-e", "warn('hello', ' world')" } },
    { name = "warnings off by default", args = { "-e", "warn('hidden')" } },
    { name = "-v then -e", args = { "-v", "-e", "print(_VERSION)" } },
    { name = "arg table with -e", args = { "-e", "print(#arg, arg[0])" } },
    { name = "coroutines and error objects",
      args = { "-e", "local co = coroutine.wrap(function(a) local b = coroutine.yield(a+1) error(b) end) print(co(1)) co({code=1})" } },
  }

  local function expand(s)
    return (s:gsub("^@", dir))
  end

  local function run(interp, case)
    local argv = { interp }
    for _, a in ipairs(case.args) do argv[#argv + 1] = expand(a) end
    local env = { LUA_INIT = false, LUA_INIT_5_4 = false, LUA_PATH = false, LUA_CPATH = false }
    for k, v in pairs(case.env or {}) do env[k] = expand(v) end
    local r = proc.run(argv, { stdin = case.stdin, env = env, cwd = case.cwd and dir or nil })
    -- The interpreter names itself in errors and usage: compare without it.
    local function normalise(s)
      local escaped = interp:gsub("%p", "%%%0")
      return (s:gsub(escaped, "LUA"))
    end
    local stderr = normalise(r.stderr)
    if case.drop then stderr = stderr:gsub(case.drop, "") end
    return { stdout = normalise(r.stdout), stderr = stderr, code = r.code }
  end

  for _, case in ipairs(cases) do
    it("matches lua5.4 for " .. case.name, function()
      local kalua_bin = KALUA
      if case.cwd then
        local p = io.popen("realpath " .. proc.quote(KALUA))
        kalua_bin = p:read("l")
        p:close()
      end
      local expected = run(LUA, case)
      local got = run(kalua_bin, case)
      assert.are.equal(expected.stdout, got.stdout)
      assert.are.equal(expected.stderr, got.stderr)
      assert.are.equal(expected.code, got.code)
    end)
  end

  it("runs a shebang script", function()
    local p = io.popen("realpath " .. proc.quote(KALUA))
    local abs = p:read("l")
    p:close()
    local script = dir .. "/shebang"
    proc.write_file(script, "#!" .. abs .. "\nprint('shebang', ...)\n")
    os.execute("chmod +x " .. proc.quote(script))
    local r = proc.run({ script, "a1" })
    assert.are.equal("shebang\ta1\n", r.stdout)
    assert.are.equal(0, r.code)
  end)
end)

describe("kalua's own options", function()
  it("prints every library version with --version", function()
    local r = proc.run({ KALUA, "--version" })
    assert.are.equal(0, r.code)
    for _, lib in ipairs { "kalua", "Lua 5.4", "librdkafka", "MIT krb5", "OpenSSL", "zstd", "libcurl" } do
      assert.truthy(r.stdout:find(lib, 1, true), lib .. " missing from --version")
    end
  end)

  it("prints help with --help", function()
    local r = proc.run({ KALUA, "--help" })
    assert.are.equal(0, r.code)
    assert.truthy(r.stdout:find("kalua help", 1, true))
  end)

  it("exposes versions to Lua through kalua.host", function()
    local r = proc.run({ KALUA, "-e", "local v = require('kalua.host').versions() print(v.librdkafka, v.Lua)" })
    assert.are.equal(0, r.code)
    assert.truthy(r.stdout:match("^%d+%.%d+%.%d+\tLua 5%.4"))
  end)
end)
