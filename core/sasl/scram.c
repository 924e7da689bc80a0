/* SCRAM-SHA-256 and SCRAM-SHA-512 clients (RFC 5802, RFC 7677), without
 * channel binding ("n,,"), as Kafka speaks them.
 *
 *   client-first  n,[a=authzid],n=<saslname>,r=<cnonce>
 *   server-first  r=<cnonce+snonce>,s=<salt>,i=<iterations>
 *   client-final  c=<b64(gs2 header)>,r=<nonce>,p=<b64(ClientKey XOR ClientSignature)>
 *   server-final  v=<b64(ServerSignature)>   (or e=<error>)
 *
 * The server's nonce must extend ours, its iteration count must reach
 * min_iterations, and its signature must match: a server that does not
 * know the password cannot complete the exchange. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "sasl/mech.h"

#define MAX_DIGEST 64
#define NONCE_BYTES 24

enum { SENT_NOTHING, SENT_FIRST, SENT_FINAL, COMPLETE };

struct sasl_mech {
  const EVP_MD *md;
  const char *name;
  char *password; /* SASLprep'd */
  char *first_bare;   /* n=<user>,r=<cnonce> */
  char *gs2;          /* n,[a=...], */
  char cnonce[64];
  int min_iterations, max_iterations;
  int state;
  unsigned char server_signature[MAX_DIGEST];
  unsigned int digest_len;
};

static int fail(char *err, const char *fmt, const char *what) {
  snprintf(err, SASL_ERR_MAX, fmt, what);
  return 0;
}

/* --- SASLprep (RFC 4013) -------------------------------------------------
 * Covered: the mapping of non-ASCII spaces to space and of the "commonly
 * mapped to nothing" code points to nothing, and the prohibition of ASCII
 * and non-ASCII control characters. Not covered: NFKC normalisation, so a
 * name or password must already be in NFKC (all ASCII ones are). */

/* Decodes one UTF-8 code point at *p; returns it, or -1 on bad UTF-8. */
static long utf8_next(const unsigned char **p) {
  const unsigned char *s = *p;
  long c;
  int n, i;
  if (s[0] < 0x80) { *p += 1; return s[0]; }
  if ((s[0] & 0xE0) == 0xC0) { c = s[0] & 0x1F; n = 1; }
  else if ((s[0] & 0xF0) == 0xE0) { c = s[0] & 0x0F; n = 2; }
  else if ((s[0] & 0xF8) == 0xF0) { c = s[0] & 0x07; n = 3; }
  else return -1;
  for (i = 1; i <= n; i++) {
    if ((s[i] & 0xC0) != 0x80) return -1;
    c = (c << 6) | (s[i] & 0x3F);
  }
  *p += n + 1;
  return c;
}

static int non_ascii_space(long c) {
  return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200B) || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int mapped_to_nothing(long c) {
  return c == 0xAD || c == 0x34F || c == 0x1806 || (c >= 0x180B && c <= 0x180D) || (c >= 0x200C && c <= 0x200D) ||
         c == 0x2060 || (c >= 0xFE00 && c <= 0xFE0F) || c == 0xFEFF;
}

static int prohibited(long c) {
  return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F) || c == 0x6DD || c == 0x70F || c == 0x180E ||
         (c >= 0x200E && c <= 0x200F) || (c >= 0x2028 && c <= 0x202E) || (c >= 0x2061 && c <= 0x2063) ||
         (c >= 0xE000 && c <= 0xF8FF) || (c >= 0xFFF9 && c <= 0xFFFD) || (c >= 0xD800 && c <= 0xDFFF);
}

char *sasl_saslprep(const char *s, char *err) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  char *out = malloc(n + 1), *o = out;
  if (out == NULL) {
    fail(err, "%s", "out of memory");
    return NULL;
  }
  while (*p) {
    const unsigned char *start = p;
    long c = utf8_next(&p);
    if (c < 0 || prohibited(c)) {
      free(out);
      fail(err, "%s", c < 0 ? "SASLprep: not UTF-8" : "SASLprep: a prohibited (control or private-use) character");
      return NULL;
    }
    if (mapped_to_nothing(c)) continue;
    if (non_ascii_space(c)) {
      *o++ = ' ';
      continue;
    }
    memcpy(o, start, (size_t)(p - start));
    o += p - start;
  }
  *o = '\0';
  return out;
}

