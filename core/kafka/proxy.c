/* kalua proxy's engine: listeners, the acceptor and connection threads,
 * and the frame pump (see proxy.h). */
#define _GNU_SOURCE /* accept4, pipe2 */
#include "kafka/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "kafka/frames.h"
#include "kafka/relay_tls.h"

#define PROXY_BUF (256 * 1024)
#define PROXY_CAPTURE_MAX (64u << 20) /* a Metadata response of a huge cluster */
#define PROXY_LOGIN_FRAME_MAX (1u << 20)
#define PROXY_EVENTS_MAX 1000
#define SPLICE_MIN (64 * 1024) /* frame bytes still to come that make splicing worth it */
#define SPLICE_PIPE (1 << 20)
#define RESPONSE_HEAD 8 /* size + correlation id */
#define REQUEST_HEAD 12 /* size + api key + version + correlation id */

enum { API_PRODUCE = 0, API_SASL_HANDSHAKE = 17, API_API_VERSIONS = 18, API_SASL_AUTHENTICATE = 36 };
enum { ERR_UNSUPPORTED_SASL_MECHANISM = 33, ERR_ILLEGAL_SASL_STATE = 34, ERR_UNSUPPORTED_VERSION = 35,
       ERR_SASL_AUTHENTICATION_FAILED = 58 };
enum { F_HEAD, F_STREAM, F_CAPTURE };
enum { STEP_IN, STEP_OUT, STEP_HELD, STEP_DONE, STEP_BOTH, STEP_COPY };

typedef struct {
  int32_t correlation;
  int16_t api_key, version;
  int64_t sent_us;
} inflight;

/* One direction of the pump: bytes read from its source, the frame being
 * followed, and bytes its sink must get before any more of in. */
typedef struct {
  int up; /* client to broker */
  unsigned char *in;
  size_t in_len, in_off;
  int state;
  unsigned char head[FRAME_HEAD_MAX];
  size_t head_len;
  uint32_t left;
  int16_t api_key, version;
  unsigned char *cap;
  size_t cap_len, cap_size;
  unsigned char *out;
  size_t out_len, out_off, out_size;
  short src_want, sink_want;
  int pipe[2]; /* splice: socket to pipe to socket, no copy through user space */
  size_t piped;
  int no_splice;
  int src_ready;  /* poll said the source has something (or we have not asked yet) */
  int sink_ready; /* likewise, room in the sink (splicing) */
} pdir;

struct proxy_conn {
  struct proxy_conn *next;
  kafka_proxy *p;
  proxy_listener *l;
  pthread_t thread;
  int done;
  int fd; /* the client's socket (closed under p->lock) */
  SSL *ssl;
  char peer[80];
  char user[128];
  relay_link *link;
  inflight *q;
  size_t q_head, q_len, q_cap;
  unsigned char *refusal; /* a forbidden request's answer, waiting its turn */
  size_t refusal_len;
  int64_t last_active;
};

static int64_t now_us(void) {
  return relay_now_ms() * 1000;
}

/* --- events ---------------------------------------------------------------------------- */

void proxy_event_push(kafka_proxy *p, const char *kind, const char *fmt, ...) {
  proxy_event *e = calloc(1, sizeof *e);
  char msg[PROXY_ERR_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (e == NULL || (e->message = strdup(msg)) == NULL) {
    free(e);
    return;
  }
  snprintf(e->kind, sizeof e->kind, "%s", kind);
  pthread_mutex_lock(&p->lock);
  if (p->nevents >= PROXY_EVENTS_MAX) { /* nobody reads them: keep the newest */
    proxy_event *old = p->events;
    p->events = old->next;
    if (p->events == NULL) p->events_tail = NULL;
    free(old->message);
    free(old);
    p->nevents--;
    p->events_dropped++;
  }
  if (p->events_tail)
    p->events_tail->next = e;
  else
    p->events = e;
  p->events_tail = e;
  p->nevents++;
  pthread_mutex_unlock(&p->lock);
}

/* --- listeners ------------------------------------------------------------------------- */

/* "host:port" or "[v6]:port" into host and port; 0 if malformed. */
static int split_address(const char *addr, char *host, size_t hostlen, int32_t *port) {
  const char *colon = strrchr(addr, ':');
  char *end;
  long v;
  if (colon == NULL || colon == addr) return 0;
  if (addr[0] == '[') {
    if (colon[-1] != ']') return 0;
    snprintf(host, hostlen, "%.*s", (int)(colon - addr - 2), addr + 1);
  } else {
    snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
  }
  v = strtol(colon + 1, &end, 10);
  if (*end != '\0' || v < 0 || v > 65535) return 0;
  *port = (int32_t)v;
  return 1;
}

static int bind_listener(const char *host, int32_t port, int32_t *bound, char *err, size_t errlen) {
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  int fd = -1, rc, one = 1;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  snprintf(service, sizeof service, "%d", (int)port);
  if ((rc = getaddrinfo(host[0] ? host : NULL, service, &hints, &res)) != 0) {
    snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 256) == 0) break;
    snprintf(err, errlen, "cannot listen on %s:%d: %s", host, (int)port, strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
  }
  return fd;
}

static void format_address(char *dst, size_t n, const char *host, int32_t port) {
  snprintf(dst, n, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, (int)port);
}

