/* Kafka messages kalua proxy reads or writes itself (see wire.h). Every
 * read goes through kreader (frames.h): a malformed or hostile frame gives
 * 0, never a read past its end. Field orders follow Kafka's message
 * definitions (clients/src/main/resources/common/message/, one JSON file each). */
#include "kafka/wire.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kafka/frames.h"

/* --- API keys ---------------------------------------------------------------------- */

static const char *const API_NAMES[] = {
  "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica", "UpdateMetadata",
  "ControlledShutdown", "OffsetCommit", "OffsetFetch", "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup",
  "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics", "DeleteTopics",
  "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn",
  "WriteTxnMarkers", "TxnOffsetCommit", "DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs",
  "AlterConfigs", "AlterReplicaLogDirs", "DescribeLogDirs", "SaslAuthenticate", "CreatePartitions",
  "CreateDelegationToken", "RenewDelegationToken", "ExpireDelegationToken", "DescribeDelegationToken",
  "DeleteGroups", "ElectLeaders", "IncrementalAlterConfigs", "AlterPartitionReassignments",
  "ListPartitionReassignments", "OffsetDelete", "DescribeClientQuotas", "AlterClientQuotas",
  "DescribeUserScramCredentials", "AlterUserScramCredentials", "Vote", "BeginQuorumEpoch", "EndQuorumEpoch",
  "DescribeQuorum", "AlterPartition", "UpdateFeatures", "Envelope", "FetchSnapshot", "DescribeCluster",
  "DescribeProducers", "BrokerRegistration", "BrokerHeartbeat", "UnregisterBroker", "DescribeTransactions",
  "ListTransactions", "AllocateProducerIds", "ConsumerGroupHeartbeat", "ConsumerGroupDescribe",
  "ControllerRegistration", "GetTelemetrySubscriptions", "PushTelemetry", "AssignReplicasToDirs",
  "ListClientMetricsResources", "DescribeTopicPartitions", "ShareGroupHeartbeat", "ShareGroupDescribe",
  "ShareFetch", "ShareAcknowledge", "AddRaftVoter", "RemoveRaftVoter", "UpdateRaftVoter",
  "InitializeShareGroupState", "ReadShareGroupState", "WriteShareGroupState", "DeleteShareGroupState",
  "ReadShareGroupStateSummary",
};
#define API_COUNT ((int)(sizeof API_NAMES / sizeof API_NAMES[0]))

const char *wire_api_key_name(int16_t key) {
  return key >= 0 && key < API_COUNT ? API_NAMES[key] : "UnknownApi";
}

int wire_api_key_parse(const char *name) {
  int k;
  for (k = 0; k < API_COUNT; k++)
    if (strcasecmp(API_NAMES[k], name) == 0) return k;
  return -1;
}

/* The first flexible version of each request (-1: never), for the
 * header's tagged fields; from 55 on every API is flexible from v0.
 * Responses become flexible at the same version as their requests (checked
 * against every *Request.json and *Response.json of Kafka 3.9). */
static int first_flexible(int16_t key) {
  static const signed char v[] = {
    9, 12, 6, 9, 4, 2, 6, 3, 8, 6, 3, 6, 4, 4, 4, 5, 3, -1, 3, 5, 4, 2, 2, 4, 3, 3, 3, 1, 3, 2, 2, 2, 4, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 1, 0, 0, -1, 1, 1, 0, 0, 0, 1, 1,
  };
  if (key < 0) return -1;
  return key < (int16_t)sizeof v ? v[key] : 0;
}

int wire_response_flexible(int16_t api_key, int16_t version) {
  int f = first_flexible(api_key);
  return api_key != 18 && f >= 0 && version >= f; /* ApiVersions answers with header v0 always */
}

/* Kafka error codes the proxy answers with. */
enum {
  TOPIC_AUTHORIZATION_FAILED = 29,
  GROUP_AUTHORIZATION_FAILED = 30,
  CLUSTER_AUTHORIZATION_FAILED = 31,
  UNSUPPORTED_VERSION = 35,
};

/* --- reading ------------------------------------------------------------------------- */

static void skip_tags(kreader *rd) {
  uint32_t n, i, tag, size;
  if (!kr_uvarint(rd, &n)) return;
  for (i = 0; i < n && !rd->bad; i++) {
    if (!kr_uvarint(rd, &tag) || !kr_uvarint(rd, &size)) return;
    kr_take(rd, size);
  }
}