/* --- helpers ----------------------------------------------------------------- */

static char *b64(const unsigned char *data, size_t len) {
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out) EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  return out;
}

/* Decodes base64 into out (size cap); returns the length or -1. */
static int unb64(const char *s, size_t len, unsigned char *out, size_t cap) {
  int n, pad = 0;
  if (len == 0 || len % 4 != 0 || (len / 4) * 3 > cap) return -1;
  if (s[len - 1] == '=') pad++;
  if (s[len - 2] == '=') pad++;
  n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
  return n < 0 ? -1 : n - pad;
}

/* The value of attribute `a` in a comma-separated SCRAM message, as a
 * pointer and length; 0 when absent. */
static int attr(const char *msg, size_t len, char a, const char **v, size_t *vlen) {
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && msg[j] != ',') j++;
    if (j - i >= 2 && msg[i] == a && msg[i + 1] == '=') {
      *v = msg + i + 2;
      *vlen = j - i - 2;
      return 1;
    }
    i = j + 1;
  }
  return 0;
}

/* saslname: ',' and '=' escaped as =2C and =3D. */
static char *saslname(const char *user) {
  size_t n = 0;
  const char *p;
  char *out, *o;
  for (p = user; *p; p++) n += (*p == ',' || *p == '=') ? 3 : 1;
  if ((out = malloc(n + 1)) == NULL) return NULL;
  for (o = out, p = user; *p; p++) {
    if (*p == ',') { memcpy(o, "=2C", 3); o += 3; }
    else if (*p == '=') { memcpy(o, "=3D", 3); o += 3; }
    else *o++ = *p;
  }
  *o = '\0';
  return out;
}

static void scram_destroy(sasl_mech *m) {
  if (m == NULL) return;
  if (m->password) {
    OPENSSL_cleanse(m->password, strlen(m->password));
    free(m->password);
  }
  free(m->first_bare);
  free(m->gs2);
  OPENSSL_cleanse(m, sizeof *m);
  free(m);
}

static sasl_mech *scram_create(const EVP_MD *md, const char *name, const sasl_creds *c, char *err) {
  sasl_mech *m;
  char *user = NULL, *prepped = NULL, *escaped = NULL;
  if (c->username == NULL || c->password == NULL) {
    fail(err, "%s needs a username and a password", name);
    return NULL;
  }
  if ((m = calloc(1, sizeof *m)) == NULL) return fail(err, "%s", "out of memory"), NULL;
  m->md = md;
  m->name = name;
  m->digest_len = (unsigned int)EVP_MD_size(md);
  m->min_iterations = c->min_iterations > 0 ? c->min_iterations : 4096;
  m->max_iterations = c->max_iterations > 0 ? c->max_iterations : 10000000;
  if ((m->password = sasl_saslprep(c->password, err)) == NULL) goto fail;
  if ((prepped = sasl_saslprep(c->username, err)) == NULL || (escaped = saslname(prepped)) == NULL) goto fail;
  if (c->nonce) {
    snprintf(m->cnonce, sizeof m->cnonce, "%s", c->nonce);
  } else {
    unsigned char raw[NONCE_BYTES];
    char *enc;
    if (RAND_bytes(raw, sizeof raw) != 1 || (enc = b64(raw, sizeof raw)) == NULL) {
      fail(err, "%s", "no random bytes for the SCRAM nonce");
      goto fail;
    }
    snprintf(m->cnonce, sizeof m->cnonce, "%s", enc);
    free(enc);
  }
  m->first_bare = malloc(strlen(escaped) + strlen(m->cnonce) + 8);
  m->gs2 = malloc((c->authzid ? strlen(c->authzid) * 3 : 0) + 8);
  if (m->first_bare == NULL || m->gs2 == NULL) {
    fail(err, "%s", "out of memory");
    goto fail;
  }
  sprintf(m->first_bare, "n=%s,r=%s", escaped, m->cnonce);
  if (c->authzid && *c->authzid) {
    user = saslname(c->authzid);
    if (user == NULL) goto fail;
    sprintf(m->gs2, "n,a=%s,", user);
  } else {
    strcpy(m->gs2, "n,,");
  }
  free(user);
  free(prepped);
  free(escaped);
  return m;
fail:
  free(user);
  free(prepped);
  free(escaped);
  scram_destroy(m);
  return NULL;
}

