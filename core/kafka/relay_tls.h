/* TLS for the auth relay's broker connections (OpenSSL): one SSL_CTX per
 * relay from kalua.ssl.* settings, and one-line messages that name what
 * went wrong (the certificate problem, not an OpenSSL error queue). */
#ifndef KALUA_KAFKA_RELAY_TLS_H
#define KALUA_KAFKA_RELAY_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

typedef struct {
  const char *ca;           /* PEM file of trusted CAs; NULL: the system's */
  const char *cert, *key;   /* client certificate and key (mTLS) */
  const char *key_password; /* for an encrypted key */
} relay_tls_files;

/* A client context that verifies the broker's chain; NULL with err. */
SSL_CTX *relay_tls_context(const relay_tls_files *f, char *err, size_t errlen);

/* A server context for kalua proxy's clients: cert and key (key_password
 * for an encrypted key); with ca, clients must present a certificate it
 * signed (mTLS). NULL with err. */
SSL_CTX *relay_tls_server_context(const relay_tls_files *f, char *err, size_t errlen);

/* Why a handshake or an I/O call failed, in one line: a verification
 * failure names the certificate problem and the host checked. */
void relay_tls_describe(SSL *ssl, const char *host, char *err, size_t errlen);

#endif
