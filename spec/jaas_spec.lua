-- kalua.sasl.jaas: Java JAAS login configurations, as Kafka clients write
-- them, read into entries with their SASL mechanism; errors say where.
local sasl = require "kalua.sasl"
local proc = require "proc"

local KRB5 = "com.sun.security.auth.module.Krb5LoginModule"
local PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
local SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
local OAUTH = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"

-- Confluent's principal propagation example: one KafkaClient section,
-- several principals.
local KAFKA_CLIENT = [[
KafkaClient {
  com.sun.security.auth.module.Krb5LoginModule required
  useKeyTab=true
  storeKey=true
  keyTab="/etc/security/keytabs/kafka_client.keytab"
  principal="kafka-client-1@EXAMPLE.COM";

  com.sun.security.auth.module.Krb5LoginModule required
  useKeyTab=true
  storeKey=true
  keyTab="/etc/security/keytabs/kafka_client_2.keytab"
  principal="kafka-client-2@EXAMPLE.COM";

  org.apache.kafka.common.security.plain.PlainLoginModule required
  username="alice-plain"
  password="alice-secret";

  org.apache.kafka.common.security.scram.ScramLoginModule required
  username="alice-scram"
  password="alice-secret";

  org.apache.kafka.common.security.scram.ScramLoginModule required
  username="alice-scram-256"
  password="alice-secret"
  mechanism="SCRAM-SHA-256";
};
]]

local function krb5(n, line)
  return {
    section = "KafkaClient", module = KRB5, flag = "required", mechanism = "GSSAPI", line = line,
    principal = ("kafka-client-%d@EXAMPLE.COM"):format(n),
    options = {
      useKeyTab = "true", storeKey = "true", principal = ("kafka-client-%d@EXAMPLE.COM"):format(n),
      keyTab = ("/etc/security/keytabs/kafka_client%s.keytab"):format(n == 1 and "" or "_" .. n),
    },
  }
end

-- The error of sasl.jaas(text), checking its shape.
local function jaas_error(text)
  local entries, err, name = sasl.jaas(text)
  assert.is_nil(entries)
  assert.are.equal("CONFIG", name)
  return err
end

