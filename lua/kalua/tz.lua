--- Time zones from the system's TZif files (RFC 8536), in plain Lua.
--
--   local tz = require "kalua.tz"
--   local zone = assert(tz.load("Europe/Berlin"))   -- or "UTC", or nil / "local"
--   local t = zone:localtime(os.time())             -- {year=, month=, day=, hour=, min=, sec=, wday=, offset=, isdst=, abbr=}
--   local p = zone:period(os.time())                -- {offset=, isdst=, abbr=, start=, finish=, prev_offset=}
--
-- Nothing here touches the process: no TZ variable, no tzset(), so zones
-- are private to the caller and any number of them coexist. Files are read
-- from $TZDIR or /usr/share/zoneinfo; "local" is $TZ (a zone name, ":name",
-- or a POSIX TZ string) or /etc/localtime, else UTC. Past the last
-- transition a file lists, its footer POSIX TZ rule (e.g.
-- "CET-1CEST,M3.5.0,M10.5.0/3") gives the transitions, for any year.
-- Leap-second ("right/") zones are read as if they had none.
local M = {}

local DAY = 86400

-- Days since 1970-01-01 for a proleptic Gregorian date (kalua.time's), and
-- back (Howard Hinnant's civil_from_days).
local days_from_civil = require("kalua.time").days_from_civil
M.days_from_civil = days_from_civil

local function civil_from_days(z)
  z = z + 719468
  local era = (z >= 0 and z or z - 146096) // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  return m <= 2 and y + 1 or y, m, d
end
M.civil_from_days = civil_from_days

local function is_leap(y) return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) end

local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- Days in month m of year y.
function M.days_in_month(y, m)
  if m == 2 and is_leap(y) then return 29 end
  return MONTH_DAYS[m]
end

--- Fields of a wall-clock time counted in seconds since 1970-01-01 00:00
-- (as if it were UTC): {year=, month=, day=, hour=, min=, sec=, wday= (0 =
-- Sunday), yday= (1-366)}.
function M.fields(wall)
  local days, secs = wall // DAY, wall % DAY
  local y, m, d = civil_from_days(days)
  return { year = y, month = m, day = d, hour = secs // 3600, min = secs % 3600 // 60, sec = secs % 60,
    wday = (days + 4) % 7, yday = days - days_from_civil(y, 1, 1) + 1 }
end

--- The wall-clock seconds (as if UTC) of a {year=, month=, day=, hour=, min=, sec=} table.
function M.wall(t)
  return days_from_civil(t.year, t.month, t.day) * DAY + (t.hour or 0) * 3600 + (t.min or 0) * 60 + (t.sec or 0)
end

-- --- POSIX TZ strings (the TZif footer, or $TZ) --------------------------------

-- Reads "std offset [dst [offset] [,start[/time],end[/time]]]". Offsets in
-- the string count west of Greenwich; the result counts east, in seconds.
local function parse_posix(s)
  local pos = 1
  local function name()
    local n, after = s:match("^<([%w+%-]+)>()", pos)
    if not n then n, after = s:match("^(%a%a%a+)()", pos) end
    if n then pos = after end
    return n
  end
  local function hms(allow_sign)
    local sign, h, after = s:match("^([+-]?)(%d+)()", pos)
    if not h or (sign ~= "" and not allow_sign) then return nil end
    pos = after
    local secs = tonumber(h) * 3600
    local mm, after2 = s:match("^:(%d+)()", pos)
    if mm then
      pos, secs = after2, secs + tonumber(mm) * 60
      local ss, after3 = s:match("^:(%d+)()", pos)
      if ss then pos, secs = after3, secs + tonumber(ss) end
    end
    return sign == "-" and -secs or secs
  end
  local function date()
    local m, w, d, after = s:match("^M(%d+)%.(%d)%.(%d)()", pos)
    local rule
    if m then
      rule = { kind = "M", month = tonumber(m), week = tonumber(w), wday = tonumber(d) }
    else
      local j, after2 = s:match("^J(%d+)()", pos)
      if j then
        rule, after = { kind = "J", day = tonumber(j) }, after2
      else
        local n, after3 = s:match("^(%d+)()", pos)
        if not n then return nil end
        rule, after = { kind = "N", day = tonumber(n) }, after3
      end
    end
    pos = after
    rule.time = 7200
    if s:sub(pos, pos) == "/" then
      pos = pos + 1
      rule.time = hms(true)
      if not rule.time then return nil end
    end
    return rule
  end
  local r = { std_abbr = name() }
  if not r.std_abbr then return nil end
  local off = hms(true)
  if not off then return nil end
  r.std_offset = -off
  r.dst_abbr = name()
  if r.dst_abbr then
    local doff = hms(true)
    r.dst_offset = doff and -doff or r.std_offset + 3600
    if s:sub(pos, pos) == "," then
      pos = pos + 1
      r.start = date()
      if not r.start or s:sub(pos, pos) ~= "," then return nil end
      pos = pos + 1
      r.finish = date()
      if not r.finish then return nil end
    else -- POSIX leaves the default rule to the implementation: US rules, as glibc does
      r.start = { kind = "M", month = 3, week = 2, wday = 0, time = 7200 }
      r.finish = { kind = "M", month = 11, week = 1, wday = 0, time = 7200 }
    end
  end
  if pos <= #s then return nil end
  return r
end

-- Day number (since 1970) a rule date names in year y.
local function rule_day(rule, y)
  if rule.kind == "J" then
    local day = rule.day - 1
    if is_leap(y) and rule.day >= 60 then day = day + 1 end
    return days_from_civil(y, 1, 1) + day
  elseif rule.kind == "N" then
    return days_from_civil(y, 1, 1) + rule.day
  end
  local first = days_from_civil(y, rule.month, 1)
  local day = 1 + (rule.wday - (first + 4) % 7) % 7 + (rule.week - 1) * 7
  local last = M.days_in_month(y, rule.month)
  while day > last do day = day - 7 end
  return first + day - 1
end

-- The rule's transitions in year y, sorted: { {at=, offset=, isdst=, abbr=} }.
local function rule_transitions(r, y)
  if not r.start then return {} end
  local on = rule_day(r.start, y) * DAY + r.start.time - r.std_offset
  local off = rule_day(r.finish, y) * DAY + r.finish.time - r.dst_offset
  local list = {
    { at = on, offset = r.dst_offset, isdst = true, abbr = r.dst_abbr },
    { at = off, offset = r.std_offset, isdst = false, abbr = r.std_abbr },
  }
  table.sort(list, function(a, b) return a.at < b.at end)
  return list
end

-- --- TZif files ----------------------------------------------------------------

local function read_block(data, pos, counts, time_size)
  local isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt = table.unpack(counts)
  local tfmt = time_size == 8 and ">i8" or ">i4"
  local times, idx, types = {}, {}, {}
  for i = 1, timecnt do times[i], pos = string.unpack(tfmt, data, pos) end
  for i = 1, timecnt do idx[i], pos = string.unpack("B", data, pos) end
  for i = 1, typecnt do
    local utoff, isdst, desig
    utoff, isdst, desig, pos = string.unpack(">i4BB", data, pos)
    types[i] = { offset = utoff, isdst = isdst == 1, desig = desig }
  end
  local chars = data:sub(pos, pos + charcnt - 1)
  pos = pos + charcnt + leapcnt * (time_size + 4) + isstdcnt + isutcnt
  for _, t in ipairs(types) do t.abbr = chars:match("^[^%z]*", t.desig + 1) end
  local transitions = {}
  for i = 1, timecnt do
    local t = types[idx[i] + 1]
    if not t then return nil, "transition names a time type it does not have" end
    transitions[i] = { at = times[i], offset = t.offset, isdst = t.isdst, abbr = t.abbr }
  end
  return { transitions = transitions, initial = types[1] }, pos
end

local function header(data, pos)
  if data:sub(pos, pos + 3) ~= "TZif" then return nil end
  local version = data:sub(pos + 4, pos + 4)
  local counts = { string.unpack(">i4i4i4i4i4i4", data, pos + 20) }
  local after = table.remove(counts)
  return version, counts, after
end

--- Parses TZif data. Returns a zone or nil, message (name is used in it).
function M.parse_tzif(data, name)
  local ok, zone, err = pcall(function()
    local version, counts, pos = header(data, 1)
    if not version then return nil, name .. ": not a TZif file" end
    local block
    block, pos = read_block(data, pos, counts, 4)
    if not block then return nil, name .. ": " .. pos end
    local rule
    if version >= "2" then
      counts, pos = select(2, header(data, pos))
      if not counts then return nil, name .. ": truncated TZif file" end
      block, pos = read_block(data, pos, counts, 8)
      if not block then return nil, name .. ": " .. pos end
      local footer = data:match("^\n([^\n]*)\n", pos)
      if footer and footer ~= "" then
        rule = parse_posix(footer)
        if not rule then return nil, ("%s: bad TZ rule '%s'"):format(name, footer) end
      end
    end
    return M.new(name, block.transitions, block.initial, rule)
  end)
  if not ok then return nil, ("%s: corrupt TZif file (%s)"):format(name, tostring(zone)) end
  return zone, err
end

-- --- zones -------------------------------------------------------------------------

local Zone = {}
Zone.__index = Zone

--- A zone from explicit transitions ({at=, offset=, isdst=, abbr=}, sorted),
-- the type before the first one, and a POSIX rule for after the last.
function M.new(name, transitions, initial, rule)
  initial = initial or (rule and { offset = rule.std_offset, isdst = false, abbr = rule.std_abbr })
    or { offset = 0, isdst = false, abbr = "UTC" }
  return setmetatable({ name = name, transitions = transitions or {}, initial = initial, rule = rule }, Zone)
end

local function utc_year(t) return (civil_from_days(t // DAY)) end

-- Rule transitions after `after` around instant t: every one in the years
-- before and after t's.
local function rule_list(zone, t, after)
  local out, y = {}, utc_year(t)
  for year = y - 1, y + 1 do
    for _, tr in ipairs(rule_transitions(zone.rule, year)) do
      if not after or tr.at > after then out[#out + 1] = tr end
    end
  end
  return out
end

--- The period of constant offset holding instant t: {offset=, isdst=,
-- abbr=, start= (the transition that began it, or nil), prev_offset= (the
-- offset before start), finish= (the next transition, or nil)}.
function Zone:period(t)
  local trs = self.transitions
  local n = #trs
  if n > 0 and t < trs[n].at then
    local lo, hi = 0, n -- largest i with trs[i].at <= t (0: before the first)
    while lo < hi do
      local mid = (lo + hi + 1) // 2
      if trs[mid].at <= t then lo = mid else hi = mid - 1 end
    end
    local cur = trs[lo] or self.initial
    local prev = lo > 1 and trs[lo - 1] or self.initial
    return { offset = cur.offset, isdst = cur.isdst, abbr = cur.abbr, start = trs[lo] and trs[lo].at,
      prev_offset = lo > 0 and prev.offset or nil, finish = trs[lo + 1].at }
  end
  local last = trs[n] or self.initial
  local p = { offset = last.offset, isdst = last.isdst, abbr = last.abbr, start = trs[n] and trs[n].at,
    prev_offset = n > 1 and trs[n - 1].offset or (n == 1 and self.initial.offset or nil) }
  if not self.rule then return p end
  if not self.rule.start then
    if n == 0 then p.offset, p.abbr = self.rule.std_offset, self.rule.std_abbr end
    return p
  end
  local list = rule_list(self, t, trs[n] and trs[n].at)
  for i, tr in ipairs(list) do
    if tr.at <= t then
      local before = list[i - 1] or last
      p = { offset = tr.offset, isdst = tr.isdst, abbr = tr.abbr, start = tr.at, prev_offset = before.offset }
    else
      p.finish = tr.at
      break
    end
  end
  return p
end

--- UTC offset (seconds east), whether DST, and the abbreviation at instant t.
function Zone:offset(t)
  local p = self:period(t)
  return p.offset, p.isdst, p.abbr
end

--- The local time fields at instant t (M.fields plus offset=, isdst=, abbr=).
function Zone:localtime(t)
  local p = self:period(t)
  local f = M.fields(t + p.offset)
  f.offset, f.isdst, f.abbr = p.offset, p.isdst, p.abbr
  return f
end

--- The instants whose local time is the wall time {year=, month=, day=,
-- hour=, min=, sec=} (or wall seconds): none in a gap (spring forward), two
-- in an overlap (fall back), earliest first.
function Zone:instants(wall)
  if type(wall) == "table" then wall = M.wall(wall) end
  local out, seen = {}, {}
  -- Every offset in force within a day of it is a candidate.
  for _, probe in ipairs { wall - DAY, wall, wall + DAY } do
    local p = self:period(probe)
    for _, off in ipairs { p.offset, p.prev_offset } do
      local t = wall - off
      if not seen[t] and self:offset(t) == off then
        seen[t] = true
        out[#out + 1] = t
      end
    end
  end
  table.sort(out)
  return out
end

function Zone:__tostring() return "kalua.tz zone " .. self.name end

-- --- loading -------------------------------------------------------------------------

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function zoneinfo_dir() return os.getenv("TZDIR") or "/usr/share/zoneinfo" end

local cache = {}

local function load_name(name)
  if not name:match("^[%w_+%-]+[%w_+%-/]*$") or name:find("..", 1, true) then
    return nil, ("unknown time zone '%s': give an IANA name like Europe/Berlin, or UTC"):format(name)
  end
  local data = read_file(zoneinfo_dir() .. "/" .. name)
  if not data then
    if name == "UTC" or name == "Etc/UTC" or name == "GMT" then return M.new(name) end
    return nil, ("unknown time zone '%s': no %s/%s (give an IANA name like Europe/Berlin, or UTC)"):format(
      name, zoneinfo_dir(), name)
  end
  return M.parse_tzif(data, name)
end

local function load_local()
  local tzvar = os.getenv("TZ")
  if tzvar and tzvar ~= "" then
    local name = tzvar:gsub("^:", "")
    if name:sub(1, 1) == "/" then
      local data = read_file(name)
      if data then return M.parse_tzif(data, name) end
    else
      local zone = load_name(name)
      if zone then return zone end
    end
    local rule = parse_posix(name)
    if rule then return M.new(name, {}, nil, rule) end
  end
  local data = read_file("/etc/localtime")
  if data then return M.parse_tzif(data, "local") end
  return M.new("UTC")
end

--- The zone called name: an IANA name ("Europe/Berlin"), "UTC", or nil /
-- "local" for the machine's zone. A zone object is returned as is.
-- Returns the zone or nil, message. Zones are cached per Lua state.
function M.load(name)
  if getmetatable(name) == Zone then return name end
  name = name or "local"
  if cache[name] then return cache[name] end
  local zone, err
  if name == "local" then
    zone, err = load_local()
  elseif name == "UTC" or name == "Z" then
    zone = M.new("UTC")
  else
    zone, err = load_name(name)
  end
  if zone then cache[name] = zone end
  return zone, err
end

--- Parses a POSIX TZ string ("EST5EDT,M3.2.0,M11.1.0") into a zone.
function M.posix(s)
  local rule = parse_posix(s)
  if not rule then return nil, ("bad POSIX TZ string '%s'"):format(s) end
  return M.new(s, {}, nil, rule)
end

return M
