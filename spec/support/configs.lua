--- kalua config files for specs, written from Lua tables, so a spec says
-- what differs instead of repeating twenty lines of YAML.
--
--   configs.write(path, { mode = "backup", backup_id = "b", source = { bootstrap_servers = brokers },
--     topics = { include = { topic } }, storage = configs.fs(dir .. "/store") })
local proc = require "proc"

local M = {}

-- Keys a person would write first, in this order; the rest sorted.
local ORDER = { mode = 1, backup_id = 2, source = 3, target = 4, topics = 5, storage = 6, backup = 7, restore = 8 }

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local x, y = ORDER[a] or 99, ORDER[b] or 99
    if x ~= y then return x < y end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local function scalar(v)
  if type(v) == "string" then return ("%q"):format(v):gsub("\\\n", "\\n") end
  return tostring(v)
end

local function key(k)
  k = tostring(k)
  return k:match("^[%w_][%w_.%-]*$") and k or scalar(k)
end

local function emit(t, indent, out)
  if #t > 0 then -- a list of scalars, in flow style
    local items = {}
    for i, v in ipairs(t) do items[i] = scalar(v) end
    return "[" .. table.concat(items, ", ") .. "]"
  end
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    if type(v) == "table" and #v == 0 and next(v) ~= nil then
      out[#out + 1] = ("%s%s:"):format(indent, key(k))
      emit(v, indent .. "  ", out)
    else
      out[#out + 1] = ("%s%s: %s"):format(indent, key(k), type(v) == "table" and emit(v, "", {}) or scalar(v))
    end
  end
end

--- YAML text for a config table.
function M.yaml(t)
  local out = {}
  emit(t, "", out)
  return table.concat(out, "\n") .. "\n"
end

--- Writes the config to path and returns path.
function M.write(path, t)
  proc.write_file(path, M.yaml(t))
  return path
end

--- A filesystem storage section.
function M.fs(path)
  return { backend = "filesystem", path = path }
end

return M
