/* PLAIN (RFC 4616): one message, authzid NUL authcid NUL password. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/mech.h"

struct sasl_mech {
  char *message;
  size_t len;
};

static sasl_mech *plain_create(const sasl_creds *c, char *err) {
  const char *authzid = c->authzid ? c->authzid : "";
  size_t a, u, p;
  sasl_mech *m;
  if (c->username == NULL || c->password == NULL) {
    snprintf(err, SASL_ERR_MAX, "PLAIN needs a username and a password");
    return NULL;
  }
  a = strlen(authzid), u = strlen(c->username), p = strlen(c->password);
  m = calloc(1, sizeof *m);
  if (m == NULL || (m->message = malloc(a + u + p + 2)) == NULL) {
    free(m);
    snprintf(err, SASL_ERR_MAX, "out of memory");
    return NULL;
  }
  memcpy(m->message, authzid, a);
  m->message[a] = '\0';
  memcpy(m->message + a + 1, c->username, u);
  m->message[a + 1 + u] = '\0';
  memcpy(m->message + a + u + 2, c->password, p);
  m->len = a + u + p + 2;
  return m;
}

static int plain_start(sasl_mech *m, sasl_bytes *out, char *err) {
  if ((out->data = malloc(m->len)) == NULL) {
    snprintf(err, SASL_ERR_MAX, "out of memory");
    return 0;
  }
  memcpy(out->data, m->message, m->len);
  out->len = m->len;
  return 1;
}

/* The broker's answer to PLAIN is empty on success: nothing more to say. */
static int plain_step(sasl_mech *m, const char *challenge, size_t len, sasl_bytes *out, int *done, char *err) {
  (void)m;
  (void)challenge;
  (void)err;
  (void)len;
  out->data = NULL;
  out->len = 0;
  *done = 1;
  return 1;
}

static void plain_destroy(sasl_mech *m) {
  if (m == NULL) return;
  if (m->message) {
    memset(m->message, 0, m->len); /* the password */
    free(m->message);
  }
  free(m);
}

const sasl_mech_type sasl_plain = {"PLAIN", plain_create, plain_start, plain_step, plain_destroy};
