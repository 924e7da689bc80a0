/* A small JSON reader for the GCS backend: service-account key files,
 * token responses and the JSON API's object resources. Parses a whole
 * document into a tree; strings are unescaped (UTF-8). */
#ifndef KALUA_STORAGE_GCS_JSON_H
#define KALUA_STORAGE_GCS_JSON_H

#include <stddef.h>

enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct json_value {
  int type;
  char *key;                /* in an object: the member's name */
  char *text;               /* JSON_STRING: the unescaped text; JSON_NUMBER: as written */
  size_t len;               /* of text */
  struct json_value *child; /* JSON_ARRAY, JSON_OBJECT: the first element */
  struct json_value *next;  /* the next sibling */
} json_value;

/* NULL when text (of len bytes) is not one JSON value. */
json_value *json_parse(const char *text, size_t len);
void json_free(json_value *v);

/* The member key of object v, or NULL. */
const json_value *json_get(const json_value *v, const char *key);
/* The string member key, or NULL when absent or not a string. */
const char *json_get_string(const json_value *v, const char *key);
/* The member key as an integer (a number or a numeric string, as GCS sends
 * sizes); def when absent. */
long long json_get_int(const json_value *v, const char *key, long long def);

#endif
