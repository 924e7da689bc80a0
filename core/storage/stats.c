/* Request counts and latencies of one store (see stats.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "storage/stats.h"

#define MAX_METHOD 15
#define MAX_STATUS 31

static const double bounds[STORAGE_STATS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10,   30};

typedef struct {
  char method[MAX_METHOD + 1], status[MAX_STATUS + 1];
  long long count;
} request_count;

typedef struct {
  char method[MAX_METHOD + 1];
  long long buckets[STORAGE_STATS_BUCKETS + 1];
  long long count;
  double sum;
} method_latency;

struct storage_stats {
  atomic_int refs;
  pthread_mutex_t lock;
  request_count *requests;
  size_t nrequests, cap_requests;
  method_latency *methods;
  size_t nmethods, cap_methods;
};

static _Thread_local storage_stats *current;

storage_stats *storage_stats_new(void) {
  storage_stats *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->lock, NULL);
  return s;
}

void storage_stats_retain(storage_stats *s) {
  if (s) atomic_fetch_add(&s->refs, 1);
}

void storage_stats_release(storage_stats *s) {
  if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) return;
  pthread_mutex_destroy(&s->lock);
  free(s->requests);
  free(s->methods);
  free(s);
}

/* Grows *array (of size elements) to hold one more; 0 when out of memory. */
static int grow(void **array, size_t *cap, size_t n, size_t size) {
  void *p;
  size_t want;
  if (n < *cap) return 1;
  want = *cap ? *cap * 2 : 8;
  if ((p = realloc(*array, want * size)) == NULL) return 0;
  *array = p;
  *cap = want;
  return 1;
}

static request_count *find_request(storage_stats *s, const char *method, const char *status) {
  size_t i;
  request_count *r;
  for (i = 0; i < s->nrequests; i++)
    if (strcmp(s->requests[i].method, method) == 0 && strcmp(s->requests[i].status, status) == 0) return &s->requests[i];
  if (!grow((void **)&s->requests, &s->cap_requests, s->nrequests, sizeof *s->requests)) return NULL;
  r = &s->requests[s->nrequests++];
  memset(r, 0, sizeof *r);
  snprintf(r->method, sizeof r->method, "%s", method);
  snprintf(r->status, sizeof r->status, "%s", status);
  return r;
}

static method_latency *find_method(storage_stats *s, const char *method) {
  size_t i;
  method_latency *m;
  for (i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i].method, method) == 0) return &s->methods[i];
  if (!grow((void **)&s->methods, &s->cap_methods, s->nmethods, sizeof *s->methods)) return NULL;
  m = &s->methods[s->nmethods++];
  memset(m, 0, sizeof *m);
  snprintf(m->method, sizeof m->method, "%s", method);
  return m;
}

void storage_stats_record(storage_stats *s, const char *method, const char *status, double seconds) {
  request_count *r;
  method_latency *m;
  int b = 0;
  if (s == NULL) return;
  if (seconds < 0) seconds = 0;
  while (b < STORAGE_STATS_BUCKETS && seconds > bounds[b]) b++;
  pthread_mutex_lock(&s->lock);
  if ((r = find_request(s, method, status)) != NULL) r->count++;
  if ((m = find_method(s, method)) != NULL) {
    m->buckets[b]++;
    m->count++;
    m->sum += seconds;
  }
  pthread_mutex_unlock(&s->lock);
}

void storage_stats_push(lua_State *L, storage_stats *s) {
  size_t i;
  int b;
  lua_createtable(L, 0, 3);
  lua_createtable(L, STORAGE_STATS_BUCKETS, 0);
  for (b = 0; b < STORAGE_STATS_BUCKETS; b++) {
    lua_pushnumber(L, bounds[b]);
    lua_rawseti(L, -2, b + 1);
  }
  lua_setfield(L, -2, "bounds");
  lua_newtable(L);
  lua_newtable(L);
  if (s) {
    /* Copied under the lock, pushed after: Lua may raise (out of memory). */
    request_count *requests;
    method_latency *methods;
    size_t nrequests, nmethods;
    pthread_mutex_lock(&s->lock);
    nrequests = s->nrequests;
    nmethods = s->nmethods;
    requests = malloc((nrequests + 1) * sizeof *requests);
    methods = malloc((nmethods + 1) * sizeof *methods);
    if (requests && methods) {
      if (nrequests) memcpy(requests, s->requests, nrequests * sizeof *requests);
      if (nmethods) memcpy(methods, s->methods, nmethods * sizeof *methods);
    }
    pthread_mutex_unlock(&s->lock);
    if (!requests || !methods) {
      free(requests);
      free(methods);
      luaL_error(L, "storage stats: out of memory");
      return;
    }
    for (i = 0; i < nrequests; i++) {
      lua_pushfstring(L, "%s %s", requests[i].method, requests[i].status);
      lua_pushinteger(L, (lua_Integer)requests[i].count);
      lua_settable(L, -4);
    }
    for (i = 0; i < nmethods; i++) {
      lua_createtable(L, 0, 3);
      lua_pushinteger(L, (lua_Integer)methods[i].count);
      lua_setfield(L, -2, "count");
      lua_pushnumber(L, methods[i].sum);
      lua_setfield(L, -2, "sum");
      lua_createtable(L, STORAGE_STATS_BUCKETS + 1, 0);
      for (b = 0; b <= STORAGE_STATS_BUCKETS; b++) {
        lua_pushinteger(L, (lua_Integer)methods[i].buckets[b]);
        lua_rawseti(L, -2, b + 1);
      }
      lua_setfield(L, -2, "buckets");
      lua_setfield(L, -2, methods[i].method);
    }
    free(requests);
    free(methods);
  }
  lua_setfield(L, -3, "seconds");
  lua_setfield(L, -2, "requests");
}

storage_stats *storage_stats_enter(storage_stats *s) {
  storage_stats *previous = current;
  current = s;
  return previous;
}

void storage_stats_leave(storage_stats *previous) { current = previous; }

storage_stats *storage_stats_current(void) {
  storage_stats_retain(current);
  return current;
}

double storage_stats_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
