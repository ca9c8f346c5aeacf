/* Unit tests for src/workflows: seed 002's workspace repository priority rules run through the
 * registered handlers against a real in-memory store, plus the registry and the activity handler.
 * Messages are built by hand from the generated protobuf types and the compiled-in catalogue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "api/activity.h"
#include "codec/catalogue.h"
#include "codec/codec.h"
#include "core/status.h"
#include "api/handler.h"
#include "store/repo.h"
#include "store/store.h"
#include "workflows/registry.h"

typedef struct world {
  tb_catalogue_t *cat;
  tb_store_t *st;
} world_t;

static int world_setup(void **state) {
  world_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return -1;
  if (tb_catalogue_load(&w->cat) != TB_OK) {
    fprintf(stderr, "catalogue: %s\n", tb_errdetail());
    free(w);
    return -1;
  }
  if (tb_store_open(&w->st, ":memory:") != TB_OK) {
    fprintf(stderr, "store: %s\n", tb_errdetail());
    tb_catalogue_destroy(w->cat);
    free(w);
    return -1;
  }
  *state = w;
  return 0;
}

static int world_teardown(void **state) {
  world_t *w = *state;
  tb_store_close(w->st);
  tb_catalogue_destroy(w->cat);
  free(w);
  return 0;
}

enum { ADD = 1, REMOVE = 0 };

/* Delivers one WORKSPACE_REPO_ADDED/REMOVED at stream sequence |seq| of TB_HIGH through its
 * registered handler, inside a batch transaction and a message savepoint as the engine does; a
 * failing handler's writes are rolled back. Returns the handler's status. */
static tb_status deliver(world_t *w, int add, const char *ws, const char *repo, uint64_t seq) {
  const char *event = add ? "WORKSPACE_REPO_ADDED" : "WORKSPACE_REPO_REMOVED";
  const tb_event_def_t *def = tb_catalogue_find(w->cat, event);
  assert_non_null(def);
  char msg_id[32];
  snprintf(msg_id, sizeof(msg_id), "msg-%llu", (unsigned long long)seq);

  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  env.id = msg_id;
  env.type = (char *)event;
  env.tier = "high";
  env.occurred_at_us = 1700000000000000 + (int64_t)seq;
  Tierbus__V1__WorkspaceRepoAdded added = TIERBUS__V1__WORKSPACE_REPO_ADDED__INIT;
  Tierbus__V1__WorkspaceRepoRemoved removed = TIERBUS__V1__WORKSPACE_REPO_REMOVED__INIT;
  added.workspace_id = removed.workspace_id = (char *)ws;
  added.repository_id = removed.repository_id = (char *)repo;

  tb_decoded_t msg = {.env = &env, .def = def, .payload = add ? &added.base : &removed.base};
  tb_handler_ctx_t ctx = {
      .store = w->st,
      .cfg = NULL,
      .msg = &msg,
      .tier = "high",
      .order = {.occurred_us = env.occurred_at_us, .stream = "TB_HIGH", .seq = seq},
  };
  tb_handler_fn fn = tb_registry_handler(def->handler);
  assert_non_null(fn);

  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_store_savepoint(w->st), TB_OK);
  tb_status s = fn(&ctx);
  if (s == TB_OK)
    assert_int_equal(tb_store_release(w->st), TB_OK);
  else
    assert_int_equal(tb_store_rollback_to(w->st), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  return s;
}

static tb_tracked_repo_t repo_row(world_t *w, const char *repo) {
  tb_tracked_repo_t r;
  int found = 0;
  assert_int_equal(tb_store_repo_get(w->st, repo, &r, &found), TB_OK);
  if (!found) fail_msg("repository %s is not tracked", repo);
  return r;
}

static void expect_row(world_t *w, const char *repo, const char *priority, int score, int is_ws,
                       int count) {
  tb_tracked_repo_t r = repo_row(w, repo);
  assert_string_equal(r.priority, priority);
  assert_int_equal(r.priority_score, score);
  assert_int_equal(r.is_workspace_repo, is_ws);
  assert_int_equal(r.workspace_count, count);
  int n = -1;
  assert_int_equal(tb_store_workspace_count(w->st, repo, &n), TB_OK);
  assert_int_equal(n, count);
}

