--- Minimal JSON for kalua's manifests and checkpoints.
--
-- encode(v) writes objects with sorted keys (stable files, readable diffs);
-- a table with only keys 1..n is an array, an empty table is `{}` unless it
-- is M.array. decode(s) returns the value or nil, "json: <what> at byte N".
-- Integers stay integers both ways (Kafka offsets do not fit a double).
local M = {}

M.null = setmetatable({}, { __tostring = function() return "json.null" end })
local ARRAY = setmetatable({}, { __mode = "k" })

--- Marks t to be encoded as an array even when empty.
function M.array(t)
  t = t or {}
  ARRAY[t] = true
  return t
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESCAPES[c] or ("\\u%04x"):format(c:byte()) end) .. '"'
end

local function is_array(t)
  if ARRAY[t] then return true end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

local encode

local function encode_table(t, indent, depth)
  if depth > 100 then error("json: nesting too deep (a cycle?)", 0) end
  local pad, inner = "", ""
  if indent then pad, inner = "\n" .. indent:rep(depth), "\n" .. indent:rep(depth + 1) end
  local parts = {}
  if is_array(t) then
    for i = 1, #t do parts[i] = encode(t[i], indent, depth + 1) end
    if #parts == 0 then return "[]" end
    return "[" .. inner .. table.concat(parts, "," .. inner) .. pad .. "]"
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then error("json: object keys must be strings, got " .. type(k), 0) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    parts[i] = encode_string(k) .. (indent and ": " or ":") .. encode(t[k], indent, depth + 1)
  end
  if #parts == 0 then return "{}" end
  return "{" .. inner .. table.concat(parts, "," .. inner) .. pad .. "}"
end

encode = function(v, indent, depth)
  local tv = type(v)
  if v == nil or v == M.null then return "null" end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v or v == math.huge or v == -math.huge then error("json: cannot encode " .. tostring(v), 0) end
    return ("%.17g"):format(v)
  end
  if tv == "string" then return encode_string(v) end
  if tv == "table" then return encode_table(v, indent, depth or 0) end
  error("json: cannot encode a " .. tv, 0)
end

--- Encodes v; opts.indent (e.g. "  ") pretty-prints.
function M.encode(v, opts)
  return encode(v, opts and opts.indent, 0)
end

-- Decoder: a small recursive-descent parser over the string.
local decode_value

local function fail(s, i, what) error({ ("json: %s at byte %d"):format(what, i) }, 0) end

local function skip(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then fail(s, j, "unterminated string") end
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
      if map[e] then
        out[#out + 1] = map[e]
        j = j + 2
      elseif e == "u" then
        local hex = s:sub(j + 2, j + 5)
        if not hex:match("^%x%x%x%x$") then fail(s, j, "bad \\u escape") end
        out[#out + 1] = utf8.char(tonumber(hex, 16))
        j = j + 6
      else
        fail(s, j, "bad escape")
      end
    else
      out[#out + 1] = c
      j = j + 1
    end
  end
end

decode_value = function(s, i, depth)
  if depth > 200 then fail(s, i, "nesting too deep") end
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then fail(s, i, "expected a string key") end
      local k
      k, i = decode_string(s, i)
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then fail(s, i, "expected ':'") end
      t[k], i = decode_value(s, i + 1, depth + 1)
      i = skip(s, i)
      c = s:sub(i, i)
      if c == "}" then return t, i + 1 end
      if c ~= "," then fail(s, i, "expected ',' or '}'") end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    local t = M.array()
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return t, i + 1 end
    while true do
      local v
      v, i = decode_value(s, i, depth + 1)
      t[#t + 1] = v
      i = skip(s, i)
      c = s:sub(i, i)
      if c == "]" then return t, i + 1 end
      if c ~= "," then fail(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif s:find("^true", i) then
    return true, i + 4
  elseif s:find("^false", i) then
    return false, i + 5
  elseif s:find("^null", i) then
    return nil, i + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" or num == "-" then fail(s, i, "unexpected character") end
    local v = math.tointeger(tonumber(num)) or tonumber(num)
    if v == nil then fail(s, i, "bad number") end
    return v, i + #num
  end
end

--- Decodes s; returns the value, or nil and an error with the byte.
function M.decode(s)
  local ok, v, i = pcall(decode_value, s, 1, 0)
  if not ok then
    if type(v) == "table" then return nil, v[1] end
    error(v, 0)
  end
  i = skip(s, i)
  if i <= #s then return nil, ("json: trailing data at byte %d"):format(i) end
  return v
end

return M
