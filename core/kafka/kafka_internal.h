/* kalua.kafka internals shared by the producer, consumer, admin and batch
 * types. librdkafka's callbacks only ever store into a client's slots under
 * its mutex: Lua is called from the Lua thread alone. */
#ifndef KALUA_KAFKA_INTERNAL_H
#define KALUA_KAFKA_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <lauxlib.h>

#include "kalua_util.h"

#define KAFKA_PRODUCER_MT "kalua.kafka.Producer"
#define KAFKA_CONSUMER_MT "kalua.kafka.Consumer"
#define KAFKA_ADMIN_MT "kalua.kafka.Admin"
#define KAFKA_BATCH_MT "kalua.kafka.Batch"

#define KAFKA_ERRSTR_MAX 512
#define KAFKA_SECRETS_MAX 4
#ifndef KAFKA_LOG_LINES_MAX
#define KAFKA_LOG_LINES_MAX 4096 /* queued librdkafka log lines per client */
#endif
#define KAFKA_LOGGER_KEY "kalua.kafka.logger" /* registry: the Lua log function */

struct kafka_delivery {
  char *topic;
  int32_t partition;
  int64_t offset;
  rd_kafka_resp_err_t err;
};

/* librdkafka log lines, queued by its threads for the Lua thread: a
 * bounded ring; lines past KAFKA_LOG_LINES_MAX are counted and dropped.
 * It has its own lock and outlives kafka_client_release, so close() can
 * still hand over what librdkafka said while shutting down; __gc frees it. */
struct kafka_log_line {
  int level;       /* syslog severity, 0..7 */
  long long ts_ms; /* wall clock when librdkafka logged it */
  char *text;      /* "facility\0message\0", one allocation */
};

struct kafka_logq {
  pthread_mutex_t lock;
  struct kafka_log_line *lines; /* ring, allocated at the first line */
  size_t head, len;
  unsigned long dropped;
  int live; /* lock initialised, not yet freed (__gc frees it) */
};

typedef struct kafka_client {
  rd_kafka_t *rk;
  rd_kafka_queue_t *admin_queue; /* admin results; NULL for other kinds */
  const char *kind;              /* "producer", "consumer", "admin" */
  int timeout_ms;                /* default for operations without one */
  int partition_eof;             /* consumer: report partition ends */
  pthread_mutex_t lock;
  /* Last error from error_cb; an authentication error is kept apart because
   * it explains every later timeout on that client. */
  rd_kafka_resp_err_t last_err;
  char last_errstr[KAFKA_ERRSTR_MAX];
  rd_kafka_resp_err_t auth_err;
  char auth_errstr[KAFKA_ERRSTR_MAX];
  /* Producer delivery reports not yet taken by deliveries(). */
  struct kafka_delivery *dr;
  size_t dr_len, dr_cap;
  rd_kafka_resp_err_t dr_first_err; /* first failure since the last flush */
  char dr_first_topic[256];
  /* Values that must never appear in an error message. */
  char *secrets[KAFKA_SECRETS_MAX];
  char mechanism[32];
  /* librdkafka's log lines: requested (conf `log = true` or a `debug`
   * property) or wanted (a Lua logger was set when the client was made). */
  int log_requested;
  int log_wanted;
  char name[64]; /* rd_kafka_name, kept for lines drained after close */
  struct kafka_logq logq;
  /* kalua's auth relay (relay.h), when kalua runs SASL for this client. */
  struct kafka_relay *relay;
} kafka_client;

/* A batch of consumed messages, still owned by librdkafka's structures:
 * a C segment writer can read them without a Lua table per record. */
typedef struct kalua_batch {
  rd_kafka_message_t **msgs;
  int n;
  int cap;
  size_t bytes; /* key + value bytes */
} kalua_batch;

/* kafka.c */
void kafka_client_init(kafka_client *c, const char *kind);
void kafka_client_release(kafka_client *c); /* frees slots, not rk */
kafka_client *kafka_client_new(lua_State *L, const char *kind, rd_kafka_type_t type, const char *mt, int nuv);
void kafka_install_callbacks(rd_kafka_conf_t *conf, kafka_client *c);
int kafka_fail(lua_State *L, kafka_client *c, rd_kafka_resp_err_t err, const char *what);
int kafka_fail_msg(lua_State *L, kafka_client *c, const char *msg, const char *name);
int kafka_fail_error(lua_State *L, kafka_client *c, rd_kafka_error_t *error); /* destroys error */
void kafka_push_message(lua_State *L, const rd_kafka_message_t *m);
rd_kafka_topic_partition_list_t *kafka_check_partitions(lua_State *L, int idx, int with_offsets);
void kafka_push_partitions(lua_State *L, const rd_kafka_topic_partition_list_t *list);
int64_t kafka_check_offset(lua_State *L, int idx, int64_t *timestamp);
int kafka_opt_timeout(lua_State *L, int idx, kafka_client *c);
void kafka_scrub(kafka_client *c, char *msg);

/* log.c: librdkafka's log lines, queued by its threads, handed to the Lua
 * logger (kafka.set_logger) on the Lua thread after each client method. */
void kafka_logq_init(struct kafka_logq *q);
void kafka_logq_free(struct kafka_logq *q); /* idempotent */
void kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
void kafka_drain_logs(lua_State *L, kafka_client *c);
int kafka_has_logger(lua_State *L);
int kafka_set_logger(lua_State *L);
void kafka_wrap_methods(lua_State *L, const char *mt); /* drain after every method */

/* conf.c: a librdkafka conf from a Lua config table, or NULL with
 * nil, message, name pushed (the caller returns 3). */
rd_kafka_conf_t *kafka_conf_from_table(lua_State *L, int idx, kafka_client *c);

/* The per-type modules register their metatables and constructors. */
void kafka_open_producer(lua_State *L);
void kafka_open_consumer(lua_State *L);
void kafka_open_admin(lua_State *L);
void kafka_open_batch(lua_State *L);
int kafka_producer_new(lua_State *L);
int kafka_consumer_new(lua_State *L);
int kafka_admin_new(lua_State *L);
int kafka_sasl_probe(lua_State *L); /* conf.c */
int kafka_proxy_new(lua_State *L);   /* proxy_lua.c */
void kafka_proxy_register(lua_State *L);
void wire_lua_open(lua_State *L);     /* wire_lua.c: sets field "wire" of the table on top */

kalua_batch *kalua_kafka_checkbatch(lua_State *L, int idx);
kalua_batch *kafka_batch_push(lua_State *L, int cap);
/* Destroys a batch's messages (idempotent): librdkafka cannot shut a
 * client down while any message it handed out is alive. */
void kafka_batch_release(kalua_batch *b);

#endif
