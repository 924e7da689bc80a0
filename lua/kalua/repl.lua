--- Interactive helpers: how the REPL shows values and what it preloads.
local M = {}

local MAX_DEPTH = 6
local MAX_ITEMS = 200

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local format

local function format_key(k, seen, depth)
  if is_identifier(k) then return k end
  return "[" .. format(k, seen, depth) .. "]"
end

local function format_table(t, seen, depth, indent)
  if seen[t] then return "<cycle " .. tostring(t) .. ">" end
  local mt = getmetatable(t)
  if mt and mt.__tostring then return tostring(t) end
  if depth >= MAX_DEPTH then return "{...}" end
  seen[t] = true
  local n = #t
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  local parts, inner = {}, indent .. "  "
  for i = 1, math.min(n, MAX_ITEMS) do
    parts[#parts + 1] = format(t[i], seen, depth + 1, inner)
  end
  for i = 1, math.min(#keys, MAX_ITEMS) do
    local k = keys[i]
    parts[#parts + 1] = format_key(k, seen, depth + 1) .. " = " .. format(t[k], seen, depth + 1, inner)
  end
  if n + #keys > MAX_ITEMS * 2 then parts[#parts + 1] = "..." end
  seen[t] = nil
  if #parts == 0 then return "{}" end
  local flat = "{ " .. table.concat(parts, ", ") .. " }"
  if #flat + #indent <= 78 and not flat:find("\n", 1, true) then return flat end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

format = function(v, seen, depth, indent)
  local tv = type(v)
  if tv == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if tv == "table" then return format_table(v, seen or {}, depth or 0, indent or "") end
  return tostring(v)
end

--- Returns a readable, Lua-like rendering of any value.
function M.pretty(v)
  return (format(v, {}, 0, ""))
end

--- Prints values like Lua's REPL does (tab separated), with tables expanded.
-- Strings print raw, as `print` would, so text output stays copyable.
function M.show(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do
    local v = select(i, ...)
    out[i] = type(v) == "string" and v or M.pretty(v)
  end
  io.stdout:write(table.concat(out, "\t"), "\n")
end

local PRELOADED = {
  kafka = "kalua.kafka",
  yaml = "kalua.yaml",
  config = "kalua.config",
  codec = "kalua.codec",
  storage = "kalua.storage",
}

--- Makes kalua's modules globals for interactive use; a module that fails
-- to load is skipped so the REPL always starts.
function M.setup()
  for name, module in pairs(PRELOADED) do
    local ok, mod = pcall(require, module)
    if ok and rawget(_G, name) == nil then rawset(_G, name, mod) end
  end
  rawset(_G, "pretty", M.pretty)
end

return M
