/* GSSAPI (RFC 4752) over MIT krb5, as Kafka speaks it:
 *
 *   client  init_sec_context token (AP-REQ)           start()
 *   server  AP-REP (mutual authentication)
 *   client  empty "turnaround" message once the context is established
 *   server  wrap(layers | max size): the 4-byte security layer proposal
 *   client  wrap(0x01 0x00 0x00 0x00 | authzid): no security layer
 *   server  empty: authenticated                     step() says done
 *
 * The target is <service>@<host> (hostbased: kafka/broker.example.com).
 * Credentials are per instance: gss_acquire_cred_from with the keytab as
 * client_keytab and a MEMORY: ccache of this instance's own, destroyed with
 * it. No environment variable is read or set for them, so instances with
 * different principals work side by side in one process.
 *
 * The one process-wide effect: MIT krb5 finds its krb5.conf only through
 * the KRB5_CONFIG environment variable. A configured krb5_config is set
 * there once, under a mutex, before this file's first Kerberos call; a
 * second, different one in the same process is refused. */
#ifdef KALUA_WITH_GSSAPI
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5.h>
#include <openssl/rand.h>

#include "sasl/gssapi_layer.h"
#include "sasl/mech.h"

enum { NOT_STARTED, NEGOTIATING, AWAIT_PROPOSAL, SENT_REPLY, COMPLETE, FAILED };

struct sasl_mech {
  gss_cred_id_t cred;
  gss_name_t target;
  gss_ctx_id_t ctx;
  char ccache[48];    /* MEMORY:kalua-<random>, or "" with the default ccache */
  char target_str[256]; /* service/host, for messages */
  char *authzid;
  int state;
};

/* Error messages are cut at SASL_ERR_MAX; that is fine. */
__attribute__((format(printf, 2, 3))) static void errf(char *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, SASL_ERR_MAX, fmt, ap);
  va_end(ap);
}

/* --- the one process-wide effect: krb5.conf ---------------------------------- */

static pthread_mutex_t krb5_conf_lock = PTHREAD_MUTEX_INITIALIZER;
static char krb5_conf_applied[PATH_MAX]; /* as given */
static char krb5_conf_real[PATH_MAX];    /* realpath, for comparison */

static int apply_krb5_config(const char *path, char *err) {
  char real[PATH_MAX];
  int ok = 1;
  if (path == NULL || *path == '\0') return 1;
  if (realpath(path, real) == NULL || access(real, R_OK) != 0) {
    errf(err, "GSSAPI: krb5.conf %s: %s (fix sasl_krb5_config_path)", path,
             errno == ENOENT ? "no such file" : strerror(errno));
    return 0;
  }
  pthread_mutex_lock(&krb5_conf_lock);
  if (krb5_conf_real[0] == '\0') {
    if (setenv("KRB5_CONFIG", real, 1) != 0) {
      errf(err, "GSSAPI: cannot apply krb5.conf %s: %s", path, strerror(errno));
      ok = 0;
    } else {
      snprintf(krb5_conf_applied, sizeof krb5_conf_applied, "%s", path);
      snprintf(krb5_conf_real, sizeof krb5_conf_real, "%s", real);
    }
  } else if (strcmp(krb5_conf_real, real) != 0) {
    errf(err, "GSSAPI: krb5.conf is already %s for this process; one krb5.conf per process (not %s)",
             krb5_conf_applied, path);
    ok = 0;
  }
  pthread_mutex_unlock(&krb5_conf_lock);
  return ok;
}

/* --- errors ------------------------------------------------------------------ */

/* One status's text (GSS_C_GSS_CODE or GSS_C_MECH_CODE) into buf, on one line. */
static void status_text(OM_uint32 code, int type, char *buf, size_t size) {
  OM_uint32 minor, ctx = 0;
  gss_buffer_desc msg = GSS_C_EMPTY_BUFFER;
  size_t n = 0;
  buf[0] = '\0';
  do {
    if (GSS_ERROR(gss_display_status(&minor, code, type, (gss_OID)gss_mech_krb5, &ctx, &msg))) break;
    n += (size_t)snprintf(buf + n, size - n, "%s%.*s", n ? "; " : "", (int)msg.length, (const char *)msg.value);
    gss_release_buffer(&minor, &msg);
  } while (ctx != 0 && n + 1 < size);
  for (n = 0; buf[n]; n++)
    if (buf[n] == '\n' || buf[n] == '\r') buf[n] = ' ';
}

