/* kalua proxy: a Kafka proxy for unmodified clients (see shared/DESIGN.md
 * and scripts/proxy.lua, which drives it).
 *
 *   client ==TCP (TLS)==> local listener ==> connection thread ==relay link==> broker
 *                          (one per broker)   1. TLS accept, client cert rules
 *                                             2. local SASL PLAIN, checked by a
 *                                                Lua function (optional)
 *                                             3. relay_link_open: TCP/TLS + SASL
 *                                                as the local user's identity
 *                                             4. frames both ways: Metadata,
 *                                                FindCoordinator, DescribeCluster
 *                                                rewritten to proxy addresses,
 *                                                forbidden requests answered with
 *                                                an authorization error, KIP-368
 *                                                re-authentication upstream
 *
 * One acceptor thread watches every listener; each client connection has a
 * thread of its own. A broker nobody mapped gets a dynamic listener when a
 * response first names it. Nothing is shared with other proxies or Lua
 * states; the check function runs in a Lua state the proxy owns. */
#ifndef KALUA_KAFKA_PROXY_H
#define KALUA_KAFKA_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <lua.h>
#include <openssl/ssl.h>

#include "kafka/relay.h"
#include "kafka/wire.h"

#define PROXY_API_KEYS 128
#define PROXY_ERR_MAX 512

typedef struct proxy_listener {
  struct proxy_listener *next;
  int fd;
  char listen[300];      /* bound host:port */
  char advertised[300];  /* what clients are told */
  char adv_host[256];
  int32_t adv_port;
  char upstream[300];    /* the broker, as it advertises itself */
  char up_host[256];
  int32_t up_port;
  int dynamic;
  atomic_long connections;
} proxy_listener;

/* A local user with an upstream identity of its own. */
typedef struct proxy_identity {
  struct proxy_identity *next;
  char *user;
  kafka_relay *relay;
} proxy_identity;

/* mTLS: a client whose certificate subject matches pattern is user. */
typedef struct proxy_subject_rule {
  struct proxy_subject_rule *next;
  char *pattern, *user;
} proxy_subject_rule;

typedef struct proxy_event {
  struct proxy_event *next;
  char kind[16];
  char *message;
} proxy_event;

typedef struct proxy_conn proxy_conn;

typedef struct kafka_proxy {
  pthread_mutex_t lock;
  int stop_pipe[2], wake_pipe[2];
  int stopping, started;
  pthread_t acceptor;
  proxy_listener *listeners;
  proxy_conn *conns;
  /* upstream */
  kafka_relay *upstream;
  proxy_identity *identities;
  wire_api_range *versions; /* the brokers' ApiVersions, learnt once (local auth) */
  size_t nversions;
  /* downstream */
  SSL_CTX *server_ctx;
  proxy_subject_rule *subjects;
  lua_State *L; /* the check function's state */
  int check_fn;
  char *check_path;
  pthread_mutex_t lua_lock;
  /* policy */
  unsigned char forbidden[PROXY_API_KEYS];
  int max_connections, idle_timeout_ms, handshake_timeout_ms;
  int dynamic, dynamic_port_next;
  char dynamic_host[256], dynamic_advertised[256];
  /* events for the Lua side to log, oldest first (under lock) */
  proxy_event *events, *events_tail;
  int nevents;
  long events_dropped;
  /* counters */
  atomic_long accepted, active, refused, idle_closed, local_ok, local_failed, upstream_failed, upstream_auth_failed,
    forbidden_answered, rewritten, unmatched;
  atomic_llong bytes_in, bytes_out;
  atomic_long requests[PROXY_API_KEYS];
  atomic_llong latency_us[PROXY_API_KEYS], latency_n[PROXY_API_KEYS];
} kafka_proxy;

/* Engine (proxy.c). */
kafka_proxy *proxy_new(void);
/* Binds a listener for upstream ("host:port" as the broker advertises
 * itself) on listen; advertised (or NULL: listen) is what clients see. */
proxy_listener *proxy_add_listener(kafka_proxy *p, const char *upstream, const char *listen, const char *advertised,
                                   int dynamic, char *err, size_t errlen);
int proxy_start(kafka_proxy *p, char *err, size_t errlen);
/* Shuts every upstream socket down (a test hook and a debugging aid):
 * clients see their connections drop and reconnect. Returns how many. */
int proxy_drop_upstream(kafka_proxy *p);
void proxy_event_push(kafka_proxy *p, const char *kind, const char *fmt, ...);
/* Stops, joins and frees everything; secrets wiped. */
void proxy_free(kafka_proxy *p);

#endif
