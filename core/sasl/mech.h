/* kalua.sasl's C mechanisms. A mechanism instance is one exchange: start()
 * gives the client's first message, step(challenge) the next one until the
 * exchange is complete. Plain C, no Lua: the auth relay will run these on
 * its own thread. */
#ifndef KALUA_SASL_MECH_H
#define KALUA_SASL_MECH_H

#include <stddef.h>

#define SASL_ERR_MAX 256

typedef struct {
  char *data;
  size_t len;
} sasl_bytes;

/* What a mechanism needs to start: the credentials of kalua's config. */
typedef struct {
  const char *username, *password, *authzid;
  int min_iterations; /* SCRAM: refuse servers asking for fewer (default 4096) */
  int max_iterations; /* SCRAM: and for more (default 10 000 000: minutes of CPU) */
  const char *nonce;  /* SCRAM: fixed client nonce, for test vectors only */
  /* OAUTHBEARER */
  const char *token;
  const char *const *extensions; /* NULL-terminated key, value, key, value, ... */
  /* GSSAPI */
  const char *keytab;      /* client keytab; NULL: the default ccache */
  const char *principal;   /* client principal; NULL: the keytab's first */
  const char *service;     /* broker service name (default "kafka") */
  const char *host;        /* the broker's host name, for <service>@<host> */
  const char *krb5_config; /* krb5.conf to use; applied once per process */
} sasl_creds;

typedef struct sasl_mech sasl_mech;

typedef struct {
  const char *name;
  sasl_mech *(*create)(const sasl_creds *creds, char *err);
  /* Each returns 1 with *out set (malloc'd; freed by the caller) or 0 with err. */
  int (*start)(sasl_mech *m, sasl_bytes *out, char *err);
  int (*step)(sasl_mech *m, const char *challenge, size_t len, sasl_bytes *out, int *done, char *err);
  void (*destroy)(sasl_mech *m);
} sasl_mech_type;

extern const sasl_mech_type sasl_plain;
extern const sasl_mech_type sasl_scram_sha256;
extern const sasl_mech_type sasl_scram_sha512;
extern const sasl_mech_type sasl_oauthbearer;
#ifdef KALUA_WITH_GSSAPI
extern const sasl_mech_type sasl_gssapi;
#endif

/* RFC 4013 SASLprep of s into a malloc'd string (see scram.c for what is
 * covered), or NULL with err. */
char *sasl_saslprep(const char *s, char *err);

#endif
