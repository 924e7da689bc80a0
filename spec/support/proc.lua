--- Running child processes from specs: capture stdout, stderr and exit code.
local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

--- Runs argv (a list) with optional opts.stdin (string), opts.env
-- (name -> value, or false to unset) and opts.prefix (a command list to run
-- argv under, e.g. { "faketime", "-f", "-20m" }). Returns { stdout=, stderr=, code= }.
function M.run(argv, opts)
  opts = opts or {}
  local unset, set = {}, {}
  for name, value in pairs(opts.env or {}) do
    if value == false then
      unset[#unset + 1] = "-u " .. name -- env takes options before assignments
    else
      set[#set + 1] = name .. "=" .. shell_quote(value)
    end
  end
  local words = table.move(set, 1, #set, #unset + 1, unset)
  local cmd = "env " .. table.concat(words, " ")
  for _, a in ipairs(opts.prefix or {}) do cmd = cmd .. " " .. shell_quote(a) end
  for _, a in ipairs(argv) do cmd = cmd .. " " .. shell_quote(a) end
  local err_path = os.tmpname()
  local in_path
  if opts.stdin then
    in_path = os.tmpname()
    local f = assert(io.open(in_path, "wb"))
    f:write(opts.stdin)
    f:close()
    cmd = cmd .. " < " .. shell_quote(in_path)
  else
    cmd = cmd .. " < /dev/null"
  end
  if opts.cwd then cmd = "cd " .. shell_quote(opts.cwd) .. " && " .. cmd end
  local p = assert(io.popen(cmd .. " 2> " .. shell_quote(err_path), "r"))
  local stdout = p:read("a")
  local _, how, code = p:close()
  local result = { stdout = stdout, stderr = read_file(err_path), code = code, how = how }
  os.remove(err_path)
  if in_path then os.remove(in_path) end
  return result
end

--- Path of the kalua binary under test.
function M.kalua()
  return os.getenv("KALUA_BIN") or "build/kalua"
end

--- A fresh temporary directory, removed by the caller with M.rmdir.
function M.tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  return dir
end

function M.rmdir(dir)
  os.execute("rm -rf " .. shell_quote(dir))
end

function M.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

--- Starts argv in the background, its stdout and stderr going to files,
-- with optional opts.env (as M.run) and opts.cwd. Returns a handle:
-- h.pid, h:kill(signal) (default "TERM"), h:wait(timeout) -> exit code
-- (128 + n when killed by signal n) or nil while it runs, h:alive(),
-- h:stdout(), h:stderr(), h:cleanup() (kills it if still running and
-- removes the files). The pid and the exit code go through files a
-- wrapper shell writes, so the process is not a child of the spec's.
function M.spawn(argv, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local words = {}
  for name, value in pairs(opts.env or {}) do
    words[#words + 1] = value == false and ("-u " .. name) or (name .. "=" .. shell_quote(value))
  end
  table.sort(words, function(a, b) return (a:sub(1, 3) == "-u " and 0 or 1) < (b:sub(1, 3) == "-u " and 0 or 1) end)
  local cmd = "env " .. table.concat(words, " ")
  for _, a in ipairs(argv) do cmd = cmd .. " " .. shell_quote(a) end
  local q = function(name) return shell_quote(dir .. "/" .. name) end
  local script = ("%s >%s 2>%s </dev/null & echo $! >%s.tmp && mv %s.tmp %s; wait $!; echo $? >%s.tmp && mv %s.tmp %s")
    :format(cmd, q("stdout"), q("stderr"), q("pid"), q("pid"), q("pid"), q("code"), q("code"), q("code"))
  if opts.cwd then script = "cd " .. shell_quote(opts.cwd) .. " && " .. script end
  assert(os.execute("(" .. script .. ") >/dev/null 2>&1 &"))
  local clock = require "kalua.clock"
  local deadline = clock.now() + 10
  local pid
  repeat
    pid = tonumber(read_file(dir .. "/pid"):match("%d+"))
    if not pid then clock.sleep(0.01) end
  until pid or clock.now() > deadline
  assert(pid, "the background process did not start: " .. read_file(dir .. "/stderr"))
  local h = { pid = pid, dir = dir }
  function h:code() return tonumber(read_file(dir .. "/code"):match("%d+")) end
  function h:alive() return self:code() == nil end
  function h:kill(signal)
    return os.execute(("kill -%s %d 2>/dev/null"):format(signal or "TERM", self.pid))
  end
  function h:wait(timeout)
    local until_ = clock.now() + (timeout or 30)
    while self:code() == nil and clock.now() < until_ do clock.sleep(0.02) end
    return self:code()
  end
  function h:stdout() return read_file(dir .. "/stdout") end
  function h:stderr() return read_file(dir .. "/stderr") end
  function h:cleanup()
    if self:alive() then
      self:kill("KILL")
      self:wait(5)
    end
    M.rmdir(dir)
  end
  return h
end

return M
