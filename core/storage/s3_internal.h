/* What the S3 backend's files share: credentials and Signature V4. */
#ifndef KALUA_STORAGE_S3_INTERNAL_H
#define KALUA_STORAGE_S3_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>
#include <lua.h>

#include "storage/storage.h"

/* Where credentials came from, so temporary ones can be fetched again. */
enum { S3_CREDS_STATIC, S3_CREDS_CONTAINER, S3_CREDS_IMDS };

typedef struct {
  char *access_key, *secret_key, *session_token; /* session_token may be NULL */
  int64_t expires;                              /* epoch seconds; 0: never */
  int source;
} s3_creds;

void s3_creds_clear(s3_creds *c);
int s3_creds_copy(s3_creds *dst, const s3_creds *src);

/* The chain: the config table at idx (access_key/secret_key/session_token),
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, the shared
 * credentials file (profile from the table, AWS_PROFILE or "default"),
 * container credentials, then IMDSv2. */
int s3_creds_resolve(lua_State *L, int idx, s3_creds *out, storage_error *err);

/* Fetches temporary credentials again from where they came from. */
int s3_creds_refetch(s3_creds *c, storage_error *err);

typedef struct {
  const char *name; /* lowercase */
  const char *value;
} s3_header;

void s3_sha256_hex(const void *data, size_t len, char out[65]);

/* Signs a request with AWS Signature V4 in headers: appends host, the
 * extra headers, x-amz-content-sha256, x-amz-date, x-amz-security-token
 * and Authorization to *out, all of them signed. canonical_uri is the
 * path as sent (already percent-encoded); canonical_query the query as sent,
 * its parameters sorted and encoded. */
int s3_sign(const s3_creds *c, const char *region, const char *method, const char *host,
            const char *canonical_uri, const char *canonical_query, const s3_header *extra, size_t nextra,
            const char *payload_hash, time_t now, struct curl_slist **out);

/* The query of a presigned request (X-Amz-* parameters and the signature,
 * sorted), to append to "<url>?"; only host is signed. Malloc'd. */
char *s3_presign_query(const s3_creds *c, const char *region, const char *method, const char *host,
                       const char *canonical_uri, long expires_seconds, time_t now);

#endif