/* A compact length: uvarint N+1, 0 for null (-1). */
static int compact_len(kreader *rd, int32_t *n) {
  uint32_t u;
  if (!kr_uvarint(rd, &u)) return 0;
  if (u > (uint32_t)INT32_MAX) {
    rd->bad = 1;
    return 0;
  }
  *n = (int32_t)u - 1;
  return 1;
}

/* A string (int16 length, or compact uvarint length+1); NULL for null. */
static const char *read_str(kreader *rd, int flexible, size_t *len) {
  int32_t n;
  *len = 0; /* set only for a string that is there: callers copy len bytes */
  if (flexible) {
    if (!compact_len(rd, &n)) return NULL;
  } else {
    n = kr_int16(rd);
  }
  const char *s;
  if (n < 0 || (s = (const char *)kr_bytes(rd, n)) == NULL) return NULL;
  *len = (size_t)n;
  return s;
}

static int32_t read_count(kreader *rd, int flexible) {
  int32_t n;
  if (flexible) {
    if (!compact_len(rd, &n)) return -1;
  } else {
    n = kr_int32(rd);
  }
  if (n > (int32_t)rd->n) rd->bad = 1; /* every element takes at least a byte */
  return rd->bad ? -1 : n;
}

static const unsigned char *read_bytes_field(kreader *rd, int flexible, size_t *len) {
  int32_t n;
  *len = 0;
  if (flexible) {
    if (!compact_len(rd, &n)) return NULL;
  } else {
    n = kr_int32(rd);
  }
  const unsigned char *b;
  if (n < 0 || (b = kr_bytes(rd, n)) == NULL) return NULL;
  *len = (size_t)n;
  return b;
}

int wire_parse_request(const unsigned char *frame, size_t len, wire_request *out) {
  kreader rd = {frame, len, 0};
  int16_t n;
  memset(out, 0, sizeof *out);
  out->api_key = kr_int16(&rd);
  out->api_version = kr_int16(&rd);
  out->correlation = kr_int32(&rd);
  n = kr_int16(&rd);
  out->client_id = (const char *)kr_bytes(&rd, n);
  out->client_id_len = n > 0 ? (size_t)n : 0;
  out->flexible = first_flexible(out->api_key) >= 0 && out->api_version >= first_flexible(out->api_key);
  if (out->flexible) skip_tags(&rd);
  if (rd.bad || out->api_key < 0 || out->api_version < 0) return 0;
  out->body_off = len - rd.n;
  return 1;
}

/* --- writing ------------------------------------------------------------------------- */

typedef struct {
  unsigned char *p;
  size_t len, cap;
  int bad;
} wbuf;

static void put(wbuf *w, const void *src, size_t n) {
  if (w->bad) return;
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    unsigned char *grown;
    while (cap < w->len + n) cap *= 2;
    if ((grown = realloc(w->p, cap)) == NULL) {
      w->bad = 1;
      return;
    }
    w->p = grown;
    w->cap = cap;
  }
  if (n) memcpy(w->p + w->len, src, n);
  w->len += n;
}

static void put16(wbuf *w, int16_t v) {
  unsigned char b[2] = {(unsigned char)((uint16_t)v >> 8), (unsigned char)v};
  put(w, b, 2);
}

static void put32(wbuf *w, int32_t v) {
  unsigned char b[4];
  frames_put32(b, (uint32_t)v);
  put(w, b, 4);
}

static void put64(wbuf *w, int64_t v) {
  put32(w, (int32_t)((uint64_t)v >> 32));
  put32(w, (int32_t)(uint32_t)v);
}

static void put_uvarint(wbuf *w, uint32_t v) {
  unsigned char b[5];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  b[n++] = (unsigned char)v;
  put(w, b, n);
}

/* A string; s NULL writes null. */
static void put_str(wbuf *w, int flexible, const char *s, size_t n) {
  if (flexible)
    put_uvarint(w, s ? (uint32_t)n + 1 : 0);
  else
    put16(w, s ? (int16_t)n : -1);
  if (s) put(w, s, n);
}

static void put_count(wbuf *w, int flexible, int32_t n) {
  if (flexible)
    put_uvarint(w, (uint32_t)(n + 1));
  else
    put32(w, n);
}

static void put_tags(wbuf *w, int flexible) {
  if (flexible) put_uvarint(w, 0);
}

