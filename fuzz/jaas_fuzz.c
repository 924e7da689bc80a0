/* libFuzzer target: the JAAS login configuration parser on arbitrary
 * bytes. Any input must end in entries or an error saying where: never a
 * crash, a leak or a hang. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/jaas.h"

static void check_entry(const jaas_entry *e) {
  size_t i;
  if (e->module == NULL || e->module[0] == '\0' || e->flag == NULL || e->line < 1 || e->column < 1) abort();
  for (i = 0; i < e->noptions; i++)
    if (e->options[i].key == NULL || e->options[i].key[0] == '\0' || e->options[i].value == NULL) abort();
  jaas_principal(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[JAAS_ERR_MAX], small[8];
  jaas_config *c = NULL;
  size_t i;
  if (jaas_parse((const char *)data, size, &c, err, sizeof err)) {
    if (c == NULL || c->nentries > JAAS_MAX_ENTRIES) abort(); /* 0: only empty sections */
    for (i = 0; i < c->nentries; i++) check_entry(&c->entries[i]);
    jaas_free(c);
  } else if (c != NULL || strncmp(err, "jaas: ", 6) != 0) {
    abort();
  }
  /* a short error buffer is cut, not overrun */
  if (jaas_parse((const char *)data, size, &c, small, sizeof small)) jaas_free(c);
  return 0;
}
