/* The auth relay (see relay.h and shared/DESIGN.md, "SASL with librdkafka").
 *
 * One relay per client; one thread per broker connection:
 *
 *   librdkafka ==socketpair==> relay thread ==TCP==> broker
 *                               1. connect (non-blocking, bounded)
 *                               2. SaslHandshake v1: is the mechanism enabled?
 *                               3. SaslAuthenticate v1 rounds, fresh mechanism
 *                               4. forward frames both ways, tracking
 *                                  boundaries and correlation ids
 *
 * librdkafka's first request (ApiVersion) waits in the socket pair while
 * steps 1-3 run. Every wait also watches the relay's stop pipe and
 * librdkafka's end of the pair, so closing a client never waits on a
 * broker. A failure closes the pair (librdkafka sees a disconnect and
 * retries with backoff); the reason is kept for kafka_fail, and an
 * authentication failure is stored as the client's auth error. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kafka/kafka_internal.h"
#include "kafka/relay.h"
#include "sasl/mech.h"

#define RELAY_BUF 65536
#define RELAY_AUTH_FRAME_MAX (1 << 20) /* SASL responses are small */
#define RELAY_AUTH_ROUNDS 16
#define RELAY_ERR_MAX 512
#define RELAY_CORRELATION_BASE 0x4b000000 /* the relay's own requests; librdkafka counts from 1 */

enum { API_PRODUCE = 0, API_SASL_HANDSHAKE = 17, API_SASL_AUTHENTICATE = 36 };

/* One direction of a connection's frames: size prefix, then the first
 * bytes of each frame (request or response header). */
typedef struct {
  unsigned char head[128];
  size_t head_len, head_want;
  uint32_t left; /* bytes of the current frame's body still to come */
} frame_reader;

typedef struct {
  int from, to;
  unsigned char *buf;
  size_t len, off;
  frame_reader frames;
} relay_dir;

typedef struct relay_conn {
  struct relay_conn *next;
  kafka_relay *r;
  pthread_t thread;
  int started, done;
  int lib_fd;    /* librdkafka's end of the pair (-1 once it closed it) */
  int app_fd;    /* the relay's end */
  int broker_fd;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char broker[280]; /* host:port from librdkafka's broker name */
  char host[256];
  int32_t next_correlation;
  /* Requests forwarded and not answered yet (correlation ids, in order):
   * what re-authentication must wait for (KIP-368). */
  int32_t *inflight;
  size_t inflight_head, inflight_len, inflight_cap;
  int64_t session_lifetime_ms;
} relay_conn;

