local storage = require "kalua.storage"
local proc = require "proc"
local contract = require "storage_contract"

describe("kalua.storage on the filesystem", function()
  local dir, store

  before_each(function()
    dir = proc.tmpdir()
    store = assert(storage.open(dir .. "/root"))
  end)

  after_each(function()
    store:close()
    proc.rmdir(dir)
  end)

  it("puts and gets binary objects under nested keys", function()
    contract.binary_round_trip(store)
  end)

  it("reads byte ranges", function()
    contract.ranged_reads(store)
  end)

  it("publishes a streamed object only on commit", function()
    local w = assert(store:open_writer("seg/1.kseg"))
    assert(w:write("part one, "))
    assert(w:write("part two"))
    local none, _, name = store:stat("seg/1.kseg")
    assert.is_nil(none)
    assert.are.equal("NOT_FOUND", name)
    assert.are.same({}, store:list("seg/"))
    assert(w:commit())
    assert.are.equal("part one, part two", store:get("seg/1.kseg"))
    assert.has_error(function() w:write("more") end, "writer is committed or closed")
  end)

  it("discards a writer closed without commit and leaves no temporary file", function()
    do
      local w <close> = assert(store:open_writer("seg/2.kseg"))
      assert(w:write("half a segment"))
    end
    local ok = pcall(function()
      local w <close> = assert(store:open_writer("seg/3.kseg"))
      w:write("interrupted")
      error("crash in the middle")
    end)
    assert.is_false(ok)
    assert.are.same({}, store:list())
    local p = io.popen("find " .. proc.quote(dir) .. " -type f | wc -l")
    assert.are.equal("0", p:read("l"))
    p:close()
  end)

  it("replaces an object whole", function()
    assert(store:put("k", ("old"):rep(1000)))
    assert(store:put("k", "new"))
    assert.are.equal("new", store:get("k"))
  end)

  it("lists keys under a prefix, sorted, with sizes", function()
    for _, k in ipairs { "b/2", "a/1", "b/1", "b/sub/3", "c" } do assert(store:put(k, k)) end
    local keys = {}
    for _, e in ipairs(assert(store:list("b/"))) do keys[#keys + 1] = e.key .. "=" .. e.size end
    assert.are.same({ "b/1=3", "b/2=3", "b/sub/3=7" }, keys)
    assert.are.equal(5, #store:list())
    assert.are.same({}, store:list("nothing/"))
    assert.is_number(store:list("c")[1].mtime)
  end)

  it("stats and deletes", function()
    assert(store:put("x/y", "12345"))
    assert.are.equal(5, store:stat("x/y").size)
    assert(store:delete("x/y"))
    local ok, msg, name = store:delete("x/y")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name)
    assert.truthy(msg:find("x/y", 1, true), msg)
    ok, msg, name = store:get("x/y")
    assert.is_nil(ok)
    assert.are.equal("NOT_FOUND", name)
  end)

  it("refuses keys that could escape the root", function()
    for _, key in ipairs { "../outside", "/etc/passwd", "a//b", "a/./b", "a/..", "", "x.tmp-1" } do
      local ok, msg, name = store:put(key, "x")
      assert.is_nil(ok, key)
      assert.are.equal("INVALID_KEY", name, msg)
    end
  end)

  it("says why a root cannot be made", function()
    proc.write_file(dir .. "/a-file", "")
    local s, msg, name = storage.open(dir .. "/a-file/sub")
    assert.is_nil(s)
    assert.are.equal("IO_ERROR", name)
    assert.truthy(msg:find("a-file", 1, true), msg)
  end)

  it("reports a full disk as NO_SPACE and keeps the old object", function()
    local mnt = dir .. "/small"
    os.execute("mkdir -p " .. proc.quote(mnt))
    assert(os.execute("mount -t tmpfs -o size=64k tmpfs " .. proc.quote(mnt)),
      "mounting a 64 KiB tmpfs needs root (CI and dev machines run as root)")
    local ok, err = pcall(function()
      local small = assert(storage.open(mnt))
      assert(small:put("safe", "already here"))
      local w = assert(small:open_writer("big"))
      local wrote, msg, name
      for _ = 1, 100 do
        wrote, msg, name = w:write(("x"):rep(4096))
        if not wrote then break end
      end
      if wrote then wrote, msg, name = w:commit() else w:abort() end
      assert.is_nil(wrote)
      assert.are.equal("NO_SPACE", name, msg)
      assert.are.equal("already here", small:get("safe"))
      assert.are.same({ "safe" }, (function()
        local keys = {}
        for _, e in ipairs(small:list()) do keys[#keys + 1] = e.key end
        return keys
      end)())
      small:close()
    end)
    os.execute("umount " .. proc.quote(mnt))
    assert(ok, err)
  end)

  it("accepts file:// URLs and config tables, and names schemes and backends it does not know", function()
    assert(storage.open("file://" .. dir .. "/u")):close()
    assert(storage.open { backend = "filesystem", path = dir .. "/t" }):close()
    assert(storage.open { url = "file://" .. dir .. "/v" }):close()
    assert.are.same({ nil, "unknown storage URL 'ftp://host/x' (file://, s3://, az:// or gs://)", "UNSUPPORTED" },
      { storage.open("ftp://host/x") })
    assert.are.same({ nil, "unknown storage backend 'tape' (filesystem, s3, azure or gcs)", "UNSUPPORTED" },
      { storage.open { backend = "tape" } })
  end)
end)
