/* kalua.crypto: the few primitives authentication code written in Lua needs
 * (SCRAM, request signing, tokens), over OpenSSL. Strings in and out are
 * raw bytes; hex and base64 convert for display and for the wire.
 *
 *   local crypto = require "kalua.crypto"
 *   crypto.digest(alg, data)                 -> raw digest
 *   crypto.hmac(alg, key, data)              -> raw MAC
 *   crypto.pbkdf2(alg, password, salt, iterations, length) -> raw key
 *   crypto.random(n)                         -> n random bytes | nil, msg, name
 *   crypto.base64_encode(s), crypto.base64_decode(s) -> s | nil, msg, name
 *   crypto.hex(s)                            -> lowercase hex
 *   crypto.xor(a, b)                         -> a XOR b (equal lengths)
 *   crypto.equal(a, b)                       -> boolean, in constant time
 *
 *   local salted = crypto.pbkdf2("sha256", "pencil", salt, 4096, 32)
 *   print(crypto.hex(crypto.hmac("sha256", salted, "Client Key")))
 *
 * alg is sha1, sha256, sha384 or sha512 (any case, "SHA-256" too). */
#include <limits.h>
#include <stdint.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "kalua_util.h"

typedef struct {
  const char *name, *alias;
  const EVP_MD *(*md)(void);
} digest_name;

/* A fixed list rather than EVP_get_digestbyname: scripts get the same
 * answer whatever providers the OpenSSL config loads, and no MD5. */
static const digest_name digests[] = {
  {"sha1", "sha-1", EVP_sha1},
  {"sha256", "sha-256", EVP_sha256},
  {"sha384", "sha-384", EVP_sha384},
  {"sha512", "sha-512", EVP_sha512},
};

static const EVP_MD *check_digest(lua_State *L, int arg) {
  const char *alg = luaL_checkstring(L, arg);
  size_t i;
  for (i = 0; i < sizeof digests / sizeof digests[0]; i++)
    if (strcasecmp(alg, digests[i].name) == 0 || strcasecmp(alg, digests[i].alias) == 0) return digests[i].md();
  luaL_argerror(L, arg, lua_pushfstring(L, "unknown digest '%s': use sha1, sha256, sha384 or sha512", alg));
  return NULL;
}

/* OpenSSL counts most lengths in int. */
static const char *check_intlstring(lua_State *L, int arg, size_t *len) {
  const char *s = luaL_checklstring(L, arg, len);
  luaL_argcheck(L, *len <= INT_MAX, arg, "string too long");
  return s;
}

static int crypto_digest(lua_State *L) {
  const EVP_MD *md = check_digest(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (!EVP_Digest(data, len, out, &outlen, md, NULL)) return luaL_error(L, "digest failed in OpenSSL");
  lua_pushlstring(L, (const char *)out, outlen);
  return 1;
}

static int crypto_hmac(lua_State *L) {
  const EVP_MD *md = check_digest(L, 1);
  size_t keylen, len;
  const char *key = check_intlstring(L, 2, &keylen);
  const char *data = luaL_checklstring(L, 3, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (HMAC(md, key, (int)keylen, (const unsigned char *)data, len, out, &outlen) == NULL)
    return luaL_error(L, "HMAC failed in OpenSSL");
  lua_pushlstring(L, (const char *)out, outlen);
  return 1;
}

static int crypto_pbkdf2(lua_State *L) {
  const EVP_MD *md = check_digest(L, 1);
  size_t passlen, saltlen;
  const char *pass = check_intlstring(L, 2, &passlen);
  const char *salt = check_intlstring(L, 3, &saltlen);
  lua_Integer iterations = luaL_checkinteger(L, 4);
  lua_Integer length = luaL_checkinteger(L, 5);
  luaL_Buffer b;
  unsigned char *out;
  luaL_argcheck(L, iterations >= 1 && iterations <= INT_MAX, 4, "iterations must be at least 1");
  luaL_argcheck(L, length >= 1 && length <= INT_MAX, 5, "length must be at least 1");
  out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)length);
  if (!PKCS5_PBKDF2_HMAC(pass, (int)passlen, (const unsigned char *)salt, (int)saltlen, (int)iterations, md,
                         (int)length, out))
    return luaL_error(L, "PBKDF2 failed in OpenSSL");
  luaL_pushresultsize(&b, (size_t)length);
  return 1;
}