struct kafka_relay {
  kafka_client *c;
  pthread_mutex_t lock;
  int stop_pipe[2];
  int stopping;
  relay_conn *conns;
  /* settings (kalua.sasl.*) */
  const sasl_mech_type *type;
  char mechanism[32];
  char *username, *password, *authzid, *token, *keytab, *principal, *service, *krb5_config;
  int timeout_ms;
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
  r->c = c;
  r->timeout_ms = 30000;
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
  };
  size_t i;
  if (strcmp(name, "kalua.relay") == 0) return 1;
  if (strcmp(name, "kalua.relay.timeout_ms") == 0) {
    r->timeout_ms = atoi(value);
    if (r->timeout_ms <= 0) r->timeout_ms = 30000;
    return 1;
  }
  if (strcmp(name, "kalua.sasl.mechanism") == 0) {
    snprintf(r->mechanism, sizeof r->mechanism, "%s", value);
    r->type = find_mechanism(value);
    if (r->type == NULL) {
      snprintf(err, errlen, "the auth relay has no SASL mechanism '%s'", value);
      return 0;
    }
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

int relay_check(kafka_relay *r, char *err, size_t errlen) {
  if (r->type == NULL) {
    snprintf(err, errlen, "the auth relay needs kalua.sasl.mechanism");
    return 0;
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
  if (is_auth) {
    pthread_mutex_lock(&r->c->lock);
    r->c->auth_err = RD_KAFKA_RESP_ERR__AUTHENTICATION;
    copy_cut(r->c->auth_errstr, sizeof r->c->auth_errstr, msg);
    pthread_mutex_unlock(&r->c->lock);
  }
}

static void note_authenticated(relay_conn *cn) {
  kafka_relay *r = cn->r;
  pthread_mutex_lock(&r->lock);
  r->authentications++;
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

void relay_push_stats(lua_State *L, kafka_relay *r) {
  pthread_mutex_lock(&r->lock);
  lua_createtable(L, 0, 11);
  lua_pushinteger(L, r->connections);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, r->active);
  lua_setfield(L, -2, "active");
  lua_pushinteger(L, r->authentications);
  lua_setfield(L, -2, "authentications");
  lua_pushinteger(L, r->failures);
  lua_setfield(L, -2, "failures");
  lua_pushinteger(L, r->reauthentications);
  lua_setfield(L, -2, "reauthentications");
  lua_pushinteger(L, atomic_load(&r->requests));
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, atomic_load(&r->responses));
  lua_setfield(L, -2, "responses");
  lua_pushinteger(L, atomic_load(&r->unmatched));
  lua_setfield(L, -2, "unmatched_responses");
  lua_pushinteger(L, r->session_lifetime_ms);
  lua_setfield(L, -2, "session_lifetime_ms");
  lua_pushstring(L, r->mechanism);
  lua_setfield(L, -2, "mechanism");
  if (r->last_error[0]) {
    lua_pushstring(L, r->last_error);
    lua_setfield(L, -2, "last_error");
  }
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

static int send_all(relay_conn *cn, const unsigned char *p, size_t len, int64_t deadline, const char *doing,
                    char *err) {
  while (len > 0) {
    ssize_t n = send(cn->broker_fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_fd(cn, cn->broker_fd, POLLOUT, deadline, doing, err)) return 0;
    } else {
      snprintf(err, RELAY_ERR_MAX, "send failed %s: %s", doing, strerror(errno));
      return 0;
    }
  }
  return 1;
}

static int recv_all(relay_conn *cn, unsigned char *p, size_t len, int64_t deadline, const char *doing, char *err) {
  while (len > 0) {
    ssize_t n = recv(cn->broker_fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n == 0) {
      snprintf(err, RELAY_ERR_MAX, "the broker closed the connection %s", doing);
      return 0;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      if (!wait_fd(cn, cn->broker_fd, POLLIN, deadline, doing, err)) return 0;
    } else {
      snprintf(err, RELAY_ERR_MAX, "receive failed %s: %s", doing, strerror(errno));
      return 0;
    }
  }
  return 1;
}

/* --- Kafka encoding ------------------------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct {
  const unsigned char *p;
  size_t n;
  int bad;
} reader;

static const unsigned char *take(reader *rd, size_t n) {
  const unsigned char *p = rd->p;
  if (rd->bad || rd->n < n) {
    rd->bad = 1;
    return NULL;
  }
  rd->p += n;
  rd->n -= n;
  return p;
}

static int16_t take16(reader *rd) {
  const unsigned char *p = take(rd, 2);
  return p ? (int16_t)((uint16_t)p[0] << 8 | p[1]) : 0;
}

static int32_t take32(reader *rd) {
  const unsigned char *p = take(rd, 4);
  return p ? (int32_t)get32(p) : 0;
}

static int64_t take64(reader *rd) {
  const unsigned char *p = take(rd, 8);
  return p ? (int64_t)((uint64_t)get32(p) << 32 | get32(p + 4)) : 0;
}

/* A nullable string or bytes of n (length already read). */
static const unsigned char *take_n(reader *rd, int32_t n) {
  return n < 0 ? NULL : take(rd, (size_t)n);
}

#define CLIENT_ID "kalua-relay"

/* Sends one request (header v1) and reads its response body (after the
 * correlation id of response header v0) into *resp (malloc'd). */
static int exchange(relay_conn *cn, int16_t api_key, const unsigned char *body, size_t body_len,
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
  put32(req, (uint32_t)(hlen - 4 + body_len));
  put16(req + 4, (uint16_t)api_key);
  put16(req + 6, 1); /* both SaslHandshake and SaslAuthenticate at v1 */
  put32(req + 8, (uint32_t)correlation);
  put16(req + 12, (uint16_t)id_len);
  memcpy(req + 14, CLIENT_ID, id_len);
  memcpy(req + hlen, body, body_len);
  ok = send_all(cn, req, hlen + body_len, deadline, doing, err);
  memset(req, 0, hlen + body_len); /* PLAIN's message holds the password */
  free(req);
  if (!ok || !recv_all(cn, size, 4, deadline, doing, err)) return 0;
  n = get32(size);
  if (n < 4 || n > RELAY_AUTH_FRAME_MAX) {
    snprintf(err, RELAY_ERR_MAX, "bad response size %u %s", n, doing);
    return 0;
  }
  if ((*resp = malloc(n)) == NULL) {
    snprintf(err, RELAY_ERR_MAX, "out of memory");
    return 0;
  }
  if (!recv_all(cn, *resp, n, deadline, doing, err)) goto bad;
  if ((int32_t)get32(*resp) != correlation) {
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

/* --- the SASL exchange ------------------------------------------------------------------ */

/* Error texts for the broker's SASL error codes. */
static const char *kafka_error_name(int16_t code) {
  return rd_kafka_err2name((rd_kafka_resp_err_t)code);
}

/* SaslHandshake v1: 1 if the broker enables the mechanism; else 0 with
 * err listing the ones it does enable. */
static int handshake(relay_conn *cn, int64_t deadline, char *err, int *is_auth) {
  kafka_relay *r = cn->r;
  size_t mlen = strlen(r->mechanism), resp_len = 0;
  unsigned char body[64], *resp;
  char enabled[256] = "";
  reader rd;
  int16_t code;
  int32_t i, count;
  put16(body, (uint16_t)mlen);
  memcpy(body + 2, r->mechanism, mlen);
  if (!exchange(cn, API_SASL_HANDSHAKE, body, 2 + mlen, &resp, &resp_len, deadline, "in SaslHandshake", err))
    return 0;
  rd.p = resp, rd.n = resp_len, rd.bad = 0;
  code = take16(&rd);
  count = take32(&rd);
  for (i = 0; i < count && !rd.bad; i++) {
    int16_t n = take16(&rd);
    const unsigned char *name = take_n(&rd, n);
    size_t used = strlen(enabled);
    if (name && used + (size_t)n + 3 < sizeof enabled)
      snprintf(enabled + used, sizeof enabled - used, "%s%.*s", used ? ", " : "", (int)n, (const char *)name);
  }
  free(resp);
  if (rd.bad) {
    snprintf(err, RELAY_ERR_MAX, "malformed SaslHandshake response");
    return 0;
  }
  if (code == 33 /* UNSUPPORTED_SASL_MECHANISM */) {
    *is_auth = 1;
    snprintf(err, RELAY_ERR_MAX, "the broker does not enable %s on this listener; it enables: %s", r->mechanism,
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

static sasl_mech *create_mechanism(relay_conn *cn, char *err) {
  kafka_relay *r = cn->r;
  sasl_creds creds;
  char merr[SASL_ERR_MAX] = "";
  sasl_mech *m;
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
  if ((m = r->type->create(&creds, merr)) == NULL) snprintf(err, RELAY_ERR_MAX, "%s", merr);
  return m;
}

/* SaslAuthenticate v1 rounds until the mechanism and the broker are done. */
static int authenticate(relay_conn *cn, sasl_mech *m, int64_t deadline, char *err, int *is_auth) {
  const sasl_mech_type *type = cn->r->type;
  sasl_bytes out = {NULL, 0};
  char merr[SASL_ERR_MAX] = "";
  int done = 0, round;
  if (!type->start(m, &out, merr)) {
    *is_auth = 1;
    snprintf(err, RELAY_ERR_MAX, "%s", merr);
    return 0;
  }
  for (round = 0; round < RELAY_AUTH_ROUNDS; round++) {
    unsigned char *body = malloc(4 + out.len), *resp = NULL;
    size_t resp_len = 0;
    const unsigned char *msg, *bytes;
    int16_t code, msg_len;
    int32_t bytes_len;
    int ok;
    reader rd;
    if (body == NULL) {
      snprintf(err, RELAY_ERR_MAX, "out of memory");
      goto failed;
    }
    put32(body, (uint32_t)out.len);
    if (out.len) memcpy(body + 4, out.data, out.len);
    ok = exchange(cn, API_SASL_AUTHENTICATE, body, 4 + out.len, &resp, &resp_len, deadline, "in SaslAuthenticate", err);
    memset(body, 0, 4 + out.len);
    free(body);
    if (out.data) {
      memset(out.data, 0, out.len);
      free(out.data);
      out.data = NULL;
    }
    if (!ok) return 0;
    rd.p = resp, rd.n = resp_len, rd.bad = 0;
    code = take16(&rd);
    msg_len = take16(&rd);
    msg = take_n(&rd, msg_len);
    bytes_len = take32(&rd);
    bytes = take_n(&rd, bytes_len);
    cn->session_lifetime_ms = take64(&rd);
    if (rd.bad) {
      free(resp);
      snprintf(err, RELAY_ERR_MAX, "malformed SaslAuthenticate response");
      return 0;
    }
    if (code != 0) {
      *is_auth = 1;
      if (msg && msg_len > 0)
        snprintf(err, RELAY_ERR_MAX, "%.*s (%s)", (int)msg_len, (const char *)msg, kafka_error_name(code));
      else
        snprintf(err, RELAY_ERR_MAX, "the broker refused the exchange (%s)", kafka_error_name(code));
      free(resp);
      return 0;
    }
    if (done) { /* our last message is accepted */
      free(resp);
      return 1;
    }
    ok = type->step(m, bytes ? (const char *)bytes : "", bytes ? (size_t)bytes_len : 0, &out, &done, merr);
    free(resp);
    if (!ok) {
      *is_auth = 1;
      snprintf(err, RELAY_ERR_MAX, "%s", merr);
      return 0;
    }
    if (done && out.len == 0) {
      free(out.data);
      return 1;
    }
  }
  snprintf(err, RELAY_ERR_MAX, "no result after %d SaslAuthenticate rounds", RELAY_AUTH_ROUNDS);
failed:
  if (out.data) {
    memset(out.data, 0, out.len);
    free(out.data);
  }
  return 0;
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
  if (connect(cn->broker_fd, (struct sockaddr *)&cn->addr, cn->addrlen) == 0) return 1;
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
  return 1;
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

/* Reads an unsigned varint (flexible versions); 0 when truncated. */
static int take_uvarint(reader *rd, uint32_t *v) {
  int shift;
  *v = 0;
  for (shift = 0; shift < 35; shift += 7) {
    const unsigned char *b = take(rd, 1);
    if (b == NULL) return 0;
    *v |= (uint32_t)(*b & 0x7f) << shift;
    if (!(*b & 0x80)) return 1;
  }
  rd->bad = 1;
  return 0;
}

/* Produce with acks=0 gets no response: it must not be waited for. An
 * unreadable header counts as acks != 0. */
static int produce_without_response(const unsigned char *h, size_t n) {
  reader rd = {h, n, 0};
  int16_t version, acks;
  take16(&rd); /* api key */
  version = take16(&rd);
  take32(&rd);                 /* correlation id */
  take_n(&rd, take16(&rd));    /* client id */
  if (version >= 9) {          /* flexible: tagged fields, then a compact string */
    uint32_t tags, len;
    if (!take_uvarint(&rd, &tags) || tags != 0) return 0;
    if (!take_uvarint(&rd, &len)) return 0;
    if (len > 0) take(&rd, len - 1);
  } else if (version >= 3) {
    take_n(&rd, take16(&rd)); /* transactional id */
  }
  acks = take16(&rd);
  return !rd.bad && acks == 0;
}

static void on_request(relay_conn *cn, const unsigned char *h, size_t n) {
  if (n < 8) return;
  atomic_fetch_add_explicit(&cn->r->requests, 1, memory_order_relaxed);
  if (((int)h[0] << 8 | h[1]) == API_PRODUCE && produce_without_response(h, n)) return;
  inflight_push(cn, (int32_t)get32(h + 4));
}

static void on_response(relay_conn *cn, const unsigned char *h, size_t n) {
  int32_t correlation;
  if (n < 4) return;
  atomic_fetch_add_explicit(&cn->r->responses, 1, memory_order_relaxed);
  correlation = (int32_t)get32(h);
  if (cn->inflight_len == 0 || cn->inflight[cn->inflight_head] != correlation) {
    atomic_fetch_add_explicit(&cn->r->unmatched, 1, memory_order_relaxed);
    return;
  }
  cn->inflight_head = (cn->inflight_head + 1) % cn->inflight_cap;
  cn->inflight_len--;
}

/* Follows frame boundaries over n bytes of one direction. */
static void frames_feed(relay_conn *cn, frame_reader *f, int responses, const unsigned char *p, size_t n) {
  while (n > 0) {
    size_t k;
    if (f->head_want == 0) { /* reading the 4-byte size */
      k = 4 - f->head_len < n ? 4 - f->head_len : n;
      memcpy(f->head + f->head_len, p, k);
      f->head_len += k, p += k, n -= k;
      if (f->head_len == 4) {
        f->left = get32(f->head);
        f->head_want = f->left < sizeof f->head ? f->left : sizeof f->head;
        f->head_len = 0;
        if (f->left == 0) f->head_want = 0; /* an empty frame: nothing to track */
      }
      continue;
    }
    k = f->left < n ? f->left : n;
    if (f->head_len < f->head_want) {
      size_t c = f->head_want - f->head_len < k ? f->head_want - f->head_len : k;
      memcpy(f->head + f->head_len, p, c);
      f->head_len += c;
    }
    f->left -= (uint32_t)k, p += k, n -= k;
    if (f->left == 0) {
      if (responses)
        on_response(cn, f->head, f->head_len);
      else
        on_request(cn, f->head, f->head_len);
      f->head_len = f->head_want = 0;
    }
  }
}

/* Moves what it can from d->from to d->to; 0 when the connection is over. */
static int pump(relay_conn *cn, relay_dir *d, int responses, int can_read, int can_write) {
  if (d->off < d->len && can_write) {
    ssize_t n = send(d->to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    d->off += (size_t)n;
    if (d->off == d->len) d->off = d->len = 0;
  }
  if (d->len == 0 && can_read) {
    ssize_t n = recv(d->from, d->buf, RELAY_BUF, MSG_DONTWAIT);
    if (n == 0) return 0;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    frames_feed(cn, &d->frames, responses, d->buf, (size_t)n);
    d->len = (size_t)n;
    n = send(d->to, d->buf, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    d->off = (size_t)n;
    if (d->off == d->len) d->off = d->len = 0;
  }
  return 1;
}

static void forward(relay_conn *cn) {
  relay_dir up, down;
  memset(&up, 0, sizeof up);
  memset(&down, 0, sizeof down);
  up.from = down.to = cn->app_fd;
  up.to = down.from = cn->broker_fd;
  up.buf = malloc(RELAY_BUF);
  down.buf = malloc(RELAY_BUF);
  while (up.buf && down.buf) {
    struct pollfd p[3] = {{cn->r->stop_pipe[0], POLLIN, 0}, {cn->app_fd, 0, 0}, {cn->broker_fd, 0, 0}};
    short hup = POLLHUP | POLLERR;
    if (up.len == 0) p[1].events |= POLLIN; else p[2].events |= POLLOUT;
    if (down.len == 0) p[2].events |= POLLIN; else p[1].events |= POLLOUT;
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) break;
    if (!pump(cn, &up, 0, p[1].revents & (POLLIN | hup), p[2].revents & (POLLOUT | hup))) break;
    if (!pump(cn, &down, 1, p[2].revents & (POLLIN | hup), p[1].revents & (POLLOUT | hup))) break;
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
  int is_auth = 0, ok;
  sasl_mech *m = create_mechanism(cn, err);
  if (m == NULL) {
    is_auth = 1;
    ok = 0;
  } else {
    ok = connect_broker(cn, deadline, err) && handshake(cn, deadline, err, &is_auth) &&
         authenticate(cn, m, deadline, err, &is_auth);
    r->type->destroy(m);
  }
  if (ok) {
    note_authenticated(cn);
    forward(cn);
  } else if (strcmp(err, "the client closed") != 0) {
    if (is_auth)
      snprintf(msg, sizeof msg, "SASL authentication failed with mechanism %s at broker %s (kalua relay): %s",
               r->mechanism, cn->broker, err);
    else
      snprintf(msg, sizeof msg, "kalua relay: broker %s: %s", cn->broker, err);
    note_failure(cn, is_auth, msg);
  }
  if (cn->broker_fd >= 0) close(cn->broker_fd);
  cn->broker_fd = -1;
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
  if (cn->broker_fd >= 0) close(cn->broker_fd);
  free(cn->inflight);
  free(cn);
}

/* Joins finished threads; r->lock held (they are past their last lock). */
static void reap(kafka_relay *r) {
  relay_conn **at = &r->conns;
  while (*at) {
    relay_conn *cn = *at;
    if (cn->started && cn->done) {
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
  wipe_free(r->username);
  wipe_free(r->password);
  wipe_free(r->authzid);
  wipe_free(r->token);
  wipe_free(r->keytab);
  wipe_free(r->principal);
  wipe_free(r->service);
  wipe_free(r->krb5_config);
  free(r);
}