/* What to do about the common Kerberos failures. */
static const char *hint(OM_uint32 minor) {
  switch ((krb5_error_code)minor) {
  case KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
    return "the broker host must match the service principal's host; check sasl_kerberos_service_name";
  case KRB5KRB_AP_ERR_SKEW:
  case KRB5_KDCREP_SKEW: return "this machine's clock is off from the KDC's or the broker's: sync the clocks (NTP)";
  case KRB5KRB_AP_ERR_TKT_EXPIRED: return "the ticket has expired: get a fresh one (kinit, or use a keytab)";
  case KRB5KDC_ERR_KEY_EXP: return "the principal's password has expired: change it (kpasswd) and export a new keytab";
  case KRB5KDC_ERR_PREAUTH_FAILED:
  case KRB5KRB_AP_ERR_BAD_INTEGRITY: return "the key is wrong: the keytab is stale (export it again) or the password is wrong";
  case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN: return "the client principal does not exist in the KDC";
  case KRB5_KDC_UNREACH: return "no KDC answered: check the realm's kdc in krb5.conf (sasl_krb5_config_path)";
  case KRB5_REALM_UNKNOWN: return "the realm is not in krb5.conf (sasl_krb5_config_path)";
  case KRB5_FCC_NOFILE:
  case KRB5_CC_NOTFOUND: return "no credentials: configure a keytab (sasl_keytab_path) or run kinit";
  default: return NULL;
  }
}

static int gss_fail(sasl_mech *m, const char *what, OM_uint32 major, OM_uint32 minor, char *err) {
  char text[160];
  const char *h = minor ? hint(minor) : NULL;
  /* The minor (Kerberos) status says what happened; the major one is
   * mostly "Unspecified GSS failure", so it is shown only alone. */
  if (minor) status_text(minor, GSS_C_MECH_CODE, text, sizeof text);
  if (!minor || text[0] == '\0') status_text(major, GSS_C_GSS_CODE, text, sizeof text);
  errf(err, "GSSAPI to %s: %s: %s%s%s", m->target_str, what, text, h ? ": " : "", h ? h : "");
  m->state = FAILED;
  return 0;
}

static int fail(sasl_mech *m, char *err, const char *msg) {
  errf(err, "GSSAPI to %s: %s", m->target_str, msg);
  m->state = FAILED;
  return 0;
}

/* --- the keytab, checked before any network traffic ---------------------------- */

static int krb5_fail(krb5_context kc, krb5_error_code code, char *err, const char *fmt, const char *a, const char *b) {
  const char *msg = krb5_get_error_message(kc, code);
  char what[SASL_ERR_MAX];
  errf(what, fmt, a, b);
  errf(err, "GSSAPI: %s: %s", what, msg);
  krb5_free_error_message(kc, msg);
  return 0;
}

/* The keytab must be a readable file holding `principal` (or, when NULL,
 * any key: its first principal is the client). *client gets the
 * principal's full name (malloc'd). */
