/* Request counts and latencies of one store, for store:stats() and the
 * kalua_storage_* metrics. Object-storage backends count every HTTP
 * attempt (http_do: method, status, seconds); the filesystem backend
 * counts its operations (HEAD, GET, PUT, DELETE, LIST; status "ok" or the
 * error name).
 *
 * A store owns one storage_stats; every HTTP client made while one of its
 * calls runs counts into it. storage.c marks the calling thread with
 * storage_stats_enter/leave around each backend call (from Lua or from a
 * segment writer's worker thread), and http_client_init takes the mark, so
 * the backends need no knowledge of it. Counters are refcounted and
 * locked: a writer's client may count on its upload thread after the
 * store was closed. */
#ifndef KALUA_STORAGE_STATS_H
#define KALUA_STORAGE_STATS_H

#include <lua.h>

typedef struct storage_stats storage_stats;

/* Upper bounds (seconds) of the latency buckets; a last one is +Inf. */
#define STORAGE_STATS_BUCKETS 14

storage_stats *storage_stats_new(void);
void storage_stats_retain(storage_stats *s);
void storage_stats_release(storage_stats *s); /* NULL is fine */

/* Counts one request (thread-safe; s may be NULL). */
void storage_stats_record(storage_stats *s, const char *method, const char *status, double seconds);

/* Pushes {requests = {["PUT 200"] = n, ...}, seconds = {PUT = {count=, sum=,
 * buckets = {n1, ..., n_inf}}, ...}, bounds = {0.005, ...}}; buckets are
 * per bucket, not cumulative. */
void storage_stats_push(lua_State *L, storage_stats *s);

/* Marks this thread as working for s (may be NULL) until leave; returns
 * the previous mark for leave. */
storage_stats *storage_stats_enter(storage_stats *s);
void storage_stats_leave(storage_stats *previous);
/* The current thread's mark, retained (the caller releases), or NULL. */
storage_stats *storage_stats_current(void);

/* CLOCK_MONOTONIC in seconds. */
double storage_stats_now(void);

#endif
