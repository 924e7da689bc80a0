-- `make install` makes a tree where kalua finds its modules and commands,
-- where a stock lua5.4 can require the modules, with a man page, shell
-- completions and kalua.pc; `luarocks make` builds the same modules as a
-- rock; and the committed man page is the one tools/gen-man makes now.
local proc = require "proc"

local function sh(cmd) -- first line of a shell command's output
  local p = io.popen(cmd)
  local line = p:read("l")
  p:close()
  return line
end

local function have(tool) return sh("command -v " .. tool .. " 2>/dev/null") ~= nil end

-- A sanitized build's modules need the ASan runtime loaded first.
local function sanitizer_env(env)
  local asan = sh("ldd " .. proc.quote(proc.kalua()) .. " | grep -o '/[^ ]*libasan[^ ]*'")
  if asan then env.LD_PRELOAD = asan end
  return env
end

local function build_dir() return proc.kalua():match("^(.*)/kalua$") or "." end

local function summary(command) -- the first line of scripts/<command>.lua's help
  return proc.read_file("scripts/" .. command .. ".lua"):match("^%-%-%-? ?([^\n]*)")
end

local MODULES = { "kalua.kafka", "kalua.yaml", "kalua.codec", "kalua.crypto", "kalua.sasl", "kalua.config" }

-- Runs a stock lua5.4 that requires MODULES from lmod (share/lua/5.4) and
-- cmod (lib/lua/5.4), printing where each came from.
local function stock_lua_requires(lmod, cmod)
  local code = [[
    for _, m in ipairs { ]] .. ("%q, "):rep(#MODULES):format(table.unpack(MODULES)) .. [[ } do
      local mod = require(m)
      print(m, type(mod), package.searchpath(m, package.cpath) or package.searchpath(m, package.path))
    end]]
  return proc.run({ "lua5.4", "-e", code },
    { env = sanitizer_env { LUA_PATH = lmod .. "/?.lua;;", LUA_CPATH = cmod .. "/?.so;;", LUA_INIT = false } })
end