static int check_keytab(const char *path, const char *principal, char **client, char *err) {
  krb5_context kc = NULL;
  krb5_keytab kt = NULL;
  krb5_principal want = NULL;
  krb5_kt_cursor cursor;
  krb5_keytab_entry entry;
  krb5_error_code code;
  char ktname[PATH_MAX + 8];
  struct stat st;
  int fd, ok = 0, entries = 0;
  *client = NULL;
  if ((fd = open(path, O_RDONLY)) < 0) {
    errf(err, "GSSAPI: keytab %s: %s (fix sasl_keytab_path)", path,
             errno == ENOENT ? "no such file" : errno == EACCES ? "not readable by this user (permission denied)"
                                                                : strerror(errno));
    return 0;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    errf(err, "GSSAPI: keytab %s: not a file (fix sasl_keytab_path)", path);
    return 0;
  }
  close(fd);
  if ((code = krb5_init_context(&kc)) != 0) {
    errf(err, "GSSAPI: Kerberos cannot start (check krb5.conf, sasl_krb5_config_path): %s",
             error_message(code));
    return 0;
  }
  snprintf(ktname, sizeof ktname, "FILE:%s", path);
  if ((code = krb5_kt_resolve(kc, ktname, &kt)) != 0) {
    krb5_fail(kc, code, err, "keytab %s%s", path, "");
    goto done;
  }
  if (principal && (code = krb5_parse_name(kc, principal, &want)) != 0) {
    krb5_fail(kc, code, err, "principal %s%s", principal, "");
    goto done;
  }
  if ((code = krb5_kt_start_seq_get(kc, kt, &cursor)) != 0) {
    krb5_fail(kc, code, err, "keytab %s is not a keytab%s", path, "");
    goto done;
  }
  while (!ok && (code = krb5_kt_next_entry(kc, kt, &entry, &cursor)) == 0) {
    entries++;
    if (want == NULL || krb5_principal_compare(kc, want, entry.principal)) {
      char *name = NULL;
      if (krb5_unparse_name(kc, entry.principal, &name) == 0) {
        *client = strdup(name);
        krb5_free_unparsed_name(kc, name);
        ok = *client != NULL;
      }
    }
    krb5_free_keytab_entry_contents(kc, &entry);
  }
  krb5_kt_end_seq_get(kc, kt, &cursor);
  if (!ok && code != 0 && code != KRB5_KT_END) {
    krb5_fail(kc, code, err, "keytab %s is not a keytab%s", path, "");
  } else if (!ok && entries == 0) {
    errf(err, "GSSAPI: keytab %s holds no keys (export the client's keys with kadmin ktadd)", path);
  } else if (!ok && want) {
    char *name = NULL;
    krb5_unparse_name(kc, want, &name);
    errf(err, "GSSAPI: principal %s not in keytab %s (klist -k %s lists the ones it holds)",
             name ? name : principal, path, path);
    krb5_free_unparsed_name(kc, name);
  } else if (!ok) {
    errf(err, "GSSAPI: out of memory");
  }
done:
  if (want) krb5_free_principal(kc, want);
  if (kt) krb5_kt_close(kc, kt);
  krb5_free_context(kc);
  return ok;
}

/* --- credentials ------------------------------------------------------------- */

static int import_name(const char *s, gss_OID type, gss_name_t *out, OM_uint32 *major, OM_uint32 *minor) {
  gss_buffer_desc buf;
  buf.value = (void *)s;
  buf.length = strlen(s);
  *major = gss_import_name(minor, &buf, type, out);
  return !GSS_ERROR(*major);
}

static int acquire_cred(sasl_mech *m, const char *keytab, const char *client, char *err) {
  gss_OID_desc krb5_oid = *gss_mech_krb5;
  gss_OID_set_desc mechs = {1, &krb5_oid};
  gss_name_t name = GSS_C_NO_NAME;
  OM_uint32 major, minor, ignored;
  if (client && !import_name(client, (gss_OID)GSS_KRB5_NT_PRINCIPAL_NAME, &name, &major, &minor))
    return gss_fail(m, "cannot read the principal name", major, minor, err);
  if (keytab) {
    unsigned char raw[8];
    gss_key_value_element_desc elements[2];
    gss_key_value_set_desc store = {2, elements};
    size_t i;
    if (RAND_bytes(raw, sizeof raw) != 1) {
      if (name) gss_release_name(&minor, &name);
      return fail(m, err, "no random bytes for the credential cache name");
    }
    strcpy(m->ccache, "MEMORY:kalua-");
    for (i = 0; i < sizeof raw; i++) sprintf(m->ccache + strlen(m->ccache), "%02x", raw[i]);
    elements[0].key = "client_keytab";
    elements[0].value = keytab;
    elements[1].key = "ccache";
    elements[1].value = m->ccache;
    major = gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, &mechs, GSS_C_INITIATE, &store, &m->cred, NULL, NULL);
  } else {
    major = gss_acquire_cred(&minor, name, GSS_C_INDEFINITE, &mechs, GSS_C_INITIATE, &m->cred, NULL, NULL);
  }
  if (name) gss_release_name(&ignored, &name);
  if (GSS_ERROR(major)) return gss_fail(m, "cannot get credentials", major, minor, err);
  return 1;
}

