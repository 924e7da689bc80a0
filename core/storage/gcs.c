/* The GCS backend: not built yet (issue 6). storage.open names it and
 * says so in one line. */
#include "storage/storage.h"

void *storage_gcs_open(lua_State *L, int idx, storage_error *err) {
  (void)L;
  (void)idx;
  storage_fail(err, "UNSUPPORTED", "storage backend 'gcs' is not built yet (filesystem only)");
  return NULL;
}

const storage_backend storage_gcs_backend = {.name = "gcs"};