/* The audit trail of |repo|, oldest first: "old>new:reason:msg_id;..." ("-" for NULL). */
static const char *audit(world_t *w, const char *repo, char *buf, size_t cap) {
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st),
                                      "SELECT coalesce(group_concat(line, ';'), '') FROM ("
                                      "SELECT coalesce(old_priority, '-') || '>' || new_priority "
                                      "|| ':' || reason || ':' || coalesce(msg_id, '-') AS line "
                                      "FROM priority_audit WHERE repository_id = ?1 ORDER BY id)",
                                      -1, &stmt, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(stmt, 1, repo, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return buf;
}

static int64_t count_rows(world_t *w, const char *sql) {
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st), sql, -1, &stmt, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return n;
}

/* An operator's setting on a tracked repository, made before any event. */
static void preset(world_t *w, const char *repo, const char *priority, const char *override,
                   int marked_low) {
  tb_tracked_repo_t r;
  memset(&r, 0, sizeof(r));
  snprintf(r.repository_id, sizeof(r.repository_id), "%s", repo);
  snprintf(r.priority, sizeof(r.priority), "%s", priority);
  r.priority_score = strcmp(priority, "high") == 0 ? 100 : strcmp(priority, "low") == 0 ? 25 : 50;
  r.tracking_enabled = 1;
  snprintf(r.manual_override, sizeof(r.manual_override), "%s", override);
  r.marked_low = marked_low;
  assert_int_equal(tb_store_repo_put(w->st, &r), TB_OK);
}

/* ------------------------------------------------------------------------------------------------
 * Seed 002 sequences
 * --------------------------------------------------------------------------------------------- */

static void test_add_remove_lifecycle(void **state) {
  world_t *w = *state;
  char buf[1024];
  /* add: upgraded at once, and tracked from now on */
  assert_int_equal(deliver(w, ADD, "w1", "r1", 10), TB_OK);
  expect_row(w, "r1", "high", 100, 1, 1);
  assert_string_equal(audit(w, "r1", buf, sizeof(buf)),
                      "->high:added to workspace w1 (1 workspace); now tracked:msg-10");
  assert_int_equal(repo_row(w, "r1").tracking_enabled, 1);

  /* a second workspace: still high, count 2 */
  assert_int_equal(deliver(w, ADD, "w2", "r1", 11), TB_OK);
  expect_row(w, "r1", "high", 100, 1, 2);

  /* removed from one of two: still high, count 1 */
  assert_int_equal(deliver(w, REMOVE, "w1", "r1", 12), TB_OK);
  expect_row(w, "r1", "high", 100, 1, 1);

  /* removed from the last: medium */
  assert_int_equal(deliver(w, REMOVE, "w2", "r1", 13), TB_OK);
  expect_row(w, "r1", "medium", 50, 0, 0);
  assert_string_equal(audit(w, "r1", buf, sizeof(buf)),
                      "->high:added to workspace w1 (1 workspace); now tracked:msg-10;"
                      "high>high:added to workspace w2 (2 workspaces):msg-11;"
                      "high>high:removed from workspace w1 (still in 1 workspace):msg-12;"
                      "high>medium:removed from last workspace w2:msg-13");
  /* the seed's inversion query stays at zero */
  assert_int_equal(count_rows(w, "SELECT count(*) FROM tracked_repositories "
                                 "WHERE is_workspace_repo = 1 AND priority != 'high'"),
                   0);
}

static void test_marked_low_then_removed(void **state) {
  world_t *w = *state;
  char buf[1024];
  preset(w, "r2", "medium", "", 1);
  assert_int_equal(deliver(w, ADD, "w1", "r2", 20), TB_OK);
  expect_row(w, "r2", "high", 100, 1, 1); /* a workspace beats the low mark */
  assert_int_equal(deliver(w, REMOVE, "w1", "r2", 21), TB_OK);
  expect_row(w, "r2", "low", 25, 0, 0);
  assert_int_equal(repo_row(w, "r2").marked_low, 1);
  assert_string_equal(audit(w, "r2", buf, sizeof(buf)),
                      "medium>high:added to workspace w1 (1 workspace):msg-20;"
                      "high>low:removed from last workspace w1:msg-21");
}

