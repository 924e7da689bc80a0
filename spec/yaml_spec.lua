local yaml = require "kalua.yaml"

describe("kalua.yaml", function()
  it("resolves plain scalars by the YAML 1.2 core schema", function()
    local v = assert(yaml.load("a: 1\nb: -2.5\nc: true\nd: FALSE\ne: ~\nf: 0x1F\ng: 0o17\nh: 1e3\ni: .inf\nj: text\nk: '42'\nl: \"true\"\n"))
    assert.are.same({ a = 1, b = -2.5, c = true, d = false, f = 31, g = 15, h = 1000.0, i = math.huge,
      j = "text", k = "42", l = "true" }, v)
    assert.are.equal("integer", math.type(v.a))
  end)

  it("keeps block scalars, sequences and nested mappings", function()
    local v = assert(yaml.load("list: [1, two]\nnested:\n  deeper: {x: y}\ntext: |\n  one\n  two\n"))
    assert.are.same({ list = { 1, "two" }, nested = { deeper = { x = "y" } }, text = "one\ntwo\n" }, v)
  end)

  it("follows anchors and aliases", function()
    local v = assert(yaml.load("base: &b {host: h, port: 1}\ncopy: *b\n"))
    assert.are.same(v.base, v.copy)
  end)

  it("returns the position of every key", function()
    local v, positions = yaml.load("top:\n  inner: 1\n  other: [a, b]\n", "p.yaml")
    assert.are.same({ line = 1, column = 1 }, positions[v].top)
    assert.are.same({ line = 3, column = 3 }, positions[v.top].other)
    assert.are.same({ line = 3, column = 14 }, positions[v.top.other][2])
  end)

  it("substitutes ${VAR} and ${VAR:-default}", function()
    local env = { USER_NAME = "alice", EMPTY = "" }
    local v = assert(yaml.load("u: ${USER_NAME}\nd: ${MISSING:-fallback}\ne: ${EMPTY:-used}\nmix: x-${USER_NAME}-y\nlit: $${NOT_A_VAR}\n",
      "env.yaml", { env = env }))
    assert.are.same({ u = "alice", d = "fallback", e = "used", mix = "x-alice-y", lit = "${NOT_A_VAR}" }, v)
  end)

  it("keeps a substituted value a string even when it looks like a number", function()
    local v = assert(yaml.load("password: ${PW}\nport: 9092\n", "s.yaml", { env = { PW = "0123456" } }))
    assert.are.equal("0123456", v.password)
    assert.are.equal(9092, v.port)
  end)

  it("reads the process environment by default", function()
    local v = assert(yaml.load("home: ${HOME}\n"))
    assert.are.equal(os.getenv("HOME"), v.home)
  end)

  it("names a missing environment variable with its position", function()
    local v, err = yaml.load("a: 1\nb: ${KALUA_SPEC_SURELY_UNSET}\n", "cfg.yaml", { env = {} })
    assert.is_nil(v)
    assert.are.equal("cfg.yaml:2:4: environment variable KALUA_SPEC_SURELY_UNSET is not set", err)
  end)

  it("reports syntax errors as file:line:column", function()
    local v, err = yaml.load("a: 1\n  b: 2\n", "backup.yaml")
    assert.is_nil(v)
    assert.are.equal("backup.yaml:2:4: mapping values are not allowed in this context", err)
  end)

  it("reports an unclosed flow sequence in a file", function()
    local v, err = yaml.load_file("spec/fixtures/config/broken.yaml")
    assert.is_nil(v)
    assert.truthy(err:match("^spec/fixtures/config/broken%.yaml:%d+:%d+: "), err)
  end)

  it("rejects duplicate keys", function()
    assert.are.same({ nil, "d.yaml:3:1: duplicate key 'a'" }, { yaml.load("a: 1\nb: 2\na: 3\n", "d.yaml") })
  end)

  -- Found by fuzz/yaml_fuzz: a NaN key used to raise inside the parser.
  it("rejects a NaN mapping key with its position", function()
    assert.are.same({ nil, "n.yaml:2:1: a mapping key cannot be NaN" }, { yaml.load("a: 1\n.nan: 2\n", "n.yaml") })
  end)

  it("rejects more than one document", function()
    local v, err = yaml.load("a: 1\n---\nb: 2\n", "m.yaml")
    assert.is_nil(v)
    assert.truthy(err:find("more than one YAML document", 1, true))
  end)

  it("refuses alias bombs and deep nesting", function()
    local bomb = { "a: &a [x, x, x, x, x, x, x, x, x]" }
    for i = 1, 40 do
      bomb[#bomb + 1] = ("a%d: &a%d [%s]"):format(i, i, string.rep("*a" .. (i > 1 and tostring(i - 1) or "") .. ", ", 9):sub(1, -3))
    end
    local v, err = yaml.load(table.concat(bomb, "\n") .. "\n", "bomb.yaml")
    assert.is_nil(v)
    assert.truthy(err:find("more than 256 aliases", 1, true), err)
    v, err = yaml.load(string.rep("[", 200) .. string.rep("]", 200), "deep.yaml")
    assert.is_nil(v)
    assert.truthy(err:find("nesting deeper than 64", 1, true), err)
  end)

  it("says why a file cannot be read", function()
    assert.are.same({ nil, "/nonexistent/x.yaml: cannot read: No such file or directory" },
      { yaml.load_file("/nonexistent/x.yaml") })
  end)

  it("treats an empty document as nil", function()
    assert.is_nil((yaml.load("")))
    assert.is_nil((yaml.load("# only a comment\n")))
  end)
end)
