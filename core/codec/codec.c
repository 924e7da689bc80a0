/* kalua.codec: zstd (any level, one-shot and streaming) and CRC-32C.
 *
 *   codec.crc32c(s [, crc])             -> integer
 *   codec.compress(s [, level])         -> zstd frame
 *   codec.decompress(s [, max_size])    -> string | nil, msg, name
 *   codec.compressor([level])           -> c:update(s) -> bytes, c:finish() -> bytes
 *   codec.decompressor([max_size])      -> d:update(s) -> bytes | nil, msg, name;
 *                                          d:finish() -> true | nil, msg, name
 *
 * Decompression is bounded (max_size, default 256 MiB) so a corrupt or
 * hostile frame cannot make kalua allocate without limit. */
#include <zstd.h>

#include "common/crc32c.h"
#include "kalua_util.h"

#define COMPRESSOR_MT "kalua.codec.Compressor"
#define DECOMPRESSOR_MT "kalua.codec.Decompressor"
#define DEFAULT_LEVEL 3
#define DEFAULT_MAX_SIZE ((lua_Integer)256 << 20)

typedef struct {
  ZSTD_CCtx *cctx;
} compressor;

typedef struct {
  ZSTD_DCtx *dctx;
  lua_Integer max_size;
  lua_Integer produced;
  int in_frame; /* bytes seen since the last complete frame */
} decompressor;

static int codec_crc32c_lua(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  uint32_t crc = (uint32_t)luaL_optinteger(L, 2, 0);
  lua_pushinteger(L, codec_crc32c(crc, s, len));
  return 1;
}

static int check_level(lua_State *L, int arg) {
  lua_Integer level = luaL_optinteger(L, arg, DEFAULT_LEVEL);
  luaL_argcheck(L, level >= ZSTD_minCLevel() && level <= ZSTD_maxCLevel(), arg,
                lua_pushfstring(L, "zstd level must be within %d..%d", ZSTD_minCLevel(), ZSTD_maxCLevel()));
  return (int)level;
}

static int codec_compress(lua_State *L) {
  size_t len, bound, n;
  const char *s = luaL_checklstring(L, 1, &len);
  int level = check_level(L, 2);
  luaL_Buffer b;
  char *out;
  bound = ZSTD_compressBound(len);
  out = luaL_buffinitsize(L, &b, bound);
  n = ZSTD_compress(out, bound, s, len, level);
  if (ZSTD_isError(n)) return luaL_error(L, "zstd: %s", ZSTD_getErrorName(n));
  luaL_pushresultsize(&b, n);
  return 1;
}

/* Streams input through dctx into a Lua string, bounded by max_size.
 * Returns 1 with the string pushed, or 3 with nil, msg, name. */
static int decompress_into(lua_State *L, decompressor *d, const char *s, size_t len) {
  ZSTD_inBuffer in = {s, len, 0};
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    size_t room = ZSTD_DStreamOutSize(), before = in.pos, r;
    ZSTD_outBuffer out = {luaL_prepbuffsize(&b, room), room, 0};
    r = ZSTD_decompressStream(d->dctx, &out, &in);
    if (ZSTD_isError(r)) {
      luaL_pushresult(&b);
      return kalua_fail(L, lua_pushfstring(L, "corrupt zstd data: %s", ZSTD_getErrorName(r)), "CORRUPT");
    }
    luaL_addsize(&b, out.pos);
    d->produced += (lua_Integer)out.pos;
    /* r == 0: a frame just ended. A call that moved nothing says nothing
     * (after a frame, zstd asks for the next header). */
    if (out.pos > 0 || in.pos > before) d->in_frame = r != 0;
    if (d->produced > d->max_size) {
      luaL_pushresult(&b);
      return kalua_fail(L, lua_pushfstring(L, "zstd data expands past %I bytes", d->max_size), "TOO_LARGE");
    }
    if (in.pos == in.size && out.pos < room) break; /* input used, output flushed */
  }
  luaL_pushresult(&b);
  return 1;
}

static int codec_decompress(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  decompressor d;
  int n;
  d.max_size = luaL_optinteger(L, 2, DEFAULT_MAX_SIZE);
  d.produced = 0;
  d.in_frame = 0;
  d.dctx = ZSTD_createDCtx();
  if (d.dctx == NULL) return luaL_error(L, "zstd: out of memory");
  /* Whatever happens next returns through here: no Lua error is raised
   * between create and free except out of memory in luaL_Buffer. */
  n = decompress_into(L, &d, s, len);
  ZSTD_freeDCtx(d.dctx);
  if (n == 1 && (d.in_frame || len == 0)) {
    lua_pop(L, 1);
    return kalua_fail(L, len == 0 ? "empty input is not a zstd frame" : "truncated zstd frame", "TRUNCATED");
  }
  return n;
}

/* --- streaming compressor --------------------------------------------------- */

