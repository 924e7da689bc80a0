--- List kalua's commands, or describe one.
-- Usage: kalua help [command]
--
-- Every command is a Lua script in scripts/; its leading comment block is
-- its help text, so `kalua help backup` always says what the script does.
local host = require "kalua.host"
local cli = require "kalua.cli"

local function help_text(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local lines = {}
  for line in f:lines() do
    local text = line:match("^%-%-%-? ?(.*)$")
    if not text then break end
    lines[#lines + 1] = text
  end
  f:close()
  return lines
end

local function list_commands()
  print("usage: kalua <command> [args]   (or: kalua [lua options] [script [args]])")
  print()
  print("Commands:")
  for _, name in ipairs(host.commands()) do
    local lines = help_text(host.command_path(name)) or {}
    print(string.format("  %-12s %s", name, lines[1] or ""))
  end
  print()
  print("`kalua help <command>` describes one; `kalua --help` lists the Lua options.")
  print("Every command takes --log-format text|json, -v (-vv) and -q for its log lines on stderr.")
end

-- A help line "@connection-flags" stands for the flags every Kafka command takes.
local function expand(lines)
  local out = {}
  for _, line in ipairs(lines) do
    if line == "@connection-flags" then
      out[#out + 1] = cli.usage(cli.connection_flags)
    else
      out[#out + 1] = line
    end
  end
  return out
end

local function describe(name)
  local path = host.command_path(name)
  if not path then cli.die("help", ("unknown command '%s' (try `kalua help`)"):format(name)) end
  print(table.concat(expand(help_text(path)), "\n"))
  print()
  print("Every command also takes (logs go to stderr):")
  print(cli.usage(cli.log_flags))
end

local name = ...
if name then describe(name) else list_commands() end
