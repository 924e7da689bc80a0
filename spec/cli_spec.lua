local cli = require "kalua.cli"

describe("kalua.cli", function()
  local flags = cli.flags(cli.connection_flags, {
    { name = "verbose", short = "v", key = "verbose" },
  })

  it("parses long, inline, short and positional arguments", function()
    local opts = assert(cli.parse({ "list", "-b", "h:1", "--sasl-mechanism=PLAIN", "-v", "x" }, flags))
    assert.are.same({ "list", "x" }, { opts[1], opts[2] })
    assert.are.equal("h:1", opts.bootstrap_servers)
    assert.are.equal("PLAIN", opts.sasl_mechanism)
    assert.is_true(opts.verbose)
  end)

  it("collects repeated -X properties", function()
    local opts = assert(cli.parse({ "-X", "a.b=1", "-X", "c=d=e" }, flags))
    assert.are.same({ "a.b=1", "c=d=e" }, opts.properties)
  end)

  it("rejects unknown options and missing values", function()
    local opts, err = cli.parse({ "--sasl-pasword", "x" }, flags)
    assert.is_nil(opts)
    assert.are.equal("unknown option '--sasl-pasword'", err)
    opts, err = cli.parse({ "--bootstrap-servers" }, flags)
    assert.is_nil(opts)
    assert.are.equal("option '--bootstrap-servers' needs a value", err)
  end)

  it("treats everything after -- as positional", function()
    local opts = assert(cli.parse({ "--", "-b", "x" }, flags))
    assert.are.same({ "-b", "x" }, { opts[1], opts[2] })
  end)

  it("builds the OSO source shape from flags", function()
    local opts = assert(cli.parse({ "-b", "h:1", "--security-protocol", "SASL_SSL",
      "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "u", "--sasl-password-env", "HOME",
      "-X", "socket.timeout.ms=5000" }, flags))
    local client = assert(cli.client(opts))
    assert.are.same({
      bootstrap_servers = "h:1",
      security = { security_protocol = "SASL_SSL", sasl_mechanism = "SCRAM-SHA-512",
        sasl_username = "u", sasl_password = os.getenv("HOME") },
      properties = { ["socket.timeout.ms"] = "5000" },
    }, client)
  end)

  it("reads the password from a file, never from argv", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("s3cret\nignored\n")
    f:close()
    local client = assert(cli.client(assert(cli.parse({ "-b", "h:1", "--sasl-password-file", path }, flags))))
    os.remove(path)
    assert.are.equal("s3cret", client.security.sasl_password)
    assert.is_nil(cli.parse({ "--sasl-password", "x" }, flags))
  end)

  it("says which variable is unset", function()
    local client, err = cli.client(assert(cli.parse({ "-b", "h:1", "--sasl-password-env", "KALUA_SPEC_UNSET_VAR" }, flags)))
    assert.is_nil(client)
    assert.are.equal("SASL password: environment variable KALUA_SPEC_UNSET_VAR is not set", err)
  end)

  it("lets flags override a config file's source", function()
    local base = { bootstrap_servers = "from-file:1", security = { security_protocol = "SSL", ssl_ca_location = "/ca" } }
    local client = assert(cli.client(assert(cli.parse({ "--security-protocol", "PLAINTEXT" }, flags)), base))
    assert.are.equal("from-file:1", client.bootstrap_servers)
    assert.are.same({ security_protocol = "PLAINTEXT", ssl_ca_location = "/ca" }, client.security)
  end)

  it("needs brokers from somewhere", function()
    local client, err = cli.client({})
    assert.is_nil(client)
    assert.truthy(err:find("--bootstrap-servers", 1, true))
  end)
end)