describe("sasl.jaas", function()
  it("reads a KafkaClient section with several principals in file order", function()
    assert.are.same({
      krb5(1, 2),
      krb5(2, 8),
      { section = "KafkaClient", module = PLAIN, flag = "required", mechanism = "PLAIN", line = 14,
        principal = "alice-plain", options = { username = "alice-plain", password = "alice-secret" } },
      { section = "KafkaClient", module = SCRAM, flag = "required", mechanism = "SCRAM-SHA-512", line = 18,
        principal = "alice-scram", options = { username = "alice-scram", password = "alice-secret" } },
      { section = "KafkaClient", module = SCRAM, flag = "required", mechanism = "SCRAM-SHA-256", line = 22,
        principal = "alice-scram-256",
        options = { username = "alice-scram-256", password = "alice-secret", mechanism = "SCRAM-SHA-256" } },
    }, assert(sasl.jaas(KAFKA_CLIENT)))
  end)

  it("maps each login module to its SASL mechanism", function()
    local function mech(entry)
      local e = assert(sasl.jaas(entry))
      assert.are.equal(1, #e)
      return e[1].mechanism, e[1].principal
    end
    assert.are.same({ "GSSAPI", "kafka/client@R" },
      { mech(KRB5 .. ' required useKeyTab=true keyTab="/k.keytab" principal="kafka/client@R" serviceName=kafka;') })
    assert.are.same({ "PLAIN", "u" }, { mech(PLAIN .. ' required username="u" password="p";') })
    assert.are.same({ "SCRAM-SHA-512", "u" }, { mech(SCRAM .. ' required username="u" password="p";') })
    assert.are.same({ "SCRAM-SHA-512", "u" },
      { mech(SCRAM .. ' required username="u" password="p" mechanism="SCRAM-SHA-512";') })
    assert.are.same({ "SCRAM-SHA-256", "u" },
      { mech(SCRAM .. ' required username="u" password="p" mechanism=SCRAM-SHA-256;') })
    assert.are.same({ "OAUTHBEARER" }, { mech(OAUTH .. ' required unsecuredLoginStringClaim_sub="alice";') })
    -- a module kalua does not know: kept, without a mechanism
    local e = assert(sasl.jaas("com.example.CustomLoginModule optional user=x;"))[1]
    assert.are.same({ module = "com.example.CustomLoginModule", flag = "optional", line = 1, options = { user = "x" } }, e)
  end)

  it("reads flags in any case and keeps the others' names", function()
    local e = assert(sasl.jaas([[
      Client {
        a.B REQUIRED;
        a.B Requisite;
        a.B sufficient;
        a.B optional;
      };
    ]]))
    assert.are.same({ "required", "requisite", "sufficient", "optional" },
      { e[1].flag, e[2].flag, e[3].flag, e[4].flag })
    assert.are.same({}, e[1].options)
  end)

  it("skips //, /* */ and # comments", function()
    local e = assert(sasl.jaas([[
// the client's logins
# (a shell-style comment too)
KafkaClient { /* the only one */
  org.apache.kafka.common.security.plain.PlainLoginModule required // inline
  username="alice" /* a comment
  over two lines */ password=secret#1   # the '#' is part of a bare value
  ;
};
]]))
    assert.are.same({ username = "alice", password = "secret#1" }, e[1].options)
    assert.are.equal(4, e[1].line)
  end)

  it("unescapes \\\" and \\\\ in quoted values and keeps other backslashes", function()
    local e = assert(sasl.jaas(PLAIN .. [[ required username="al\"ice" password="a\\b;c d" path="C:\keytabs\x" empty="";]]))
    assert.are.same({ username = 'al"ice', password = "a\\b;c d", path = "C:\\keytabs\\x", empty = "" }, e[1].options)
  end)

  it("reads the one entry of sasl.jaas.config, without a section", function()
    local e = assert(sasl.jaas(SCRAM .. ' required username="svc" password="pw" mechanism="SCRAM-SHA-256";'))
    assert.are.same({ { module = SCRAM, flag = "required", mechanism = "SCRAM-SHA-256", principal = "svc", line = 1,
      options = { username = "svc", password = "pw", mechanism = "SCRAM-SHA-256" } } }, e)
    assert.is_nil(e[1].section)
  end)

  it("keeps several sections apart", function()
    local e = assert(sasl.jaas([[
KafkaClient {
  org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="a";
};

Client {
  org.apache.zookeeper.server.auth.DigestLoginModule required username="bob" password="b";
};
KafkaClient { org.apache.kafka.common.security.scram.ScramLoginModule required username="carol" password="c"; };
]]))
    assert.are.same({ "KafkaClient", "Client", "KafkaClient" }, { e[1].section, e[2].section, e[3].section })
    assert.are.same({ "PLAIN", nil, "SCRAM-SHA-512" }, { e[1].mechanism, e[2].mechanism, e[3].mechanism })
    assert.are.same({ "alice", nil, "carol" }, { e[1].principal, e[2].principal, e[3].principal })
    assert.are.equal("bob", e[2].options.username)
    assert.are.same({}, assert(sasl.jaas("Empty { };")))
  end)

  describe("says where and what it expected when", function()
    it("a ';' is missing", function()
      assert.are.equal("jaas: line 5 column 1: expected ';' after the options of " .. PLAIN .. ", found '}'",
        jaas_error("KafkaClient {\n  " .. PLAIN .. ' required\n  username="a"\n  password="b"\n};\n'))
      -- before the next entry: the next class is where it shows
      assert.are.equal("jaas: line 3 column 3: expected ';' after the options of " .. PLAIN .. ", found '" .. SCRAM .. "'",
        jaas_error("KafkaClient {\n  " .. PLAIN .. ' required username="a"\n  ' .. SCRAM .. " required;\n};"))
      assert.are.equal("jaas: line 3 column 2: expected ';' after the '}' closing section KafkaClient, found "
        .. "the end of the input", jaas_error("KafkaClient {\n  " .. PLAIN .. " required;\n}"))
      assert.are.equal("jaas: line 1 column 78: expected ';' after the options of " .. PLAIN
        .. ", found the end of the input", jaas_error(PLAIN .. ' required username="u"'))
    end)

    it("the flag is missing", function()
      assert.are.equal("jaas: line 2 column 48: expected a flag (required, requisite, sufficient or optional) after "
        .. KRB5 .. ", found 'useKeyTab'", jaas_error("KafkaClient {\n  " .. KRB5 .. " useKeyTab=true;\n};"))
      assert.are.equal("jaas: line 1 column 56: expected a flag (required, requisite, sufficient or optional) after "
        .. PLAIN .. ", found ';'", jaas_error(PLAIN .. ";"))
    end)

    it("a quote is not closed", function()
      assert.are.equal("jaas: line 3 column 12: unterminated quoted value of option username of " .. PLAIN
        .. [[: no closing '"' on its line]],
        jaas_error("KafkaClient {\n  " .. PLAIN .. ' required\n  username="alice\n  password="b";\n};'))
      assert.truthy(jaas_error(PLAIN .. ' required password="ends with an escape\\"'):find("column 75: unterminated", 1, true))
    end)

    it("a section is not closed", function()
      assert.are.equal("jaas: line 4 column 1: expected '}' to close section KafkaClient (opened at line 2 column 1), "
        .. "found the end of the input",
        jaas_error("\nKafkaClient {\n  " .. PLAIN .. ' required username="a";\n'))
      assert.are.equal("jaas: line 2 column 3: expected '{' after the section name KafkaClient, found '" .. PLAIN .. "'",
        jaas_error("KafkaClient\n  " .. PLAIN .. " required;\n};"))
    end)

    it("there is nothing to read", function()
      local none = "no login entries: expected a section (KafkaClient { ... };) or an entry "
        .. "(<LoginModule class> <flag> key=value ...;), found the end of the input"
      assert.are.equal("jaas: line 1 column 1: " .. none, jaas_error(""))
      assert.are.equal("jaas: line 3 column 1: " .. none, jaas_error("  // only comments\n/* here */\n"))
    end)

    it("something else is wrong", function()
      assert.are.equal("jaas: line 1 column 16: expected a value after a= in the options of x.Y, found ';'",
        jaas_error("x.Y required a=;"))
      assert.are.equal("jaas: line 1 column 16: expected '=' after option a of x.Y, found 'b'",
        jaas_error("x.Y required a b=c;"))
      assert.are.equal("jaas: line 2 column 1: unterminated comment: no '*/' after this '/*'",
        jaas_error("x.Y required;\n/* never closed"))
      assert.are.equal("jaas: line 1 column 17: a NUL byte: this is not a text file", jaas_error("x.Y required a=b\0;"))
      assert.are.equal("jaas: line 1 column 18: expected a LoginModule class or the '}' closing section S, found '{'",
        jaas_error("S { x.Y required;{"))
    end)

    it("the configuration is too big", function()
      local many = ("x.Y required;\n"):rep(256)
      assert.are.equal(256, #assert(sasl.jaas(many)))
      assert.are.equal("jaas: line 257 column 1: more than 256 login entries (kalua's limit)", jaas_error(many .. "x.Y required;"))
      assert.are.equal("jaas: the configuration is larger than 1048576 bytes (1 MiB), kalua's limit",
        jaas_error(("#"):rep(1024 * 1024 + 1)))
    end)
  end)
end)

describe("sasl.jaas_file", function()
  local dir
  setup(function() dir = proc.tmpdir() end)
  teardown(function() proc.rmdir(dir) end)

  it("reads a JAAS file", function()
    proc.write_file(dir .. "/client.jaas", KAFKA_CLIENT)
    local e = assert(sasl.jaas_file(dir .. "/client.jaas"))
    assert.are.same(assert(sasl.jaas(KAFKA_CLIENT)), e)
  end)

  it("names the file in its errors", function()
    assert.are.same({ nil, "jaas: cannot read " .. dir .. "/missing.jaas: No such file or directory", "CONFIG" },
      { sasl.jaas_file(dir .. "/missing.jaas") })
    assert.are.same({ nil, "jaas: cannot read " .. dir .. ": Is a directory", "CONFIG" }, { sasl.jaas_file(dir) })
    proc.write_file(dir .. "/broken.jaas", "KafkaClient {\n  x.Y required a=b\n};\n")
    assert.are.same({ nil, "jaas: " .. dir .. "/broken.jaas: line 3 column 1: expected ';' after the options of x.Y, "
      .. "found '}'", "CONFIG" }, { sasl.jaas_file(dir .. "/broken.jaas") })
    proc.write_file(dir .. "/big.jaas", ("#"):rep(1024 * 1024 + 10))
    assert.are.same({ nil, "jaas: " .. dir .. "/big.jaas: the configuration is larger than 1048576 bytes (1 MiB), "
      .. "kalua's limit", "CONFIG" }, { sasl.jaas_file(dir .. "/big.jaas") })
  end)
end)