/* Starts a response frame: size (filled by finish) and correlation id. */
static void begin(wbuf *w, int32_t correlation, int header_tags) {
  put32(w, 0);
  put32(w, correlation);
  if (header_tags) put_uvarint(w, 0);
}

static int finish(wbuf *w, unsigned char **out, size_t *out_len) {
  if (w->bad || w->len < 4 || w->len - 4 > INT32_MAX) {
    free(w->p);
    return 0;
  }
  frames_put32(w->p, (uint32_t)(w->len - 4));
  *out = w->p;
  *out_len = w->len;
  return 1;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return 0;
}

/* --- rewriting broker addresses -------------------------------------------------------- */

int wire_rewrites(int16_t api_key) {
  return api_key == 3 || api_key == 10 || api_key == 60;
}

int16_t wire_rewrite_max_version(int16_t api_key) {
  switch (api_key) {
  case 3: return 12;
  case 10: return 5;
  case 60: return 1;
  default: return -1;
  }
}

typedef struct {
  kreader rd;
  const unsigned char *from; /* bytes read but not yet copied start here */
  wbuf w;
  wire_map_fn fn;
  void *ud;
  int failed;
} rewriter;

/* Copies the input up to where the reader is. */
static void sync_copy(rewriter *rw) {
  put(&rw->w, rw->from, (size_t)(rw->rd.p - rw->from));
  rw->from = rw->rd.p;
}

/* node_id, host, port at the reader: copied with the address mapped. */
static void rewrite_address(rewriter *rw, int flexible) {
  int32_t node = kr_int32(&rw->rd), port;
  size_t hlen = 0;
  const char *host;
  char name[256];
  wire_addr to;
  sync_copy(rw);
  host = read_str(&rw->rd, flexible, &hlen);
  port = kr_int32(&rw->rd);
  if (rw->rd.bad) return;
  snprintf(name, sizeof name, "%.*s", (int)(hlen < sizeof name ? hlen : sizeof name - 1), host ? host : "");
  memset(&to, 0, sizeof to);
  if (node >= 0 && host && hlen > 0) {
    int rc = rw->fn(rw->ud, node, name, port, &to);
    if (rc < 0) {
      rw->failed = 1;
      return;
    }
    if (rc > 0) {
      put_str(&rw->w, flexible, to.host, strlen(to.host));
      put32(&rw->w, to.port);
      rw->from = rw->rd.p;
      return;
    }
  }
  sync_copy(rw);
}

static void skip_str(kreader *rd, int flexible) {
  size_t n;
  read_str(rd, flexible, &n);
}

static void rewrite_metadata(rewriter *rw, int16_t v) {
  int fl = v >= 9;
  int32_t i, n;
  if (v >= 3) kr_int32(&rw->rd); /* throttle */
  n = read_count(&rw->rd, fl);
  for (i = 0; i < n && !rw->rd.bad && !rw->failed; i++) {
    rewrite_address(rw, fl);
    if (v >= 1) skip_str(&rw->rd, fl); /* rack */
    if (fl) skip_tags(&rw->rd);
  }
}

static void rewrite_find_coordinator(rewriter *rw, int16_t v) {
  int fl = v >= 3;
  int32_t i, n;
  if (v >= 1) kr_int32(&rw->rd); /* throttle */
  if (v < 4) {
    kr_int16(&rw->rd); /* error code */
    if (v >= 1) skip_str(&rw->rd, fl);
    rewrite_address(rw, fl);
    return;
  }
  n = read_count(&rw->rd, fl);
  for (i = 0; i < n && !rw->rd.bad && !rw->failed; i++) {
    skip_str(&rw->rd, fl); /* key */
    rewrite_address(rw, fl);
    kr_int16(&rw->rd);
    skip_str(&rw->rd, fl);
    skip_tags(&rw->rd);
  }
}

static void rewrite_describe_cluster(rewriter *rw, int16_t v) {
  int32_t i, n;
  kr_int32(&rw->rd); /* throttle */
  kr_int16(&rw->rd);
  skip_str(&rw->rd, 1); /* error message */
  if (v >= 1) kr_take(&rw->rd, 1); /* endpoint type */
  skip_str(&rw->rd, 1);            /* cluster id */
  kr_int32(&rw->rd);               /* controller */
  n = read_count(&rw->rd, 1);
  for (i = 0; i < n && !rw->rd.bad && !rw->failed; i++) {
    rewrite_address(rw, 1);
    skip_str(&rw->rd, 1); /* rack */
    skip_tags(&rw->rd);
  }
}

