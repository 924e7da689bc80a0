/* libFuzzer target: what a SCRAM client makes of arbitrary server
 * messages. The input is server-first, a NUL, then server-final; the
 * nonce is fixed so a mutated input can get past the nonce check. Any
 * input must end in a message or an error: never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/mech.h"

static void exchange(const sasl_mech_type *type, const uint8_t *data, size_t size) {
  sasl_creds c = {"user", "pencil", NULL, 1, 4096, "rOprNGfwEbeRWgbNEkqO"};
  char err[SASL_ERR_MAX];
  sasl_bytes out = {NULL, 0};
  const uint8_t *nul = memchr(data, 0, size);
  size_t first_len = nul ? (size_t)(nul - data) : size;
  int done = 0;
  sasl_mech *m = type->create(&c, err);
  if (m == NULL) return;
  if (type->start(m, &out, err)) {
    free(out.data);
    out.data = NULL;
    if (type->step(m, (const char *)data, first_len, &out, &done, err) && !done && nul) {
      free(out.data);
      out.data = NULL;
      type->step(m, (const char *)nul + 1, size - first_len - 1, &out, &done, err);
    }
  }
  free(out.data);
  type->destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  exchange(&sasl_scram_sha256, data, size);
  exchange(&sasl_scram_sha512, data, size);
  return 0;
}
