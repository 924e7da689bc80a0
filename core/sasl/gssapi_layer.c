/* The security layer reply of RFC 4752 (see gssapi_layer.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/gssapi_layer.h"
#include "sasl/mech.h"

int gssapi_layer_reply(const unsigned char *in, size_t inlen, const char *authzid, unsigned char **out,
                       size_t *outlen, char *err) {
  size_t alen = authzid ? strlen(authzid) : 0;
  *out = NULL;
  *outlen = 0;
  if (inlen != 4) {
    snprintf(err, SASL_ERR_MAX, "the server's security layer proposal is %zu bytes, not 4", inlen);
    return 0;
  }
  /* in[1..3], the server's largest message, only matters with a layer */
  if (!(in[0] & GSSAPI_LAYER_NONE)) {
    snprintf(err, SASL_ERR_MAX,
             "the server offers security layers 0x%02x without 0x01 (none); kalua needs the broker to allow no layer",
             in[0]);
    return 0;
  }
  if (alen > SIZE_MAX - 4 || (*out = malloc(4 + alen)) == NULL) {
    snprintf(err, SASL_ERR_MAX, "out of memory");
    return 0;
  }
  memcpy(*out, "\x01\x00\x00\x00", 4);
  if (alen) memcpy(*out + 4, authzid, alen);
  *outlen = 4 + alen;
  return 1;
}