static proxy_listener *listener_new(const char *upstream, const char *listen, const char *advertised, int dynamic,
                                    char *err, size_t errlen) {
  proxy_listener *l = calloc(1, sizeof *l);
  char host[256];
  int32_t port = 0, bound = 0;
  if (l == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (!split_address(upstream, l->up_host, sizeof l->up_host, &l->up_port)) {
    snprintf(err, errlen, "broker address '%s' is not host:port", upstream);
    goto bad;
  }
  if (!split_address(listen, host, sizeof host, &port)) {
    snprintf(err, errlen, "listen address '%s' is not host:port", listen);
    goto bad;
  }
  if ((l->fd = bind_listener(host, port, &bound, err, errlen)) < 0) goto bad;
  format_address(l->listen, sizeof l->listen, host, bound);
  if (advertised && *advertised) {
    if (!split_address(advertised, l->adv_host, sizeof l->adv_host, &l->adv_port)) {
      snprintf(err, errlen, "advertised address '%s' is not host:port", advertised);
      close(l->fd);
      goto bad;
    }
    if (l->adv_port == 0) l->adv_port = bound; /* host:0 - the port we got */
  } else {
    snprintf(l->adv_host, sizeof l->adv_host, "%s", host[0] && strcmp(host, "0.0.0.0") != 0 ? host : "localhost");
    l->adv_port = bound;
  }
  format_address(l->advertised, sizeof l->advertised, l->adv_host, l->adv_port);
  format_address(l->upstream, sizeof l->upstream, l->up_host, l->up_port);
  l->dynamic = dynamic;
  return l;
bad:
  free(l);
  return NULL;
}

/* p->lock held. */
static void listener_insert(kafka_proxy *p, proxy_listener *l) {
  l->next = p->listeners;
  p->listeners = l;
  if (p->started) (void)!write(p->wake_pipe[1], "l", 1); /* the acceptor polls it from now on */
}

proxy_listener *proxy_add_listener(kafka_proxy *p, const char *upstream, const char *listen, const char *advertised,
                                   int dynamic, char *err, size_t errlen) {
  proxy_listener *l = listener_new(upstream, listen, advertised, dynamic, err, errlen);
  if (l == NULL) return NULL;
  pthread_mutex_lock(&p->lock);
  listener_insert(p, l);
  pthread_mutex_unlock(&p->lock);
  return l;
}

/* The listener for a broker, under p->lock. */
static proxy_listener *find_listener(kafka_proxy *p, const char *host, int32_t port) {
  proxy_listener *l;
  for (l = p->listeners; l; l = l->next)
    if (l->up_port == port && strcasecmp(l->up_host, host) == 0) return l;
  return NULL;
}

/* wire's callback: where clients must go for broker host:port. A broker
 * nobody mapped gets a dynamic listener, or fails the response. */
static int map_broker(void *ud, int32_t node_id, const char *host, int32_t port, wire_addr *out) {
  proxy_conn *cn = ud;
  kafka_proxy *p = cn->p;
  proxy_listener *l;
  char upstream[300], listen[300], err[PROXY_ERR_MAX] = "";
  int found;
  pthread_mutex_lock(&p->lock);
  found = (l = find_listener(p, host, port)) != NULL;
  if (l == NULL && p->dynamic) { /* under the lock: two connections that discover one broker make one listener */
    format_address(upstream, sizeof upstream, host, port);
    format_address(listen, sizeof listen, p->dynamic_host, p->dynamic_port_next ? p->dynamic_port_next++ : 0);
    if ((l = listener_new(upstream, listen, NULL, 1, err, sizeof err)) != NULL) {
      if (p->dynamic_advertised[0]) {
        snprintf(l->adv_host, sizeof l->adv_host, "%s", p->dynamic_advertised);
        format_address(l->advertised, sizeof l->advertised, l->adv_host, l->adv_port);
      }
      listener_insert(p, l);
    }
  }
  if (l) {
    snprintf(out->host, sizeof out->host, "%s", l->adv_host);
    out->port = l->adv_port;
  }
  pthread_mutex_unlock(&p->lock);
  if (l && !found)
    proxy_event_push(p, "listener", "listening on %s for %s (node %d, discovered)", l->listen, l->upstream,
                     (int)node_id);
  if (l == NULL && p->dynamic)
    proxy_event_push(p, "error", "cannot open a listener for broker %s:%d (node %d): %s", host, (int)port,
                     (int)node_id, err);
  else if (l == NULL)
    proxy_event_push(p, "error", "broker %s:%d (node %d) has no listener: map it (--map) or allow dynamic listeners",
                     host, (int)port, (int)node_id);
  return l ? 1 : -1;
}

/* --- the client's socket: TCP, or TLS over it ---------------------------------------- */

/* One non-blocking read or write: bytes, 0 closed, -1 wait (*want), -2 failed. */
static ssize_t client_io(proxy_conn *cn, int writing, void *buf, size_t n, short *want) {
  ssize_t k;
  if (cn->ssl == NULL) {
    k = writing ? send(cn->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(cn->fd, buf, n, MSG_DONTWAIT);
    if (k > 0) return k;
    if (k == 0 && !writing) return 0;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      *want = writing ? POLLOUT : POLLIN;
      return -1;
    }
    return errno == ECONNRESET || errno == EPIPE ? 0 : -2;
  }
  ERR_clear_error();
  k = writing ? SSL_write(cn->ssl, buf, (int)(n > INT_MAX ? INT_MAX : n))
              : SSL_read(cn->ssl, buf, (int)(n > INT_MAX ? INT_MAX : n));
  if (k > 0) return k;
  switch (SSL_get_error(cn->ssl, (int)k)) {
  case SSL_ERROR_WANT_READ: *want = POLLIN; return -1;
  case SSL_ERROR_WANT_WRITE: *want = POLLOUT; return -1;
  case SSL_ERROR_ZERO_RETURN: return 0;
  case SSL_ERROR_SYSCALL: return 0;
  default: return ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING ? 0 : -2;
  }
}

/* Waits for fd (or the proxy stopping) until deadline; 0 on stop/timeout. */
static int wait_for(proxy_conn *cn, int fd, short events, int64_t deadline) {
  for (;;) {
    struct pollfd pf[2] = {{fd, events, 0}, {cn->p->stop_pipe[0], POLLIN, 0}};
    int64_t left = deadline - relay_now_ms();
    int n;
    if (left <= 0) return 0;
    n = poll(pf, 2, (int)(left > 1000 ? 1000 : left));
    if (n < 0 && errno != EINTR) return 0;
    if (n <= 0) continue;
    if (pf[1].revents) return 0;
    if (pf[0].revents) return 1;
  }
}

static int client_all(proxy_conn *cn, int writing, unsigned char *p, size_t len, int64_t deadline) {
  while (len > 0) {
    short want = 0;
    ssize_t n = client_io(cn, writing, p, len, &want);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    } else if (n == -1) {
      if (!wait_for(cn, cn->fd, want, deadline)) return 0;
    } else {
      return 0;
    }
  }
  return 1;
}

