/* libFuzzer target: GSSAPI's answer to the server's security layer
 * proposal (RFC 4752 3.1), once unwrapped. The first byte says how long
 * the proposal is (mod 8: around the 4 it must be), the proposal follows,
 * the rest is the authzid. It must answer 0x01 0 0 0 | authzid exactly
 * when the proposal is 4 bytes offering 0x01, and refuse otherwise. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/gssapi_layer.h"
#include "sasl/mech.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[SASL_ERR_MAX] = "", *authzid;
  unsigned char *out = NULL;
  size_t inlen, outlen = 0, alen;
  int ok, want;
  if (size < 1) return 0;
  inlen = data[0] % 8;
  if (inlen > size - 1) inlen = size - 1;
  alen = size - 1 - inlen;
  if ((authzid = malloc(alen + 1)) == NULL) return 0;
  memcpy(authzid, data + 1 + inlen, alen);
  authzid[alen] = '\0';
  alen = strlen(authzid); /* a NUL ends the authzid early */
  ok = gssapi_layer_reply(data + 1, inlen, authzid, &out, &outlen, err);
  want = inlen == 4 && (data[1] & GSSAPI_LAYER_NONE);
  if (ok != want) abort();
  if (ok && (out == NULL || outlen != 4 + alen || memcmp(out, "\x01\x00\x00\x00", 4) != 0 ||
             memcmp(out + 4, authzid, alen) != 0))
    abort();
  if (!ok && (out != NULL || err[0] == '\0' || strlen(err) >= SASL_ERR_MAX)) abort();
  free(out);
  free(authzid);
  return 0;
}