static void test_manual_override_respected(void **state) {
  world_t *w = *state;
  char buf[1024];
  /* override 'low': the flags follow membership, the priority does not */
  preset(w, "r3", "low", "low", 0);
  assert_int_equal(deliver(w, ADD, "w1", "r3", 30), TB_OK);
  expect_row(w, "r3", "low", 25, 1, 1);
  assert_int_equal(deliver(w, REMOVE, "w1", "r3", 31), TB_OK);
  expect_row(w, "r3", "low", 25, 0, 0);
  assert_string_equal(
      audit(w, "r3", buf, sizeof(buf)),
      "low>low:manual override 'low' respected over 'high': added to workspace w1 (1 workspace)"
      ":msg-30;"
      "low>low:manual override 'low' respected over 'medium': removed from last workspace w1"
      ":msg-31");
  assert_string_equal(repo_row(w, "r3").manual_override, "low");

  /* override 'high' outside any workspace (the seed's explicit case) survives the removal */
  preset(w, "r4", "high", "high", 0);
  assert_int_equal(deliver(w, ADD, "w1", "r4", 32), TB_OK);
  expect_row(w, "r4", "high", 100, 1, 1);
  assert_int_equal(deliver(w, REMOVE, "w1", "r4", 33), TB_OK);
  expect_row(w, "r4", "high", 100, 0, 0);
  assert_string_equal(audit(w, "r4", buf, sizeof(buf)),
                      "high>high:added to workspace w1 (1 workspace):msg-32;"
                      "high>high:manual override 'high' respected over 'medium': "
                      "removed from last workspace w1:msg-33");
}

static void test_duplicate_add_is_idempotent(void **state) {
  world_t *w = *state;
  char buf[1024];
  assert_int_equal(deliver(w, ADD, "w1", "r5", 40), TB_OK);
  assert_int_equal(deliver(w, ADD, "w1", "r5", 40), TB_OK); /* redelivery: stale */
  assert_int_equal(deliver(w, ADD, "w1", "r5", 41), TB_OK); /* a second add event, same pair */
  expect_row(w, "r5", "high", 100, 1, 1);
  assert_string_equal(audit(w, "r5", buf, sizeof(buf)),
                      "->high:added to workspace w1 (1 workspace); now tracked:msg-40");
  assert_int_equal(count_rows(w, "SELECT count(*) FROM workspace_repositories "
                                 "WHERE repository_id = 'r5'"),
                   1);
}

static void test_out_of_order_remove_before_add(void **state) {
  world_t *w = *state;
  char buf[1024];
  /* published add (seq 10) then remove (seq 11); a worker commits the remove first */
  assert_int_equal(deliver(w, REMOVE, "w1", "r6", 11), TB_OK);
  expect_row(w, "r6", "medium", 50, 0, 0);
  assert_int_equal(deliver(w, ADD, "w1", "r6", 10), TB_OK); /* stale: nothing changes */
  expect_row(w, "r6", "medium", 50, 0, 0);
  assert_int_equal(count_rows(w, "SELECT count(*) FROM workspace_repositories "
                                 "WHERE repository_id = 'r6'"),
                   0);
  assert_string_equal(audit(w, "r6", buf, sizeof(buf)),
                      "->medium:removed from last workspace w1; now tracked:msg-11");
  /* a later add still applies */
  assert_int_equal(deliver(w, ADD, "w1", "r6", 12), TB_OK);
  expect_row(w, "r6", "high", 100, 1, 1);
}

static void test_empty_ids_invalid(void **state) {
  world_t *w = *state;
  assert_int_equal(deliver(w, ADD, "", "r7", 50), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "WORKSPACE_REPO_ADDED (msg msg-50): empty workspace_id");
  assert_int_equal(deliver(w, REMOVE, "w1", "", 51), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "WORKSPACE_REPO_REMOVED (msg msg-51): empty repository_id");
  assert_int_equal(deliver(w, ADD, NULL, NULL, 52), TB_ERR_INVALID);
  /* an id too long for the store is just as permanent */
  char long_id[TB_ID_MAX + 8];
  memset(long_id, 'r', sizeof(long_id) - 1);
  long_id[sizeof(long_id) - 1] = '\0';
  assert_int_equal(deliver(w, ADD, "w1", long_id, 53), TB_ERR_INVALID);
  assert_int_equal(count_rows(w, "SELECT (SELECT count(*) FROM tracked_repositories) + "
                                 "(SELECT count(*) FROM workspace_membership_versions) + "
                                 "(SELECT count(*) FROM priority_audit)"),
                   0);
}

/* ------------------------------------------------------------------------------------------------
 * Registry and activity
 * --------------------------------------------------------------------------------------------- */

