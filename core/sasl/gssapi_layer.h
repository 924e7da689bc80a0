/* RFC 4752 section 3.1, the last step of GSSAPI: the client's answer to
 * the server's security layer proposal. Pure C, no krb5: gssapi.c unwraps
 * the proposal and wraps the answer; fuzz/gssapi_layer_fuzz.c fuzzes this. */
#ifndef KALUA_SASL_GSSAPI_LAYER_H
#define KALUA_SASL_GSSAPI_LAYER_H

#include <stddef.h>

#define GSSAPI_LAYER_NONE 0x01
#define GSSAPI_LAYER_INTEGRITY 0x02
#define GSSAPI_LAYER_CONFIDENTIALITY 0x04

/* in: the unwrapped proposal, 4 bytes: the layers the server offers (a
 * bitmask) and the largest message it takes (24 bits, big-endian). kalua
 * uses no security layer, so the offer must include GSSAPI_LAYER_NONE.
 * Returns 1 with *out (malloc'd, *outlen bytes) = 0x01 0x00 0x00 0x00
 * (no layer, no size) followed by authzid, or 0 with err (at most
 * SASL_ERR_MAX bytes; without a "GSSAPI" prefix: the caller adds one). */
int gssapi_layer_reply(const unsigned char *in, size_t inlen, const char *authzid, unsigned char **out,
                       size_t *outlen, char *err);

#endif