/* The credential's principal, when no keytab told us (default ccache). */
static char *cred_principal(sasl_mech *m) {
  OM_uint32 minor;
  gss_name_t name = GSS_C_NO_NAME;
  gss_buffer_desc buf = GSS_C_EMPTY_BUFFER;
  char *s = NULL;
  if (GSS_ERROR(gss_inquire_cred(&minor, m->cred, &name, NULL, NULL, NULL))) return NULL;
  if (!GSS_ERROR(gss_display_name(&minor, name, &buf, NULL)) && (s = malloc(buf.length + 1)) != NULL) {
    memcpy(s, buf.value, buf.length);
    s[buf.length] = '\0';
  }
  gss_release_buffer(&minor, &buf);
  gss_release_name(&minor, &name);
  return s;
}

/* --- the mechanism ------------------------------------------------------------ */

static void destroy_ccache(const char *ccache) {
  krb5_context kc;
  krb5_ccache cc;
  if (ccache[0] == '\0' || krb5_init_context(&kc) != 0) return;
  if (krb5_cc_resolve(kc, ccache, &cc) == 0) krb5_cc_destroy(kc, cc);
  krb5_free_context(kc);
}

static void gssapi_destroy(sasl_mech *m) {
  OM_uint32 minor;
  if (m == NULL) return;
  if (m->ctx != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &m->ctx, GSS_C_NO_BUFFER);
  if (m->cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &m->cred);
  if (m->target != GSS_C_NO_NAME) gss_release_name(&minor, &m->target);
  destroy_ccache(m->ccache);
  free(m->authzid);
  free(m);
}

static sasl_mech *gssapi_create(const sasl_creds *c, char *err) {
  const char *service = c->service && *c->service ? c->service : "kafka";
  char target[256], *client = NULL;
  OM_uint32 major, minor;
  sasl_mech *m;
  if (c->host == NULL || *c->host == '\0') {
    errf(err, "GSSAPI needs the broker's host name (host) for the service principal %s/<host>", service);
    return NULL;
  }
  if (strlen(service) + strlen(c->host) + 2 > sizeof target) {
    errf(err, "GSSAPI: the service name or host is too long");
    return NULL;
  }
  if (!apply_krb5_config(c->krb5_config, err)) return NULL;
  if (c->keytab && !check_keytab(c->keytab, c->principal, &client, err)) return NULL;
  if ((m = calloc(1, sizeof *m)) == NULL) {
    free(client);
    errf(err, "out of memory");
    return NULL;
  }
  m->ctx = GSS_C_NO_CONTEXT;
  m->cred = GSS_C_NO_CREDENTIAL;
  m->target = GSS_C_NO_NAME;
  snprintf(m->target_str, sizeof m->target_str, "%s/%s", service, c->host);
  snprintf(target, sizeof target, "%s@%s", service, c->host);
  if (!import_name(target, GSS_C_NT_HOSTBASED_SERVICE, &m->target, &major, &minor)) {
    gss_fail(m, "cannot read the service name", major, minor, err);
    goto fail;
  }
  if (!acquire_cred(m, c->keytab, client ? client : c->principal, err)) goto fail;
  if (c->authzid) {
    m->authzid = strdup(c->authzid);
  } else if (client) {
    m->authzid = client;
    client = NULL;
  } else {
    m->authzid = cred_principal(m);
  }
  if (m->authzid == NULL && (m->authzid = strdup("")) == NULL) {
    errf(err, "out of memory");
    goto fail;
  }
  free(client);
  return m;
fail:
  free(client);
  gssapi_destroy(m);
  return NULL;
}

static int set_out(sasl_bytes *out, const void *data, size_t len, char *err) {
  out->len = len;
  if ((out->data = malloc(len ? len : 1)) == NULL) {
    errf(err, "out of memory");
    return 0;
  }
  if (len) memcpy(out->data, data, len);
  return 1;
}