static int crypto_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_Buffer b;
  unsigned char *out;
  luaL_argcheck(L, n >= 0 && n <= INT_MAX, 1, "byte count out of range");
  out = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
  /* Fails only when the system has no entropy to seed from (early boot,
   * a seccomp jail without getrandom): a script should hear it, not die. */
  if (n > 0 && RAND_bytes(out, (int)n) != 1) {
    char reason[256];
    ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
    return kalua_fail(L, lua_pushfstring(L, "no random bytes from OpenSSL: %s", reason), "CRYPTO");
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* --- encodings -------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static int crypto_base64_encode(lua_State *L) {
  size_t len, i, n = 0;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (len + 2) / 3 * 4);
  for (i = 0; i < len; i += 3) {
    size_t left = len - i;
    uint32_t v = (uint32_t)s[i] << 16 | (left > 1 ? (uint32_t)s[i + 1] << 8 : 0) | (left > 2 ? s[i + 2] : 0);
    out[n++] = b64_alphabet[v >> 18];
    out[n++] = b64_alphabet[v >> 12 & 63];
    out[n++] = left > 1 ? b64_alphabet[v >> 6 & 63] : '=';
    out[n++] = left > 2 ? b64_alphabet[v & 63] : '=';
  }
  luaL_pushresultsize(&b, n);
  return 1;
}

/* Strict: whole quads, the padding only at the end, no whitespace. Written
 * here because EVP_DecodeBlock counts padding as zero bytes. */
static int crypto_base64_decode(lua_State *L) {
  size_t len, i, n = 0, pad = 0;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  unsigned char *out;
  if (len % 4 != 0) return kalua_fail(L, "invalid base64", "INVALID");
  if (len > 0 && s[len - 1] == '=') pad = s[len - 2] == '=' ? 2 : 1;
  out = (unsigned char *)luaL_buffinitsize(L, &b, len / 4 * 3);
  for (i = 0; i < len; i += 4) {
    size_t data = i + 4 == len ? 4 - pad : 4, j;
    uint32_t v = 0;
    for (j = 0; j < 4; j++) {
      int d = j < data ? b64_value(s[i + j]) : 0;
      if (d < 0) return kalua_fail(L, "invalid base64", "INVALID");
      v = v << 6 | (uint32_t)d;
    }
    out[n++] = (unsigned char)(v >> 16);
    if (data > 2) out[n++] = (unsigned char)(v >> 8);
    if (data > 3) out[n++] = (unsigned char)v;
  }
  luaL_pushresultsize(&b, n);
  return 1;
}

static int crypto_hex(lua_State *L) {
  static const char digits[] = "0123456789abcdef";
  size_t len, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len * 2);
  for (i = 0; i < len; i++) {
    out[2 * i] = digits[s[i] >> 4];
    out[2 * i + 1] = digits[s[i] & 15];
  }
  luaL_pushresultsize(&b, len * 2);
  return 1;
}

/* --- comparisons -------------------------------------------------------------- */

static int crypto_xor(lua_State *L) {
  size_t alen, blen, i;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  luaL_Buffer buf;
  char *out;
  if (alen != blen) return luaL_error(L, "crypto.xor needs strings of equal length (got %I and %I bytes)",
                                      (lua_Integer)alen, (lua_Integer)blen);
  out = luaL_buffinitsize(L, &buf, alen);
  for (i = 0; i < alen; i++) out[i] = (char)(a[i] ^ b[i]);
  luaL_pushresultsize(&buf, alen);
  return 1;
}

/* For MACs and signatures: == stops at the first differing byte, which
 * tells an attacker timing how much of a forgery is right. The length is
 * not secret (digest sizes are public), so it may end early. */
static int crypto_equal(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

static const luaL_Reg crypto_funcs[] = {
  {"digest", crypto_digest},
  {"hmac", crypto_hmac},
  {"pbkdf2", crypto_pbkdf2},
  {"random", crypto_random},
  {"base64_encode", crypto_base64_encode},
  {"base64_decode", crypto_base64_decode},
  {"hex", crypto_hex},
  {"xor", crypto_xor},
  {"equal", crypto_equal},
  {NULL, NULL}
};

int luaopen_kalua_crypto(lua_State *L) {
  luaL_newlib(L, crypto_funcs);
  return 1;
}
