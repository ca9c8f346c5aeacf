/* The deployment a database belongs to: one id, written once, read by every worker at start. */
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "store/internal.h"
#include "store/store.h"

tb_status tb_store_deployment(tb_store_t *s, char *id, size_t cap, int *found, int *used) {
  *found = *used = 0;
  id[0] = '\0';
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, "SELECT id FROM deployment WHERE one = 1", -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    snprintf(id, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    *found = 1;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return tb__store_fail(s->db, rc, "store: read the deployment id");
  /* Any processed message or workflow run means the database already holds some deployment's
   * state (one written before deployment ids existed). */
  rc = sqlite3_prepare_v2(
      s->db, "SELECT EXISTS(SELECT 1 FROM processed) OR EXISTS(SELECT 1 FROM workflows)", -1, &st,
      NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) *used = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return tb__store_fail(s->db, rc, "store: is the database in use");
  return TB_OK;
}

tb_status tb_store_set_deployment(tb_store_t *s, const char *id, char *have, size_t cap) {
  sqlite3_stmt *st = NULL;
  /* Only the first writer's id stays: two workers starting on a new database at once agree. */
  int rc = sqlite3_prepare_v2(
      s->db, "INSERT INTO deployment(one, id, created_us) VALUES(1, ?1, ?2) ON CONFLICT DO NOTHING",
      -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tb_wall_us());
    rc = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return tb__store_fail(s->db, rc, "store: write the deployment id");
  int found = 0, used = 0;
  return tb_store_deployment(s, have, cap, &found, &used);
}
