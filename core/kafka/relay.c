/* The auth relay (see relay.h and shared/DESIGN.md, "SASL with librdkafka").
 *
 * One relay per client; one thread per broker connection:
 *
 *   librdkafka ==socketpair==> relay thread ==TCP (TLS)==> broker
 *                               1. connect (non-blocking, bounded), TLS
 *                               2. SaslHandshake v1: is the mechanism
 *                                  enabled? (auto: which one to use)
 *                               3. SaslAuthenticate v1 rounds, fresh mechanism
 *                               4. forward frames both ways, tracking
 *                                  boundaries and correlation ids; at ~80%
 *                                  of the session lifetime, hold the
 *                                  client's requests, let the in-flight
 *                                  ones answer, and re-authenticate (KIP-368)
 *
 * librdkafka's first request (ApiVersion) waits in the socket pair while
 * steps 1-3 run. Every wait also watches the relay's stop pipe and
 * librdkafka's end of the pair, so closing a client never waits on a
 * broker. A failure closes the pair (librdkafka sees a disconnect and
 * retries with backoff); the reason is kept for kafka_fail, and an
 * authentication failure is stored as the client's auth error.
 *
 * Mechanisms written in Lua run in a Lua state the relay owns (never the
 * client's, which belongs to another thread), one call at a time. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netdb.h>

#include <lauxlib.h>
#include <lualib.h>
#include <openssl/err.h>

#include "kafka/frames.h"
#include "kafka/kafka_internal.h"
#include "kafka/relay.h"
#include "kafka/relay_tls.h"
#include "sasl/mech.h"

#define RELAY_BUF (256 * 1024)
#define RELAY_AUTH_FRAME_MAX (1 << 20) /* SASL responses are small */
#define RELAY_AUTH_ROUNDS 16
#define RELAY_ERR_MAX 512
#define RELAY_CORRELATION_BASE 0x4b000000 /* the relay's own requests; librdkafka counts from 1 */
#define REAUTH_FLOOR_MS 30000
#define REAUTH_JITTER_MS 5000

enum { API_SASL_HANDSHAKE = 17, API_API_VERSIONS = 18, API_SASL_AUTHENTICATE = 36 };
enum { IO_CLOSED = 0, IO_WAIT = -1, IO_FAIL = -2 };

typedef struct {
  unsigned char *buf;
  size_t len, off;
  frame_reader frames;
} relay_dir;

/* The mechanism of one exchange: a C one, or a Lua one (its ctx table,
 * referenced in the relay's Lua state). */
typedef struct {
  const sasl_mech_type *type;
  sasl_mech *m;
  int ref;
} conn_mech;

typedef struct relay_conn {
  struct relay_conn *next;
  kafka_relay *r;
  pthread_t thread;
  int started, done;
  int is_link;   /* a kalua proxy connection: the proxy owns its thread */
  int lib_fd;    /* librdkafka's end of the pair (-1 once it closed it) */
  int app_fd;    /* the relay's end */
  int broker_fd;
  SSL *ssl;      /* when the relay does TLS */
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char broker[280]; /* host:port from librdkafka's broker name */
  char host[256];
  int32_t next_correlation;
  /* Requests forwarded and not answered yet (correlation ids, in order):
   * what re-authentication waits for (KIP-368). */
  int32_t *inflight;
  size_t inflight_head, inflight_len, inflight_cap;
  int64_t session_lifetime_ms;
  int64_t reauth_at; /* monotonic ms; 0: the broker set no lifetime */
  int64_t held_since; /* when requests were first held for re-authentication */
  unsigned jitter_seed;
  long authentications, reauthentications; /* under r->lock */
  int64_t connected_at;                     /* monotonic ms */
  char enabled[256]; /* the broker's mechanisms, from SaslHandshake */
} relay_conn;

struct kafka_relay {
  kafka_client *c;
  pthread_mutex_t lock;
  int stop_pipe[2];
  int stopping;
  relay_conn *conns;
  /* settings (kalua.sasl.*, kalua.ssl.*) */
  const sasl_mech_type *type; /* NULL: auto or a Lua mechanism */
  char mechanism[64];         /* the name sent in SaslHandshake */
  char *username, *password, *authzid, *token, *keytab, *principal, *service, *krb5_config;
  char *lua_path, *token_path, *ssl_ca, *ssl_cert, *ssl_key, *ssl_key_password;
  int tls, verify_host, auto_mode, timeout_ms;
  int no_sasl; /* kalua.sasl.mechanism none: TLS or plain TCP only (kalua proxy) */
  SSL_CTX *ssl_ctx;
  /* auto: the candidates the credentials allow, strongest first, and the
   * choice once a broker said what it enables (under lock) */
  const sasl_mech_type *candidates[6];
  const sasl_mech_type *chosen;
  char reason[256];
  /* a Lua mechanism or an OAUTHBEARER token function: the relay's own
   * state, and registry refs to the definition and the function */
  lua_State *L;
  int lua_def, token_fn;
  pthread_mutex_t lua_lock;
  /* counters, under lock */
  long connections, active, authentications, failures, reauthentications;
  int failing, failing_auth;
  int64_t session_lifetime_ms;
  char last_error[RELAY_ERR_MAX];
  atomic_long requests, responses, unmatched;
};

/* --- settings ------------------------------------------------------------------ */

static const sasl_mech_type *find_mechanism(const char *name) {
  static const sasl_mech_type *const types[] = {
#ifdef KALUA_WITH_GSSAPI
    &sasl_gssapi,
#endif
    &sasl_plain, &sasl_scram_sha256, &sasl_scram_sha512, &sasl_oauthbearer, NULL
  };
  int i;
  for (i = 0; types[i]; i++)
    if (strcmp(types[i]->name, name) == 0) return types[i];
  return NULL;
}

kafka_relay *relay_new(kafka_client *c) {
  kafka_relay *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  if (pipe(r->stop_pipe) != 0) {
    free(r);
    return NULL;
  }
  fcntl(r->stop_pipe[0], F_SETFD, FD_CLOEXEC);
  fcntl(r->stop_pipe[1], F_SETFD, FD_CLOEXEC);
  pthread_mutex_init(&r->lock, NULL);
  pthread_mutex_init(&r->lua_lock, NULL);
  r->c = c;
  r->timeout_ms = 30000;
  r->verify_host = 1;
  r->lua_def = r->token_fn = LUA_NOREF;
  return r;
}

static int set_string(char **slot, const char *value) {
  if (*slot) {
    memset(*slot, 0, strlen(*slot));
    free(*slot);
  }
  *slot = strdup(value);
  return *slot != NULL;
}