int wire_rewrite_response(int16_t api_key, int16_t version, const unsigned char *frame, size_t len, wire_map_fn fn,
                          void *ud, unsigned char **out, size_t *out_len, char *err, size_t errlen) {
  rewriter rw;
  if (!wire_rewrites(api_key) || version < 0 || version > wire_rewrite_max_version(api_key))
    return fail(err, errlen, "%s v%d responses cannot be rewritten", wire_api_key_name(api_key), (int)version);
  memset(&rw, 0, sizeof rw);
  rw.rd = (kreader){frame, len, 0};
  rw.fn = fn;
  rw.ud = ud;
  put32(&rw.w, 0); /* the size, set by finish */
  rw.from = frame;
  kr_int32(&rw.rd); /* correlation id */
  if (wire_response_flexible(api_key, version)) skip_tags(&rw.rd);
  switch (api_key) {
  case 3: rewrite_metadata(&rw, version); break;
  case 10: rewrite_find_coordinator(&rw, version); break;
  default: rewrite_describe_cluster(&rw, version); break;
  }
  if (rw.rd.bad || rw.failed) {
    free(rw.w.p);
    return fail(err, errlen, rw.failed ? "a broker in it has no proxy address" : "malformed %s v%d response",
                wire_api_key_name(api_key), (int)version);
  }
  rw.rd.p = frame + len; /* the rest as it is */
  sync_copy(&rw);
  if (!finish(&rw.w, out, out_len)) return fail(err, errlen, "out of memory");
  return 1;
}

int16_t wire_client_max_version(int16_t api_key) {
  switch (api_key) {
  case 0: return 9;  /* Produce v10+ may name brokers (NodeEndpoints, KIP-951) */
  case 1: return 15; /* Fetch v16+ likewise */
  default: return wire_rewrite_max_version(api_key);
  }
}

/* An ApiVersions response up to its list: correlation id and error code.
 * A broker that does not know the version asked answers UNSUPPORTED_VERSION
 * in the v0 layout whatever the version (KIP-511), as Kafka's own clients
 * expect: read it that way. Returns whether the list is flexible. */
static int api_versions_head(kreader *rd, int16_t version, int16_t *error_code) {
  kr_int32(rd);
  *error_code = kr_int16(rd);
  return version >= 3 && *error_code != UNSUPPORTED_VERSION;
}

int wire_clamp_api_versions(int16_t version, unsigned char *frame, size_t len) {
  kreader rd = {frame, len, 0};
  int16_t code;
  int fl = api_versions_head(&rd, version, &code);
  int32_t i, n;
  n = read_count(&rd, fl);
  for (i = 0; i < n && !rd.bad; i++) {
    int16_t key = kr_int16(&rd), max, limit = wire_client_max_version(key);
    kr_int16(&rd);
    max = kr_int16(&rd);
    if (rd.bad) break;
    if (limit >= 0 && max > limit) frames_put16((unsigned char *)rd.p - 2, (uint16_t)limit);
    if (fl) skip_tags(&rd);
  }
  return !rd.bad;
}

/* --- ApiVersions ------------------------------------------------------------------------ */

int wire_parse_api_versions(int16_t version, const unsigned char *frame, size_t len, wire_api_range **out,
                            size_t *count) {
  kreader rd = {frame, len, 0};
  int16_t code;
  int fl = api_versions_head(&rd, version, &code);
  int32_t i, n;
  wire_api_range *r;
  if (rd.bad || code != 0) return 0;
  n = read_count(&rd, fl);
  if (n < 0 || (r = calloc((size_t)n + 1, sizeof *r)) == NULL) return 0;
  for (i = 0; i < n && !rd.bad; i++) {
    r[i].key = kr_int16(&rd);
    r[i].min = kr_int16(&rd);
    r[i].max = kr_int16(&rd);
    if (fl) skip_tags(&rd);
  }
  if (rd.bad) {
    free(r);
    return 0;
  }
  *out = r;
  *count = (size_t)n;
  return 1;
}

