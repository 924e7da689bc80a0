--- Cron expressions: parsing and next-run times in a time zone.
--
--   local cron = require "kalua.cron"
--   local c = assert(cron.parse("*/15 9-17 * * MON-FRI"))
--   local t = cron.next("30 2 * * *", os.time(), "Europe/Berlin")   -- epoch seconds
--   local runs = cron.times("@hourly", from, to, "UTC")               -- every run in [from, to)
--
-- Five fields: minute (0-59), hour (0-23), day-of-month (1-31), month
-- (1-12 or JAN-DEC), day-of-week (0-7 or SUN-SAT; 0 and 7 are Sunday).
-- Each is `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (a to
-- the end), or a comma-separated list of those. Names are case-insensitive.
-- Macros: @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly.
--
-- Vixie cron semantics: when both day-of-month and day-of-week are
-- restricted (neither starts with `*`), a day matches if either does.
-- Daylight saving time, also as Vixie cron does it: a job whose minute and
-- hour fields are both fixed (`30 2 * * *`) runs once per matching wall-clock
-- time: a time skipped by a spring-forward gap runs at the first valid
-- minute after it (the end of the gap), and a time that occurs twice at a
-- fall back runs at its first occurrence only. A job whose minute or hour
-- starts with `*` (`*/5 * * * *`, `0 * * * *`) follows real time: it does
-- not run in a gap and runs in both passes of a repeated hour.
local tz = require "kalua.tz"

local M = {}

local MONTHS = { JAN = 1, FEB = 2, MAR = 3, APR = 4, MAY = 5, JUN = 6, JUL = 7, AUG = 8, SEP = 9, OCT = 10,
  NOV = 11, DEC = 12 }
local DAYS = { SUN = 0, MON = 1, TUE = 2, WED = 3, THU = 4, FRI = 5, SAT = 6 }

local FIELDS = {
  { name = "minute", min = 0, max = 59 },
  { name = "hour", min = 0, max = 23 },
  { name = "day-of-month", min = 1, max = 31 },
  { name = "month", min = 1, max = 12, names = MONTHS, name_range = "JAN-DEC" },
  { name = "day-of-week", min = 0, max = 7, names = DAYS, name_range = "SUN-SAT" },
}

local MACROS = {
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *", ["@monthly"] = "0 0 1 * *",
  ["@weekly"] = "0 0 * * 0", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *", ["@hourly"] = "0 * * * *",
}

local function fail(i, fmt, ...)
  error({ message = ("cron: field %d (%s) "):format(i, FIELDS[i].name) .. fmt:format(...) }, 0)
end

local function value(i, text, item)
  local f = FIELDS[i]
  local n = text:match("^%d+$") and tonumber(text)
  if not n and f.names then n = f.names[text:upper()] end
  if not n then
    if f.names then
      fail(i, "'%s' is not a number or a name (%s)", item, f.name_range)
    end
    fail(i, "'%s' is not a number", item)
  end
  if n < f.min or n > f.max then fail(i, "'%s' is out of range %d-%d", item, f.min, f.max) end
  return n
end

-- One field's set of values ({[v] = true}).
local function parse_field(i, text)
  local f, set = FIELDS[i], {}
  if text:find(",,", 1, true) or text:sub(1, 1) == "," or text:sub(-1) == "," then
    fail(i, "'%s' has an empty list item", text)
  end
  for item in text:gmatch("[^,]+") do
    local range, step = item:match("^([^/]+)/(.*)$")
    range = range or item
    local lo, hi
    if range == "*" then
      lo, hi = f.min, f.max
    else
      local a, b = range:match("^([^-]+)-(.+)$")
      if a then
        lo, hi = value(i, a, item), value(i, b, item)
        if lo > hi then fail(i, "'%s' is a range that runs backwards", item) end
      else
        lo = value(i, range, item)
        hi = step and f.max or lo -- "a/n": from a to the end
      end
    end
    local by = 1
    if step then
      by = step:match("^%d+$") and tonumber(step)
      if not by then fail(i, "'%s' has a step that is not a number", item) end
      if by < 1 then fail(i, "'%s' has a step of 0", item) end
    end
    for v = lo, hi, by do set[v] = true end
  end
  return set
end

local Cron = {}
Cron.__index = Cron

-- A day-of-month the months allow (29 for February): "0 0 30 2 *" never runs.
local function check_possible(c)
  if c.dom_star or not c.dow_star then return end
  local max_day = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  for m = 1, 12 do
    if c.month[m] then
      for d = 1, max_day[m] do
        if c.dom[d] then return end
      end
    end
  end
  error({ message = ("cron: '%s' never runs: no month it names has the days it names"):format(c.expr) }, 0)
end

--- Parses an expression. Returns a cron object (its `expr`, and
-- c:next(after, zone)), or nil, message naming the field and the item:
-- "cron: field 2 (hour) '25' is out of range 0-23".
function M.parse(expr)
  if type(expr) ~= "string" then return nil, "cron: expression must be a string" end
  local text = expr:match("^%s*(.-)%s*$")
  if text:sub(1, 1) == "@" then
    local macro = MACROS[text:lower()]
    if not macro then
      return nil, ("cron: unknown macro '%s' (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)")
        :format(text)
    end
    text = macro
  end
  local words = {}
  for w in text:gmatch("%S+") do words[#words + 1] = w end
  if #words ~= 5 then
    return nil, ("cron: '%s' has %d fields; expected 5 (minute hour day-of-month month day-of-week)"):format(
      expr, #words)
  end
  local ok, c = pcall(function()
    local c = setmetatable({ expr = expr }, Cron)
    c.minute, c.hour = parse_field(1, words[1]), parse_field(2, words[2])
    c.dom, c.month, c.dow = parse_field(3, words[3]), parse_field(4, words[4]), parse_field(5, words[5])
    if c.dow[7] then c.dow[0] = true end
    c.dom_star, c.dow_star = words[3]:sub(1, 1) == "*", words[5]:sub(1, 1) == "*"
    c.fixed = words[1]:sub(1, 1) ~= "*" and words[2]:sub(1, 1) ~= "*"
    check_possible(c)
    return c
  end)
  if not ok then
    if type(c) == "table" then return nil, c.message end
    error(c, 0)
  end
  return c
end

local function day_matches(c, f)
  local dom, dow = c.dom[f.day], c.dow[f.wday]
  if c.dom_star or c.dow_star then return dom and dow end
  return dom or dow
end

--- True when wall-clock fields (as kalua.tz's fields gives them) match.
function Cron:matches(f)
  return self.minute[f.min] and self.hour[f.hour] and self.month[f.month] and day_matches(self, f) or false
end

local DAY = 86400

-- The first matching wall-clock time (seconds, as tz.fields counts them) at
-- or after `from`, and before `limit` when given; nil when there is none.
local function next_wall(c, from, limit)
  local w = (from + 59) // 60 * 60
  local last_year = tz.fields(w).year + 30
  while not limit or w < limit do
    local f = tz.fields(w)
    if f.year > last_year then return nil end
    if not c.month[f.month] then
      local y, m = f.year, f.month + 1
      if m > 12 then y, m = y + 1, 1 end
      w = tz.days_from_civil(y, m, 1) * DAY
    elseif not day_matches(c, f) then
      w = (w // DAY + 1) * DAY
    elseif not c.hour[f.hour] then
      w = (w // 3600 + 1) * 3600
    elseif not c.minute[f.min] then
      w = w + 60
    else
      return w
    end
  end
  return nil
end

--- The first run strictly after `after` (epoch seconds) in zone (a name
-- for kalua.tz.load: "Europe/Berlin", "UTC", nil for local; or a zone).
-- Returns epoch seconds, or nil, message.
function Cron:next(after, zone)
  local z, err = tz.load(zone)
  if not z then return nil, err end
  local t = (math.floor(after) // 60 + 1) * 60
  local p = z:period(t)
  local wall = t + p.offset
  if self.fixed and p.start and p.prev_offset then
    if p.prev_offset > p.offset and wall < p.start + p.prev_offset then
      wall = p.start + p.prev_offset -- the repeated hour: these times already ran
    elseif p.prev_offset < p.offset and p.start > after
      and next_wall(self, p.start + p.prev_offset, p.start + p.offset) then
      return p.start -- a time in the gap that just began runs at its end
    end
  end
  for _ = 1, 1000 do
    local w = next_wall(self, wall, p.finish and p.finish + p.offset)
    if w then return w - p.offset end
    if not p.finish then break end
    local switch, np = p.finish, z:period(p.finish)
    if self.fixed and np.offset > p.offset and next_wall(self, switch + p.offset, switch + np.offset) then
      return switch
    end
    wall = switch + np.offset
    if self.fixed and np.offset < p.offset then wall = switch + p.offset end
    p = np
  end
  return nil, ("cron: '%s' has no run after %s"):format(self.expr, os.date("!%Y-%m-%dT%H:%M:%SZ", after))
end

local function compiled(expr)
  if getmetatable(expr) == Cron then return expr end
  return M.parse(expr)
end

--- cron.next(expr, after, zone): Cron:next for an expression string.
function M.next(expr, after, zone)
  local c, err = compiled(expr)
  if not c then return nil, err end
  return c:next(after, zone)
end

--- Every run time in [from, to), in order.
function M.times(expr, from, to, zone)
  local c, err = compiled(expr)
  if not c then return nil, err end
  local out, t = {}, from - 1
  while true do
    t, err = c:next(t, zone)
    if not t then
      if err and #out == 0 then return nil, err end
      break
    end
    if t >= to then break end
    out[#out + 1] = t
  end
  return out
end

return M
