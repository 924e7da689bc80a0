-- kalua.cron and kalua.tz: cron expressions, next-run times, time zones
-- from the system's zoneinfo, and daylight saving time both ways.
local cron = require "kalua.cron"
local tz = require "kalua.tz"
local time = require "kalua.time"
local proc = require "proc"

local function utc(s) return time.parse(s) // 1000 end

-- Run times as "YYYY-MM-DD HH:MM ABBR" in the zone.
local function runs(expr, from, to, zone)
  local z = assert(tz.load(zone))
  local out = {}
  for i, t in ipairs(assert(cron.times(expr, utc(from), utc(to), zone))) do
    local f = z:localtime(t)
    out[i] = ("%04d-%02d-%02d %02d:%02d %s"):format(f.year, f.month, f.day, f.hour, f.min, f.abbr)
  end
  return out
end

local function next_utc(expr, after, zone)
  return time.format(assert(cron.next(expr, utc(after), zone)))
end

describe("kalua.cron", function()
  describe("parses", function()
    it("lists, ranges, steps and '*'", function()
      local c = assert(cron.parse("0,15,30-32 */6 1-10/3 * *"))
      local minutes, hours, days = {}, {}, {}
      for m = 0, 59 do if c.minute[m] then minutes[#minutes + 1] = m end end
      for h = 0, 23 do if c.hour[h] then hours[#hours + 1] = h end end
      for d = 1, 31 do if c.dom[d] then days[#days + 1] = d end end
      assert.are.same({ 0, 15, 30, 31, 32 }, minutes)
      assert.are.same({ 0, 6, 12, 18 }, hours)
      assert.are.same({ 1, 4, 7, 10 }, days)
      assert.is_true(c.dom_star == false and c.dow_star == true)
    end)

    it("month and day names in any case, 7 as Sunday, and 'a/n' as a to the end", function()
      local c = assert(cron.parse("5/20 0 * jan,Mar-may sun,7,MON-wed"))
      assert.are.same({ true, true, true }, { c.minute[5], c.minute[25], c.minute[45] })
      assert.is_nil(c.minute[0])
      assert.are.same({ true, true, true, true }, { c.month[1], c.month[3], c.month[4], c.month[5] })
      assert.is_nil(c.month[2])
      assert.are.same({ true, true, true, true }, { c.dow[0], c.dow[1], c.dow[2], c.dow[3] })
      assert.is_nil(c.dow[4])
    end)

    it("the @ macros", function()
      local from, to = "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"
      assert.are.equal(8760, #assert(cron.times("@hourly", utc(from), utc(to), "UTC")))
      assert.are.equal(365, #assert(cron.times("@daily", utc(from), utc(to), "UTC")))
      assert.are.equal(365, #assert(cron.times("@midnight", utc(from), utc(to), "UTC")))
      assert.are.same({ "2026-01-04 00:00 UTC", "2026-01-11 00:00 UTC" },
        runs("@weekly", from, "2026-01-12T00:00:00Z", "UTC"))
      assert.are.equal(12, #assert(cron.times("@monthly", utc(from), utc(to), "UTC")))
      assert.are.same({ "2026-01-01 00:00 UTC" }, runs("@yearly", from, to, "UTC"))
      assert.are.same({ "2026-01-01 00:00 UTC" }, runs("@annually", from, to, "UTC"))
    end)
  end)

  describe("rejects, naming the field and the item", function()
    local cases = {
      { "0 25 * * *", "cron: field 2 (hour) '25' is out of range 0-23" },
      { "60 * * * *", "cron: field 1 (minute) '60' is out of range 0-59" },
      { "* * 0 * *", "cron: field 3 (day-of-month) '0' is out of range 1-31" },
      { "* * * 13 *", "cron: field 4 (month) '13' is out of range 1-12" },
      { "* * * * 8", "cron: field 5 (day-of-week) '8' is out of range 0-7" },
      { "* * * * MOX", "cron: field 5 (day-of-week) 'MOX' is not a number or a name (SUN-SAT)" },
      { "* * * JANUARY *", "cron: field 4 (month) 'JANUARY' is not a number or a name (JAN-DEC)" },
      { "x * * * *", "cron: field 1 (minute) 'x' is not a number" },
      { "*/0 * * * *", "cron: field 1 (minute) '*/0' has a step of 0" },
      { "*/x * * * *", "cron: field 1 (minute) '*/x' has a step that is not a number" },
      { "0 9-5 * * *", "cron: field 2 (hour) '9-5' is a range that runs backwards" },
      { "0 1,,2 * * *", "cron: field 2 (hour) '1,,2' has an empty list item" },
      { "0 0 1-2-3 * *", "cron: field 3 (day-of-month) '1-2-3' is not a number" },
      { "1 2 3", "cron: '1 2 3' has 3 fields; expected 5 (minute hour day-of-month month day-of-week)" },
      { "* * * * * *", "cron: '* * * * * *' has 6 fields; expected 5 (minute hour day-of-month month day-of-week)" },
      { "@reboot", "cron: unknown macro '@reboot' (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)" },
      { "0 0 30 2 *", "cron: '0 0 30 2 *' never runs: no month it names has the days it names" },
    }
    for _, case in ipairs(cases) do
      it(("'%s'"):format(case[1]), function()
        local c, err = cron.parse(case[1])
        assert.is_nil(c)
        assert.are.equal(case[2], err)
        assert.are.same({ nil, case[2] }, { cron.next(case[1], 0, "UTC") })
      end)
    end
  end)

  describe("next run", function()
    it("is strictly after the given time, on a whole minute", function()
      assert.are.equal("2026-05-01T10:15:00Z", next_utc("*/15 * * * *", "2026-05-01T10:00:00Z", "UTC"))
      assert.are.equal("2026-05-01T10:01:00Z", next_utc("* * * * *", "2026-05-01T10:00:59Z", "UTC"))
      assert.are.equal("2026-05-02T09:30:00Z", next_utc("30 9 * * *", "2026-05-01T09:30:00Z", "UTC"))
      assert.are.equal("2027-01-01T00:00:00Z", next_utc("@yearly", "2026-01-01T00:00:00Z", "UTC"))
    end)

    it("takes either day when day-of-month and day-of-week are both restricted (Vixie)", function()
      -- the 13th, or any Friday
      assert.are.same({ "2026-02-06 12:00 UTC", "2026-02-13 12:00 UTC", "2026-02-20 12:00 UTC",
        "2026-02-27 12:00 UTC", "2026-03-06 12:00 UTC", "2026-03-13 12:00 UTC" },
        runs("0 12 13 * FRI", "2026-02-01T00:00:00Z", "2026-03-14T00:00:00Z", "UTC"))
      -- '*/2' starts with '*': both must match (odd days that are Mondays)
      assert.are.same({ "2026-06-01 00:00 UTC", "2026-06-15 00:00 UTC", "2026-06-29 00:00 UTC" },
        runs("0 0 */2 * MON", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z", "UTC"))
      -- day-of-week alone
      assert.are.same({ "2026-06-06 08:00 UTC", "2026-06-07 08:00 UTC" },
        runs("0 8 * * SAT,SUN", "2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z", "UTC"))
    end)

    it("finds February 29th years ahead", function()
      assert.are.equal("2028-02-29T00:00:00Z", next_utc("0 0 29 2 *", "2024-03-01T00:00:00Z", "UTC"))
      assert.are.equal("2104-02-29T00:00:00Z", next_utc("0 0 29 2 *", "2096-03-01T00:00:00Z", "UTC"))
    end)

    it("counts wall-clock time in the given zone", function()
      assert.are.equal("2026-07-01T07:00:00Z", next_utc("0 9 * * *", "2026-07-01T00:00:00Z", "Europe/Berlin"))
      assert.are.equal("2026-01-01T08:00:00Z", next_utc("0 9 * * *", "2026-01-01T00:00:00Z", "Europe/Berlin"))
      assert.are.equal("2026-07-01T13:00:00Z", next_utc("0 9 * * *", "2026-07-01T00:00:00Z", "America/New_York"))
      assert.are.equal("2026-07-01T03:30:00Z", next_utc("0 9 * * *", "2026-07-01T00:00:00Z", "Asia/Kolkata"))
    end)

    it("uses the machine's zone by default ($TZ)", function()
      local r = proc.run({ proc.kalua(), "-e", [[
        local t = require("kalua.cron").next("0 9 * * *", 1782864000) -- 2026-07-01T00:00:00Z
        print(os.date("!%Y-%m-%dT%H:%M:%SZ", t))]] }, { env = { TZ = "America/New_York" } })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("2026-07-01T13:00:00Z\n", r.stdout)
    end)
  end)

  describe("across daylight saving time", function()
    it("Europe/Berlin spring forward: a time in the gap runs once, at 03:00", function()
      assert.are.same({ "2026-03-28 02:30 CET", "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST" },
        runs("30 2 * * *", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z", "Europe/Berlin"))
      -- several times in the gap still run once
      assert.are.same({ "2026-03-29 03:00 CEST", "2026-03-30 02:00 CEST" },
        runs("0,15,30,45 2 * * *", "2026-03-29T00:00:00Z", "2026-03-30T00:15:00Z", "Europe/Berlin"))
      -- hourly jobs follow real time: nothing at the missing 02:00
      assert.are.same({ "2026-03-29 01:00 CET", "2026-03-29 03:00 CEST", "2026-03-29 04:00 CEST" },
        runs("0 * * * *", "2026-03-29T00:00:00Z", "2026-03-29T02:30:00Z", "Europe/Berlin"))
      -- asked from exactly the start of the gap, and from inside the gap's run
      assert.are.equal("2026-03-29T01:00:00Z", next_utc("30 2 * * *", "2026-03-29T00:59:30Z", "Europe/Berlin"))
      assert.are.equal("2026-03-30T00:30:00Z", next_utc("30 2 * * *", "2026-03-29T01:00:00Z", "Europe/Berlin"))
    end)

    it("Europe/Berlin fall back: a time that occurs twice runs once, the first time", function()
      assert.are.same({ "2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET" },
        runs("30 2 * * *", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z", "Europe/Berlin"))
      -- asked from inside the repeated hour (02:10 CET, after the first 02:30)
      assert.are.equal("2026-10-26T01:30:00Z", next_utc("30 2 * * *", "2026-10-25T01:10:00Z", "Europe/Berlin"))
      -- jobs with '*' in minute or hour run in both passes
      assert.are.same({ "2026-10-25 02:00 CEST", "2026-10-25 02:30 CEST", "2026-10-25 02:00 CET",
        "2026-10-25 02:30 CET", "2026-10-25 03:00 CET" },
        runs("*/30 * * * *", "2026-10-25T00:00:00Z", "2026-10-25T02:01:00Z", "Europe/Berlin"))
    end)

    it("America/New_York spring forward: 02:30 runs at 03:00 EDT", function()
      assert.are.same({ "2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT" },
        runs("30 2 * * *", "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z", "America/New_York"))
      assert.are.same({ "2026-03-08 01:00 EST", "2026-03-08 03:00 EDT" },
        runs("0 * * * *", "2026-03-08T05:30:00Z", "2026-03-08T07:30:00Z", "America/New_York"))
    end)

    it("America/New_York fall back: 01:30 runs once, in EDT", function()
      assert.are.same({ "2026-10-31 01:30 EDT", "2026-11-01 01:30 EDT", "2026-11-02 01:30 EST" },
        runs("30 1 * * *", "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z", "America/New_York"))
      assert.are.same({ "2026-11-01 01:00 EDT", "2026-11-01 01:00 EST", "2026-11-01 02:00 EST" },
        runs("0 * * * *", "2026-11-01T04:30:00Z", "2026-11-01T07:30:00Z", "America/New_York"))
    end)

    it("in years past the zone file's table (its POSIX rule)", function()
      assert.are.same({ "2080-03-31 03:00 CEST", "2080-04-01 02:30 CEST" },
        runs("30 2 * * *", "2080-03-30T12:00:00Z", "2080-04-01T12:00:00Z", "Europe/Berlin"))
      assert.are.same({ "2080-10-27 02:30 CEST", "2080-10-28 02:30 CET" },
        runs("30 2 * * *", "2080-10-26T12:00:00Z", "2080-10-28T12:00:00Z", "Europe/Berlin"))
    end)
  end)
end)

describe("kalua.tz", function()
  -- The C library's answer (date(1) under TZ) for the offset at t.
  local function c_offsets(name, times)
    local words = {}
    for i, t in ipairs(times) do words[i] = "@" .. t end
    local p = io.popen(("for t in %s; do TZ=%s date -d $t +%%::z; done"):format(table.concat(words, " "), name))
    local out = {}
    for line in p:lines() do
      local sign, h, m, s = line:match("([+-])(%d%d):(%d%d):(%d%d)")
      out[#out + 1] = (sign == "-" and -1 or 1) * (tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s))
    end
    p:close()
    return out
  end

  it("agrees with the C library from 1900 to 2100", function()
    for _, name in ipairs { "Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Sao_Paulo",
      "Asia/Kolkata", "Europe/Dublin", "Pacific/Chatham" } do
      local zone = assert(tz.load(name))
      local times = {}
      for t = -2208988800, 4102444800, 9876543 do times[#times + 1] = t end
      local want = c_offsets(name, times)
      for i, t in ipairs(times) do
        assert.are.equal(want[i], (zone:offset(t)), ("%s at %s"):format(name, time.format(t)))
      end
    end
  end)

  it("finds the instants of a wall-clock time: none in a gap, two in an overlap", function()
    local berlin = assert(tz.load("Europe/Berlin"))
    assert.are.same({}, berlin:instants { year = 2026, month = 3, day = 29, hour = 2, min = 30 })
    assert.are.same({ utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:30:00Z") },
      berlin:instants { year = 2026, month = 10, day = 25, hour = 2, min = 30 })
    assert.are.same({ utc("2026-07-01T10:00:00Z") }, berlin:instants { year = 2026, month = 7, day = 1, hour = 12 })
    local f = berlin:localtime(utc("2026-10-25T01:30:00Z"))
    assert.are.same({ 2026, 10, 25, 2, 30, 3600, false, "CET", 0 },
      { f.year, f.month, f.day, f.hour, f.min, f.offset, f.isdst, f.abbr, f.wday })
  end)

  it("reads POSIX TZ strings, UTC, and refuses unknown names", function()
    local z = assert(tz.posix("EST5EDT,M3.2.0,M11.1.0"))
    assert.are.equal(-4 * 3600, (z:offset(utc("2026-07-01T00:00:00Z"))))
    assert.are.equal(-5 * 3600, (z:offset(utc("2026-12-01T00:00:00Z"))))
    assert.are.equal(utc("2026-03-08T07:00:00Z"), z:period(utc("2026-03-01T00:00:00Z")).finish)
    local south = assert(tz.posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0"))
    assert.are.equal(11 * 3600, (south:offset(utc("2026-01-01T00:00:00Z"))))
    assert.are.equal(10 * 3600 + 1800, (south:offset(utc("2026-07-01T00:00:00Z"))))
    assert.are.equal(0, (assert(tz.load("UTC")):offset(0)))
    local nope, err = tz.load("Mars/Olympus_Mons")
    assert.is_nil(nope)
    assert.truthy(err:find("unknown time zone 'Mars/Olympus_Mons'", 1, true), err)
    assert.is_nil((tz.load("../../etc/passwd")))
    assert.is_nil((tz.posix("not a zone")))
  end)
end)
