/* Java JAAS login configuration, as Kafka clients write it:
 *
 *   KafkaClient {
 *     com.sun.security.auth.module.Krb5LoginModule required
 *       useKeyTab=true keyTab="/etc/kafka/client.keytab" principal="alice@EXAMPLE.COM";
 *     org.apache.kafka.common.security.plain.PlainLoginModule required
 *       username="alice" password="secret";
 *   };
 *
 * or the one entry of the sasl.jaas.config property, without a section:
 *
 *   org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="secret";
 *
 * Comments are C's (// and block comments) and # to the end of the line. A quoted
 * value keeps everything up to the closing '"' on its line; inside it \"
 * is '"' and \\ is '\', any other backslash stays as written (so Windows
 * paths survive). An unquoted value runs up to whitespace or ';'.
 *
 * Plain C, no Lua: kalua.sasl wraps it, fuzz/jaas_fuzz.c fuzzes it. */
#ifndef KALUA_SASL_JAAS_H
#define KALUA_SASL_JAAS_H

#include <stddef.h>

#define JAAS_MAX_INPUT (1024 * 1024) /* bytes */
#define JAAS_MAX_ENTRIES 256
#define JAAS_ERR_MAX 256

typedef struct {
  char *key, *value;
} jaas_option;

typedef struct {
  char *section;         /* "KafkaClient"; NULL for the sasl.jaas.config form */
  char *module;          /* the LoginModule class */
  const char *flag;      /* "required", "requisite", "sufficient" or "optional" */
  const char *mechanism; /* "GSSAPI", "PLAIN", ...; NULL for a module kalua does not know */
  jaas_option *options;  /* in file order; a repeated key appears twice (the last one counts) */
  size_t noptions;
  int line, column;      /* where the module class starts */
} jaas_entry;

typedef struct {
  jaas_entry *entries; /* in file order */
  size_t nentries;
} jaas_config;

/* Parses len bytes of text. Returns 1 with *out (free it with jaas_free),
 * or 0 with *out NULL and err ("jaas: line 3 column 14: expected ';' after
 * the options of ..."; cut at errlen). Refuses more than JAAS_MAX_INPUT
 * bytes and more than JAAS_MAX_ENTRIES entries. */
int jaas_parse(const char *text, size_t len, jaas_config **out, char *err, size_t errlen);

/* Frees c (NULL is fine), wiping the option values: they hold passwords. */
void jaas_free(jaas_config *c);

/* The value of option key in e (the last one when repeated), or NULL. */
const char *jaas_option_get(const jaas_entry *e, const char *key);

/* The SASL mechanism a module class stands for, given its options:
 * Krb5LoginModule GSSAPI, PlainLoginModule PLAIN, ScramLoginModule
 * SCRAM-SHA-512 (SCRAM-SHA-256 with mechanism="SCRAM-SHA-256"),
 * OAuthBearerLoginModule OAUTHBEARER; NULL for any other class. */
const char *jaas_mechanism(const jaas_entry *e);

/* Who the entry logs in as: the Krb5 principal option, the PLAIN or SCRAM
 * username; NULL when the entry does not say (or for other mechanisms). */
const char *jaas_principal(const jaas_entry *e);

#endif