int wire_api_versions_response(int16_t version, int32_t correlation, int16_t error_code, const wire_api_range *ranges,
                               size_t count, unsigned char **out, size_t *out_len) {
  wbuf w = {0};
  int fl = version >= 3;
  size_t i;
  begin(&w, correlation, 0); /* ApiVersions: response header v0 */
  put16(&w, error_code);
  put_count(&w, fl, (int32_t)count);
  for (i = 0; i < count; i++) {
    put16(&w, ranges[i].key);
    put16(&w, ranges[i].min);
    put16(&w, ranges[i].max);
    put_tags(&w, fl);
  }
  if (version >= 1) put32(&w, 0);
  put_tags(&w, fl);
  return finish(&w, out, out_len);
}

/* --- the proxy's SASL server side --------------------------------------------------------- */

int wire_sasl_handshake_mechanism(const wire_request *h, const unsigned char *frame, size_t len, const char **mech,
                                  size_t *mech_len) {
  kreader rd = {frame + h->body_off, len - h->body_off, 0};
  *mech = read_str(&rd, 0, mech_len);
  return !rd.bad && *mech != NULL;
}

int wire_sasl_handshake_response(int32_t correlation, int16_t error_code, const char *const *mechanisms,
                                 unsigned char **out, size_t *out_len) {
  wbuf w = {0};
  int32_t n = 0, i;
  while (mechanisms[n]) n++;
  begin(&w, correlation, 0);
  put16(&w, error_code);
  put32(&w, n);
  for (i = 0; i < n; i++) put_str(&w, 0, mechanisms[i], strlen(mechanisms[i]));
  return finish(&w, out, out_len);
}

int wire_sasl_authenticate_bytes(const wire_request *h, const unsigned char *frame, size_t len,
                                 const unsigned char **bytes, size_t *n) {
  kreader rd = {frame + h->body_off, len - h->body_off, 0};
  *bytes = read_bytes_field(&rd, h->api_version >= 2, n);
  return !rd.bad && *bytes != NULL;
}

int wire_sasl_authenticate_response(int16_t version, int32_t correlation, int16_t error_code,
                                    const char *error_message, const unsigned char *bytes, size_t n,
                                    int64_t session_lifetime_ms, unsigned char **out, size_t *out_len) {
  wbuf w = {0};
  int fl = version >= 2;
  begin(&w, correlation, fl);
  put16(&w, error_code);
  put_str(&w, fl, error_message, error_message ? strlen(error_message) : 0);
  if (fl)
    put_uvarint(&w, (uint32_t)n + 1);
  else
    put32(&w, (int32_t)n);
  put(&w, bytes, n);
  if (version >= 1) put64(&w, session_lifetime_ms);
  put_tags(&w, fl);
  return finish(&w, out, out_len);
}

int wire_sasl_plain(const unsigned char *msg, size_t n, const char **authzid, size_t *authzid_len, const char **user,
                    size_t *user_len, const char **pass, size_t *pass_len) {
  const unsigned char *nul1 = memchr(msg, 0, n), *nul2;
  if (nul1 == NULL) return 0;
  nul2 = memchr(nul1 + 1, 0, n - (size_t)(nul1 + 1 - msg));
  if (nul2 == NULL || memchr(nul2 + 1, 0, n - (size_t)(nul2 + 1 - msg)) != NULL) return 0;
  *authzid = (const char *)msg;
  *authzid_len = (size_t)(nul1 - msg);
  *user = (const char *)nul1 + 1;
  *user_len = (size_t)(nul2 - nul1 - 1);
  *pass = (const char *)nul2 + 1;
  *pass_len = n - (size_t)(nul2 + 1 - msg);
  return *user_len > 0 && *pass_len > 0; /* RFC 4616: authcid and passwd are 1*SAFE */
}

/* --- refusals: forbidden requests answered with authorization errors ------------------------- */

/* Each refuse_* reads the request body at rd (field order from Kafka's
 * <Api>Request.json) and writes the response body to w (<Api>Response.json):
 * one result per entity the request names, echoing the name, with the error
 * Kafka's own authorizer would give. Reading stops at the first bad byte;
 * the caller then drops w. */

#define REFUSED "forbidden by kalua proxy"

static void put_refused(wbuf *w, int flexible) {
  put_str(w, flexible, REFUSED, sizeof REFUSED - 1);
}

static void skip_int32_array(kreader *rd, int flexible) {
  int32_t n = read_count(rd, flexible);
  if (n > 0) kr_take(rd, (size_t)n * 4);
}

