/* AWS Signature Version 4 for S3: in headers (every request) and in the
 * query (presigned URLs). https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "storage/http.h"
#include "storage/s3_internal.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

static void hex(const unsigned char *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

void s3_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
  hex(md, 32, out);
}

static void hmac(const void *key, size_t key_len, const char *msg, unsigned char out[32]) {
  unsigned int n = 32;
  HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &n);
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), "s3"), "aws4_request") */
static void signing_key(const char *secret, const char *date, const char *region, unsigned char out[32]) {
  size_t n = strlen(secret) + 5;
  char *k = malloc(n);
  unsigned char a[32], b[32];
  snprintf(k, n, "AWS4%s", secret);
  hmac(k, strlen(k), date, a);
  OPENSSL_cleanse(k, n);
  free(k);
  hmac(a, 32, region, b);
  hmac(b, 32, "s3", a);
  hmac(a, 32, "aws4_request", out);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(b, sizeof b);
}

static void dates(time_t now, char amz_date[17], char day[9]) {
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &tm);
  memcpy(day, amz_date, 8);
  day[8] = '\0';
}

/* hex(HMAC(kSigning, string to sign)) for the canonical request. */
static void signature(const s3_creds *c, const char *region, const char *amz_date, const char *day,
                      const char *canonical_request, char out[65]) {
  char creq_hash[65], *sts;
  unsigned char key[32], sig[32];
  size_t n;
  s3_sha256_hex(canonical_request, strlen(canonical_request), creq_hash);
  n = strlen(amz_date) + strlen(day) + strlen(region) + 128;
  sts = malloc(n);
  snprintf(sts, n, ALGORITHM "\n%s\n%s/%s/s3/aws4_request\n%s", amz_date, day, region, creq_hash);
  signing_key(c->secret_key, day, region, key);
  hmac(key, 32, sts, sig);
  OPENSSL_cleanse(key, sizeof key);
  free(sts);
  hex(sig, 32, out);
}

static int header_cmp(const void *a, const void *b) {
  return strcmp(((const s3_header *)a)->name, ((const s3_header *)b)->name);
}

int s3_sign(const s3_creds *c, const char *region, const char *method, const char *host,
            const char *canonical_uri, const char *canonical_query, const s3_header *extra, size_t nextra,
            const char *payload_hash, time_t now, struct curl_slist **out) {
  char amz_date[17], day[9], sig[65];
  s3_header *h = calloc(nextra + 4, sizeof *h);
  size_t n = 0, i;
  http_buf creq = {0}, signed_names = {0}, line = {0};
  int ok = 1;
  if (!h) return 0;
  dates(now, amz_date, day);
  h[n++] = (s3_header){"host", host};
  h[n++] = (s3_header){"x-amz-content-sha256", payload_hash};
  h[n++] = (s3_header){"x-amz-date", amz_date};
  if (c->session_token && c->session_token[0]) h[n++] = (s3_header){"x-amz-security-token", c->session_token};
  for (i = 0; i < nextra; i++) h[n++] = extra[i];
  qsort(h, n, sizeof *h, header_cmp);

  ok &= http_buf_append(&creq, method, strlen(method));
  ok &= http_buf_append(&creq, "\n", 1);
  ok &= http_buf_append(&creq, canonical_uri, strlen(canonical_uri));
  ok &= http_buf_append(&creq, "\n", 1);
  ok &= http_buf_append(&creq, canonical_query, strlen(canonical_query));
  ok &= http_buf_append(&creq, "\n", 1);
  for (i = 0; i < n; i++) {
    ok &= http_buf_append(&creq, h[i].name, strlen(h[i].name));
    ok &= http_buf_append(&creq, ":", 1);
    ok &= http_buf_append(&creq, h[i].value, strlen(h[i].value));
    ok &= http_buf_append(&creq, "\n", 1);
    if (i) ok &= http_buf_append(&signed_names, ";", 1);
    ok &= http_buf_append(&signed_names, h[i].name, strlen(h[i].name));
  }
  ok &= http_buf_append(&creq, "\n", 1);
  ok &= http_buf_append(&creq, signed_names.data, signed_names.len);
  ok &= http_buf_append(&creq, "\n", 1);
  ok &= http_buf_append(&creq, payload_hash, strlen(payload_hash));
  if (ok) {
    signature(c, region, amz_date, day, creq.data, sig);
    for (i = 0; i < n && ok; i++) {
      line.len = 0;
      ok &= http_buf_append(&line, h[i].name, strlen(h[i].name));
      ok &= http_buf_append(&line, ": ", 2);
      ok &= http_buf_append(&line, h[i].value, strlen(h[i].value));
      if (ok) *out = curl_slist_append(*out, line.data);
    }
    line.len = 0;
    ok &= http_buf_append(&line, "Authorization: " ALGORITHM " Credential=", 15 + strlen(ALGORITHM) + 12);
    ok &= http_buf_append(&line, c->access_key, strlen(c->access_key));
    ok &= http_buf_append(&line, "/", 1);
    ok &= http_buf_append(&line, day, 8);
    ok &= http_buf_append(&line, "/", 1);
    ok &= http_buf_append(&line, region, strlen(region));
    ok &= http_buf_append(&line, "/s3/aws4_request, SignedHeaders=", 32);
    ok &= http_buf_append(&line, signed_names.data, signed_names.len);
    ok &= http_buf_append(&line, ", Signature=", 12);
    ok &= http_buf_append(&line, sig, 64);
    if (ok) *out = curl_slist_append(*out, line.data);
  }
  http_buf_free(&creq);
  http_buf_free(&signed_names);
  http_buf_free(&line);
  free(h);
  return ok;
}

