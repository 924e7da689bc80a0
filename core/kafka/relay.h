/* kalua's auth relay: SASL for librdkafka clients, done by kalua.
 *
 * librdkafka's socket_cb gives a client one end of a socket pair, which it
 * treats as a connected PLAINTEXT broker socket. connect_cb (called with
 * librdkafka's broker lock held) only starts a relay thread and returns:
 * that thread opens the real TCP connection to the broker address, runs
 * SaslHandshake v1 + SaslAuthenticate v1 (KIP-43, KIP-152) with a fresh
 * kalua.sasl mechanism instance (C, or Lua in a state the relay owns),
 * over TLS when asked, then moves Kafka frames both ways, tracking frame
 * boundaries and correlation ids, and re-authenticates on the live
 * connection before the broker's session lifetime ends (KIP-368).
 * `auto` picks the strongest mechanism the broker enables and the
 * credentials allow (KIP-43).
 *
 * The relay belongs to one kafka_client: no state is shared between
 * clients or Lua states. relay_destroy wakes and joins every thread. */
#ifndef KALUA_KAFKA_RELAY_H
#define KALUA_KAFKA_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>

struct kafka_client;
typedef struct kafka_relay kafka_relay;

/* A relay for client c, configured by kalua.sasl.* properties. */
kafka_relay *relay_new(struct kafka_client *c);
/* Sets one kalua.* property (name with the prefix); 0 with err on an
 * unknown name. */
int relay_set(kafka_relay *r, const char *name, const char *value, char *err, size_t errlen);
/* Checks the settings once all are set, loads a Lua mechanism into the
 * relay's own state (finding modules as L does) and makes the TLS
 * context; 0 with err. */
int relay_check(kafka_relay *r, lua_State *L, char *err, size_t errlen);
/* Installs socket_cb, connect_cb and closesocket_cb on conf (whose opaque
 * is the kafka_client). */
void relay_install(kafka_relay *r, rd_kafka_conf_t *conf);
/* Stops and joins every relay thread, closes its sockets, wipes secrets. */
void relay_destroy(kafka_relay *r);

/* The relay's last failure when it has not connected since (0 if none);
 * *is_auth tells an authentication failure from a transport one. */
int relay_last_failure(kafka_relay *r, char *buf, size_t len, int *is_auth);
/* Pushes {connections=, active=, authentications=, failures=, reauthentications=,
 * requests=, responses=, unmatched_responses=, session_lifetime_ms=, mechanism=,
 * mechanism_reason=, tls=, last_error=, failing=, per_connection={{broker=,
 * authentications=, reauthentications=, session_lifetime_ms=, age_ms=}, ...}}. unmatched_responses counts responses whose correlation id
 * was not the oldest request in flight (0 unless framing went wrong). */
void relay_push_stats(lua_State *L, kafka_relay *r);

/* kalua sasl probe: one connection to broker ("host:port") the way the
 * relay makes them, with no librdkafka. Pushes {broker=, tls=,
 * api_versions={{key=, min=, max=}, ...}, enabled={...}, mechanism=,
 * reason=, authenticated=, session_lifetime_ms=, connect_ms=, auth_ms=,
 * error=, auth_error=}. */
void relay_probe(lua_State *L, kafka_relay *r, const char *broker);

/* A Lua state of the relay's (or the proxy's) finds modules where from does:
 * same paths, same preloaded C modules. */
void relay_copy_package(lua_State *from, lua_State *to);

/* --- kalua proxy: broker connections with no librdkafka ---------------------------------
 * A relay made with relay_new(NULL) also opens connections for kalua proxy.
 * kalua.sasl.mechanism "none" makes a relay that does TLS (or plain TCP)
 * only. Links count in relay_push_stats like relay connections. */
typedef struct relay_conn relay_link;
#define RELAY_LINK_ERR_MAX 512

/* Resolves broker ("host:port"), connects (TLS when set) and authenticates
 * with a fresh mechanism, within the relay's timeout. watch_fd (or -1): the
 * client's socket, whose hang-up ends the wait. NULL with a one-line err;
 * *is_auth tells an authentication failure. Blocks: call it on the
 * connection's own thread. */
relay_link *relay_link_open(kafka_relay *r, const char *broker, int watch_fd, char *err, size_t errlen, int *is_auth);
void relay_link_close(relay_link *l);
/* One non-blocking read or write: bytes moved, 0 closed, -1 wait for *want
 * (POLLIN/POLLOUT), -2 failed with err[RELAY_LINK_ERR_MAX]. */
ssize_t relay_link_io(relay_link *l, int writing, void *buf, size_t n, short *want, char *err);
int relay_link_fd(const relay_link *l);
/* TLS bytes already decrypted: readable with no poll. */
int relay_link_pending(const relay_link *l);
int relay_link_tls(const relay_link *l);
const char *relay_link_broker(const relay_link *l);
/* When to re-authenticate (monotonic ms, relay_now_ms), 0 for never. */
int64_t relay_link_reauth_at(const relay_link *l);
/* KIP-368 on a quiet link (nothing in flight): 0 when it failed (noted). */
int relay_link_reauthenticate(relay_link *l);
/* One request of the proxy's own on a quiet link; *resp (malloc'd) is the
 * response after its correlation id. */
int relay_link_request(relay_link *l, int16_t api_key, int16_t version, const unsigned char *body, size_t len,
                       unsigned char **resp, size_t *resp_len, char *err);
int64_t relay_now_ms(void);

#endif
