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

return M