/* Produce v0-11: every partition of every topic refused. acks=0: no answer. */
static void refuse_produce(kreader *rd, wbuf *w, int16_t v, int *silent) {
  int fl = v >= 9;
  int32_t t, nt, p, np;
  if (v >= 3) skip_str(rd, fl); /* transactional id */
  *silent = kr_int16(rd) == 0;
  kr_int32(rd);
  nt = read_count(rd, fl);
  put_count(w, fl, nt < 0 ? 0 : nt);
  for (t = 0; t < nt && !rd->bad; t++) {
    size_t len;
    const char *name = read_str(rd, fl, &len);
    put_str(w, fl, name ? name : "", len);
    np = read_count(rd, fl);
    put_count(w, fl, np < 0 ? 0 : np);
    for (p = 0; p < np && !rd->bad; p++) {
      size_t rlen;
      put32(w, kr_int32(rd));
      read_bytes_field(rd, fl, &rlen); /* the records, dropped */
      if (fl) skip_tags(rd);
      put16(w, TOPIC_AUTHORIZATION_FAILED);
      put64(w, -1);               /* base offset */
      if (v >= 2) put64(w, -1);   /* log append time */
      if (v >= 5) put64(w, -1);   /* log start offset */
      if (v >= 8) {
        put_count(w, fl, 0); /* record errors */
        put_refused(w, fl);
      }
      put_tags(w, fl);
    }
    if (fl) skip_tags(rd);
    put_tags(w, fl);
  }
  if (v >= 1) put32(w, 0); /* throttle */
  put_tags(w, fl);
}