static int truthy(const char *v) {
  return strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

int relay_set(kafka_relay *r, const char *name, const char *value, char *err, size_t errlen) {
  static const struct {
    const char *name;
    size_t offset;
  } strings[] = {
    {"kalua.sasl.username", offsetof(kafka_relay, username)},
    {"kalua.sasl.password", offsetof(kafka_relay, password)},
    {"kalua.sasl.authzid", offsetof(kafka_relay, authzid)},
    {"kalua.sasl.token", offsetof(kafka_relay, token)},
    {"kalua.sasl.keytab", offsetof(kafka_relay, keytab)},
    {"kalua.sasl.principal", offsetof(kafka_relay, principal)},
    {"kalua.sasl.service", offsetof(kafka_relay, service)},
    {"kalua.sasl.krb5_config", offsetof(kafka_relay, krb5_config)},
    {"kalua.sasl.lua_mechanism", offsetof(kafka_relay, lua_path)},
    {"kalua.sasl.token_script", offsetof(kafka_relay, token_path)},
    {"kalua.ssl.ca_location", offsetof(kafka_relay, ssl_ca)},
    {"kalua.ssl.certificate_location", offsetof(kafka_relay, ssl_cert)},
    {"kalua.ssl.key_location", offsetof(kafka_relay, ssl_key)},
    {"kalua.ssl.key_password", offsetof(kafka_relay, ssl_key_password)},
  };
  size_t i;
  if (strcmp(name, "kalua.relay") == 0) return 1;
  if (strcmp(name, "kalua.relay.timeout_ms") == 0) {
    r->timeout_ms = atoi(value);
    if (r->timeout_ms <= 0) r->timeout_ms = 30000;
    return 1;
  }
  if (strcmp(name, "kalua.relay.tls") == 0) {
    r->tls = truthy(value);
    return 1;
  }
  if (strcmp(name, "kalua.ssl.endpoint_identification") == 0) {
    r->verify_host = strcmp(value, "none") != 0;
    return 1;
  }
  if (strcmp(name, "kalua.sasl.mechanism") == 0) {
    snprintf(r->mechanism, sizeof r->mechanism, "%s", value);
    return 1;
  }
  for (i = 0; i < sizeof strings / sizeof strings[0]; i++)
    if (strcmp(name, strings[i].name) == 0) {
      if (set_string((char **)((char *)r + strings[i].offset), value)) return 1;
      snprintf(err, errlen, "out of memory");
      return 0;
    }
  snprintf(err, errlen, "unknown kalua property '%s'", name);
  return 0;
}

/* auto (KIP-43): what the credentials allow, strongest first. */
static int auto_candidates(kafka_relay *r, char *err, size_t errlen) {
  int n = 0;
#ifdef KALUA_WITH_GSSAPI
  if (r->keytab) r->candidates[n++] = &sasl_gssapi;
#endif
  if (r->username && r->password) {
    r->candidates[n++] = &sasl_scram_sha512;
    r->candidates[n++] = &sasl_scram_sha256;
  }
  if (r->token || r->token_path) r->candidates[n++] = &sasl_oauthbearer;
  if (r->username && r->password) r->candidates[n++] = &sasl_plain;
  r->candidates[n] = NULL;
  if (n == 0)
    snprintf(err, errlen, "sasl_mechanism auto needs credentials: sasl_keytab_path (GSSAPI), "
                          "sasl_username and sasl_password (SCRAM, PLAIN) or an OAUTHBEARER token");
  return n > 0;
}

/* --- a Lua mechanism in the relay's own state ------------------------------------- */

/* The relay's state finds modules where the client's state does: same
 * paths, same preloaded C modules (the kalua host preloads its own). */
void relay_copy_package(lua_State *from, lua_State *to) {
  static const char *const fields[] = {"path", "cpath"};
  size_t i;
  lua_getglobal(from, "package");
  lua_getglobal(to, "package");
  if (!lua_istable(from, -1) || !lua_istable(to, -1)) {
    lua_pop(from, 1);
    lua_pop(to, 1);
    return;
  }
  for (i = 0; i < 2; i++) {
    if (lua_getfield(from, -1, fields[i]) == LUA_TSTRING) {
      lua_pushstring(to, lua_tostring(from, -1));
      lua_setfield(to, -2, fields[i]);
    }
    lua_pop(from, 1);
  }
  if (lua_getfield(from, -1, "preload") == LUA_TTABLE && lua_getfield(to, -1, "preload") == LUA_TTABLE) {
    lua_pushnil(from);
    while (lua_next(from, -2)) {
      if (lua_type(from, -2) == LUA_TSTRING && lua_iscfunction(from, -1)) {
        lua_pushcfunction(to, lua_tocfunction(from, -1));
        lua_setfield(to, -2, lua_tostring(from, -2));
      }
      lua_pop(from, 1);
    }
  }
  lua_pop(to, 1);
  lua_pop(from, 2);
  lua_pop(to, 1);
}

/* The relay's Lua state, made on first use. */
static lua_State *relay_lua(kafka_relay *r, lua_State *from, char *err, size_t errlen) {
  if (r->L == NULL) {
    if ((r->L = luaL_newstate()) == NULL) {
      snprintf(err, errlen, "the relay's Lua state: out of memory");
      return NULL;
    }
    luaL_openlibs(r->L);
    if (from) relay_copy_package(from, r->L);
  }
  return r->L;
}

/* Runs a Lua file in the relay's state, leaving its one result on top. */
static int run_file(kafka_relay *r, lua_State *from, const char *key, const char *path, char *err, size_t errlen) {
  lua_State *L = relay_lua(r, from, err, errlen);
  if (L == NULL) return 0;
  if (luaL_loadfile(L, path) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "%s: %s", key, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Loads r->lua_path: a chunk returning {name=, start=, step=}. */
static int load_lua_mechanism(kafka_relay *r, lua_State *from, char *err, size_t errlen) {
  lua_State *L;
  if (!run_file(r, from, "sasl_lua_mechanism", r->lua_path, err, errlen)) return 0;
  L = r->L;
  if (!lua_istable(L, -1) || lua_getfield(L, -1, "start") != LUA_TFUNCTION ||
      lua_getfield(L, -2, "step") != LUA_TFUNCTION) {
    snprintf(err, errlen, "sasl_lua_mechanism %s must return a table with start and step functions", r->lua_path);
    return 0;
  }
  lua_pop(L, 2);
  if (lua_getfield(L, -1, "name") == LUA_TSTRING && r->mechanism[0] == '\0')
    snprintf(r->mechanism, sizeof r->mechanism, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  if (r->mechanism[0] == '\0') {
    snprintf(err, errlen, "sasl_lua_mechanism %s: the table has no name; set it or sasl_mechanism", r->lua_path);
    return 0;
  }
  r->lua_def = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* Loads r->token_path: a chunk returning function(ctx) -> token [, extensions]. */
static int load_token_script(kafka_relay *r, lua_State *from, char *err, size_t errlen) {
  if (!run_file(r, from, "sasl_oauthbearer_token_script", r->token_path, err, errlen)) return 0;
  if (!lua_isfunction(r->L, -1)) {
    snprintf(err, errlen, "sasl_oauthbearer_token_script %s must return a function(ctx) -> token [, extensions]",
             r->token_path);
    return 0;
  }
  r->token_fn = luaL_ref(r->L, LUA_REGISTRYINDEX);
  return 1;
}

int relay_check(kafka_relay *r, lua_State *L, char *err, size_t errlen) {
  if (r->token_path && !load_token_script(r, L, err, errlen)) return 0;
  if (r->lua_path) {
    if (!load_lua_mechanism(r, L, err, errlen)) return 0;
  } else if (strcmp(r->mechanism, "none") == 0) {
    r->no_sasl = 1;
  } else if (strcasecmp(r->mechanism, "auto") == 0) {
    r->auto_mode = 1;
    snprintf(r->mechanism, sizeof r->mechanism, "auto");
    if (!auto_candidates(r, err, errlen)) return 0;
  } else if (r->mechanism[0] == '\0') {
    snprintf(err, errlen, "the auth relay needs kalua.sasl.mechanism");
    return 0;
  } else if ((r->type = find_mechanism(r->mechanism)) == NULL) {
    if (strcmp(r->mechanism, "GSSAPI") == 0)
      snprintf(err, errlen, "SASL mechanism 'GSSAPI' is not in this build: rebuild with -DKALUA_WITH_GSSAPI=ON "
                            "(needs the libkrb5-dev package)");
    else
      snprintf(err, errlen, "the auth relay has no SASL mechanism '%s'", r->mechanism);
    return 0;
  }
  if (r->tls) {
    relay_tls_files f = {r->ssl_ca, r->ssl_cert, r->ssl_key, r->ssl_key_password};
    if ((r->ssl_ctx = relay_tls_context(&f, err, errlen)) == NULL) return 0;
  }
  return 1;
}

static void wipe_free(char *s) {
  if (s == NULL) return;
  memset(s, 0, strlen(s));
  free(s);
}

/* --- failures and counters -------------------------------------------------------- */

/* Copies src into dst[n], cut to fit. */
static void copy_cut(char *dst, size_t n, const char *src) {
  size_t len = strlen(src);
  if (len >= n) len = n - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

static void note_failure(relay_conn *cn, int is_auth, const char *msg) {
  kafka_relay *r = cn->r;
  pthread_mutex_lock(&r->lock);
  if (r->stopping) { /* a client closing is not a failure */
    pthread_mutex_unlock(&r->lock);
    return;
  }
  r->failures++;
  r->failing = 1;
  r->failing_auth = is_auth;
  copy_cut(r->last_error, sizeof r->last_error, msg);
  pthread_mutex_unlock(&r->lock);
  if (is_auth && r->c) {
    pthread_mutex_lock(&r->c->lock);
    r->c->auth_err = RD_KAFKA_RESP_ERR__AUTHENTICATION;
    copy_cut(r->c->auth_errstr, sizeof r->c->auth_errstr, msg);
    pthread_mutex_unlock(&r->c->lock);
  }
}

static void note_authenticated(relay_conn *cn, int reauth) {
  kafka_relay *r = cn->r;
  pthread_mutex_lock(&r->lock);
  if (reauth) {
    r->reauthentications++;
    cn->reauthentications++;
  } else {
    r->authentications++;
    cn->authentications++;
  }
  r->failing = 0;
  r->session_lifetime_ms = cn->session_lifetime_ms;
  pthread_mutex_unlock(&r->lock);
}

int relay_last_failure(kafka_relay *r, char *buf, size_t len, int *is_auth) {
  int failing;
  pthread_mutex_lock(&r->lock);
  failing = r->failing;
  if (failing) {
    snprintf(buf, len, "%s", r->last_error);
    *is_auth = r->failing_auth;
  }
  pthread_mutex_unlock(&r->lock);
  return failing;
}

static int64_t now_ms(void);

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

void relay_push_stats(lua_State *L, kafka_relay *r) {
  relay_conn *cn;
  int i = 0;
  pthread_mutex_lock(&r->lock);
  lua_createtable(L, 0, 14);
  set_int(L, "connections", r->connections);
  set_int(L, "active", r->active);
  set_int(L, "authentications", r->authentications);
  set_int(L, "failures", r->failures);
  set_int(L, "reauthentications", r->reauthentications);
  set_int(L, "requests", atomic_load(&r->requests));
  set_int(L, "responses", atomic_load(&r->responses));
  set_int(L, "unmatched_responses", atomic_load(&r->unmatched));
  set_int(L, "session_lifetime_ms", r->session_lifetime_ms);
  lua_pushstring(L, r->chosen ? r->chosen->name : r->mechanism);
  lua_setfield(L, -2, "mechanism");
  lua_pushboolean(L, r->tls);
  lua_setfield(L, -2, "tls");
  if (r->reason[0]) {
    lua_pushstring(L, r->reason);
    lua_setfield(L, -2, "mechanism_reason");
  }
  if (r->last_error[0]) {
    lua_pushstring(L, r->last_error);
    lua_setfield(L, -2, "last_error");
  }
  lua_pushboolean(L, r->failing); /* the last attempt failed and none has worked since */
  lua_setfield(L, -2, "failing");
  lua_newtable(L); /* the live connections, each with its own counters */
  for (cn = r->conns; cn; cn = cn->next) {
    if (!cn->started || cn->done) continue;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, cn->broker);
    lua_setfield(L, -2, "broker");
    set_int(L, "authentications", cn->authentications);
    set_int(L, "reauthentications", cn->reauthentications);
    set_int(L, "session_lifetime_ms", cn->session_lifetime_ms);
    set_int(L, "age_ms", cn->connected_at ? now_ms() - cn->connected_at : 0);
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "per_connection");
  pthread_mutex_unlock(&r->lock);
}

/* --- waiting with a deadline ------------------------------------------------------- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events. 0 with err when the relay stops,
 * librdkafka closed its end, or the deadline passed. */
static int wait_fd(relay_conn *cn, int fd, short events, int64_t deadline, const char *doing, char *err) {
  for (;;) {
    struct pollfd p[3] = {
      {fd, events, 0}, {cn->r->stop_pipe[0], POLLIN, 0}, {cn->app_fd, 0, 0}, /* POLLHUP only */
    };
    int64_t left = deadline - now_ms();
    int n;
    if (left <= 0) {
      snprintf(err, RELAY_ERR_MAX, "timed out %s", doing);
      return 0;
    }
    n = poll(p, 3, (int)(left > 1000 ? 1000 : left));
    if (n < 0 && errno != EINTR) {
      snprintf(err, RELAY_ERR_MAX, "poll failed %s: %s", doing, strerror(errno));
      return 0;
    }
    if (n <= 0) continue;
    if (p[1].revents) {
      snprintf(err, RELAY_ERR_MAX, "the client closed");
      return 0;
    }
    if (p[2].revents & (POLLHUP | POLLERR)) {
      snprintf(err, RELAY_ERR_MAX, "librdkafka gave up the connection %s", doing);
      return 0;
    }
    if (p[0].revents) return 1;
  }
}

/* --- the broker link: TCP, or TLS over it ------------------------------------------ */

/* One non-blocking read or write: bytes moved, IO_CLOSED, IO_WAIT with
 * *want (POLLIN/POLLOUT), or IO_FAIL with err. */
static ssize_t broker_io(relay_conn *cn, int writing, void *buf, size_t n, short *want, char *err) {
  ssize_t k;
  if (cn->ssl == NULL) {
    k = writing ? send(cn->broker_fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(cn->broker_fd, buf, n, MSG_DONTWAIT);
    if (k > 0) return k;
    if (k == 0 && !writing) return IO_CLOSED;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      *want = writing ? POLLOUT : POLLIN;
      return IO_WAIT;
    }
    snprintf(err, RELAY_ERR_MAX, "%s failed: %s", writing ? "send" : "receive", strerror(errno));
    return IO_FAIL;
  }
  ERR_clear_error();
  k = writing ? SSL_write(cn->ssl, buf, (int)(n > INT_MAX ? INT_MAX : n))
              : SSL_read(cn->ssl, buf, (int)(n > INT_MAX ? INT_MAX : n));
  if (k > 0) return k;
  switch (SSL_get_error(cn->ssl, (int)k)) {
  case SSL_ERROR_WANT_READ: *want = POLLIN; return IO_WAIT;
  case SSL_ERROR_WANT_WRITE: *want = POLLOUT; return IO_WAIT;
  case SSL_ERROR_ZERO_RETURN: return IO_CLOSED;
  case SSL_ERROR_SYSCALL:
    if (errno == 0 || errno == ECONNRESET || errno == EPIPE) return IO_CLOSED;
    snprintf(err, RELAY_ERR_MAX, "TLS %s failed: %s", writing ? "send" : "receive", strerror(errno));
    return IO_FAIL;
  default:
    if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) return IO_CLOSED;
    relay_tls_describe(cn->ssl, cn->host, err, RELAY_ERR_MAX);
    return IO_FAIL;
  }
}

static int broker_all(relay_conn *cn, int writing, unsigned char *p, size_t len, int64_t deadline, const char *doing,
                      char *err) {
  while (len > 0) {
    short want = 0;
    ssize_t n = broker_io(cn, writing, p, len, &want, err);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n == IO_WAIT) {
      if (!wait_fd(cn, cn->broker_fd, want, deadline, doing, err)) return 0;
    } else {
      if (n == IO_CLOSED) snprintf(err, RELAY_ERR_MAX, "the broker closed the connection %s", doing);
      return 0;
    }
  }
  return 1;
}

static int is_ip_literal(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int tls_connect(relay_conn *cn, int64_t deadline, char *err) {
  kafka_relay *r = cn->r;
  if ((cn->ssl = SSL_new(r->ssl_ctx)) == NULL || SSL_set_fd(cn->ssl, cn->broker_fd) != 1) {
    snprintf(err, RELAY_ERR_MAX, "cannot start TLS: out of memory");
    return 0;
  }
  if (!is_ip_literal(cn->host)) SSL_set_tlsext_host_name(cn->ssl, cn->host);
  if (r->verify_host && SSL_set1_host(cn->ssl, cn->host) != 1) {
    snprintf(err, RELAY_ERR_MAX, "cannot check the TLS host name %s", cn->host);
    return 0;
  }
  for (;;) {
    int rc;
    ERR_clear_error();
    rc = SSL_connect(cn->ssl);
    if (rc == 1) return 1;
    switch (SSL_get_error(cn->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      if (!wait_fd(cn, cn->broker_fd, POLLIN, deadline, "in the TLS handshake", err)) return 0;
      break;
    case SSL_ERROR_WANT_WRITE:
      if (!wait_fd(cn, cn->broker_fd, POLLOUT, deadline, "in the TLS handshake", err)) return 0;
      break;
    case SSL_ERROR_SYSCALL:
      if (SSL_get_verify_result(cn->ssl) == X509_V_OK) {
        snprintf(err, RELAY_ERR_MAX, "the broker closed the connection in the TLS handshake (is this a TLS listener?)");
        return 0;
      }
      /* fall through */
    default:
      relay_tls_describe(cn->ssl, cn->host, err, RELAY_ERR_MAX);
      return 0;
    }
  }
}

static void broker_close(relay_conn *cn) {
  if (cn->ssl) {
    SSL_free(cn->ssl);
    cn->ssl = NULL;
  }
  if (cn->broker_fd >= 0) close(cn->broker_fd);
  cn->broker_fd = -1;
}

static int connect_broker(relay_conn *cn, int64_t deadline, char *err) {
  int one = 1, soerr = 0;
  socklen_t len = sizeof soerr;
  cn->broker_fd = socket(cn->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (cn->broker_fd < 0) {
    snprintf(err, RELAY_ERR_MAX, "socket: %s", strerror(errno));
    return 0;
  }
  setsockopt(cn->broker_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(cn->broker_fd, (struct sockaddr *)&cn->addr, cn->addrlen) != 0) {
    if (errno != EINPROGRESS) {
      snprintf(err, RELAY_ERR_MAX, "connect failed: %s", strerror(errno));
      return 0;
    }
    if (!wait_fd(cn, cn->broker_fd, POLLOUT, deadline, "connecting", err)) return 0;
    if (getsockopt(cn->broker_fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
    if (soerr) {
      snprintf(err, RELAY_ERR_MAX, "connect failed: %s", strerror(soerr));
      return 0;
    }
  }
  return cn->r->ssl_ctx == NULL || tls_connect(cn, deadline, err);
}

/* --- Kafka requests of the relay's own --------------------------------------------- */

#define CLIENT_ID "kalua-relay"

/* Sends one request (header v1) and reads its response body (after the
 * correlation id of response header v0) into *resp (malloc'd). */
static int exchange_v(relay_conn *cn, int16_t api_key, int16_t version, const unsigned char *body, size_t body_len,
                      unsigned char **resp, size_t *resp_len, int64_t deadline, const char *doing, char *err) {
  size_t id_len = sizeof CLIENT_ID - 1, hlen = 4 + 2 + 2 + 4 + 2 + id_len;
  unsigned char *req = malloc(hlen + body_len), size[4];
  int32_t correlation = cn->next_correlation++;
  uint32_t n;
  int ok;
  *resp = NULL;
  if (req == NULL) {
    snprintf(err, RELAY_ERR_MAX, "out of memory");
    return 0;
  }
  frames_put32(req, (uint32_t)(hlen - 4 + body_len));
  frames_put16(req + 4, (uint16_t)api_key);
  frames_put16(req + 6, (uint16_t)version);
  frames_put32(req + 8, (uint32_t)correlation);
  frames_put16(req + 12, (uint16_t)id_len);
  memcpy(req + 14, CLIENT_ID, id_len);
  memcpy(req + hlen, body, body_len);
  ok = broker_all(cn, 1, req, hlen + body_len, deadline, doing, err);
  memset(req, 0, hlen + body_len); /* PLAIN's message holds the password */
  free(req);
  if (!ok || !broker_all(cn, 0, size, 4, deadline, doing, err)) return 0;
  n = frames_get32(size);
  if (n < 4 || n > RELAY_AUTH_FRAME_MAX) {
    snprintf(err, RELAY_ERR_MAX, "bad response size %u %s", n, doing);
    return 0;
  }
  if ((*resp = malloc(n)) == NULL) {
    snprintf(err, RELAY_ERR_MAX, "out of memory");
    return 0;
  }
  if (!broker_all(cn, 0, *resp, n, deadline, doing, err)) goto bad;
  if ((int32_t)frames_get32(*resp) != correlation) {
    snprintf(err, RELAY_ERR_MAX, "response to the wrong request %s", doing);
    goto bad;
  }
  memmove(*resp, *resp + 4, n - 4);
  *resp_len = n - 4;
  return 1;
bad:
  free(*resp);
  *resp = NULL;
  return 0;
}

/* The relay's own requests are all v1 (SaslHandshake, SaslAuthenticate, ApiVersions). */
static int exchange(relay_conn *cn, int16_t api_key, const unsigned char *body, size_t body_len, unsigned char **resp,
                    size_t *resp_len, int64_t deadline, const char *doing, char *err) {
  return exchange_v(cn, api_key, 1, body, body_len, resp, resp_len, deadline, doing, err);
}

static const char *kafka_error_name(int16_t code) {
  return rd_kafka_err2name((rd_kafka_resp_err_t)code);
}

/* SaslHandshake v1 for name: 1 if the broker enables it; else 0 with err
 * listing the ones it does enable. The enabled list goes to enabled[n]. */
static int handshake(relay_conn *cn, const char *name, char *enabled, size_t enabled_len, int64_t deadline,
                     char *err, int *is_auth) {
  size_t mlen = strlen(name), resp_len = 0;
  unsigned char body[80], *resp;
  kreader rd;
  int16_t code;
  int32_t i, count;
  frames_put16(body, (uint16_t)mlen);
  memcpy(body + 2, name, mlen);
  if (!exchange(cn, API_SASL_HANDSHAKE, body, 2 + mlen, &resp, &resp_len, deadline, "in SaslHandshake", err))
    return 0;
  rd.p = resp, rd.n = resp_len, rd.bad = 0;
  code = kr_int16(&rd);
  count = kr_int32(&rd);
  enabled[0] = '\0';
  for (i = 0; i < count && !rd.bad; i++) {
    int16_t n = kr_int16(&rd);
    const unsigned char *mech = kr_bytes(&rd, n);
    size_t used = strlen(enabled);
    if (mech && used + (size_t)n + 3 < enabled_len)
      snprintf(enabled + used, enabled_len - used, "%s%.*s", used ? ", " : "", (int)n, (const char *)mech);
  }
  free(resp);
  if (rd.bad) {
    snprintf(err, RELAY_ERR_MAX, "malformed SaslHandshake response");
    return 0;
  }
  if (code == 33 /* UNSUPPORTED_SASL_MECHANISM */) {
    *is_auth = 1;
    snprintf(err, RELAY_ERR_MAX, "the broker does not enable %s on this listener; it enables: %s", name,
             enabled[0] ? enabled : "none");
    return 0;
  }
  if (code != 0) {
    *is_auth = 1;
    snprintf(err, RELAY_ERR_MAX, "SaslHandshake failed: %s (is this a SASL listener?)", kafka_error_name(code));
    return 0;
  }
  return 1;
}

/* Is name in the ", "-separated list? */
static int listed(const char *list, const char *name) {
  size_t n = strlen(name);
  const char *p = list;
  while ((p = strstr(p, name)) != NULL) {
    if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ',')) return 1;
    p += n;
  }
  return 0;
}

/* auto: the strongest candidate the broker enables, remembered for the
 * relay's later connections; 0 with err naming both lists. */
static int choose(kafka_relay *r, const char *enabled, char *err) {
  char allowed[128] = "";
  const sasl_mech_type *pick = NULL;
  int i;
  for (i = 0; r->candidates[i]; i++) {
    if (pick == NULL && listed(enabled, r->candidates[i]->name)) pick = r->candidates[i];
    snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", i ? ", " : "",
             r->candidates[i]->name);
  }
  if (pick == NULL) {
    snprintf(err, RELAY_ERR_MAX, "sasl_mechanism auto: the broker enables %s; the credentials allow %s",
             enabled[0] ? enabled : "none", allowed);
    return 0;
  }
  pthread_mutex_lock(&r->lock);
  r->chosen = pick;
  snprintf(r->reason, sizeof r->reason,
           "auto chose %s: the strongest of what the credentials allow (%s) that the broker enables (%s)", pick->name,
           allowed, enabled);
  pthread_mutex_unlock(&r->lock);
  return 1;
}

/* The mechanism this connection uses, after SaslHandshake. auto asks with
 * its first candidate; if the broker wants another, the broker has closed
 * the connection, so it reconnects and asks again. */
static int negotiate(relay_conn *cn, int64_t deadline, char *err, int *is_auth, const char **name) {
  kafka_relay *r = cn->r;
  char *enabled = cn->enabled;
  const size_t enabled_len = sizeof cn->enabled;
  const sasl_mech_type *chosen;
  if (!r->auto_mode) {
    *name = r->mechanism;
    return handshake(cn, r->mechanism, enabled, enabled_len, deadline, err, is_auth);
  }
  pthread_mutex_lock(&r->lock);
  chosen = r->chosen;
  pthread_mutex_unlock(&r->lock);
  if (chosen) {
    *name = chosen->name;
    return handshake(cn, chosen->name, enabled, enabled_len, deadline, err, is_auth);
  }
  if (handshake(cn, r->candidates[0]->name, enabled, enabled_len, deadline, err, is_auth)) {
    if (!choose(r, enabled, err)) return 0;
    *name = r->candidates[0]->name;
    return 1;
  }
  if (*is_auth == 0 || enabled[0] == '\0') return 0; /* not a list to choose from */
  *is_auth = 0;
  if (!choose(r, enabled, err)) {
    *is_auth = 1;
    return 0;
  }
  broker_close(cn);
  *name = r->chosen->name;
  return connect_broker(cn, deadline, err) &&
         handshake(cn, r->chosen->name, enabled, enabled_len, deadline, err, is_auth);
}

/* --- mechanisms: C, or Lua in the relay's state ------------------------------------ */

static void set_ctx_field(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

#define TOKEN_EXTENSIONS_MAX 32

/* OAUTHBEARER with a token fresh from the token script for each exchange
 * (tokens expire; KIP-368 re-authentication comes here too). The strings
 * stay on the relay state's stack until the mechanism has copied them. */
static int create_with_token(relay_conn *cn, conn_mech *cm, sasl_creds *creds, char *err) {
  kafka_relay *r = cn->r;
  lua_State *L = r->L;
  const char *ext[2 * TOKEN_EXTENSIONS_MAX + 1];
  char merr[SASL_ERR_MAX] = "";
  int n = 0, top;
  pthread_mutex_lock(&r->lua_lock);
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->token_fn);
  lua_createtable(L, 0, 4);
  set_ctx_field(L, "host", cn->host);
  set_ctx_field(L, "broker", cn->broker);
  set_ctx_field(L, "username", r->username);
  set_ctx_field(L, "principal", r->principal);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
    snprintf(err, RELAY_ERR_MAX, "sasl_oauthbearer_token_script %s: %s", r->token_path, lua_tostring(L, -1));
  } else if (lua_type(L, top + 1) != LUA_TSTRING) {
    snprintf(err, RELAY_ERR_MAX, "sasl_oauthbearer_token_script %s gave no token%s%s", r->token_path,
             lua_type(L, top + 2) == LUA_TSTRING ? ": " : "",
             lua_type(L, top + 2) == LUA_TSTRING ? lua_tostring(L, top + 2) : "");
  } else {
    if (lua_istable(L, top + 2)) {
      lua_pushnil(L);
      while (n < 2 * TOKEN_EXTENSIONS_MAX && lua_next(L, top + 2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
          ext[n++] = lua_tostring(L, -2);
          ext[n++] = lua_tostring(L, -1);
        }
        lua_pop(L, 1); /* the strings stay alive in the table */
      }
    }
    ext[n] = NULL;
    creds->token = lua_tostring(L, top + 1);
    creds->extensions = ext;
    if ((cm->m = cm->type->create(creds, merr)) == NULL) snprintf(err, RELAY_ERR_MAX, "%s", merr);
  }
  lua_settop(L, top);
  pthread_mutex_unlock(&r->lua_lock);
  return cm->m != NULL;
}

static int mech_create(relay_conn *cn, const char *name, conn_mech *cm, char *err) {
  kafka_relay *r = cn->r;
  memset(cm, 0, sizeof *cm);
  cm->ref = LUA_NOREF;
  if (r->lua_def != LUA_NOREF) {
    pthread_mutex_lock(&r->lua_lock);
    lua_createtable(r->L, 0, 12);
    set_ctx_field(r->L, "mechanism", name);
    set_ctx_field(r->L, "username", r->username);
    set_ctx_field(r->L, "password", r->password);
    set_ctx_field(r->L, "authzid", r->authzid);
    set_ctx_field(r->L, "token", r->token);
    set_ctx_field(r->L, "keytab", r->keytab);
    set_ctx_field(r->L, "principal", r->principal);
    set_ctx_field(r->L, "service", r->service ? r->service : "kafka");
    set_ctx_field(r->L, "host", cn->host);
    set_ctx_field(r->L, "broker", cn->broker);
    cm->ref = luaL_ref(r->L, LUA_REGISTRYINDEX);
    pthread_mutex_unlock(&r->lua_lock);
    return 1;
  } else {
    sasl_creds creds;
    char merr[SASL_ERR_MAX] = "";
    memset(&creds, 0, sizeof creds);
    creds.username = r->username;
    creds.password = r->password;
    creds.authzid = r->authzid;
    creds.min_iterations = 4096;
    creds.max_iterations = 10000000;
    creds.token = r->token;
    creds.keytab = r->keytab;
    creds.principal = r->principal;
    creds.service = r->service;
    creds.host = cn->host;
    creds.krb5_config = r->krb5_config;
    cm->type = r->type ? r->type : find_mechanism(name);
    if (cm->type == NULL) {
      snprintf(err, RELAY_ERR_MAX, "no SASL mechanism '%s'", name);
      return 0;
    }
    if (cm->type == &sasl_oauthbearer && r->token_fn != LUA_NOREF) return create_with_token(cn, cm, &creds, err);
    if ((cm->m = cm->type->create(&creds, merr)) == NULL) snprintf(err, RELAY_ERR_MAX, "%s", merr);
    return cm->m != NULL;
  }
}

/* Calls def[fn](ctx [, challenge]) in the relay's state: (message, done)
 * or (nil, error). */
static int lua_mech_call(kafka_relay *r, conn_mech *cm, const char *fn, const char *challenge, size_t len,
                         sasl_bytes *out, int *done, char *err) {
  lua_State *L = r->L;
  int ok = 0, nargs = challenge ? 2 : 1;
  pthread_mutex_lock(&r->lua_lock);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->lua_def);
  lua_getfield(L, -1, fn);
  lua_rawgeti(L, LUA_REGISTRYINDEX, cm->ref);
  if (challenge) lua_pushlstring(L, challenge, len);
  if (lua_pcall(L, nargs, 2, 0) != LUA_OK) {
    snprintf(err, SASL_ERR_MAX, "%s: %s", r->lua_path, lua_tostring(L, -1));
    lua_pop(L, 2);
    pthread_mutex_unlock(&r->lua_lock);
    return 0;
  }
  if (lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING) {
    snprintf(err, SASL_ERR_MAX, "%s", lua_tostring(L, -1));
  } else {
    size_t n = 0;
    const char *msg = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : "";
    out->data = malloc(n + 1);
    if (out->data) {
      memcpy(out->data, msg, n);
      out->len = n;
      *done = lua_toboolean(L, -1);
      ok = 1;
    } else {
      snprintf(err, SASL_ERR_MAX, "out of memory");
    }
  }
  lua_pop(L, 3);
  pthread_mutex_unlock(&r->lua_lock);
  return ok;
}

static int mech_start(kafka_relay *r, conn_mech *cm, sasl_bytes *out, char *err) {
  int done = 0;
  if (cm->type) return cm->type->start(cm->m, out, err);
  return lua_mech_call(r, cm, "start", NULL, 0, out, &done, err);
}

static int mech_step(kafka_relay *r, conn_mech *cm, const char *challenge, size_t len, sasl_bytes *out, int *done,
                     char *err) {
  if (cm->type) return cm->type->step(cm->m, challenge, len, out, done, err);
  return lua_mech_call(r, cm, "step", challenge, len, out, done, err);
}

static void mech_destroy(kafka_relay *r, conn_mech *cm) {
  if (cm->type && cm->m) cm->type->destroy(cm->m);
  if (cm->ref != LUA_NOREF && r->L) {
    pthread_mutex_lock(&r->lua_lock);
    luaL_unref(r->L, LUA_REGISTRYINDEX, cm->ref);
    lua_gc(r->L, LUA_GCCOLLECT); /* the ctx held the password */
    pthread_mutex_unlock(&r->lua_lock);
  }
  cm->m = NULL;
  cm->ref = LUA_NOREF;
}

static void free_bytes(sasl_bytes *b) {
  if (b->data) {
    memset(b->data, 0, b->len);
    free(b->data);
  }
  b->data = NULL;
  b->len = 0;
}

/* --- the SASL exchange ------------------------------------------------------------------ */

/* One SaslAuthenticate v1 round: sends out, reads the broker's bytes. */
static int authenticate_round(relay_conn *cn, sasl_bytes *out, unsigned char **resp, kreader *rd, int64_t deadline,
                              char *err, int *is_auth) {
  unsigned char *body = malloc(4 + out->len);
  size_t resp_len = 0;
  const unsigned char *msg;
  int16_t code, msg_len;
  int ok;
  if (body == NULL) {
    snprintf(err, RELAY_ERR_MAX, "out of memory");
    return 0;
  }
  frames_put32(body, (uint32_t)out->len);
  if (out->len) memcpy(body + 4, out->data, out->len);
  ok = exchange(cn, API_SASL_AUTHENTICATE, body, 4 + out->len, resp, &resp_len, deadline, "in SaslAuthenticate", err);
  memset(body, 0, 4 + out->len);
  free(body);
  free_bytes(out);
  if (!ok) return 0;
  rd->p = *resp, rd->n = resp_len, rd->bad = 0;
  code = kr_int16(rd);
  msg_len = kr_int16(rd);
  msg = kr_bytes(rd, msg_len);
  if (!rd->bad && code != 0) {
    *is_auth = 1;
    if (msg && msg_len > 0)
      snprintf(err, RELAY_ERR_MAX, "%.*s (%s)", (int)msg_len, (const char *)msg, kafka_error_name(code));
    else
      snprintf(err, RELAY_ERR_MAX, "the broker refused the exchange (%s)", kafka_error_name(code));
    return 0;
  }
  return 1;
}

/* SaslAuthenticate v1 rounds until the mechanism and the broker are done. */
static int authenticate(relay_conn *cn, conn_mech *cm, int64_t deadline, char *err, int *is_auth) {
  kafka_relay *r = cn->r;
  sasl_bytes out = {NULL, 0};
  char merr[SASL_ERR_MAX] = "";
  int done = 0, round;
  if (!mech_start(r, cm, &out, merr)) {
    *is_auth = 1;
    snprintf(err, RELAY_ERR_MAX, "%s", merr);
    return 0;
  }
  for (round = 0; round < RELAY_AUTH_ROUNDS; round++) {
    unsigned char *resp = NULL;
    const unsigned char *bytes;
    int32_t bytes_len;
    kreader rd;
    int ok;
    if (!authenticate_round(cn, &out, &resp, &rd, deadline, err, is_auth)) {
      free(resp);
      return 0;
    }
    bytes_len = kr_int32(&rd);
    bytes = kr_bytes(&rd, bytes_len);
    cn->session_lifetime_ms = kr_int64(&rd);
    if (rd.bad) {
      free(resp);
      snprintf(err, RELAY_ERR_MAX, "malformed SaslAuthenticate response");
      return 0;
    }
    if (done) { /* our last message is accepted */
      free(resp);
      return 1;
    }
    ok = mech_step(r, cm, bytes ? (const char *)bytes : "", bytes ? (size_t)bytes_len : 0, &out, &done, merr);
    free(resp);
    if (!ok) {
      *is_auth = 1;
      snprintf(err, RELAY_ERR_MAX, "%s", merr);
      return 0;
    }
    if (done && out.len == 0) {
      free_bytes(&out);
      return 1;
    }
  }
  snprintf(err, RELAY_ERR_MAX, "no result after %d SaslAuthenticate rounds", RELAY_AUTH_ROUNDS);
  free_bytes(&out);
  return 0;
}

/* Handshake and exchange with a fresh mechanism (fresh credentials: a
 * Kerberos ticket may have expired since the last time). */
static int sasl_login(relay_conn *cn, int64_t deadline, char *err, int *is_auth, const char **name) {
  conn_mech cm;
  int ok;
  if (cn->r->no_sasl) return 1;
  if (!negotiate(cn, deadline, err, is_auth, name)) return 0;
  if (!mech_create(cn, *name, &cm, err)) {
    *is_auth = 1;
    mech_destroy(cn->r, &cm);
    return 0;
  }
  ok = authenticate(cn, &cm, deadline, err, is_auth);
  mech_destroy(cn->r, &cm);
  return ok;
}

/* KIP-368: re-authenticate at ~80% of the session lifetime, +-5 s, not
 * sooner than 30 s (unless the lifetime itself is shorter). */
static void schedule_reauth(relay_conn *cn) {
  int64_t life = cn->session_lifetime_ms, delay;
  if (life <= 0) {
    cn->reauth_at = 0;
    return;
  }
  delay = life * 8 / 10 + (int64_t)(rand_r(&cn->jitter_seed) % (2 * REAUTH_JITTER_MS + 1)) - REAUTH_JITTER_MS;
  if (delay < REAUTH_FLOOR_MS) delay = life * 9 / 10 < REAUTH_FLOOR_MS ? life * 9 / 10 : REAUTH_FLOOR_MS;
  if (delay > life - 1000 && life > 2000) delay = life - 1000;
  cn->reauth_at = now_ms() + delay;
}

static int reauthenticate(relay_conn *cn) {
  char err[RELAY_ERR_MAX] = "", msg[RELAY_ERR_MAX + 512];
  const char *name = cn->r->mechanism;
  int is_auth = 0;
  if (sasl_login(cn, now_ms() + cn->r->timeout_ms, err, &is_auth, &name)) {
    note_authenticated(cn, 1);
    schedule_reauth(cn);
    cn->held_since = 0;
    return 1;
  }
  if (strcmp(err, "the client closed") != 0) {
    snprintf(msg, sizeof msg, "SASL re-authentication failed with mechanism %s at broker %s (kalua relay): %s", name,
             cn->broker, err);
    note_failure(cn, 1, msg);
  }
  return 0;
}

/* --- forwarding -------------------------------------------------------------------------- */

static void inflight_push(relay_conn *cn, int32_t correlation) {
  if (cn->inflight_len == cn->inflight_cap) {
    size_t cap = cn->inflight_cap ? cn->inflight_cap * 2 : 64, i;
    int32_t *grown = malloc(cap * sizeof *grown);
    if (grown == NULL) return; /* tracking only: forwarding goes on */
    for (i = 0; i < cn->inflight_len; i++) grown[i] = cn->inflight[(cn->inflight_head + i) % cn->inflight_cap];
    free(cn->inflight);
    cn->inflight = grown;
    cn->inflight_cap = cap;
    cn->inflight_head = 0;
  }
  cn->inflight[(cn->inflight_head + cn->inflight_len++) % cn->inflight_cap] = correlation;
}

static void on_request(void *ud, const unsigned char *h, size_t n) {
  relay_conn *cn = ud;
  if (n < 8) return;
  atomic_fetch_add_explicit(&cn->r->requests, 1, memory_order_relaxed);
  if (frames_produce_without_response(h, n)) return;
  inflight_push(cn, (int32_t)frames_get32(h + 4));
}

static void on_response(void *ud, const unsigned char *h, size_t n) {
  relay_conn *cn = ud;
  int32_t correlation;
  if (n < 4) return;
  atomic_fetch_add_explicit(&cn->r->responses, 1, memory_order_relaxed);
  correlation = (int32_t)frames_get32(h);
  if (cn->inflight_len == 0 || cn->inflight[cn->inflight_head] != correlation) {
    atomic_fetch_add_explicit(&cn->r->unmatched, 1, memory_order_relaxed);
    return;
  }
  cn->inflight_head = (cn->inflight_head + 1) % cn->inflight_cap;
  cn->inflight_len--;
}

static int again(void) {
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* Client to relay: at most room bytes (so a re-authentication can stop
 * at a frame boundary). 0 when the client is gone. */
static int read_client(relay_conn *cn, relay_dir *up, size_t room) {
  ssize_t n = recv(cn->app_fd, up->buf, room, MSG_DONTWAIT);
  if (n == 0) return 0;
  if (n < 0) return again();
  frames_feed(&up->frames, up->buf, (size_t)n, on_request, cn);
  up->len = (size_t)n;
  up->off = 0;
  return 1;
}

static int write_client(relay_conn *cn, relay_dir *down) {
  ssize_t n = send(cn->app_fd, down->buf + down->off, down->len - down->off, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0) return again();
  down->off += (size_t)n;
  if (down->off == down->len) down->off = down->len = 0;
  return 1;
}

/* Relay to broker, or broker to relay: 0 when the connection is over. */
static int move_broker(relay_conn *cn, relay_dir *d, int writing, short *want) {
  char err[RELAY_ERR_MAX];
  ssize_t n = writing ? broker_io(cn, 1, d->buf + d->off, d->len - d->off, want, err)
                      : broker_io(cn, 0, d->buf, RELAY_BUF, want, err);
  if (n == IO_WAIT) return 1;
  if (n <= 0) return 0;
  if (writing) {
    d->off += (size_t)n;
    if (d->off == d->len) d->off = d->len = 0;
    *want = POLLOUT;
  } else {
    frames_feed(&d->frames, d->buf, (size_t)n, on_response, cn);
    d->len = (size_t)n;
    d->off = 0;
    *want = POLLIN;
  }
  return 1;
}

static int poll_timeout(relay_conn *cn, const relay_dir *down, int holding) {
  int64_t left;
  if (cn->ssl && down->len == 0 && SSL_pending(cn->ssl) > 0) return 0;
  if (holding) return 1000; /* to notice a hold that lasts too long */
  if (cn->reauth_at == 0) return -1;
  left = cn->reauth_at - now_ms();
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static void forward(relay_conn *cn) {
  relay_dir up, down;
  short up_want = POLLOUT, down_want = POLLIN;
  memset(&up, 0, sizeof up);
  memset(&down, 0, sizeof down);
  up.buf = malloc(RELAY_BUF);
  down.buf = malloc(RELAY_BUF);
  while (up.buf && down.buf) {
    int holding = cn->reauth_at > 0 && now_ms() >= cn->reauth_at;
    size_t room = RELAY_BUF;
    struct pollfd p[3] = {{cn->r->stop_pipe[0], POLLIN, 0}, {cn->app_fd, 0, 0}, {cn->broker_fd, 0, 0}};
    if (holding) { /* KIP-368: no new request until re-authenticated */
      if (cn->held_since == 0) cn->held_since = now_ms();
      if (now_ms() - cn->held_since > cn->r->timeout_ms) {
        note_failure(cn, 0, "kalua relay: re-authentication waited too long for in-flight responses; reconnecting");
        break;
      }
      room = frames_to_boundary(&up.frames);
      if (room == 0 && up.len == 0 && cn->inflight_len == 0) {
        if (!reauthenticate(cn)) break;
        continue;
      }
      if (room > RELAY_BUF) room = RELAY_BUF;
    }
    if (up.len == 0 && room > 0) p[1].events |= POLLIN;
    if (down.len > 0) p[1].events |= POLLOUT;
    if (up.len > 0) p[2].events |= up_want;
    if (down.len == 0) p[2].events |= down_want;
    if (poll(p, 3, poll_timeout(cn, &down, holding)) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) break;
    if (up.len == 0 && room > 0 && p[1].revents && !read_client(cn, &up, room)) break;
    if (up.len == 0 && room == 0 && (p[1].revents & (POLLHUP | POLLERR))) break;
    if (up.len > 0 && !move_broker(cn, &up, 1, &up_want)) break;
    if (down.len == 0 && (p[2].revents || (cn->ssl && SSL_pending(cn->ssl) > 0)) &&
        !move_broker(cn, &down, 0, &down_want))
      break;
    if (down.len > 0 && !write_client(cn, &down)) break;
  }
  if (down.buf && down.off < down.len) /* the broker's last words, if the client still listens */
    (void)!send(cn->app_fd, down.buf + down.off, down.len - down.off, MSG_NOSIGNAL | MSG_DONTWAIT);
  free(up.buf);
  free(down.buf);
}

/* --- the connection thread ------------------------------------------------------------- */

static void *relay_main(void *arg) {
  relay_conn *cn = arg;
  kafka_relay *r = cn->r;
  int64_t deadline = now_ms() + r->timeout_ms;
  char err[RELAY_ERR_MAX] = "", msg[RELAY_ERR_MAX + 512];
  const char *name = r->mechanism;
  int is_auth = 0;
  if (connect_broker(cn, deadline, err) && sasl_login(cn, deadline, err, &is_auth, &name)) {
    cn->connected_at = now_ms();
    note_authenticated(cn, 0);
    schedule_reauth(cn);
    forward(cn);
  } else if (strcmp(err, "the client closed") != 0 &&
             strncmp(err, "librdkafka gave up the connection", 33) != 0) { /* its choice, not a failure */
    if (is_auth)
      snprintf(msg, sizeof msg, "SASL authentication failed with mechanism %s at broker %s (kalua relay): %s", name,
               cn->broker, err);
    else
      snprintf(msg, sizeof msg, "kalua relay: broker %s: %s", cn->broker, err);
    note_failure(cn, is_auth, msg);
  }
  broker_close(cn);
  pthread_mutex_lock(&r->lock);
  close(cn->app_fd); /* librdkafka sees the disconnect */
  cn->app_fd = -1;
  r->active--;
  cn->done = 1;
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

/* --- librdkafka's callbacks (broker threads) -------------------------------------------- */

static void conn_free(relay_conn *cn) {
  if (cn->app_fd >= 0) close(cn->app_fd);
  broker_close(cn);
  free(cn->inflight);
  free(cn);
}

/* Joins finished threads; r->lock held (they are past their last lock). */
static void reap(kafka_relay *r) {
  relay_conn **at = &r->conns;
  while (*at) {
    relay_conn *cn = *at;
    if (cn->started && cn->done && !cn->is_link) {
      *at = cn->next;
      pthread_join(cn->thread, NULL);
      conn_free(cn);
    } else {
      at = &cn->next;
    }
  }
}

static int on_socket(int domain, int type, int protocol, void *opaque) {
  kafka_client *c = opaque;
  kafka_relay *r = c->relay;
  relay_conn *cn;
  int sv[2];
  (void)domain, (void)type, (void)protocol;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  { /* room for a whole fetch response in flight: fewer wake-ups each side */
    int size = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  if ((cn = calloc(1, sizeof *cn)) == NULL) {
    close(sv[0]);
    close(sv[1]);
    errno = ENOMEM;
    return -1;
  }
  cn->r = r;
  cn->lib_fd = sv[0];
  cn->app_fd = sv[1];
  cn->broker_fd = -1;
  cn->next_correlation = RELAY_CORRELATION_BASE;
  cn->jitter_seed = (unsigned)(now_ms() ^ (int64_t)(intptr_t)cn);
  pthread_mutex_lock(&r->lock);
  cn->next = r->conns;
  r->conns = cn;
  pthread_mutex_unlock(&r->lock);
  return sv[0];
}

/* "host:port/id" or "proto://host:port/id" -> host:port and host. */
static void parse_broker_name(relay_conn *cn, const char *id) {
  const char *s = strstr(id, "://"), *end, *colon;
  s = s ? s + 3 : id;
  end = strchr(s, '/');
  snprintf(cn->broker, sizeof cn->broker, "%.*s", (int)(end ? end - s : (ptrdiff_t)strlen(s)), s);
  colon = strrchr(cn->broker, ':');
  if (cn->broker[0] == '[' && (end = strchr(cn->broker, ']')) != NULL)
    snprintf(cn->host, sizeof cn->host, "%.*s", (int)(end - cn->broker - 1), cn->broker + 1);
  else
    snprintf(cn->host, sizeof cn->host, "%.*s", (int)(colon ? colon - cn->broker : (ptrdiff_t)strlen(cn->broker)),
             cn->broker);
}

/* Runs with the broker lock held: start the thread, return at once. */
static int on_connect(int fd, const struct sockaddr *addr, int addrlen, const char *id, void *opaque) {
  kafka_client *c = opaque;
  kafka_relay *r = c->relay;
  relay_conn *cn;
  int rc;
  pthread_mutex_lock(&r->lock);
  reap(r);
  for (cn = r->conns; cn && !(cn->lib_fd == fd && !cn->started); cn = cn->next) {
  }
  if (cn == NULL || r->stopping || addrlen <= 0 || (size_t)addrlen > sizeof cn->addr) {
    pthread_mutex_unlock(&r->lock);
    return cn == NULL ? EBADF : ECONNREFUSED;
  }
  memcpy(&cn->addr, addr, (size_t)addrlen);
  cn->addrlen = (socklen_t)addrlen;
  parse_broker_name(cn, id ? id : "?");
  rc = pthread_create(&cn->thread, NULL, relay_main, cn);
  if (rc == 0) {
    cn->started = 1;
    r->connections++;
    r->active++;
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

/* librdkafka closes its end: forget a pair that never got a thread. */
static int on_closesocket(int fd, void *opaque) {
  kafka_client *c = opaque;
  kafka_relay *r = c->relay;
  relay_conn **at;
  pthread_mutex_lock(&r->lock);
  for (at = &r->conns; *at;) {
    relay_conn *cn = *at;
    if (cn->lib_fd == fd && !cn->started) {
      *at = cn->next;
      conn_free(cn);
      continue;
    }
    if (cn->lib_fd == fd) cn->lib_fd = -1;
    at = &cn->next;
  }
  close(fd);
  pthread_mutex_unlock(&r->lock);
  return 0;
}

void relay_install(kafka_relay *r, rd_kafka_conf_t *conf) {
  (void)r; /* the callbacks find it through the client (the conf's opaque) */
  rd_kafka_conf_set_socket_cb(conf, on_socket);
  rd_kafka_conf_set_connect_cb(conf, on_connect);
  rd_kafka_conf_set_closesocket_cb(conf, on_closesocket);
}

void relay_destroy(kafka_relay *r) {
  relay_conn *list, *cn;
  if (r == NULL) return;
  pthread_mutex_lock(&r->lock);
  r->stopping = 1;
  list = r->conns;
  r->conns = NULL;
  pthread_mutex_unlock(&r->lock);
  (void)!write(r->stop_pipe[1], "x", 1); /* wakes every thread's poll */
  while ((cn = list) != NULL) {
    list = cn->next;
    if (cn->started) pthread_join(cn->thread, NULL);
    conn_free(cn);
  }
  close(r->stop_pipe[0]);
  close(r->stop_pipe[1]);
  pthread_mutex_destroy(&r->lock);
  pthread_mutex_destroy(&r->lua_lock);
  if (r->L) lua_close(r->L);
  if (r->ssl_ctx) SSL_CTX_free(r->ssl_ctx);
  wipe_free(r->username);
  wipe_free(r->password);
  wipe_free(r->authzid);
  wipe_free(r->token);
  wipe_free(r->keytab);
  wipe_free(r->principal);
  wipe_free(r->service);
  wipe_free(r->krb5_config);
  wipe_free(r->lua_path);
  wipe_free(r->token_path);
  wipe_free(r->ssl_ca);
  wipe_free(r->ssl_cert);
  wipe_free(r->ssl_key);
  wipe_free(r->ssl_key_password);
  free(r);
}

/* --- kalua proxy's broker connections -------------------------------------------------- */

static int resolve(relay_conn *cn, char *err);

relay_link *relay_link_open(kafka_relay *r, const char *broker, int watch_fd, char *err, size_t errlen,
                            int *is_auth) {
  relay_conn *cn = calloc(1, sizeof *cn);
  char e[RELAY_ERR_MAX] = "", msg[RELAY_ERR_MAX + 512];
  const char *name = r->mechanism;
  int64_t deadline = now_ms() + r->timeout_ms;
  *is_auth = 0;
  if (cn == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  cn->r = r;
  cn->is_link = cn->started = 1;
  cn->app_fd = watch_fd;
  cn->lib_fd = cn->broker_fd = -1;
  cn->next_correlation = RELAY_CORRELATION_BASE;
  cn->jitter_seed = (unsigned)(now_ms() ^ (int64_t)(intptr_t)cn);
  parse_broker_name(cn, broker);
  pthread_mutex_lock(&r->lock);
  cn->next = r->conns;
  r->conns = cn;
  r->connections++;
  r->active++;
  pthread_mutex_unlock(&r->lock);
  if (resolve(cn, e) && connect_broker(cn, deadline, e) && sasl_login(cn, deadline, e, is_auth, &name)) {
    cn->connected_at = now_ms();
    if (!r->no_sasl) note_authenticated(cn, 0);
    schedule_reauth(cn);
    return cn;
  }
  if (*is_auth)
    snprintf(msg, sizeof msg, "SASL authentication failed with mechanism %s at broker %s: %s", name, cn->broker, e);
  else
    snprintf(msg, sizeof msg, "broker %s: %s", cn->broker, e);
  if (strcmp(e, "the client closed") != 0 && strncmp(e, "librdkafka gave up", 18) != 0)
    note_failure(cn, *is_auth, msg);
  else
    snprintf(msg, sizeof msg, "the client left while kalua connected to broker %s", cn->broker);
  snprintf(err, errlen, "%s", msg);
  relay_link_close(cn);
  return NULL;
}

void relay_link_close(relay_link *cn) {
  kafka_relay *r;
  relay_conn **at;
  if (cn == NULL) return;
  r = cn->r;
  pthread_mutex_lock(&r->lock);
  for (at = &r->conns; *at; at = &(*at)->next)
    if (*at == cn) {
      *at = cn->next;
      r->active--;
      break;
    }
  pthread_mutex_unlock(&r->lock);
  cn->app_fd = -1; /* the proxy's socket: the proxy closes it */
  conn_free(cn);
}

ssize_t relay_link_io(relay_link *cn, int writing, void *buf, size_t n, short *want, char *err) {
  return broker_io(cn, writing, buf, n, want, err);
}

int relay_link_fd(const relay_link *cn) {
  return cn->broker_fd;
}

int relay_link_tls(const relay_link *cn) {
  return cn->ssl != NULL;
}

int relay_link_pending(const relay_link *cn) {
  return cn->ssl != NULL && SSL_pending(cn->ssl) > 0;
}

const char *relay_link_broker(const relay_link *cn) {
  return cn->broker;
}

int64_t relay_link_reauth_at(const relay_link *cn) {
  return cn->reauth_at;
}

int relay_link_reauthenticate(relay_link *cn) {
  return reauthenticate(cn);
}

int relay_link_request(relay_link *cn, int16_t api_key, int16_t version, const unsigned char *body, size_t len,
                       unsigned char **resp, size_t *resp_len, char *err) {
  return exchange_v(cn, api_key, version, body, len, resp, resp_len, now_ms() + cn->r->timeout_ms, "in a request",
                    err);
}

int64_t relay_now_ms(void) {
  return now_ms();
}

/* --- kalua sasl probe ------------------------------------------------------------------ */

/* ApiVersions v1 on the fresh connection: pushes {{key=, min=, max=}, ...}. */
static int push_api_versions(lua_State *L, relay_conn *cn, int64_t deadline, char *err) {
  unsigned char *resp;
  size_t resp_len;
  kreader rd;
  int16_t code;
  int32_t i, n;
  if (!exchange(cn, API_API_VERSIONS, (const unsigned char *)"", 0, &resp, &resp_len, deadline, "in ApiVersions", err))
    return 0;
  rd.p = resp, rd.n = resp_len, rd.bad = 0;
  code = kr_int16(&rd);
  n = kr_int32(&rd);
  lua_createtable(L, n > 0 && n < 1000 ? n : 0, 0);
  for (i = 0; i < n && !rd.bad; i++) {
    int16_t key = kr_int16(&rd), min = kr_int16(&rd), max = kr_int16(&rd);
    if (rd.bad) break;
    lua_createtable(L, 0, 3);
    set_int(L, "key", key);
    set_int(L, "min", min);
    set_int(L, "max", max);
    lua_rawseti(L, -2, i + 1);
  }
  free(resp);
  if (rd.bad || code != 0) {
    lua_pop(L, 1);
    snprintf(err, RELAY_ERR_MAX, "ApiVersions failed: %s", rd.bad ? "malformed response" : kafka_error_name(code));
    return 0;
  }
  return 1;
}

static int resolve(relay_conn *cn, char *err) {
  struct addrinfo hints, *res = NULL;
  const char *colon = strrchr(cn->broker, ':');
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (colon == NULL) {
    snprintf(err, RELAY_ERR_MAX, "'%s' is not host:port", cn->broker);
    return 0;
  }
  if ((rc = getaddrinfo(cn->host, colon + 1, &hints, &res)) != 0 || res == NULL) {
    snprintf(err, RELAY_ERR_MAX, "cannot resolve %s: %s", cn->host, gai_strerror(rc));
    return 0;
  }
  memcpy(&cn->addr, res->ai_addr, res->ai_addrlen);
  cn->addrlen = (socklen_t)res->ai_addrlen;
  freeaddrinfo(res);
  return 1;
}

static void push_enabled(lua_State *L, const char *list) {
  const char *p = list;
  int i = 0;
  lua_newtable(L);
  while (*p) {
    size_t n = strcspn(p, ",");
    lua_pushlstring(L, p, n);
    lua_rawseti(L, -2, ++i);
    p += n;
    while (*p == ',' || *p == ' ') p++;
  }
}

void relay_probe(lua_State *L, kafka_relay *r, const char *broker) {
  relay_conn *cn = calloc(1, sizeof *cn);
  char err[RELAY_ERR_MAX] = "";
  const char *name = r->mechanism;
  int64_t t0 = now_ms(), deadline = t0 + r->timeout_ms, t_connect = -1;
  int is_auth = 0, ok = 0, stage = 0;
  if (cn == NULL) luaL_error(L, "out of memory");
  cn->r = r;
  cn->app_fd = cn->lib_fd = cn->broker_fd = -1; /* no librdkafka here: poll ignores -1 */
  cn->next_correlation = RELAY_CORRELATION_BASE;
  parse_broker_name(cn, broker);
  lua_createtable(L, 0, 12);
  lua_pushstring(L, cn->broker);
  lua_setfield(L, -2, "broker");
  lua_pushboolean(L, r->tls);
  lua_setfield(L, -2, "tls");
  if (resolve(cn, err) && connect_broker(cn, deadline, err)) {
    t_connect = now_ms();
    stage = 1;
    if (push_api_versions(L, cn, deadline, err)) {
      lua_setfield(L, -2, "api_versions");
      stage = 2;
      ok = sasl_login(cn, deadline, err, &is_auth, &name);
    }
  }
  if (t_connect >= 0) set_int(L, "connect_ms", t_connect - t0);
  if (stage == 2) set_int(L, "auth_ms", now_ms() - t_connect);
  if (cn->enabled[0]) {
    push_enabled(L, cn->enabled);
    lua_setfield(L, -2, "enabled");
  }
  lua_pushstring(L, r->chosen ? r->chosen->name : name);
  lua_setfield(L, -2, "mechanism");
  if (r->reason[0]) {
    lua_pushstring(L, r->reason);
    lua_setfield(L, -2, "reason");
  }
  lua_pushboolean(L, ok);
  lua_setfield(L, -2, "authenticated");
  if (ok) set_int(L, "session_lifetime_ms", cn->session_lifetime_ms);
  if (!ok) {
    lua_pushstring(L, err);
    lua_setfield(L, -2, "error");
    lua_pushboolean(L, is_auth);
    lua_setfield(L, -2, "auth_error");
  }
  broker_close(cn);
  free(cn);
}
