-- kalua's Lua and C modules as a rock, for a stock Lua 5.4:
--
--   luarocks --lua-version 5.4 make                      # from a checkout of this repository
--   luarocks --lua-version 5.4 make --tree /opt/rocks    # into a tree of your own
--
-- The C modules are built by CMakeLists.txt with KALUA_ROCK=ON: only the
-- loadable modules (kalua/<name>.so into LuaRocks' LIBDIR) and the Lua
-- modules (kalua/*.lua into its LUADIR); not the kalua program or its
-- commands (`make install` has those). CMake finds the libraries through
-- pkg-config (Debian: librdkafka-dev libzstd-dev libyaml-dev
-- libcurl4-openssl-dev libssl-dev libkrb5-dev libedit-dev liblua5.4-dev).
-- kalua has no public source repository yet: the URL below is a placeholder
-- that `luarocks make` does not fetch.
rockspec_format = "3.0"
package = "kalua"
version = "scm-1"
source = {
  url = "git+file:///path/to/kalua",
}
description = {
  summary = "Kafka operations workbench: Kafka clients, SASL (SCRAM, GSSAPI, ...), YAML and backup storage for Lua 5.4",
  detailed = [[
kalua.kafka (librdkafka producers, consumers, admin, transactions and an auth
relay for GSSAPI and Lua SASL mechanisms), kalua.sasl, kalua.crypto,
kalua.yaml, kalua.codec (zstd), kalua.storage (filesystem, S3, Azure Blob,
GCS), kalua.segment and the Lua modules built on them: kalua.config,
kalua.backup, kalua.restore, kalua.offsets, kalua.catalog, ...
]],
  license = "MIT",
  labels = { "kafka", "sasl", "kerberos", "backup" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = { -- checked by library: Debian keeps some headers in multiarch dirs
  RDKAFKA = { library = "rdkafka" },
  ZSTD = { library = "zstd" },
  YAML = { library = "yaml" },
  CURL = { library = "curl" },
  OPENSSL = { library = "ssl" },
  KRB5 = { library = "gssapi_krb5" },
  EDIT = { library = "edit" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    KALUA_ROCK = "ON",
    KALUA_INSTALL_LMOD = "$(LUADIR)",
    KALUA_INSTALL_CMOD = "$(LIBDIR)",
  },
}