static int tls_accept(proxy_conn *cn, int64_t deadline) {
  kafka_proxy *p = cn->p;
  if ((cn->ssl = SSL_new(p->server_ctx)) == NULL || SSL_set_fd(cn->ssl, cn->fd) != 1) return 0;
  for (;;) {
    int rc;
    ERR_clear_error();
    rc = SSL_accept(cn->ssl);
    if (rc == 1) return 1;
    switch (SSL_get_error(cn->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      if (!wait_for(cn, cn->fd, POLLIN, deadline)) return 0;
      break;
    case SSL_ERROR_WANT_WRITE:
      if (!wait_for(cn, cn->fd, POLLOUT, deadline)) return 0;
      break;
    default: {
      char err[PROXY_ERR_MAX];
      relay_tls_describe(cn->ssl, cn->peer, err, sizeof err);
      atomic_fetch_add(&p->local_failed, 1);
      proxy_event_push(p, "auth", "client %s: TLS handshake failed: %s", cn->peer, err);
      return 0;
    }
    }
  }
}

/* mTLS subject rules: the first rule whose pattern matches the client
 * certificate's subject (RFC 2253, e.g. "CN=alice,O=kalua") names the user. */
static int match_subject(proxy_conn *cn) {
  kafka_proxy *p = cn->p;
  X509 *cert;
  BIO *bio;
  char subject[512] = "";
  proxy_subject_rule *r;
  if (p->subjects == NULL) return 1;
  if ((cert = SSL_get1_peer_certificate(cn->ssl)) == NULL) {
    proxy_event_push(p, "auth", "client %s: no client certificate", cn->peer);
    return 0;
  }
  if ((bio = BIO_new(BIO_s_mem())) != NULL) {
    int n;
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    n = BIO_read(bio, subject, sizeof subject - 1);
    subject[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
  }
  X509_free(cert);
  for (r = p->subjects; r; r = r->next)
    if (fnmatch(r->pattern, subject, 0) == 0) {
      snprintf(cn->user, sizeof cn->user, "%s", r->user);
      return 1;
    }
  atomic_fetch_add(&p->local_failed, 1);
  proxy_event_push(p, "auth", "client %s: certificate subject '%s' matches no client_subjects rule", cn->peer,
                   subject);
  return 0;
}

/* --- local authentication: the proxy as a SASL PLAIN server -------------------------- */

/* One whole frame from the client (its size cut off), during login. */
static unsigned char *read_frame(proxy_conn *cn, size_t *len, int64_t deadline) {
  unsigned char size[4], *frame;
  uint32_t n;
  if (!client_all(cn, 0, size, 4, deadline)) return NULL;
  n = frames_get32(size);
  if (n < 8 || n > PROXY_LOGIN_FRAME_MAX || (frame = malloc(n)) == NULL) return NULL;
  if (!client_all(cn, 0, frame, n, deadline)) {
    free(frame);
    return NULL;
  }
  *len = n;
  return frame;
}

static int send_frame(proxy_conn *cn, unsigned char *frame, size_t len, int64_t deadline) {
  int ok = frame != NULL && client_all(cn, 1, frame, len, deadline);
  free(frame);
  return ok;
}

/* The brokers' ApiVersions, asked once over an upstream link (clients ask
 * before they authenticate, when the proxy has no link of theirs yet). */
static int learn_versions(proxy_conn *cn) {
  kafka_proxy *p = cn->p;
  char err[PROXY_ERR_MAX];
  unsigned char *resp = NULL, *frame;
  size_t resp_len = 0, i;
  wire_api_range *ranges = NULL;
  size_t count = 0;
  int is_auth = 0, ok;
  relay_link *l;
  pthread_mutex_lock(&p->lock);
  ok = p->versions != NULL;
  pthread_mutex_unlock(&p->lock);
  if (ok) return 1;
  if ((l = relay_link_open(p->upstream, cn->l->upstream, cn->fd, err, sizeof err, &is_auth)) == NULL) {
    proxy_event_push(p, "error", "cannot ask broker %s its API versions: %s", cn->l->upstream, err);
    return 0;
  }
  ok = relay_link_request(l, API_API_VERSIONS, 0, (const unsigned char *)"", 0, &resp, &resp_len, err);
  relay_link_close(l);
  if (!ok) {
    proxy_event_push(p, "error", "cannot ask broker %s its API versions: %s", cn->l->upstream, err);
    return 0;
  }
  if ((frame = malloc(resp_len + 4)) != NULL) { /* wire wants the correlation id back in front */
    memset(frame, 0, 4);
    memcpy(frame + 4, resp, resp_len);
    ok = wire_parse_api_versions(0, frame, resp_len + 4, &ranges, &count);
    free(frame);
  } else {
    ok = 0;
  }
  free(resp);
  if (!ok) return 0;
  /* never a version whose responses name brokers the proxy does not rewrite, nor an ApiVersions it cannot write */
  for (i = 0; i < count; i++) {
    int16_t max = ranges[i].key == API_API_VERSIONS ? WIRE_API_VERSIONS_MAX : wire_client_max_version(ranges[i].key);
    if (max >= 0 && ranges[i].max > max) ranges[i].max = max;
  }
  pthread_mutex_lock(&p->lock);
  if (p->versions == NULL) {
    p->versions = ranges;
    p->nversions = count;
    ranges = NULL;
  }
  pthread_mutex_unlock(&p->lock);
  free(ranges);
  return 1;
}

/* The check function: fn(user, password, {peer=, listener=, broker=}) ->
 * true | identity string, or nil/false, reason. */
static int check_password(proxy_conn *cn, const char *user, size_t user_len, const char *pass, size_t pass_len,
                          char *reason, size_t reason_len) {
  kafka_proxy *p = cn->p;
  lua_State *L = p->L;
  int ok = 0;
  pthread_mutex_lock(&p->lua_lock);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->check_fn);
  lua_pushlstring(L, user, user_len);
  lua_pushlstring(L, pass, pass_len);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, cn->peer);
  lua_setfield(L, -2, "peer");
  lua_pushstring(L, cn->l->listen);
  lua_setfield(L, -2, "listener");
  lua_pushstring(L, cn->l->upstream);
  lua_setfield(L, -2, "broker");
  if (lua_pcall(L, 3, 2, 0) != LUA_OK) {
    snprintf(reason, reason_len, "%s: %s", p->check_path, lua_tostring(L, -1));
    lua_pop(L, 1);
  } else if (lua_type(L, -2) == LUA_TSTRING) {
    snprintf(cn->user, sizeof cn->user, "%s", lua_tostring(L, -2));
    ok = 1;
  } else if (lua_toboolean(L, -2)) {
    snprintf(cn->user, sizeof cn->user, "%.*s", (int)user_len, user);
    ok = 1;
  } else {
    snprintf(reason, reason_len, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "invalid credentials");
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT); /* the password was a Lua string */
  pthread_mutex_unlock(&p->lua_lock);
  return ok;
}

