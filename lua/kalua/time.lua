--- Times as kalua's configs and flags write them.
local M = {}

-- Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
-- days_from_civil), so UTC times need no time zone from the machine.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end
M.days_from_civil = days_from_civil

--- Epoch milliseconds from a number (ms) or "YYYY-MM-DDTHH:MM:SS[.mmm]Z".
function M.parse(v)
  if v == nil then return nil end
  if math.type(v) == "integer" then return v end
  local y, mo, d, h, mi, s, ms = tostring(v):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)%.?(%d*)Z$")
  if not y then
    local n = math.tointeger(tonumber(v))
    if n then return n end
    return nil, ("bad time '%s': use epoch milliseconds or YYYY-MM-DDTHH:MM:SSZ"):format(tostring(v))
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local frac = ms ~= "" and tonumber((ms .. "00"):sub(1, 3)) or 0
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + frac
end

--- "YYYY-MM-DDTHH:MM:SSZ" for epoch seconds.
function M.format(seconds)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", seconds)
end

return M
