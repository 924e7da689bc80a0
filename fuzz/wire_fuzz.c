/* libFuzzer target: kalua proxy's Kafka messages (core/kafka/wire.c). The
 * first byte picks what the rest is: a Metadata, FindCoordinator or
 * DescribeCluster response to rewrite, a request to refuse, an ApiVersions
 * response to parse and clamp, or a SASL request from a client. Anything
 * must end cleanly, with no read past the input, and:
 *   - a rewrite whose map keeps every broker gives the input back;
 *   - a refusal answers the request's correlation id, its size right;
 *   - ApiVersions parsed, written and parsed again gives the same list, and
 *     clamping twice changes nothing the first did not. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/frames.h"
#include "kafka/wire.h"

static int map(void *ud, int32_t node_id, const char *host, int32_t port, wire_addr *out) {
  const uint8_t *how = ud;
  (void)port;
  if (strlen(host) > 255) abort();
  if (*how / 3 % 3 == 0) return 0; /* the key takes *how % 3 */
  if (*how / 3 % 3 == 1 && node_id % 7 == 3) return -1;
  memset(out->host, 'h', sizeof out->host - 1); /* the longest host a listener can have */
  out->host[(*how * 37u) % sizeof out->host] = '\0';
  out->port = (int32_t)(19092u + (uint32_t)node_id % 1000u);
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
    if (out_len < 4 || frames_get32(out) != out_len - 4) abort();
    if (data[0] / 3 % 3 == 0 && (out_len != size + 2 || memcmp(out + 4, data + 2, size - 2) != 0)) abort();
    free(out);
  }
}

static void refuse(const uint8_t *data, size_t size) {
  unsigned char *out = NULL;
  size_t out_len = 0;
  char err[WIRE_ERR_MAX];
  if (wire_refusal(data, size, &out, &out_len, err, sizeof err) && out) {
    if (out_len < 8 || frames_get32(out) != out_len - 4 || memcmp(out + 4, data + 4, 4) != 0) abort();
    free(out);
  }
}

static void api_versions(const uint8_t *data, size_t size) {
  wire_api_range *r = NULL;
  size_t n = 0;
  unsigned char *copy, *out = NULL;
  size_t out_len;
  int16_t v;
  if (size < 1) return;
  v = (int16_t)(data[0] % 5);
  if (wire_parse_api_versions(v, data + 1, size - 1, &r, &n)) {
    if (wire_api_versions_response(v, 7, 0, r, n, &out, &out_len)) {
      wire_api_range *again = NULL;
      size_t m = 0;
      if (!wire_parse_api_versions(v, out + 4, out_len - 4, &again, &m) || m != n ||
          (n > 0 && memcmp(again, r, n * sizeof *r) != 0))
        abort();
      free(again);
      free(out);
    }
    free(r);
  }
  if ((copy = malloc(size)) == NULL) return;
  memcpy(copy, data, size);
  if (wire_clamp_api_versions(v, copy + 1, size - 1)) {
    unsigned char *twice = malloc(size);
    if (twice == NULL) abort();
    memcpy(twice, copy, size);
    if (!wire_clamp_api_versions(v, twice + 1, size - 1) || memcmp(twice, copy, size) != 0) abort();
    free(twice);
  }
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
  wire_client_max_version(h.api_key);
  wire_response_flexible(h.api_key, h.api_version);
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
