/* kalua.kafka.Batch: consumed messages kept as librdkafka owns them.
 * Records become Lua tables only when a script asks for one. */
#include <stdlib.h>

#include "kafka/kafka_internal.h"

kalua_batch *kalua_kafka_checkbatch(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, KAFKA_BATCH_MT);
}

kalua_batch *kafka_batch_push(lua_State *L, int cap) {
  kalua_batch *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->n = 0;
  b->bytes = 0;
  b->cap = cap > 0 ? cap : 1;
  b->msgs = NULL;
  luaL_setmetatable(L, KAFKA_BATCH_MT);
  b->msgs = calloc((size_t)b->cap, sizeof *b->msgs);
  if (b->msgs == NULL) luaL_error(L, "out of memory for a batch of %d", cap);
  return b;
}

static const rd_kafka_message_t *check_index(lua_State *L, kalua_batch *b, int arg) {
  lua_Integer i = luaL_checkinteger(L, arg);
  luaL_argcheck(L, i >= 1 && i <= b->n, arg, "record index out of range");
  return b->msgs[i - 1];
}

static int batch_record(lua_State *L) {
  kalua_batch *b = kalua_kafka_checkbatch(L, 1);
  kafka_push_message(L, check_index(L, b, 2));
  return 1;
}

static int batch_offset(lua_State *L) {
  kalua_batch *b = kalua_kafka_checkbatch(L, 1);
  lua_pushinteger(L, check_index(L, b, 2)->offset);
  return 1;
}

/* Upvalues: the batch and the next index. */
static int batch_iterate(lua_State *L) {
  kalua_batch *b = kalua_kafka_checkbatch(L, lua_upvalueindex(1));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  if (i > b->n) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(2));
  kafka_push_message(L, b->msgs[i - 1]);
  return 1;
}

/* for record in batch:records() do ... end */
static int batch_records(lua_State *L) {
  kalua_kafka_checkbatch(L, 1);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 1);
  lua_pushcclosure(L, batch_iterate, 2);
  return 1;
}

static int batch_first_offset(lua_State *L) {
  kalua_batch *b = kalua_kafka_checkbatch(L, 1);
  if (b->n == 0) return 0;
  lua_pushinteger(L, b->msgs[0]->offset);
  return 1;
}

static int batch_last_offset(lua_State *L) {
  kalua_batch *b = kalua_kafka_checkbatch(L, 1);
  if (b->n == 0) return 0;
  lua_pushinteger(L, b->msgs[b->n - 1]->offset);
  return 1;
}

static int batch_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)kalua_kafka_checkbatch(L, 1)->bytes);
  return 1;
}

static int batch_len(lua_State *L) {
  lua_pushinteger(L, kalua_kafka_checkbatch(L, 1)->n);
  return 1;
}

void kafka_batch_release(kalua_batch *b) {
  int i;
  for (i = 0; i < b->n; i++) rd_kafka_message_destroy(b->msgs[i]);
  free(b->msgs);
  b->msgs = NULL;
  b->n = b->cap = 0;
  b->bytes = 0;
}

static int batch_free(lua_State *L) {
  kafka_batch_release(kalua_kafka_checkbatch(L, 1));
  return 0;
}

static int batch_tostring(lua_State *L) {
  kalua_batch *b = kalua_kafka_checkbatch(L, 1);
  if (b->n == 0)
    lua_pushliteral(L, "kalua.kafka.Batch (empty)");
  else
    lua_pushfstring(L, "kalua.kafka.Batch (%d records, offsets %I..%I)", b->n,
                    (lua_Integer)b->msgs[0]->offset, (lua_Integer)b->msgs[b->n - 1]->offset);
  return 1;
}

static const luaL_Reg batch_methods[] = {
  {"record", batch_record},
  {"offset", batch_offset},
  {"records", batch_records},
  {"first_offset", batch_first_offset},
  {"last_offset", batch_last_offset},
  {"bytes", batch_bytes},
  {"close", batch_free},
  {NULL, NULL}
};

static const luaL_Reg batch_meta[] = {
  {"__len", batch_len},
  {"__gc", batch_free},
  {"__close", batch_free},
  {"__tostring", batch_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

void kafka_open_batch(lua_State *L) {
  luaL_newmetatable(L, KAFKA_BATCH_MT);
  luaL_setfuncs(L, batch_meta, 0);
  luaL_newlib(L, batch_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
