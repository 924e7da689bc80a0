/* GSSAPI (RFC 4752) over MIT krb5: not built yet (issue 5). */
#ifdef KALUA_WITH_GSSAPI
#include <stdio.h>

#include "sasl/mech.h"

static sasl_mech *gssapi_create(const sasl_creds *c, char *err) {
  (void)c;
  snprintf(err, SASL_ERR_MAX, "SASL mechanism 'GSSAPI' is not built yet");
  return NULL;
}

const sasl_mech_type sasl_gssapi = {"GSSAPI", gssapi_create, NULL, NULL, NULL};
#endif