static int answer_api_versions(proxy_conn *cn, const wire_request *h, int64_t deadline) {
  kafka_proxy *p = cn->p;
  unsigned char *out = NULL;
  size_t out_len = 0;
  int ok;
  if (!learn_versions(cn)) return 0;
  pthread_mutex_lock(&p->lock);
  /* KIP-511: a version we cannot write gets v0 and UNSUPPORTED_VERSION */
  ok = h->api_version > WIRE_API_VERSIONS_MAX ? wire_api_versions_response(0, h->correlation, ERR_UNSUPPORTED_VERSION, p->versions,
                                                       p->nversions, &out, &out_len)
                          : wire_api_versions_response(h->api_version, h->correlation, 0, p->versions, p->nversions,
                                                       &out, &out_len);
  pthread_mutex_unlock(&p->lock);
  return ok && send_frame(cn, out, out_len, deadline);
}

static int answer_authenticate(proxy_conn *cn, const wire_request *h, const unsigned char *frame, size_t len,
                               int64_t deadline) {
  kafka_proxy *p = cn->p;
  const unsigned char *msg = NULL;
  const char *authzid, *user = "", *pass;
  size_t n = 0, authzid_len, user_len = 0, pass_len, out_len = 0;
  char reason[PROXY_ERR_MAX] = "invalid credentials";
  unsigned char *out = NULL;
  int ok = 0;
  if (wire_sasl_authenticate_bytes(h, frame, len, &msg, &n) &&
      wire_sasl_plain(msg, n, &authzid, &authzid_len, &user, &user_len, &pass, &pass_len))
    ok = check_password(cn, user, user_len, pass, pass_len, reason, sizeof reason);
  else
    snprintf(reason, sizeof reason, "malformed PLAIN message");
  if (ok) {
    atomic_fetch_add(&p->local_ok, 1);
    wire_sasl_authenticate_response(h->api_version, h->correlation, 0, NULL, NULL, 0, 0, &out, &out_len);
    return send_frame(cn, out, out_len, deadline);
  }
  atomic_fetch_add(&p->local_failed, 1);
  proxy_event_push(p, "auth", "client %s: local authentication failed for user '%.*s': %s", cn->peer,
                   (int)(user_len > 100 ? 100 : user_len), user, reason);
  wire_sasl_authenticate_response(h->api_version, h->correlation, ERR_SASL_AUTHENTICATION_FAILED,
                                  "Authentication failed: invalid credentials", NULL, 0, 0, &out, &out_len);
  send_frame(cn, out, out_len, deadline);
  return 0;
}

/* Until the client has authenticated: ApiVersions (answered from what the
 * brokers support), SaslHandshake (PLAIN only), SaslAuthenticate. */
static int local_login(proxy_conn *cn, int64_t deadline) {
  static const char *const plain[] = {"PLAIN", NULL};
  int handshaken = 0;
  for (;;) {
    size_t len = 0;
    unsigned char *frame = read_frame(cn, &len, deadline), *out = NULL;
    size_t out_len = 0;
    wire_request h;
    const char *mech;
    size_t mech_len;
    int ok = 0;
    if (frame == NULL) return 0;
    if (!wire_parse_request(frame, len, &h)) {
      free(frame);
      return 0;
    }
    switch (h.api_key) {
    case API_API_VERSIONS: ok = answer_api_versions(cn, &h, deadline); break;
    case API_SASL_HANDSHAKE:
      if (wire_sasl_handshake_mechanism(&h, frame, len, &mech, &mech_len) && mech_len == 5 &&
          memcmp(mech, "PLAIN", 5) == 0) {
        handshaken = 1;
        wire_sasl_handshake_response(h.correlation, 0, plain, &out, &out_len);
        ok = send_frame(cn, out, out_len, deadline);
      } else {
        wire_sasl_handshake_response(h.correlation, ERR_UNSUPPORTED_SASL_MECHANISM, plain, &out, &out_len);
        send_frame(cn, out, out_len, deadline);
        atomic_fetch_add(&cn->p->local_failed, 1);
        proxy_event_push(cn->p, "auth", "client %s asked for a SASL mechanism other than PLAIN", cn->peer);
      }
      break;
    case API_SASL_AUTHENTICATE:
      if (handshaken) {
        ok = answer_authenticate(cn, &h, frame, len, deadline);
        free(frame);
        return ok;
      }
      break;
    default:
      atomic_fetch_add(&cn->p->local_failed, 1);
      proxy_event_push(cn->p, "auth", "client %s sent %s before authenticating (this proxy wants SASL PLAIN)",
                       cn->peer, wire_api_key_name(h.api_key));
      break;
    }
    free(frame);
    if (!ok) return 0;
  }
}

/* --- the pump ------------------------------------------------------------------------- */

static int queue_push(proxy_conn *cn, int32_t correlation, int16_t key, int16_t version) {
  if (cn->q_len == cn->q_cap) {
    size_t cap = cn->q_cap ? cn->q_cap * 2 : 64, i;
    inflight *grown = malloc(cap * sizeof *grown);
    if (grown == NULL) return 0;
    for (i = 0; i < cn->q_len; i++) grown[i] = cn->q[(cn->q_head + i) % cn->q_cap];
    free(cn->q);
    cn->q = grown;
    cn->q_cap = cap;
    cn->q_head = 0;
  }
  cn->q[(cn->q_head + cn->q_len++) % cn->q_cap] = (inflight){correlation, key, version, now_us()};
  return 1;
}

/* The request a response answers. Responses come in order; requests
 * before the match got none (Produce with acks=0 whose header we could
 * not read). 0 when nothing matches. */
static int queue_match(proxy_conn *cn, int32_t correlation, inflight *out) {
  size_t i;
  for (i = 0; i < cn->q_len; i++)
    if (cn->q[(cn->q_head + i) % cn->q_cap].correlation == correlation) {
      *out = cn->q[(cn->q_head + i) % cn->q_cap];
      cn->q_head = (cn->q_head + i + 1) % cn->q_cap;
      cn->q_len -= i + 1;
      return 1;
    }
  return 0;
}