describe("make install DESTDIR=... PREFIX=/usr/local #noasan", function()
  local stage, prefix

  setup(function()
    stage = proc.tmpdir()
    prefix = stage .. "/usr/local"
    local r = proc.run({ "make", "--no-print-directory", "install", "BUILD=" .. build_dir(), "DESTDIR=" .. stage,
      "PREFIX=/usr/local" })
    assert(r.code == 0, r.stdout .. r.stderr)
  end)

  teardown(function() proc.rmdir(stage) end)

  it("installs kalua, which finds its Lua modules, C modules and commands", function()
    local r = proc.run({ prefix .. "/bin/kalua", "-e",
      "print(package.searchpath('kalua.repl', package.path), type(require('kalua.kafka')))" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(prefix .. "/bin/../share/kalua/lua/kalua/repl.lua\ttable\n", r.stdout)
    r = proc.run({ prefix .. "/bin/kalua", "help", "backup" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(summary("backup"), r.stdout:match("^[^\n]*"))
  end)

  it("puts the modules where a stock lua5.4 finds them: share/lua/5.4 and lib/lua/5.4", function()
    local lmod, cmod = prefix .. "/share/lua/5.4", prefix .. "/lib/lua/5.4"
    local r = stock_lua_requires(lmod, cmod)
    assert.are.equal(0, r.code, r.stderr)
    for _, m in ipairs(MODULES) do
      local name = m:gsub("^kalua%.", "")
      local file = m == "kalua.config" and (lmod .. "/kalua/config.lua") or (cmod .. "/kalua/" .. name .. ".so")
      assert.truthy(r.stdout:find(m .. "\ttable\t" .. file .. "\n", 1, true), r.stdout)
    end
  end)

  it("installs a man page that renders", function()
    local page = prefix .. "/share/man/man1/kalua.1"
    local r
    if have("man") then
      r = proc.run({ "man", "-l", page }, { env = { MANWIDTH = "100", MANPAGER = "cat", PAGER = "cat" } })
    else
      r = proc.run({ "groff", "-man", "-Tutf8", page })
    end
    assert.are.equal(0, r.code, r.stderr)
    local text = r.stdout:gsub(".\b", "") -- overstrike bold
    assert.truthy(text:find("kalua %- Kafka operations workbench"), text)
    assert.truthy(text:find("\n   backup\n", 1, true), text)
    assert.truthy(text:find("--bootstrap-servers", 1, true), text)
  end)

  it("installs the bash and zsh completions", function()
    assert.are.equal(proc.read_file("completions/kalua.bash"),
      proc.read_file(prefix .. "/share/bash-completion/completions/kalua"))
    assert.are.equal(proc.read_file("completions/_kalua"), proc.read_file(prefix .. "/share/zsh/site-functions/_kalua"))
  end)

  it("installs kalua.pc naming the module directories", function()
    local env = { env = { PKG_CONFIG_PATH = prefix .. "/lib/pkgconfig", PKG_CONFIG_LIBDIR = "" } }
    local r = proc.run({ "pkg-config", "--variable=INSTALL_CMOD", "kalua" }, env)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("/usr/local/lib/lua/5.4\n", r.stdout)
    assert.truthy(io.open(stage .. "/usr/local/lib/lua/5.4/kalua/kafka.so"))
    r = proc.run({ "pkg-config", "--variable=INSTALL_LMOD", "kalua" }, env)
    assert.are.equal("/usr/local/share/lua/5.4\n", r.stdout)
    assert.truthy(io.open(stage .. "/usr/local/share/lua/5.4/kalua/config.lua"))
    r = proc.run({ "pkg-config", "--modversion", "kalua" }, env)
    local version = proc.run({ proc.kalua(), "-e", "io.write(require('kalua.host').version)" }).stdout
    assert.are.equal(version .. "\n", r.stdout)
  end)
end)

describe("cmake --install --prefix #noasan", function()
  it("makes a tree that works where it lands, kalua.pc included", function()
    local prefix = proc.tmpdir()
    finally(function() proc.rmdir(prefix) end)
    local r = proc.run({ "cmake", "--install", build_dir(), "--prefix", prefix })
    assert.are.equal(0, r.code, r.stderr)
    r = proc.run({ prefix .. "/bin/kalua", "help" })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("\n  backup ", 1, true), r.stdout)
    assert.truthy(proc.read_file(prefix .. "/lib/pkgconfig/kalua.pc"):find("\nprefix=" .. prefix .. "\n", 1, true))
  end)
end)

describe("man/kalua.1 #noasan", function()
  it("is what tools/gen-man makes from the current help texts", function()
    local r = proc.run({ "tools/gen-man", proc.kalua() })
    assert.are.equal(0, r.code, r.stderr)
    if r.stdout ~= proc.read_file("man/kalua.1") then
      local fresh = os.tmpname()
      proc.write_file(fresh, r.stdout)
      local diff = proc.run({ "diff", "-u", "man/kalua.1", fresh }).stdout
      os.remove(fresh)
      error("man/kalua.1 is out of date: run `make man` (tools/gen-man) and commit it\n" .. diff:sub(1, 3000), 0)
    end
  end)
end)

describe("luarocks make kalua-scm-1.rockspec #noasan", function()
  it("builds a rock whose modules a stock lua5.4 requires from the tree", function()
    assert(have("luarocks"), "luarocks is not installed (tools/install-deps installs it)")
    local tmp = proc.tmpdir()
    finally(function() proc.rmdir(tmp) end)
    -- A copy of the sources, so build.luarocks/ lands outside the checkout.
    local r = proc.run({ "sh", "-c", 'mkdir "$1/src" && cp -R CMakeLists.txt kalua.pc.in kalua-scm-1.rockspec core lua "$1/src/"',
      "sh", tmp })
    assert.are.equal(0, r.code, r.stderr)
    r = proc.run({ "luarocks", "--lua-version", "5.4", "make", "--tree", tmp .. "/tree", "kalua-scm-1.rockspec" },
      { cwd = tmp .. "/src", env = { CMAKE_BUILD_PARALLEL_LEVEL = "2" } })
    assert.are.equal(0, r.code, r.stdout:sub(-3000) .. r.stderr)
    r = stock_lua_requires(tmp .. "/tree/share/lua/5.4", tmp .. "/tree/lib/lua/5.4")
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("kalua.kafka\ttable\t" .. tmp .. "/tree/lib/lua/5.4/kalua/kafka.so\n", 1, true), r.stdout)
    assert.truthy(r.stdout:find("kalua.config\ttable\t" .. tmp .. "/tree/share/lua/5.4/kalua/config.lua\n", 1, true),
      r.stdout)
    assert.is_nil(io.open(tmp .. "/tree/bin/kalua"), "the rock has the modules only")
  end)
end)
