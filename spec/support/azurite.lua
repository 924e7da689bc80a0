--- The rig's Azurite, for specs: its settings and the REST calls kalua has
-- no business making (creating containers, reading block lists), through
-- curl with the rig's SAS.
local proc = require "proc"
local rig = require "rig"

local M = { VERSION = "2021-08-06" }

--- The rig's Azurite; rig.env fails the spec with a clear message when unset.
function M.settings()
  return {
    endpoint = rig.env("KALUA_RIG_AZURE_ENDPOINT"),
    account = rig.env("KALUA_RIG_AZURE_ACCOUNT"),
    key = rig.env("KALUA_RIG_AZURE_KEY"),
    sas = rig.env("KALUA_RIG_AZURE_SAS"),
    sas_expired = rig.env("KALUA_RIG_AZURE_SAS_EXPIRED"),
  }
end

--- A REST call: returns the HTTP status and the body.
function M.rest(az, method, path, query)
  local out = os.tmpname()
  local url = ("%s/%s?%s%s"):format(az.endpoint, path, query and (query .. "&") or "", az.sas)
  local p = io.popen(("curl -s -o %s -w '%%{http_code}' -X %s -H 'x-ms-version: %s' %s"):format(
    proc.quote(out), method, M.VERSION, proc.quote(url)))
  local code = tonumber(p:read("a"))
  p:close()
  local body = proc.read_file(out)
  os.remove(out)
  return code, body
end

--- A new, empty container; returns its name.
function M.new_container(az)
  local name = ("spec-%d-%d"):format(os.time(), math.random(1e8))
  local code, body = M.rest(az, "PUT", name, "restype=container")
  assert(code == 201, ("creating container %s: HTTP %s %s"):format(name, tostring(code), body))
  return name
end

return M
