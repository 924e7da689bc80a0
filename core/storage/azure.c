/* The Azure Blob backend: not built yet (issue 6). storage.open names it and
 * says so in one line. */
#include "storage/storage.h"

void *storage_azure_open(lua_State *L, int idx, storage_error *err) {
  (void)L;
  (void)idx;
  storage_fail(err, "UNSUPPORTED", "storage backend 'azure' is not built yet (filesystem only)");
  return NULL;
}

const storage_backend storage_azure_backend = {.name = "azure"};