char *s3_presign_query(const s3_creds *c, const char *region, const char *method, const char *host,
                       const char *canonical_uri, long expires_seconds, time_t now) {
  char amz_date[17], day[9], sig[65], cred[512], cred_enc[1024], token_enc[4096] = "";
  http_buf q = {0}, creq = {0};
  char *result = NULL;
  dates(now, amz_date, day);
  snprintf(cred, sizeof cred, "%s/%s/%s/s3/aws4_request", c->access_key, day, region);
  if (http_uri_encode(cred, 0, cred_enc, sizeof cred_enc) < 0) return NULL;
  if (c->session_token && c->session_token[0] &&
      http_uri_encode(c->session_token, 0, token_enc, sizeof token_enc) < 0)
    return NULL;
  {
    /* Already in sorted order: Algorithm, Credential, Date, Expires, Security-Token, SignedHeaders. */
    size_t n = strlen(cred_enc) + strlen(token_enc) + 256;
    char *p = malloc(n);
    snprintf(p, n,
             "X-Amz-Algorithm=" ALGORITHM "&X-Amz-Credential=%s&X-Amz-Date=%s&X-Amz-Expires=%ld%s%s"
             "&X-Amz-SignedHeaders=host",
             cred_enc, amz_date, expires_seconds, token_enc[0] ? "&X-Amz-Security-Token=" : "", token_enc);
    http_buf_append(&q, p, strlen(p));
    free(p);
  }
  http_buf_append(&creq, method, strlen(method));
  http_buf_append(&creq, "\n", 1);
  http_buf_append(&creq, canonical_uri, strlen(canonical_uri));
  http_buf_append(&creq, "\n", 1);
  http_buf_append(&creq, q.data, q.len);
  http_buf_append(&creq, "\nhost:", 6);
  http_buf_append(&creq, host, strlen(host));
  http_buf_append(&creq, "\n\nhost\nUNSIGNED-PAYLOAD", 23);
  if (q.data && creq.data) {
    signature(c, region, amz_date, day, creq.data, sig);
    http_buf_append(&q, "&X-Amz-Signature=", 17);
    if (http_buf_append(&q, sig, 64)) {
      result = q.data;
      q.data = NULL;
    }
  }
  http_buf_free(&q);
  http_buf_free(&creq);
  return result;
}
