/* Kafka wire messages kalua proxy reads and writes itself: request headers,
 * the broker addresses in Metadata, FindCoordinator and DescribeCluster
 * responses, ApiVersions, the SASL server side (PLAIN), and authorization
 * errors answering forbidden requests. Pure C over buffers, every read
 * bounded (kreader, frames.h): fuzzed by fuzz/wire_fuzz.c. Frames here are
 * the bytes after the 4-byte size unless a comment says otherwise; built
 * frames (out) carry their size and are malloc'd. */
#ifndef KALUA_KAFKA_WIRE_H
#define KALUA_KAFKA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_ERR_MAX 256

typedef struct {
  char host[256];
  int32_t port;
} wire_addr;

/* Where clients must go for broker node_id at host:port: 1 with *out to
 * replace it, 0 to leave it, -1 to fail the rewrite. */
typedef int (*wire_map_fn)(void *ud, int32_t node_id, const char *host, int32_t port, wire_addr *out);

typedef struct {
  int16_t api_key, api_version;
  int32_t correlation;
  const char *client_id; /* into the frame; NULL when null */
  size_t client_id_len;
  size_t body_off; /* where the body starts */
  int flexible;    /* request header v2 */
} wire_request;

int wire_parse_request(const unsigned char *frame, size_t len, wire_request *out);
/* Response header v1 (tagged fields)? ApiVersions always answers with v0. */
int wire_response_flexible(int16_t api_key, int16_t version);

const char *wire_api_key_name(int16_t key); /* "DeleteTopics"; "UnknownApi" */
int wire_api_key_parse(const char *name);   /* any case; -1 if unknown */

/* Metadata (3) v0-12, FindCoordinator (10) v0-5, DescribeCluster (60) v0-1. */
int wire_rewrites(int16_t api_key);
int16_t wire_rewrite_max_version(int16_t api_key); /* -1 for other keys */
/* Everything but broker addresses is copied byte for byte. 0 with err. */
int wire_rewrite_response(int16_t api_key, int16_t version, const unsigned char *frame, size_t len, wire_map_fn fn,
                          void *ud, unsigned char **out, size_t *out_len, char *err, size_t errlen);
/* The highest version of api_key a client of the proxy may use, -1 for no
 * limit: for the rewritten keys what wire_rewrite_response reads; Produce
 * v9 and Fetch v15, because later versions may name brokers in their
 * responses (NodeEndpoints, KIP-951), which would send clients around the
 * proxy. Answer ApiVersions with ranges capped by this. */
int16_t wire_client_max_version(int16_t api_key);
/* Lowers, in place, each max version in an ApiVersions response (v0-4; an
 * UNSUPPORTED_VERSION answer is read in the v0 layout, as KIP-511 sends
 * it) to wire_client_max_version. 0 if malformed. */
int wire_clamp_api_versions(int16_t version, unsigned char *frame, size_t len);

typedef struct {
  int16_t key, min, max;
} wire_api_range;
int wire_parse_api_versions(int16_t version, const unsigned char *frame, size_t len, wire_api_range **out,
                            size_t *count);
#define WIRE_API_VERSIONS_MAX 4 /* v4 answers as v3 does */
/* KIP-511: a client that asked for a version above WIRE_API_VERSIONS_MAX gets v0 with
 * UNSUPPORTED_VERSION and the list, and asks again lower. */
int wire_api_versions_response(int16_t version, int32_t correlation, int16_t error_code, const wire_api_range *ranges,
                               size_t count, unsigned char **out, size_t *out_len);

/* The SASL server side (the proxy authenticating its clients). */
int wire_sasl_handshake_mechanism(const wire_request *h, const unsigned char *frame, size_t len, const char **mech,
                                  size_t *mech_len);
int wire_sasl_handshake_response(int32_t correlation, int16_t error_code, const char *const *mechanisms,
                                 unsigned char **out, size_t *out_len);
int wire_sasl_authenticate_bytes(const wire_request *h, const unsigned char *frame, size_t len,
                                 const unsigned char **bytes, size_t *n);
int wire_sasl_authenticate_response(int16_t version, int32_t correlation, int16_t error_code,
                                    const char *error_message, const unsigned char *bytes, size_t n,
                                    int64_t session_lifetime_ms, unsigned char **out, size_t *out_len);
/* RFC 4616: [authzid] NUL authcid NUL passwd, pointing into msg; 0
 * unless authcid and passwd are non-empty. */
int wire_sasl_plain(const unsigned char *msg, size_t n, const char **authzid, size_t *authzid_len, const char **user,
                    size_t *user_len, const char **pass, size_t *pass_len);

/* Forbidden requests, answered by the proxy with an authorization error
 * for every entity they name (echoed by name), message "forbidden by kalua
 * proxy" where the version has one, throttle 0:
 *   TOPIC_AUTHORIZATION_FAILED (29): Produce v0-11, CreateTopics v0-7,
 *     DeleteTopics v0-6 (v6: names or ids, echoed), DeleteRecords v0-2,
 *     CreatePartitions v0-3, and topic resources of AlterConfigs v0-2 and
 *     IncrementalAlterConfigs v0-1;
 *   GROUP_AUTHORIZATION_FAILED (30): DeleteGroups v0-2, group resources;
 *   CLUSTER_AUTHORIZATION_FAILED (31): CreateAcls v0-3, DeleteAcls v0-3,
 *     other config resources (brokers...), AlterPartitionReassignments v0.
 * Produce with acks=0 gets no answer: 1 with *out NULL. 0 with err for
 * other keys or versions, or a malformed request. */
int wire_can_refuse(int16_t api_key);
int wire_refusal(const unsigned char *req, size_t len, unsigned char **out, size_t *out_len, char *err,
                 size_t errlen);

#endif