/* CreateTopics v0-7. */
static void refuse_create_topics(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 5;
  int32_t t, nt, i, n;
  if (v >= 2) put32(w, 0);
  nt = read_count(rd, fl);
  put_count(w, fl, nt < 0 ? 0 : nt);
  for (t = 0; t < nt && !rd->bad; t++) {
    size_t len;
    const char *name = read_str(rd, fl, &len);
    kr_int32(rd); /* partitions */
    kr_int16(rd); /* replication factor */
    n = read_count(rd, fl); /* assignments */
    for (i = 0; i < n && !rd->bad; i++) {
      kr_int32(rd);
      skip_int32_array(rd, fl);
      if (fl) skip_tags(rd);
    }
    n = read_count(rd, fl); /* configs */
    for (i = 0; i < n && !rd->bad; i++) {
      skip_str(rd, fl);
      skip_str(rd, fl);
      if (fl) skip_tags(rd);
    }
    if (fl) skip_tags(rd);
    put_str(w, fl, name ? name : "", len);
    if (v >= 7) {
      static const unsigned char zero[16];
      put(w, zero, 16); /* topic id: none */
    }
    put16(w, TOPIC_AUTHORIZATION_FAILED);
    if (v >= 1) put_refused(w, fl);
    if (v >= 5) {
      put32(w, -1);      /* partitions */
      put16(w, -1);      /* replication factor */
      put_uvarint(w, 0); /* configs: null */
    }
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* DeleteTopics v0-6 (v6 names topics by name or id: both echoed). */
static void refuse_delete_topics(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 4;
  int32_t t, nt;
  if (v >= 1) put32(w, 0);
  nt = read_count(rd, fl);
  put_count(w, fl, nt < 0 ? 0 : nt);
  for (t = 0; t < nt && !rd->bad; t++) {
    size_t len;
    const char *name = read_str(rd, fl, &len);
    const unsigned char *id = NULL;
    if (v >= 6) {
      id = kr_take(rd, 16);
      skip_tags(rd);
    }
    put_str(w, fl, v >= 6 ? name : (name ? name : ""), len);
    if (v >= 6) {
      static const unsigned char zero[16];
      put(w, id ? id : zero, 16);
    }
    put16(w, TOPIC_AUTHORIZATION_FAILED);
    if (v >= 5) put_refused(w, fl);
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* DeleteRecords v0-2. */
static void refuse_delete_records(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 2;
  int32_t t, nt, p, np;
  put32(w, 0);
  nt = read_count(rd, fl);
  put_count(w, fl, nt < 0 ? 0 : nt);
  for (t = 0; t < nt && !rd->bad; t++) {
    size_t len;
    const char *name = read_str(rd, fl, &len);
    put_str(w, fl, name ? name : "", len);
    np = read_count(rd, fl);
    put_count(w, fl, np < 0 ? 0 : np);
    for (p = 0; p < np && !rd->bad; p++) {
      put32(w, kr_int32(rd));
      kr_int64(rd);
      if (fl) skip_tags(rd);
      put64(w, -1); /* low watermark */
      put16(w, TOPIC_AUTHORIZATION_FAILED);
      put_tags(w, fl);
    }
    if (fl) skip_tags(rd);
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* CreateAcls v0-3: one result per ACL to create (results carry no name). */
static void refuse_create_acls(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 2;
  int32_t i, n;
  put32(w, 0);
  n = read_count(rd, fl);
  put_count(w, fl, n < 0 ? 0 : n);
  for (i = 0; i < n && !rd->bad; i++) {
    kr_take(rd, 1);              /* resource type */
    skip_str(rd, fl);            /* resource name */
    if (v >= 1) kr_take(rd, 1);  /* pattern type */
    skip_str(rd, fl);            /* principal */
    skip_str(rd, fl);            /* host */
    kr_take(rd, 2);              /* operation, permission type */
    if (fl) skip_tags(rd);
    put16(w, CLUSTER_AUTHORIZATION_FAILED);
    put_refused(w, fl);
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* DeleteAcls v0-3: one result per filter, matching no ACL. */
static void refuse_delete_acls(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 2;
  int32_t i, n;
  put32(w, 0);
  n = read_count(rd, fl);
  put_count(w, fl, n < 0 ? 0 : n);
  for (i = 0; i < n && !rd->bad; i++) {
    kr_take(rd, 1);
    skip_str(rd, fl);
    if (v >= 1) kr_take(rd, 1);
    skip_str(rd, fl);
    skip_str(rd, fl);
    kr_take(rd, 2);
    if (fl) skip_tags(rd);
    put16(w, CLUSTER_AUTHORIZATION_FAILED);
    put_refused(w, fl);
    put_count(w, fl, 0); /* matching ACLs */
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* A config resource's error: a topic's, a group's, or else the cluster's
 * (brokers, broker loggers, client metrics). ConfigResource.Type codes. */
static int16_t config_resource_error(int type) {
  switch (type) {
  case 2: return TOPIC_AUTHORIZATION_FAILED;
  case 32: return GROUP_AUTHORIZATION_FAILED;
  default: return CLUSTER_AUTHORIZATION_FAILED;
  }
}

/* AlterConfigs v0-2 and IncrementalAlterConfigs v0-1 (whose configs also
 * carry an operation): one result per resource, echoing type and name. */
static void refuse_alter_configs(kreader *rd, wbuf *w, int fl, int incremental) {
  int32_t r, nr, i, n;
  put32(w, 0);
  nr = read_count(rd, fl);
  put_count(w, fl, nr < 0 ? 0 : nr);
  for (r = 0; r < nr && !rd->bad; r++) {
    const unsigned char *type = kr_take(rd, 1);
    size_t len;
    const char *name = read_str(rd, fl, &len);
    n = read_count(rd, fl);
    for (i = 0; i < n && !rd->bad; i++) {
      skip_str(rd, fl);
      if (incremental) kr_take(rd, 1);
      skip_str(rd, fl);
      if (fl) skip_tags(rd);
    }
    if (fl) skip_tags(rd);
    put16(w, config_resource_error(type ? (signed char)*type : 0));
    put_refused(w, fl);
    put(w, type ? type : (const unsigned char *)"", 1);
    put_str(w, fl, name ? name : "", len);
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* CreatePartitions v0-3. */
static void refuse_create_partitions(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 2;
  int32_t t, nt, i, n;
  put32(w, 0);
  nt = read_count(rd, fl);
  put_count(w, fl, nt < 0 ? 0 : nt);
  for (t = 0; t < nt && !rd->bad; t++) {
    size_t len;
    const char *name = read_str(rd, fl, &len);
    kr_int32(rd);          /* count */
    n = read_count(rd, fl); /* assignments, nullable */
    for (i = 0; i < n && !rd->bad; i++) {
      skip_int32_array(rd, fl);
      if (fl) skip_tags(rd);
    }
    if (fl) skip_tags(rd);
    put_str(w, fl, name ? name : "", len);
    put16(w, TOPIC_AUTHORIZATION_FAILED);
    put_refused(w, fl);
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* DeleteGroups v0-2. */
static void refuse_delete_groups(kreader *rd, wbuf *w, int16_t v) {
  int fl = v >= 2;
  int32_t g, ng;
  put32(w, 0);
  ng = read_count(rd, fl);
  put_count(w, fl, ng < 0 ? 0 : ng);
  for (g = 0; g < ng && !rd->bad; g++) {
    size_t len;
    const char *name = read_str(rd, fl, &len);
    put_str(w, fl, name ? name : "", len);
    put16(w, GROUP_AUTHORIZATION_FAILED);
    put_tags(w, fl);
  }
  put_tags(w, fl);
}

/* AlterPartitionReassignments v0 (flexible): a cluster operation, refused
 * at the top and for every partition, as Kafka's getErrorResponse does. */
static void refuse_alter_reassignments(kreader *rd, wbuf *w) {
  int32_t t, nt, p, np;
  kr_int32(rd); /* timeout */
  put32(w, 0);
  put16(w, CLUSTER_AUTHORIZATION_FAILED);
  put_refused(w, 1);
  nt = read_count(rd, 1);
  put_count(w, 1, nt < 0 ? 0 : nt);
  for (t = 0; t < nt && !rd->bad; t++) {
    size_t len;
    const char *name = read_str(rd, 1, &len);
    put_str(w, 1, name ? name : "", len);
    np = read_count(rd, 1);
    put_count(w, 1, np < 0 ? 0 : np);
    for (p = 0; p < np && !rd->bad; p++) {
      put32(w, kr_int32(rd));
      skip_int32_array(rd, 1); /* replicas, nullable */
      skip_tags(rd);
      put16(w, CLUSTER_AUTHORIZATION_FAILED);
      put_refused(w, 1);
      put_tags(w, 1);
    }
    skip_tags(rd);
    put_tags(w, 1);
  }
  put_tags(w, 1);
}

/* The versions refused for each key (min > max: none). */
static void refusal_versions(int16_t key, int16_t *min, int16_t *max) {
  *min = 0;
  switch (key) {
  case 0: *max = 11; break;
  case 19: *max = 7; break;
  case 20: *max = 6; break;
  case 21: *max = 2; break;
  case 30: *max = 3; break;
  case 31: *max = 3; break;
  case 33: *max = 2; break;
  case 37: *max = 3; break;
  case 42: *max = 2; break;
  case 44: *max = 1; break;
  case 45: *max = 0; break;
  default: *min = 1, *max = 0; break;
  }
}

int wire_can_refuse(int16_t api_key) {
  int16_t min, max;
  refusal_versions(api_key, &min, &max);
  return min <= max;
}

int wire_refusal(const unsigned char *req, size_t len, unsigned char **out, size_t *out_len, char *err,
                 size_t errlen) {
  wire_request h;
  kreader rd;
  wbuf w = {0};
  int16_t min, max, v;
  int silent = 0;
  *out = NULL;
  *out_len = 0;
  if (!wire_parse_request(req, len, &h)) return fail(err, errlen, "malformed request");
  refusal_versions(h.api_key, &min, &max);
  v = h.api_version;
  if (v < min || v > max) return fail(err, errlen, "no refusal for %s v%d", wire_api_key_name(h.api_key), (int)v);
  rd = (kreader){req + h.body_off, len - h.body_off, 0};
  begin(&w, h.correlation, wire_response_flexible(h.api_key, v));
  switch (h.api_key) {
  case 0: refuse_produce(&rd, &w, v, &silent); break;
  case 19: refuse_create_topics(&rd, &w, v); break;
  case 20: refuse_delete_topics(&rd, &w, v); break;
  case 21: refuse_delete_records(&rd, &w, v); break;
  case 30: refuse_create_acls(&rd, &w, v); break;
  case 31: refuse_delete_acls(&rd, &w, v); break;
  case 33: refuse_alter_configs(&rd, &w, v >= 2, 0); break;
  case 37: refuse_create_partitions(&rd, &w, v); break;
  case 42: refuse_delete_groups(&rd, &w, v); break;
  case 44: refuse_alter_configs(&rd, &w, v >= 1, 1); break;
  default: refuse_alter_reassignments(&rd, &w); break;
  }
  if (rd.bad) {
    free(w.p);
    return fail(err, errlen, "malformed %s v%d request", wire_api_key_name(h.api_key), (int)v);
  }
  if (silent) { /* Produce with acks=0 gets no response */
    free(w.p);
    return 1;
  }
  if (!finish(&w, out, out_len)) return fail(err, errlen, "out of memory");
  return 1;
}