static void test_registry(void **state) {
  world_t *w = *state;
  int n = 0;
  const char *const *names = tb_registry_names(&n);
  assert_int_equal(n, 8);
  assert_string_equal(names[0], "activity");
  assert_string_equal(names[1], "workspace.repo_added");
  assert_string_equal(names[2], "workspace.repo_removed");
  assert_string_equal(names[3], "workflow.step");
  assert_string_equal(names[4], "workflow.resume");
  assert_string_equal(names[5], "workflow.start");
  assert_string_equal(names[6], "workflow.trigger");
  for (int i = 0; i < n; i++) assert_non_null(tb_registry_handler(names[i]));
  assert_null(tb_registry_handler("workspace.repo"));
  assert_null(tb_registry_handler(""));
  assert_null(tb_registry_handler(NULL));
  /* every handler the catalogue names is bound */
  for (size_t i = 0; i < tb_catalogue_count(w->cat); i++) {
    const tb_event_def_t *def = tb_catalogue_at(w->cat, i);
    if (tb_registry_handler(def->handler) == NULL)
      fail_msg("catalogue event %s names unbound handler '%s'", def->name, def->handler);
  }
}

typedef struct render {
  const tb_catalogue_t *cat;
  json_t **out;
} render_t;

static int render_row(void *arg, const tb_activity_t *a) {
  render_t *r = arg;
  *r->out = tb_activity_json(r->cat, a);
  return 1;
}

static void test_activity_handler(void **state) {
  world_t *w = *state;
  const tb_event_def_t *def = tb_catalogue_find(w->cat, "WORKSPACE_REPO_ADDED");
  assert_non_null(def);
  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  env.id = "act-1";
  env.type = "WORKSPACE_REPO_ADDED";
  env.correlation_id = "corr-9";
  Tierbus__V1__WorkspaceRepoAdded added = TIERBUS__V1__WORKSPACE_REPO_ADDED__INIT;
  added.workspace_id = "w1";
  added.repository_id = "r9";
  added.actor = "ana";
  /* As a decode leaves it: the envelope keeps the packed payload that |payload| came from. */
  uint8_t packed[64];
  env.payload.len = tierbus__v1__workspace_repo_added__pack(&added, packed);
  env.payload.data = packed;
  tb_decoded_t msg = {.env = &env, .def = def, .payload = &added.base};
  tb_handler_ctx_t ctx = {.store = w->st, .msg = &msg, .tier = "normal"};
  tb_handler_fn fn = tb_registry_handler("activity");
  assert_non_null(fn);
  assert_int_equal(fn(&ctx), TB_OK);

  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st),
                                      "SELECT msg_id, event_type, tier, correlation_id, key, "
                                      "payload_json, payload FROM activity_log",
                                      -1, &stmt, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "act-1");
  assert_string_equal((const char *)sqlite3_column_text(stmt, 1), "WORKSPACE_REPO_ADDED");
  assert_string_equal((const char *)sqlite3_column_text(stmt, 2), "normal");
  assert_string_equal((const char *)sqlite3_column_text(stmt, 3), "corr-9");
  assert_string_equal((const char *)sqlite3_column_text(stmt, 4), "r9");
  /* The payload's bytes as published, not rendered: readers render them. */
  assert_int_equal(sqlite3_column_type(stmt, 5), SQLITE_NULL);
  assert_int_equal(sqlite3_column_bytes(stmt, 6), (int)env.payload.len);
  assert_memory_equal(sqlite3_column_blob(stmt, 6), packed, env.payload.len);
  assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
  sqlite3_finalize(stmt);

  /* Rendered back as JSON with proto field names, as `tierbus activity` shows it. */
  json_t *row = NULL;
  tb_activity_filter_t f = {.key = "r9"};
  assert_int_equal(tb_store_activity_list(w->st, &f, render_row, &(render_t){w->cat, &row}), TB_OK);
  assert_non_null(row);
  json_t *obj = json_object_get(row, "payload");
  assert_string_equal(json_string_value(json_object_get(obj, "workspace_id")), "w1");
  assert_string_equal(json_string_value(json_object_get(obj, "repository_id")), "r9");
  assert_string_equal(json_string_value(json_object_get(obj, "actor")), "ana");
  assert_string_equal(json_string_value(json_object_get(row, "correlation_id")), "corr-9");
  assert_null(json_object_get(row, "payload_error"));
  json_decref(row);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, world_setup, world_teardown)
  const struct CMUnitTest tests[] = {
      T(test_add_remove_lifecycle),
      T(test_marked_low_then_removed),
      T(test_manual_override_respected),
      T(test_duplicate_add_is_idempotent),
      T(test_out_of_order_remove_before_add),
      T(test_empty_ids_invalid),
      T(test_registry),
      T(test_activity_handler),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
