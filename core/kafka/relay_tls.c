/* See relay_tls.h. */
#include "kafka/relay_tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static void last_error(const char *doing, char *err, size_t errlen) {
  unsigned long e = ERR_peek_last_error();
  char reason[256];
  ERR_error_string_n(e, reason, sizeof reason);
  snprintf(err, errlen, "%s: %s", doing, e ? reason : "unknown TLS error");
  ERR_clear_error();
}

/* The key password comes from the relay's settings, never a prompt. */
static int key_password_cb(char *buf, int size, int rwflag, void *ud) {
  const char *password = ud;
  size_t len = password ? strlen(password) : 0;
  (void)rwflag;
  if (len == 0 || len >= (size_t)size) return 0;
  memcpy(buf, password, len);
  return (int)len;
}

SSL_CTX *relay_tls_context(const relay_tls_files *f, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) {
    last_error("cannot create a TLS context", err, errlen);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (f->ca ? SSL_CTX_load_verify_locations(ctx, f->ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
    char doing[300];
    snprintf(doing, sizeof doing, "ssl_ca_location %s is not a readable PEM CA file", f->ca ? f->ca : "(system)");
    last_error(doing, err, errlen);
    goto bad;
  }
  if (f->cert && SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
    char doing[300];
    snprintf(doing, sizeof doing, "ssl_certificate_location %s is not a readable PEM certificate", f->cert);
    last_error(doing, err, errlen);
    goto bad;
  }
  if (f->key) {
    SSL_CTX_set_default_passwd_cb(ctx, key_password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)f->key_password);
    if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1) {
      snprintf(err, errlen, "ssl_key_location %s: cannot read the key%s", f->key,
               f->key_password ? " (wrong ssl_key_password?)" : " (encrypted? set ssl_key_password)");
      ERR_clear_error();
      goto bad;
    }
    /* The password is needed only to load the key. */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (SSL_CTX_check_private_key(ctx) != 1) {
      snprintf(err, errlen, "ssl_key_location %s does not match ssl_certificate_location %s", f->key,
               f->cert ? f->cert : "(none)");
      ERR_clear_error();
      goto bad;
    }
  }
  return ctx;
bad:
  SSL_CTX_free(ctx);
  return NULL;
}

SSL_CTX *relay_tls_server_context(const relay_tls_files *f, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) {
    last_error("cannot create a TLS context", err, errlen);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (f->cert == NULL || f->key == NULL) {
    snprintf(err, errlen, "TLS for clients needs a certificate and a key");
    goto bad;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
    char doing[300];
    snprintf(doing, sizeof doing, "certificate %s is not a readable PEM certificate", f->cert);
    last_error(doing, err, errlen);
    goto bad;
  }
  SSL_CTX_set_default_passwd_cb(ctx, key_password_cb);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)f->key_password);
  if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1) {
    snprintf(err, errlen, "key %s: cannot read the key%s", f->key,
             f->key_password ? " (wrong key password?)" : " (encrypted? set its password)");
    ERR_clear_error();
    goto bad;
  }
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, errlen, "key %s does not match certificate %s", f->key, f->cert);
    ERR_clear_error();
    goto bad;
  }
  if (f->ca) { /* mTLS: clients must show a certificate this CA signed */
    if (SSL_CTX_load_verify_locations(ctx, f->ca, NULL) != 1) {
      char doing[300];
      snprintf(doing, sizeof doing, "client CA %s is not a readable PEM CA file", f->ca);
      last_error(doing, err, errlen);
      goto bad;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  return ctx;
bad:
  SSL_CTX_free(ctx);
  return NULL;
}

void relay_tls_describe(SSL *ssl, const char *host, char *err, size_t errlen) {
  long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (verify != X509_V_OK) {
    const char *hint = verify == X509_V_ERR_HOSTNAME_MISMATCH
                         ? "the broker's certificate does not name this host; connect by a name it has"
                         : "check ssl_ca_location";
    snprintf(err, errlen, "TLS certificate verification failed for %s: %s (%s)", host,
             X509_verify_cert_error_string(verify), hint);
    ERR_clear_error();
    return;
  }
  last_error("TLS failed", err, errlen);
}