/* One init_sec_context round; the token to send goes to *out. */
static int init_round(sasl_mech *m, const char *in, size_t in_len, sasl_bytes *out, char *err) {
  gss_buffer_desc input, token = GSS_C_EMPTY_BUFFER;
  OM_uint32 major, minor, ignored, flags = 0;
  int ok;
  input.value = (void *)in;
  input.length = in_len;
  major = gss_init_sec_context(&minor, m->cred, &m->ctx, m->target, (gss_OID)gss_mech_krb5,
                               GSS_C_MUTUAL_FLAG | GSS_C_SEQUENCE_FLAG, 0, GSS_C_NO_CHANNEL_BINDINGS,
                               m->state == NOT_STARTED ? GSS_C_NO_BUFFER : &input, NULL, &token, &flags, NULL);
  if (GSS_ERROR(major)) {
    gss_release_buffer(&ignored, &token);
    return gss_fail(m, m->state == NOT_STARTED ? "cannot start" : "refused the server's reply", major, minor, err);
  }
  ok = set_out(out, token.value, token.length, err);
  gss_release_buffer(&minor, &token);
  if (!ok) return 0;
  m->state = major == GSS_S_COMPLETE ? AWAIT_PROPOSAL : NEGOTIATING;
  return 1;
}

static int gssapi_start(sasl_mech *m, sasl_bytes *out, char *err) {
  out->data = NULL;
  out->len = 0;
  if (m->state != NOT_STARTED) return fail(m, err, "start() called twice");
  return init_round(m, NULL, 0, out, err);
}

/* RFC 4752 3.1: unwrap the server's 4-byte layer proposal, require "no
 * security layer", answer wrap(0x01 0x00 0x00 0x00 | authzid). */
static int layer_reply(sasl_mech *m, const char *in, size_t in_len, sasl_bytes *out, char *err) {
  gss_buffer_desc input, plain = GSS_C_EMPTY_BUFFER, reply, wrapped = GSS_C_EMPTY_BUFFER;
  OM_uint32 major, minor;
  unsigned char *bytes;
  size_t len;
  int ok;
  char msg[SASL_ERR_MAX];
  input.value = (void *)in;
  input.length = in_len;
  major = gss_unwrap(&minor, m->ctx, &input, &plain, NULL, NULL);
  if (GSS_ERROR(major)) return gss_fail(m, "cannot unwrap the server's security layer proposal", major, minor, err);
  ok = gssapi_layer_reply(plain.value, plain.length, m->authzid, &bytes, &len, msg);
  gss_release_buffer(&minor, &plain);
  if (!ok) return fail(m, err, msg);
  reply.value = bytes;
  reply.length = len;
  major = gss_wrap(&minor, m->ctx, 0, GSS_C_QOP_DEFAULT, &reply, NULL, &wrapped);
  free(bytes);
  if (GSS_ERROR(major)) return gss_fail(m, "cannot wrap the security layer reply", major, minor, err);
  ok = set_out(out, wrapped.value, wrapped.length, err);
  gss_release_buffer(&minor, &wrapped);
  if (ok) m->state = SENT_REPLY;
  return ok;
}

static int gssapi_step(sasl_mech *m, const char *challenge, size_t len, sasl_bytes *out, int *done, char *err) {
  out->data = NULL;
  out->len = 0;
  *done = 0;
  switch (m->state) {
  case NEGOTIATING: return init_round(m, challenge, len, out, err); /* empty once established: the turnaround */
  case AWAIT_PROPOSAL: return layer_reply(m, challenge, len, out, err);
  case SENT_REPLY:
    if (len != 0) return fail(m, err, "the server sent more after the security layer reply");
    m->state = COMPLETE;
    *done = 1;
    return 1;
  case FAILED: return fail(m, err, "the exchange has already failed");
  default: return fail(m, err, "step() out of order (call start() first, stop when done)");
  }
}

const sasl_mech_type sasl_gssapi = {"GSSAPI", gssapi_create, gssapi_start, gssapi_step, gssapi_destroy};
#endif