static int append(unsigned char **buf, size_t *len, size_t *size, const unsigned char *p, size_t n) {
  if (*len + n > *size) {
    size_t want = *size ? *size : 4096;
    unsigned char *grown;
    while (want < *len + n) want *= 2;
    if ((grown = realloc(*buf, want)) == NULL) return 0;
    *buf = grown;
    *size = want;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  return 1;
}

static ssize_t sink_write(proxy_conn *cn, pdir *d, const unsigned char *p, size_t n) {
  char err[RELAY_LINK_ERR_MAX];
  ssize_t k = d->up ? relay_link_io(cn->link, 1, (void *)p, n, &d->sink_want, err)
                    : client_io(cn, 1, (void *)p, n, &d->sink_want);
  return k;
}

/* Writes what d->out holds: 1 when empty, 0 when the sink is full, -1 gone. */
static int flush_out(proxy_conn *cn, pdir *d) {
  while (d->out_off < d->out_len) {
    ssize_t k = sink_write(cn, d, d->out + d->out_off, d->out_len - d->out_off);
    if (k == -1) return 0;
    if (k <= 0) return -1;
    d->out_off += (size_t)k;
  }
  d->out_off = d->out_len = 0;
  return 1;
}

/* A request's head is read: stream it on, or hold it back if forbidden. */
static int request_head(proxy_conn *cn, pdir *d, uint32_t size) {
  kafka_proxy *p = cn->p;
  int16_t key, version;
  int32_t correlation;
  if (!frames_request_api(d->head + 4, d->head_len - 4, &key, &version, &correlation)) return 0;
  d->api_key = key;
  d->version = version;
  if (key >= 0 && key < PROXY_API_KEYS) {
    atomic_fetch_add_explicit(&p->requests[key], 1, memory_order_relaxed);
    if (p->forbidden[key]) {
      if (size > PROXY_CAPTURE_MAX) return 0;
      d->cap_len = 0;
      if (!append(&d->cap, &d->cap_len, &d->cap_size, d->head, d->head_len)) return 0;
      d->state = F_CAPTURE;
      return 1;
    }
  }
  if (!(key == API_PRODUCE && frames_produce_without_response(d->head + 4, d->head_len - 4)) &&
      !queue_push(cn, correlation, key, version))
    return 0;
  if (!append(&d->out, &d->out_len, &d->out_size, d->head, d->head_len)) return 0;
  d->state = F_STREAM;
  return 1;
}

/* A response's head is read: note the latency; capture what gets rewritten. */
static int response_head(proxy_conn *cn, pdir *d, uint32_t size) {
  kafka_proxy *p = cn->p;
  inflight req;
  int capture = 0;
  if (queue_match(cn, (int32_t)frames_get32(d->head + 4), &req)) {
    d->api_key = req.api_key;
    d->version = req.version;
    if (req.api_key >= 0 && req.api_key < PROXY_API_KEYS) {
      atomic_fetch_add_explicit(&p->latency_us[req.api_key], now_us() - req.sent_us, memory_order_relaxed);
      atomic_fetch_add_explicit(&p->latency_n[req.api_key], 1, memory_order_relaxed);
    }
    capture = wire_rewrites(req.api_key) || req.api_key == API_API_VERSIONS;
  } else {
    atomic_fetch_add(&p->unmatched, 1);
  }
  if (capture) {
    if (size > PROXY_CAPTURE_MAX) {
      proxy_event_push(p, "error", "a %s response of %u bytes is too large to rewrite", wire_api_key_name(req.api_key),
                       size);
      return 0;
    }
    d->cap_len = 0;
    if (!append(&d->cap, &d->cap_len, &d->cap_size, d->head, d->head_len)) return 0;
    d->state = F_CAPTURE;
    return 1;
  }
  if (!append(&d->out, &d->out_len, &d->out_size, d->head, d->head_len)) return 0;
  d->state = F_STREAM;
  return 1;
}

/* A captured frame is whole: rewrite a response, or answer a forbidden
 * request (after the responses before it: clients expect them in order). */
static int captured(proxy_conn *cn, pdir *d) {
  kafka_proxy *p = cn->p;
  char err[WIRE_ERR_MAX] = "";
  unsigned char *out = NULL;
  size_t out_len = 0;
  if (d->up) {
    if (!wire_refusal(d->cap + 4, d->cap_len - 4, &out, &out_len, err, sizeof err)) {
      proxy_event_push(p, "error", "client %s: cannot refuse %s: %s", cn->peer, wire_api_key_name(d->api_key), err);
      return 0;
    }
    atomic_fetch_add(&p->forbidden_answered, 1);
    proxy_event_push(p, "forbidden", "client %s (%s): refused %s v%d", cn->peer, cn->user[0] ? cn->user : "-",
                     wire_api_key_name(d->api_key), (int)d->version);
    cn->refusal = out; /* NULL for Produce with acks=0: nothing to say */
    cn->refusal_len = out_len;
    return 1;
  }
  if (d->api_key == API_API_VERSIONS) {
    wire_clamp_api_versions(d->version, d->cap + 4, d->cap_len - 4);
    return append(&d->out, &d->out_len, &d->out_size, d->cap, d->cap_len);
  }
  if (!wire_rewrite_response(d->api_key, d->version, d->cap + 4, d->cap_len - 4, map_broker, cn, &out, &out_len, err,
                             sizeof err)) {
    proxy_event_push(p, "error", "cannot rewrite a %s v%d response from %s: %s", wire_api_key_name(d->api_key),
                     (int)d->version, cn->l->upstream, err);
    return 0;
  }
  atomic_fetch_add(&p->rewritten, 1);
  append(&d->out, &d->out_len, &d->out_size, out, out_len) ? (void)0 : (void)(out_len = 0);
  free(out);
  return out_len > 0;
}

/* Bytes wanted for a frame's head: the whole frame when shorter. */
static size_t head_want(const pdir *d) {
  uint32_t size;
  size_t want = d->up ? FRAME_HEAD_MAX : RESPONSE_HEAD;
  if (d->head_len < 4) return 4;
  size = frames_get32(d->head);
  return (size_t)size + 4 < want ? (size_t)size + 4 : want;
}

/* Follows frames through the bytes in d->in. */
static int consume(proxy_conn *cn, pdir *d, int may_start) {
  while (d->in_off < d->in_len) {
    size_t avail = d->in_len - d->in_off;
    if (d->state == F_HEAD) {
      size_t want, n;
      uint32_t size;
      if (d->head_len == 0 && !may_start) return STEP_HELD;
      want = head_want(d);
      n = want - d->head_len < avail ? want - d->head_len : avail;
      memcpy(d->head + d->head_len, d->in + d->in_off, n);
      d->head_len += n;
      d->in_off += n;
      if (d->head_len < 4 || d->head_len < head_want(d)) continue;
      size = frames_get32(d->head);
      if (size < (d->up ? REQUEST_HEAD : RESPONSE_HEAD) - 4) return STEP_DONE; /* not Kafka */
      d->left = size + 4 - (uint32_t)d->head_len;
      if (!(d->up ? request_head(cn, d, size) : response_head(cn, d, size))) return STEP_DONE;
      d->head_len = 0;
    } else if (d->state == F_CAPTURE) {
      size_t n = d->left < avail ? d->left : avail;
      if (!append(&d->cap, &d->cap_len, &d->cap_size, d->in + d->in_off, n)) return STEP_DONE;
      d->in_off += n;
      d->left -= (uint32_t)n;
    } else {
      int f = flush_out(cn, d);
      size_t n = d->left < avail ? d->left : avail;
      ssize_t k;
      if (f <= 0) return f == 0 ? STEP_OUT : STEP_DONE;
      if (n == 0) {
        k = 0;
      } else if ((k = sink_write(cn, d, d->in + d->in_off, n)) == -1) {
        return STEP_OUT;
      } else if (k <= 0) {
        return STEP_DONE;
      }
      d->in_off += (size_t)k;
      d->left -= (uint32_t)k;
    }
    if (d->state != F_HEAD && d->left == 0) {
      int was_capture = d->state == F_CAPTURE;
      d->state = F_HEAD;
      if (was_capture && !captured(cn, d)) return STEP_DONE;
      if (d->up && cn->refusal_len) return STEP_HELD; /* wait for the answers before it */
    }
  }
  return STEP_IN;
}

/* The rest of a large frame (a fetch response, a produce request) with
 * neither side on TLS: spliced through a pipe, never copied into the proxy. */
static int can_splice(proxy_conn *cn, pdir *d) {
  if (d->piped > 0) return 1;
  if (d->state != F_STREAM || d->left < SPLICE_MIN || d->in_off < d->in_len || d->out_len > 0 || cn->ssl ||
      relay_link_tls(cn->link))
    return 0;
  if (d->pipe[0] < 0) {
    if (d->no_splice || pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
      d->no_splice = 1;
      return 0;
    }
    fcntl(d->pipe[1], F_SETPIPE_SZ, SPLICE_PIPE);
  }
  return 1;
}

/* Reads into the pipe while it has room and writes out of it while the
 * sink takes bytes, so a slow side does not stop the other: a fetch
 * response keeps coming from the broker while the client drains the last
 * megabyte. STEP_BOTH: waiting on the source and the sink at once. */
static int splice_step(proxy_conn *cn, pdir *d) {
  int src = d->up ? cn->fd : relay_link_fd(cn->link), sink = d->up ? relay_link_fd(cn->link) : cn->fd;
  for (;;) {
    int moved = 0;
    ssize_t k;
    if (d->piped > 0 && d->sink_ready) {
      k = splice(d->pipe[0], NULL, sink, NULL, d->piped, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
        d->sink_ready = 0;
      } else if (k <= 0) {
        return STEP_DONE;
      } else {
        d->piped -= (size_t)k;
        moved = 1;
      }
    }
    if (d->left > 0 && d->piped < SPLICE_PIPE && d->src_ready) {
      size_t room = SPLICE_PIPE - d->piped;
      k = splice(src, NULL, d->pipe[1], NULL, d->left < room ? d->left : room, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
        d->src_ready = 0;
      } else if (k <= 0) {
        return STEP_DONE;
      } else {
        d->left -= (uint32_t)k;
        d->piped += (size_t)k;
        atomic_fetch_add_explicit(d->up ? &cn->p->bytes_in : &cn->p->bytes_out, k, memory_order_relaxed);
        cn->last_active = relay_now_ms();
        moved = 1;
      }
    }
    if (d->left == 0 && d->piped == 0) {
      d->state = F_HEAD;
      return STEP_COPY; /* back to the copying path */
    }
    if (!moved) break;
  }
  d->src_want = POLLIN;
  d->sink_want = POLLOUT;
  if (d->piped > 0 && !d->sink_ready && d->left > 0 && d->piped < SPLICE_PIPE && !d->src_ready) return STEP_BOTH;
  if (d->piped > 0 && !d->sink_ready) return STEP_OUT;
  return STEP_IN;
}

/* Moves what can move in one direction without blocking. */
static int step(proxy_conn *cn, pdir *d, int may_start) {
  for (;;) {
    int f = flush_out(cn, d), rc;
    ssize_t k;
    char err[RELAY_LINK_ERR_MAX];
    if (f < 0) return STEP_DONE;
    if (f == 0) return STEP_OUT;
    if (can_splice(cn, d)) {
      rc = splice_step(cn, d);
      if (rc != STEP_COPY) return rc;
      continue;
    }
    if (d->in_off < d->in_len) {
      rc = consume(cn, d, may_start);
      if (rc != STEP_IN) return rc;
      continue;
    }
    if (!may_start && d->state == F_HEAD && d->head_len == 0) return STEP_HELD;
    d->in_off = d->in_len = 0;
    if (!d->src_ready && !(d->up ? cn->ssl && SSL_pending(cn->ssl) > 0 : relay_link_pending(cn->link)))
      return STEP_IN; /* no read that poll already said would wait */
    k = d->up ? client_io(cn, 0, d->in, PROXY_BUF, &d->src_want)
              : relay_link_io(cn->link, 0, d->in, PROXY_BUF, &d->src_want, err);
    if (k == -1) {
      d->src_ready = 0;
      return STEP_IN;
    }
    if (k <= 0) return STEP_DONE;
    atomic_fetch_add_explicit(d->up ? &cn->p->bytes_in : &cn->p->bytes_out, k, memory_order_relaxed);
    cn->last_active = relay_now_ms();
    d->in_len = (size_t)k;
  }
}

/* Nothing half-sent, nothing awaited: a point where the link can pause. */
static int quiet(proxy_conn *cn, const pdir *up, const pdir *down) {
  return up->state == F_HEAD && up->head_len == 0 && up->out_len == 0 && cn->q_len == 0 && down->state == F_HEAD &&
         down->head_len == 0 && down->out_len == 0 && down->in_off == down->in_len;
}

static int pump_timeout(proxy_conn *cn, int holding) {
  kafka_proxy *p = cn->p;
  int64_t now = relay_now_ms(), t = p->idle_timeout_ms > 0 ? cn->last_active + p->idle_timeout_ms - now : INT_MAX;
  int64_t reauth = relay_link_reauth_at(cn->link);
  if (holding) return 100;
  if (reauth && reauth - now < t) t = reauth - now;
  if (t > 60000) t = 60000;
  return t < 0 ? 0 : (int)t;
}

static void pump(proxy_conn *cn) {
  kafka_proxy *p = cn->p;
  pdir up, down;
  memset(&up, 0, sizeof up);
  memset(&down, 0, sizeof down);
  up.up = 1;
  up.pipe[0] = up.pipe[1] = down.pipe[0] = down.pipe[1] = -1;
  up.src_ready = down.src_ready = up.sink_ready = down.sink_ready = 1;
  up.in = malloc(PROXY_BUF);
  down.in = malloc(PROXY_BUF);
  cn->last_active = relay_now_ms();
  while (up.in && down.in) {
    int64_t reauth = relay_link_reauth_at(cn->link), now = relay_now_ms();
    int reauth_due = reauth > 0 && now >= reauth, rs, ds, n;
    struct pollfd pf[3] = {{p->stop_pipe[0], POLLIN, 0}, {cn->fd, 0, 0}, {relay_link_fd(cn->link), 0, 0}};
    if (cn->refusal_len && quiet(cn, &up, &down)) { /* its turn: the answers before it are out */
      if (!append(&down.out, &down.out_len, &down.out_size, cn->refusal, cn->refusal_len)) break;
      free(cn->refusal);
      cn->refusal = NULL;
      cn->refusal_len = 0;
    } else if (reauth_due && quiet(cn, &up, &down) && cn->refusal_len == 0) {
      if (!relay_link_reauthenticate(cn->link)) {
        proxy_event_push(p, "error", "re-authentication at broker %s failed; closing client %s", cn->l->upstream,
                         cn->peer);
        break;
      }
      continue;
    }
    rs = step(cn, &up, !reauth_due && cn->refusal_len == 0);
    ds = step(cn, &down, 1);
    if (rs == STEP_DONE || ds == STEP_DONE) break;
    if (p->idle_timeout_ms > 0 && relay_now_ms() - cn->last_active > p->idle_timeout_ms) {
      atomic_fetch_add(&p->idle_closed, 1);
      break;
    }
    if (rs == STEP_IN || rs == STEP_BOTH) pf[1].events |= up.src_want;
    if (rs == STEP_OUT || rs == STEP_BOTH) pf[2].events |= up.sink_want;
    if (ds == STEP_IN || ds == STEP_BOTH) pf[2].events |= down.src_want;
    if (ds == STEP_OUT || ds == STEP_BOTH) pf[1].events |= down.sink_want;
    if (ds == STEP_IN && relay_link_pending(cn->link)) continue;
    if (rs == STEP_IN && cn->ssl && SSL_pending(cn->ssl) > 0) continue;
    n = poll(pf, 3, pump_timeout(cn, rs == STEP_HELD));
    if (n < 0 && errno != EINTR) break;
    if (pf[0].revents) break;
    if (pf[1].revents) up.src_ready = down.sink_ready = 1; /* also what TLS waits for: a read may want POLLOUT */
    if (pf[2].revents) down.src_ready = up.sink_ready = 1;
    if ((pf[1].revents | pf[2].revents) & (POLLHUP | POLLERR | POLLNVAL) && !(pf[1].revents & POLLIN) &&
        !(pf[2].revents & POLLIN))
      break;
  }
  if (up.pipe[0] >= 0) close(up.pipe[0]), close(up.pipe[1]);
  if (down.pipe[0] >= 0) close(down.pipe[0]), close(down.pipe[1]);
  free(up.in);
  free(up.cap);
  free(up.out);
  free(down.in);
  free(down.cap);
  free(down.out);
}

/* --- connection threads ---------------------------------------------------------------- */

static kafka_relay *relay_for(kafka_proxy *p, const char *user) {
  proxy_identity *id;
  if (user[0])
    for (id = p->identities; id; id = id->next)
      if (strcmp(id->user, user) == 0) return id->relay;
  return p->upstream;
}

/* OpenSSL writes with write(2): a client that hangs up mid-write would
 * raise SIGPIPE and end the whole process. Blocked in the proxy's threads
 * (and the threads they start), it stays an EPIPE. */
static void block_sigpipe(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *conn_main(void *arg) {
  proxy_conn *cn = arg;
  kafka_proxy *p = cn->p;
  int64_t deadline = relay_now_ms() + p->handshake_timeout_ms;
  char err[PROXY_ERR_MAX];
  int is_auth = 0;
  block_sigpipe();
  if ((p->server_ctx == NULL || (tls_accept(cn, deadline) && match_subject(cn))) &&
      (p->check_fn == LUA_NOREF || local_login(cn, deadline))) {
    relay_link *link = relay_link_open(relay_for(p, cn->user), cn->l->upstream, cn->fd, err, sizeof err, &is_auth);
    if (link == NULL) {
      atomic_fetch_add(is_auth ? &p->upstream_auth_failed : &p->upstream_failed, 1);
      proxy_event_push(p, is_auth ? "auth" : "error", "client %s (%s): %s", cn->peer, cn->user[0] ? cn->user : "-",
                       err);
    } else {
      pthread_mutex_lock(&p->lock);
      cn->link = link;
      pthread_mutex_unlock(&p->lock);
      pump(cn);
      pthread_mutex_lock(&p->lock);
      cn->link = NULL;
      pthread_mutex_unlock(&p->lock);
      relay_link_close(link);
    }
  }
  if (cn->ssl) {
    if (SSL_is_init_finished(cn->ssl)) SSL_shutdown(cn->ssl); /* not after a failed handshake */
    SSL_free(cn->ssl);
    cn->ssl = NULL;
  }
  pthread_mutex_lock(&p->lock);
  close(cn->fd);
  cn->fd = -1;
  cn->done = 1;
  pthread_mutex_unlock(&p->lock);
  atomic_fetch_sub(&p->active, 1);
  return NULL;
}

static void conn_free(proxy_conn *cn) {
  free(cn->q);
  free(cn->refusal);
  free(cn);
}

/* Joins finished connection threads; p->lock held. */
static void reap(kafka_proxy *p) {
  proxy_conn **at = &p->conns;
  while (*at) {
    proxy_conn *cn = *at;
    if (cn->done) {
      *at = cn->next;
      pthread_join(cn->thread, NULL);
      conn_free(cn);
    } else {
      at = &cn->next;
    }
  }
}

static void describe_peer(const struct sockaddr_storage *ss, char *out, size_t n) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  format_address(out, n, host, port);
}

static void accept_one(kafka_proxy *p, proxy_listener *l) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
  proxy_conn *cn;
  if (fd < 0) return;
  if (p->max_connections > 0 && atomic_load(&p->active) >= p->max_connections) {
    atomic_fetch_add(&p->refused, 1);
    close(fd); /* as a broker at its limit does */
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if ((cn = calloc(1, sizeof *cn)) == NULL) {
    close(fd);
    return;
  }
  cn->p = p;
  cn->l = l;
  cn->fd = fd;
  describe_peer(&ss, cn->peer, sizeof cn->peer);
  atomic_fetch_add(&p->accepted, 1);
  atomic_fetch_add(&p->active, 1);
  atomic_fetch_add(&l->connections, 1);
  pthread_mutex_lock(&p->lock);
  reap(p);
  if (pthread_create(&cn->thread, NULL, conn_main, cn) != 0) {
    pthread_mutex_unlock(&p->lock);
    atomic_fetch_sub(&p->active, 1);
    close(fd);
    free(cn);
    return;
  }
  cn->next = p->conns;
  p->conns = cn;
  pthread_mutex_unlock(&p->lock);
}

#define ACCEPT_FDS_MAX 256

static void *acceptor_main(void *arg) {
  kafka_proxy *p = arg;
  block_sigpipe(); /* connection threads inherit it */
  for (;;) {
    struct pollfd pf[ACCEPT_FDS_MAX + 2];
    proxy_listener *ls[ACCEPT_FDS_MAX], *l;
    int n = 0, i;
    pf[0] = (struct pollfd){p->stop_pipe[0], POLLIN, 0};
    pf[1] = (struct pollfd){p->wake_pipe[0], POLLIN, 0};
    pthread_mutex_lock(&p->lock);
    for (l = p->listeners; l && n < ACCEPT_FDS_MAX; l = l->next) {
      ls[n] = l;
      pf[2 + n++] = (struct pollfd){l->fd, POLLIN, 0};
    }
    pthread_mutex_unlock(&p->lock);
    if (poll(pf, (nfds_t)(n + 2), 1000) < 0 && errno != EINTR) break;
    if (pf[0].revents) break;
    if (pf[1].revents) {
      char drain[64];
      (void)!read(p->wake_pipe[0], drain, sizeof drain);
    }
    for (i = 0; i < n; i++)
      if (pf[2 + i].revents & POLLIN) accept_one(p, ls[i]);
    pthread_mutex_lock(&p->lock);
    reap(p);
    pthread_mutex_unlock(&p->lock);
  }
  return NULL;
}

/* --- lifecycle ------------------------------------------------------------------------- */

kafka_proxy *proxy_new(void) {
  kafka_proxy *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  if (pipe2(p->stop_pipe, O_CLOEXEC) != 0) {
    free(p);
    return NULL;
  }
  if (pipe2(p->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(p->stop_pipe[0]);
    close(p->stop_pipe[1]);
    free(p);
    return NULL;
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_mutex_init(&p->lua_lock, NULL);
  p->check_fn = LUA_NOREF;
  p->handshake_timeout_ms = 30000;
  p->dynamic = 1;
  snprintf(p->dynamic_host, sizeof p->dynamic_host, "127.0.0.1");
  return p;
}

int proxy_start(kafka_proxy *p, char *err, size_t errlen) {
  if (p->started) return 1;
  if (pthread_create(&p->acceptor, NULL, acceptor_main, p) != 0) {
    snprintf(err, errlen, "cannot start the acceptor thread");
    return 0;
  }
  p->started = 1;
  return 1;
}

int proxy_drop_upstream(kafka_proxy *p) {
  proxy_conn *cn;
  int n = 0;
  pthread_mutex_lock(&p->lock);
  for (cn = p->conns; cn; cn = cn->next)
    if (!cn->done && cn->link && shutdown(relay_link_fd(cn->link), SHUT_RDWR) == 0) n++;
  pthread_mutex_unlock(&p->lock);
  return n;
}

static void free_relays(kafka_proxy *p) {
  proxy_identity *id;
  relay_destroy(p->upstream);
  p->upstream = NULL;
  while ((id = p->identities) != NULL) {
    p->identities = id->next;
    relay_destroy(id->relay);
    free(id->user);
    free(id);
  }
}

void proxy_free(kafka_proxy *p) {
  proxy_conn *cn;
  proxy_listener *l;
  proxy_subject_rule *r;
  proxy_event *e;
  if (p == NULL) return;
  pthread_mutex_lock(&p->lock);
  p->stopping = 1;
  for (cn = p->conns; cn; cn = cn->next)
    if (cn->fd >= 0) shutdown(cn->fd, SHUT_RDWR); /* wakes a thread waiting on its client or broker */
  pthread_mutex_unlock(&p->lock);
  (void)!write(p->stop_pipe[1], "x", 1);
  if (p->started) pthread_join(p->acceptor, NULL);
  while ((cn = p->conns) != NULL) {
    p->conns = cn->next;
    pthread_join(cn->thread, NULL);
    conn_free(cn);
  }
  while ((l = p->listeners) != NULL) {
    p->listeners = l->next;
    close(l->fd);
    free(l);
  }
  while ((r = p->subjects) != NULL) {
    p->subjects = r->next;
    free(r->pattern);
    free(r->user);
    free(r);
  }
  while ((e = p->events) != NULL) {
    p->events = e->next;
    free(e->message);
    free(e);
  }
  free_relays(p);
  if (p->L) lua_close(p->L);
  if (p->server_ctx) SSL_CTX_free(p->server_ctx);
  free(p->check_path);
  free(p->versions);
  close(p->stop_pipe[0]);
  close(p->stop_pipe[1]);
  close(p->wake_pipe[0]);
  close(p->wake_pipe[1]);
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->lua_lock);
  free(p);
}
