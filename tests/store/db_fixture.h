/* A cmocka fixture shared by the store tests: a fresh temporary directory holding one SQLite
 * file path, removed with its WAL and shared-memory files afterwards. */
#ifndef TB_TESTS_DB_FIXTURE_H
#define TB_TESTS_DB_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct db_fixture {
  char dir[64];
  char path[128];
} db_fixture_t;

static inline int db_fixture_setup(void **state) {
  db_fixture_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return -1;
  snprintf(f->dir, sizeof(f->dir), "/tmp/tb_store_XXXXXX");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
  *state = f;
  return 0;
}

static inline int db_fixture_teardown(void **state) {
  db_fixture_t *f = *state;
  static const char *suffix[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
    char p[160];
    snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

#endif