static int set_out(sasl_bytes *out, const char *s, char *err) {
  out->len = strlen(s);
  if ((out->data = malloc(out->len + 1)) == NULL) return fail(err, "%s", "out of memory");
  memcpy(out->data, s, out->len + 1);
  return 1;
}

static int scram_start(sasl_mech *m, sasl_bytes *out, char *err) {
  char *msg;
  int ok;
  if (m->state != SENT_NOTHING) return fail(err, "%s: start() called twice", m->name);
  if ((msg = malloc(strlen(m->gs2) + strlen(m->first_bare) + 1)) == NULL) return fail(err, "%s", "out of memory");
  sprintf(msg, "%s%s", m->gs2, m->first_bare);
  ok = set_out(out, msg, err);
  free(msg);
  if (ok) m->state = SENT_FIRST;
  return ok;
}

static int hmac(const EVP_MD *md, const void *key, int key_len, const void *data, size_t len, unsigned char *out) {
  unsigned int n = 0;
  return HMAC(md, key, key_len, data, len, out, &n) != NULL;
}

/* client-final from server-first. */
static int client_final(sasl_mech *m, const char *sf, size_t sf_len, sasl_bytes *out, char *err) {
  const char *nonce, *salt64, *iter;
  size_t nonce_len, salt_len, iter_len, cnonce_len = strlen(m->cnonce);
  unsigned char salt[256], salted[MAX_DIGEST], client_key[MAX_DIGEST], stored_key[MAX_DIGEST];
  unsigned char client_sig[MAX_DIGEST], proof[MAX_DIGEST], server_key[MAX_DIGEST];
  unsigned int dl = m->digest_len, i;
  long iterations;
  int slen, ok = 0;
  char itbuf[16], *gs2_64 = NULL, *without_proof = NULL, *auth = NULL, *proof64 = NULL, *msg = NULL;
  if (attr(sf, sf_len, 'e', &nonce, &nonce_len)) {
    snprintf(err, SASL_ERR_MAX, "%s: the server refused: %.*s", m->name, (int)(nonce_len > 100 ? 100 : nonce_len), nonce);
    return 0;
  }
  if (!attr(sf, sf_len, 'r', &nonce, &nonce_len) || !attr(sf, sf_len, 's', &salt64, &salt_len) ||
      !attr(sf, sf_len, 'i', &iter, &iter_len))
    return fail(err, "%s: the server's first message lacks r=, s= or i=", m->name);
  if (nonce_len <= cnonce_len || memcmp(nonce, m->cnonce, cnonce_len) != 0)
    return fail(err, "%s: the server's nonce does not extend ours (a replay or a broken server)", m->name);
  if (iter_len == 0 || iter_len >= sizeof itbuf) return fail(err, "%s: bad iteration count", m->name);
  memcpy(itbuf, iter, iter_len);
  itbuf[iter_len] = '\0';
  iterations = strtol(itbuf, NULL, 10);
  if (iterations < m->min_iterations) {
    snprintf(err, SASL_ERR_MAX, "%s: the server asks for %ld iterations, fewer than the minimum %d", m->name,
             iterations, m->min_iterations);
    return 0;
  }
  if (iterations > m->max_iterations) return fail(err, "%s: the server asks for an absurd iteration count", m->name);
  if ((slen = unb64(salt64, salt_len, salt, sizeof salt)) <= 0) return fail(err, "%s: the salt is not base64", m->name);
  if (PKCS5_PBKDF2_HMAC(m->password, (int)strlen(m->password), salt, slen, (int)iterations, m->md, (int)dl, salted) != 1 ||
      !hmac(m->md, salted, (int)dl, "Client Key", 10, client_key) ||
      EVP_Digest(client_key, dl, stored_key, NULL, m->md, NULL) != 1 ||
      !hmac(m->md, salted, (int)dl, "Server Key", 10, server_key)) {
    fail(err, "%s: the key derivation failed", m->name);
    goto done;
  }
  gs2_64 = b64((const unsigned char *)m->gs2, strlen(m->gs2));
  without_proof = malloc(strlen(gs2_64 ? gs2_64 : "") + nonce_len + 8);
  auth = malloc(strlen(m->first_bare) + sf_len + nonce_len + strlen(gs2_64 ? gs2_64 : "") + 16);
  if (gs2_64 == NULL || without_proof == NULL || auth == NULL) {
    fail(err, "%s", "out of memory");
    goto done;
  }
  sprintf(without_proof, "c=%s,r=%.*s", gs2_64, (int)nonce_len, nonce);
  sprintf(auth, "%s,%.*s,%s", m->first_bare, (int)sf_len, sf, without_proof);
  if (!hmac(m->md, stored_key, (int)dl, auth, strlen(auth), client_sig) ||
      !hmac(m->md, server_key, (int)dl, auth, strlen(auth), m->server_signature)) {
    fail(err, "%s: HMAC failed", m->name);
    goto done;
  }
  for (i = 0; i < dl; i++) proof[i] = client_key[i] ^ client_sig[i];
  proof64 = b64(proof, dl);
  msg = proof64 ? malloc(strlen(without_proof) + strlen(proof64) + 4) : NULL;
  if (msg == NULL) {
    fail(err, "%s", "out of memory");
    goto done;
  }
  sprintf(msg, "%s,p=%s", without_proof, proof64);
  ok = set_out(out, msg, err);
done:
  OPENSSL_cleanse(salted, sizeof salted);
  OPENSSL_cleanse(client_key, sizeof client_key);
  OPENSSL_cleanse(stored_key, sizeof stored_key);
  OPENSSL_cleanse(server_key, sizeof server_key);
  free(gs2_64);
  free(without_proof);
  free(auth);
  free(proof64);
  free(msg);
  return ok;
}

