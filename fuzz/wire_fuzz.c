/* libFuzzer target: kalua proxy's Kafka messages (core/kafka/wire.c). The
 * first byte picks what the rest is: a Metadata, FindCoordinator or
 * DescribeCluster response to rewrite, a request to refuse, an ApiVersions
 * response to parse and clamp, or a SASL request from a client. A
 * rewritten response must keep the bytes after the brokers; anything must
 * end cleanly, with no read past the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/wire.h"

static int map(void *ud, int32_t node_id, const char *host, int32_t port, wire_addr *out) {
  const uint8_t *how = ud;
  (void)port;
  if (strlen(host) > 255) abort();
  if (*how % 3 == 0) return 0;
  if (*how % 3 == 1 && node_id % 7 == 3) return -1;
  memset(out->host, 'h', sizeof out->host - 1); /* the longest host a listener can have */
  out->host[(*how * 37u) % sizeof out->host] = '\0';
  out->port = 19092 + node_id;
  return 1;
}

static void rewrite(const uint8_t *data, size_t size) {
  static const int16_t keys[] = {3, 10, 60};
  unsigned char *out = NULL;
  size_t out_len = 0;
  char err[WIRE_ERR_MAX];
  if (size < 2) return;
  if (wire_rewrite_response(keys[data[0] % 3], (int16_t)(data[1] % 14), data + 2, size - 2, map,
                            (void *)&data[0], &out, &out_len, err, sizeof err)) {
    if (out_len < 4) abort();
    free(out);
  }
}

static void refuse(const uint8_t *data, size_t size) {
  unsigned char *out = NULL;
  size_t out_len = 0;
  char err[WIRE_ERR_MAX];
  if (wire_refusal(data, size, &out, &out_len, err, sizeof err)) free(out);
}

static void api_versions(const uint8_t *data, size_t size) {
  wire_api_range *r = NULL;
  size_t n = 0;
  unsigned char *copy, *out = NULL;
  size_t out_len;
  if (size < 1) return;
  if (wire_parse_api_versions((int16_t)(data[0] % 4), data + 1, size - 1, &r, &n)) {
    if (wire_api_versions_response((int16_t)(data[0] % 4), 7, 0, r, n, &out, &out_len)) free(out);
    free(r);
  }
  if ((copy = malloc(size)) == NULL) return;
  memcpy(copy, data, size);
  wire_clamp_api_versions((int16_t)(data[0] % 4), copy + 1, size - 1);
  free(copy);
}

static void sasl(const uint8_t *data, size_t size) {
  wire_request h;
  const char *mech, *a, *u, *p;
  const unsigned char *bytes;
  size_t n, an, un, pn;
  if (!wire_parse_request(data, size, &h)) return;
  if (h.body_off > size) abort();
  wire_sasl_handshake_mechanism(&h, data, size, &mech, &n);
  if (wire_sasl_authenticate_bytes(&h, data, size, &bytes, &n)) wire_sasl_plain(bytes, n, &a, &an, &u, &un, &p, &pn);
  wire_api_key_name(h.api_key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 4) {
  case 0: rewrite(data + 1, size - 1); break;
  case 1: refuse(data + 1, size - 1); break;
  case 2: api_versions(data + 1, size - 1); break;
  default: sasl(data + 1, size - 1); break;
  }
  return 0;
}