static compressor *check_compressor(lua_State *L) {
  compressor *c = luaL_checkudata(L, 1, COMPRESSOR_MT);
  if (c->cctx == NULL) luaL_error(L, "compressor is closed");
  return c;
}

static int codec_compressor(lua_State *L) {
  int level = check_level(L, 1);
  compressor *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->cctx = NULL;
  luaL_setmetatable(L, COMPRESSOR_MT);
  c->cctx = ZSTD_createCCtx();
  if (c->cctx == NULL) return luaL_error(L, "zstd: out of memory");
  ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 1);
  return 1;
}

static int compress_stream(lua_State *L, compressor *c, const char *s, size_t len, ZSTD_EndDirective mode) {
  ZSTD_inBuffer in = {s, len, 0};
  luaL_Buffer b;
  size_t remaining;
  luaL_buffinit(L, &b);
  do {
    size_t room = ZSTD_CStreamOutSize();
    ZSTD_outBuffer out = {luaL_prepbuffsize(&b, room), room, 0};
    remaining = ZSTD_compressStream2(c->cctx, &out, &in, mode);
    if (ZSTD_isError(remaining)) return luaL_error(L, "zstd: %s", ZSTD_getErrorName(remaining));
    luaL_addsize(&b, out.pos);
  } while (mode == ZSTD_e_end ? remaining != 0 : in.pos < in.size);
  luaL_pushresult(&b);
  return 1;
}

/* c:update(s) -> compressed bytes ready so far (often "") */
static int compressor_update(lua_State *L) {
  compressor *c = check_compressor(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  return compress_stream(L, c, s, len, ZSTD_e_continue);
}

/* c:finish() -> the rest of the frame; the compressor can start a new one */
static int compressor_finish(lua_State *L) {
  compressor *c = check_compressor(L);
  return compress_stream(L, c, "", 0, ZSTD_e_end);
}

static int compressor_close(lua_State *L) {
  compressor *c = luaL_checkudata(L, 1, COMPRESSOR_MT);
  if (c->cctx) ZSTD_freeCCtx(c->cctx);
  c->cctx = NULL;
  return 0;
}

/* --- streaming decompressor --------------------------------------------------- */

static decompressor *check_decompressor(lua_State *L) {
  decompressor *d = luaL_checkudata(L, 1, DECOMPRESSOR_MT);
  if (d->dctx == NULL) luaL_error(L, "decompressor is closed");
  return d;
}

static int codec_decompressor(lua_State *L) {
  lua_Integer max = luaL_optinteger(L, 1, DEFAULT_MAX_SIZE);
  decompressor *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->dctx = NULL;
  d->max_size = max;
  d->produced = 0;
  d->in_frame = 0;
  luaL_setmetatable(L, DECOMPRESSOR_MT);
  d->dctx = ZSTD_createDCtx();
  if (d->dctx == NULL) return luaL_error(L, "zstd: out of memory");
  return 1;
}

static int decompressor_update(lua_State *L) {
  decompressor *d = check_decompressor(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (len > 0) d->in_frame = 1;
  return decompress_into(L, d, s, len);
}

/* d:finish() -> true when the input ended on a frame boundary */
static int decompressor_finish(lua_State *L) {
  decompressor *d = check_decompressor(L);
  if (d->in_frame) return kalua_fail(L, "truncated zstd frame", "TRUNCATED");
  lua_pushboolean(L, 1);
  return 1;
}

static int decompressor_close(lua_State *L) {
  decompressor *d = luaL_checkudata(L, 1, DECOMPRESSOR_MT);
  if (d->dctx) ZSTD_freeDCtx(d->dctx);
  d->dctx = NULL;
  return 0;
}

static int codec_zstd_version(lua_State *L) {
  lua_pushstring(L, ZSTD_versionString());
  return 1;
}

static const luaL_Reg compressor_methods[] = {
  {"update", compressor_update},
  {"finish", compressor_finish},
  {NULL, NULL}
};

static const luaL_Reg decompressor_methods[] = {
  {"update", decompressor_update},
  {"finish", decompressor_finish},
  {NULL, NULL}
};

static const luaL_Reg codec_funcs[] = {
  {"crc32c", codec_crc32c_lua},
  {"compress", codec_compress},
  {"decompress", codec_decompress},
  {"compressor", codec_compressor},
  {"decompressor", codec_decompressor},
  {"zstd_version", codec_zstd_version},
  {NULL, NULL}
};

int luaopen_kalua_codec(lua_State *L) {
  kalua_newtype(L, COMPRESSOR_MT, compressor_methods, compressor_close, NULL);
  kalua_newtype(L, DECOMPRESSOR_MT, decompressor_methods, decompressor_close, NULL);
  luaL_newlib(L, codec_funcs);
  lua_pushinteger(L, ZSTD_minCLevel());
  lua_setfield(L, -2, "min_level");
  lua_pushinteger(L, ZSTD_maxCLevel());
  lua_setfield(L, -2, "max_level");
  return 1;
}