/* Checks server-final's signature. */
static int verify_server(sasl_mech *m, const char *sf, size_t len, char *err) {
  const char *v;
  size_t vlen;
  unsigned char sig[MAX_DIGEST + 8];
  int n;
  if (attr(sf, len, 'e', &v, &vlen)) {
    snprintf(err, SASL_ERR_MAX, "%s: the server refused: %.*s", m->name, (int)(vlen > 100 ? 100 : vlen), v);
    return 0;
  }
  if (!attr(sf, len, 'v', &v, &vlen)) return fail(err, "%s: the server's final message has no signature", m->name);
  n = unb64(v, vlen, sig, sizeof sig);
  if (n != (int)m->digest_len || CRYPTO_memcmp(sig, m->server_signature, m->digest_len) != 0)
    return fail(err, "%s: the server's signature is wrong: it does not know the password (or is not the server)", m->name);
  return 1;
}

static int scram_step(sasl_mech *m, const char *challenge, size_t len, sasl_bytes *out, int *done, char *err) {
  out->data = NULL;
  out->len = 0;
  *done = 0;
  if (m->state == SENT_FIRST) {
    if (!client_final(m, challenge, len, out, err)) return 0;
    m->state = SENT_FINAL;
    return 1;
  }
  if (m->state == SENT_FINAL) {
    if (!verify_server(m, challenge, len, err)) return 0;
    m->state = COMPLETE;
    *done = 1;
    return 1;
  }
  return fail(err, "%s: step() out of order (call start() first, stop when done)", m->name);
}

static int start(sasl_mech *m, sasl_bytes *out, char *err) { return scram_start(m, out, err); }

static sasl_mech *create256(const sasl_creds *c, char *err) { return scram_create(EVP_sha256(), "SCRAM-SHA-256", c, err); }
static sasl_mech *create512(const sasl_creds *c, char *err) { return scram_create(EVP_sha512(), "SCRAM-SHA-512", c, err); }

const sasl_mech_type sasl_scram_sha256 = {"SCRAM-SHA-256", create256, start, scram_step, scram_destroy};
const sasl_mech_type sasl_scram_sha512 = {"SCRAM-SHA-512", create512, start, scram_step, scram_destroy};
