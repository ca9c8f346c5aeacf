/* Unit tests for seed 002 beyond the membership rules of test_workspace: the repository-sync job
 * each priority change queues (tier, score, metadata), the PRD's add/remove sequences with those
 * jobs, a failing job that must not fail the workspace change, the full sync on a drifted table,
 * its retries, its lease across two connections in two threads, and the sync workflow's steps.
 * Real SQLite (in-memory, or files where two connections must share one), no NATS. */
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include "wf_harness.h"

#include "core/clock.h"
#include "store/escalation.h"
#include "api/publish.h"
#include "store/repo.h"
#include "workflows/priority.h"
#include "workflows/registry.h"

enum { ADD = 1, REMOVE = 0 };

/* Delivers one WORKSPACE_REPO_ADDED/REMOVED at stream sequence |seq| through its registered
 * handler, inside a transaction and savepoint as the engine does. Returns the handler's status. */
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
  tb_handler_ctx_t ctx = w->ctx;
  ctx.msg = &msg;
  ctx.tier = "high";
  ctx.order = (tb_order_t){.occurred_us = env.occurred_at_us, .stream = "TB_HIGH", .seq = seq};
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

/* The repository-sync jobs in the outbox, oldest first, one line each:
 * "<subject> score=<envelope score> <payload json> meta=<k=v,...>"; the outbox is emptied.
 * Static buffer. */
static const char *jobs(world_t *w) {
  static char out[65536];
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(w->st, INT64_MAX, 1000, &rows, &n), TB_OK);
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    tb_decoded_t d;
    if (tb_codec_decode(w->cat, rows[i].payload, rows[i].len, &d) != TB_OK)
      fail_msg("outbox row %s is not an event: %s", rows[i].msg_id, tb_errdetail());
    if (strcmp(d.env->type, "workspace/priorities.sync") == 0) {
      /* the debounced workspace_add sync (test_workspace_add_sync covers it) */
      tb_decoded_free(&d);
      assert_int_equal(tb_store_outbox_delete(w->st, rows[i].id), TB_OK);
      continue;
    }
    assert_string_equal(d.env->type, "capture/repository.sync");
    json_t *p = NULL;
    assert_int_equal(tb_codec_payload_to_json(d.payload, &p), TB_OK);
    used +=
        (size_t)snprintf(out + used, sizeof(out) - used, "%s%s score=%d %s meta=", used ? "\n" : "",
                         rows[i].subject, d.env->priority_score, jtext(p));
    for (size_t k = 0; k < d.env->n_metadata; k++)
      used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s=%s", k ? "," : "",
                               d.env->metadata[k]->key, d.env->metadata[k]->value);
    json_decref(p);
    tb_decoded_free(&d);
    assert_int_equal(tb_store_outbox_delete(w->st, rows[i].id), TB_OK);
  }
  tb_store_outbox_free(rows, n);
  return out;
}

static void expect_row(world_t *w, const char *repo, const char *priority, int score, int is_ws,
                       int count) {
  tb_tracked_repo_t r;
  int found = 0;
  assert_int_equal(tb_store_repo_get(w->st, repo, &r, &found), TB_OK);
  if (!found) fail_msg("repository %s is not tracked", repo);
  assert_string_equal(r.priority, priority);
  assert_int_equal(r.priority_score, score);
  assert_int_equal(r.is_workspace_repo, is_ws);
  assert_int_equal(r.workspace_count, count);
}

static int64_t q_int(world_t *w, const char *sql) {
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st), sql, -1, &stmt, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return n;
}

static void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s: %s", sql, err);
}

/* The audit trail of |repo|, oldest first: "old>new:reason;..." ("-" for NULL). Static. */
static const char *audit(world_t *w, const char *repo) {
  static char buf[4096];
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(sqlite3_prepare_v2(tb__store_db(w->st),
                                      "SELECT coalesce(group_concat(line, ';'), '') FROM ("
                                      "SELECT coalesce(old_priority, '-') || '>' || new_priority "
                                      "|| ':' || reason AS line FROM priority_audit "
                                      "WHERE repository_id = ?1 ORDER BY id)",
                                      -1, &stmt, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(stmt, 1, repo, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  snprintf(buf, sizeof(buf), "%s", (const char *)sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return buf;
}

#define HIGH_JOB(repo, orig, count)                                                                \
  "tb.evt.high.workspace.repository-sync score=100 {\"metadata\":{\"is_workspace_repo\":true,"     \
  "\"original_priority\":\"REPOSITORY_PRIORITY_" orig "\",\"workspace_count\":" #count "},"        \
  "\"priority\":\"REPOSITORY_PRIORITY_HIGH\",\"priority_score\":100,\"repository_id\":\"" repo     \
  "\",\"repository_name\":\"\",\"sync_type\":\"full\"}"

/* ------------------------------------------------------------------------------------------------
 * The PRD's add/remove sequences, with their jobs
 * --------------------------------------------------------------------------------------------- */

static void test_add_second_workspace_remove_one_then_both(void **state) {
  world_t *w = *state;
  assert_int_equal(deliver(w, ADD, "w1", "r1", 1), TB_OK);
  expect_row(w, "r1", "high", 100, 1, 1);
  assert_string_equal(jobs(w), HIGH_JOB("r1", "UNSPECIFIED", 1) " meta=repository_priority=high,"
                                                                "is_workspace_repo=true,"
                                                                "workspace_count=1,"
                                                                "original_priority=none");
  /* added to a second workspace: still high, count 2, no new job (the priority did not change) */
  assert_int_equal(deliver(w, ADD, "w2", "r1", 2), TB_OK);
  expect_row(w, "r1", "high", 100, 1, 2);
  assert_string_equal(jobs(w), "");
  /* removed from one of two: still high */
  assert_int_equal(deliver(w, REMOVE, "w1", "r1", 3), TB_OK);
  expect_row(w, "r1", "high", 100, 1, 1);
  assert_string_equal(jobs(w), "");
  /* removed from the last: medium, and its job goes to the normal tier with score 50 */
  assert_int_equal(deliver(w, REMOVE, "w2", "r1", 4), TB_OK);
  expect_row(w, "r1", "medium", 50, 0, 0);
  assert_string_equal(
      jobs(w), "tb.evt.normal.workspace.repository-sync score=50 {\"metadata\":{"
               "\"is_workspace_repo\":false,\"original_priority\":\"REPOSITORY_PRIORITY_HIGH\","
               "\"workspace_count\":0},\"priority\":\"REPOSITORY_PRIORITY_MEDIUM\","
               "\"priority_score\":50,\"repository_id\":\"r1\",\"repository_name\":\"\","
               "\"sync_type\":\"full\"} meta=repository_priority=medium,is_workspace_repo=false,"
               "workspace_count=0,original_priority=high");
  assert_string_equal(audit(w, "r1"), "->high:added to workspace w1 (1 workspace); now tracked;"
                                      "high>high:added to workspace w2 (2 workspaces);"
                                      "high>high:removed from workspace w1 (still in 1 workspace);"
                                      "high>medium:removed from last workspace w2");
}

static void test_removed_from_both_in_either_order(void **state) {
  world_t *w = *state;
  /* two workspaces, removed first from the one added last */
  assert_int_equal(deliver(w, ADD, "a", "r2", 1), TB_OK);
  assert_int_equal(deliver(w, ADD, "b", "r2", 2), TB_OK);
  assert_int_equal(deliver(w, REMOVE, "b", "r2", 3), TB_OK);
  expect_row(w, "r2", "high", 100, 1, 1);
  assert_int_equal(deliver(w, REMOVE, "a", "r2", 4), TB_OK);
  expect_row(w, "r2", "medium", 50, 0, 0);
  /* and back into one: high again */
  assert_int_equal(deliver(w, ADD, "b", "r2", 5), TB_OK);
  expect_row(w, "r2", "high", 100, 1, 1);
  const char *j = jobs(w);
  /* three priority changes, three jobs: high, medium, high */
  assert_non_null(strstr(j, "tb.evt.high.workspace.repository-sync score=100"));
  assert_non_null(strstr(j, "\ntb.evt.normal.workspace.repository-sync score=50"));
  assert_non_null(strstr(j, "\ntb.evt.high.workspace.repository-sync score=100"));
  int lines = 1;
  for (const char *c = j; *c; c++) lines += *c == '\n';
  assert_int_equal(lines, 3);
}

static void test_marked_low_and_override(void **state) {
  world_t *w = *state;
  /* marked low while tracked only: low, on the low tier */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  int changed = 0;
  assert_int_equal(tb_repo_set(&w->ctx, "r3", NULL, 1, "op-1", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(changed, 1);
  expect_row(w, "r3", "low", 25, 0, 0);
  assert_non_null(strstr(jobs(w), "tb.evt.low.workspace.repository-sync score=25 "));
  /* a workspace beats the mark; leaving it goes back to low */
  assert_int_equal(deliver(w, ADD, "w1", "r3", 1), TB_OK);
  expect_row(w, "r3", "high", 100, 1, 1);
  assert_int_equal(deliver(w, REMOVE, "w1", "r3", 2), TB_OK);
  expect_row(w, "r3", "low", 25, 0, 0);
  assert_string_equal(audit(w, "r3"), "->low:operator marked it low; now tracked;"
                                      "low>high:added to workspace w1 (1 workspace);"
                                      "high>low:removed from last workspace w1");
  (void)jobs(w);

  /* an override is respected by the handlers: in a workspace but kept medium, no job */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set(&w->ctx, "r4", "medium", -1, "op-2", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  (void)jobs(w);
  assert_int_equal(deliver(w, ADD, "w1", "r4", 3), TB_OK);
  expect_row(w, "r4", "medium", 50, 1, 1);
  assert_string_equal(jobs(w), "");
  /* clearing the override applies the rules at once */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set(&w->ctx, "r4", "none", -1, "op-3", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  expect_row(w, "r4", "high", 100, 1, 1);
  assert_non_null(strstr(jobs(w), "tb.evt.high.workspace.repository-sync score=100 "));
  assert_string_equal(audit(w, "r4"),
                      "->medium:operator set override 'medium'; now tracked;"
                      "medium>medium:manual override 'medium' respected over 'high': added to "
                      "workspace w1 (1 workspace);"
                      "medium>high:operator cleared the override");
  /* a bad override is refused and changes nothing */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set(&w->ctx, "r4", "urgent", -1, "op-4", &changed), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "override 'urgent' is not high, medium, low or none");
  assert_int_equal(tb_store_rollback(w->st), TB_OK);
}

/* The job's tier comes from config: move medium repositories' jobs to the low tier. */
static void test_job_tier_from_config(void **state) {
  world_t *w = *state;
  assert_int_equal(tb_config_set(&w->cfg, "repo_tier_medium", "background"), TB_OK);
  assert_int_equal(deliver(w, REMOVE, "w1", "r5", 1), TB_OK); /* newly tracked, medium */
  assert_non_null(strstr(jobs(w), "tb.evt.background.workspace.repository-sync score=50 "));
  assert_string_equal(tb_repo_priority_tier(&w->cfg, "high"), "high");
  assert_string_equal(tb_repo_priority_tier(&w->cfg, "low"), "low");
  assert_null(tb_repo_priority_tier(&w->cfg, "urgent"));
}

/* A sync job that cannot be queued never fails the workspace change that caused it. */
static void test_job_failure_keeps_membership(void **state) {
  world_t *w = *state;
  exec(tb__store_db(w->st), "CREATE TRIGGER outbox_down BEFORE INSERT ON outbox "
                            "BEGIN SELECT RAISE(ABORT, 'outbox down'); END");
  assert_int_equal(deliver(w, ADD, "w1", "r6", 1), TB_OK);
  expect_row(w, "r6", "high", 100, 1, 1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM workspace_repositories WHERE repository_id = "
                            "'r6'"),
                   1);
  assert_int_equal(q_int(w, "SELECT count(*) FROM outbox"), 0);
  exec(tb__store_db(w->st), "DROP TRIGGER outbox_down");
  /* without a catalogue (a handler run outside the engine) the same holds */
  w->ctx.cat = NULL;
  assert_int_equal(deliver(w, REMOVE, "w1", "r6", 2), TB_OK);
  expect_row(w, "r6", "medium", 50, 0, 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM outbox"), 0);
}

/* ------------------------------------------------------------------------------------------------
 * The full sync
 * --------------------------------------------------------------------------------------------- */

/* |n| tracked repositories "repo-00000".., every third in a workspace (one in two of those in a
 * second one), every tenth of the rest marked low; all rows consistent with the rules. */
static void seed_table(sqlite3 *db, int n) {
  exec(db, "BEGIN");
  char sql[512];
  snprintf(sql, sizeof(sql),
           "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < %d) "
           "INSERT INTO tracked_repositories(repository_id, priority, priority_score, "
           "is_workspace_repo, workspace_count, marked_low, updated_at) SELECT "
           "printf('repo-%%05d', i), CASE WHEN i %% 3 = 0 THEN 'high' WHEN i %% 10 = 1 THEN 'low' "
           "ELSE 'medium' END, CASE WHEN i %% 3 = 0 THEN 100 WHEN i %% 10 = 1 THEN 25 ELSE 50 END, "
           "i %% 3 = 0, CASE WHEN i %% 6 = 0 THEN 2 WHEN i %% 3 = 0 THEN 1 ELSE 0 END, "
           "i %% 3 <> 0 AND i %% 10 = 1, 1 FROM k",
           n);
  exec(db, sql);
  exec(db, "INSERT INTO workspace_repositories(workspace_id, repository_id, added_at) "
           "SELECT 'ws-a', repository_id, 0 FROM tracked_repositories WHERE is_workspace_repo");
  exec(db, "INSERT INTO workspace_repositories(workspace_id, repository_id, added_at) "
           "SELECT 'ws-b', repository_id, 0 FROM tracked_repositories WHERE workspace_count = 2");
  exec(db, "COMMIT");
}

static tb_prio_sync_opts_t opts_batch(int batch) {
  return (tb_prio_sync_opts_t){.owner = "sync-1", .batch_size = batch, .max_retries = -1};
}

static void test_sync_fixes_exactly_the_drift(void **state) {
  world_t *w = *state;
  sqlite3 *db = tb__store_db(w->st);
  seed_table(db, 100);
  /* 34 in a workspace (0, 3, ..., 99), 66 tracked only */
  tb_prio_sync_result_t r;
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, NULL, &r), TB_OK);
  assert_int_equal(r.workspace_repos, 34);
  assert_int_equal(r.tracked_only_repos, 66);
  assert_int_equal(r.priority_changes, 0);
  assert_int_equal(r.rows_updated, 0);
  assert_int_equal(json_array_size(r.errors), 0);
  tb_prio_sync_result_clear(&r);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_audit"), 0);

  /* drift: a workspace repository stored medium; a tracked-only one stored high and flagged; a
   * marked-low one stored medium; one in a workspace with an override 'low' stored high; one whose
   * count alone is stale (priority right) */
  exec(db, "UPDATE tracked_repositories SET priority = 'medium', priority_score = 50 "
           "WHERE repository_id = 'repo-00003';"
           "UPDATE tracked_repositories SET priority = 'high', priority_score = 100, "
           "is_workspace_repo = 1, workspace_count = 1 WHERE repository_id = 'repo-00004';"
           "UPDATE tracked_repositories SET priority = 'medium', priority_score = 50 "
           "WHERE repository_id = 'repo-00011';"
           "UPDATE tracked_repositories SET manual_override = 'low' "
           "WHERE repository_id = 'repo-00042';"
           "UPDATE tracked_repositories SET workspace_count = 5 WHERE repository_id = 'repo-00099';"
           "UPDATE tracked_repositories SET updated_at = 7");
  int64_t total = 0, seed = 0;
  assert_int_equal(tb_store_repo_inversions(w->st, 0, NULL, NULL, &total, &seed), TB_OK);
  assert_int_equal(total, 5);
  assert_int_equal(seed, 1); /* the seed's query sees repo-00003 only */

  /* batches of 7 so that the drift lies on both sides of batch boundaries */
  tb_prio_sync_opts_t o = opts_batch(7);
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_OK);
  assert_int_equal(r.workspace_repos, 34);
  assert_int_equal(r.tracked_only_repos, 66);
  assert_int_equal(r.priority_changes, 4);
  assert_int_equal(r.rows_updated, 5);
  assert_int_equal(r.jobs_queued, 4);
  assert_int_equal(r.batches, 15); /* 14 full batches and the short last one */
  assert_int_equal(r.attempts, 15);
  assert_int_equal(json_array_size(r.errors), 0);
  tb_prio_sync_result_clear(&r);

  expect_row(w, "repo-00003", "high", 100, 1, 1);
  expect_row(w, "repo-00004", "medium", 50, 0, 0);
  expect_row(w, "repo-00011", "low", 25, 0, 0);
  expect_row(w, "repo-00042", "low", 25, 1, 2);
  expect_row(w, "repo-00099", "high", 100, 1, 1);
  /* exactly the drifted rows were rewritten, and each has one audit row naming the sync */
  assert_int_equal(q_int(w, "SELECT count(*) FROM tracked_repositories WHERE updated_at <> 7"), 5);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_audit"), 5);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_audit WHERE msg_id = 'sync-1'"), 5);
  assert_string_equal(audit(w, "repo-00003"), "medium>high:priority sync: in 1 workspace; stored "
                                              "medium/50, is_workspace_repo 1, 1 workspace");
  assert_string_equal(audit(w, "repo-00004"), "high>medium:priority sync: in no workspace; stored "
                                              "high/100, is_workspace_repo 1, 1 workspace");
  assert_string_equal(audit(w, "repo-00011"), "medium>low:priority sync: in no workspace, marked "
                                              "low; stored medium/50, is_workspace_repo 0, 0 "
                                              "workspaces");
  assert_string_equal(audit(w, "repo-00042"), "high>low:priority sync: manual override 'low'; "
                                              "stored high/100, is_workspace_repo 1, 2 workspaces");
  assert_string_equal(audit(w, "repo-00099"), "high>high:priority sync: in 1 workspace; stored "
                                              "high/100, is_workspace_repo 1, 5 workspaces");
  /* one job per priority change, on the new priority's tier, in id order */
  const char *j = jobs(w);
  const char *expect[] = {"tb.evt.high.workspace.repository-sync score=100 ",
                          "tb.evt.normal.workspace.repository-sync score=50 ",
                          "tb.evt.low.workspace.repository-sync score=25 ",
                          "tb.evt.low.workspace.repository-sync score=25 "};
  const char *ids[] = {"repo-00003", "repo-00004", "repo-00011", "repo-00042"};
  for (int i = 0; i < 4; i++) {
    if (strncmp(j, expect[i], strlen(expect[i])) != 0) fail_msg("job %d: %s", i, j);
    assert_non_null(strstr(j, ids[i]));
    j = strchr(j, '\n') ? strchr(j, '\n') + 1 : j + strlen(j);
  }
  assert_string_equal(j, "");
  assert_int_equal(tb_store_repo_inversions(w->st, 0, NULL, NULL, &total, &seed), TB_OK);
  assert_int_equal(total, 0);
  assert_int_equal(seed, 1); /* repo-00042: kept low by its override, on purpose */

  /* a second sync finds nothing to do; two runs recorded */
  o.owner = "sync-2";
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_OK);
  assert_int_equal(r.priority_changes, 0);
  assert_int_equal(r.rows_updated, 0);
  tb_prio_sync_result_clear(&r);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_sync_runs WHERE status = 'completed'"),
                   3);
  assert_int_equal(q_int(w, "SELECT count(*) FROM job_leases"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_sync_calc"), 0);
}

/* An empty table, and a batch size equal to the table: the boundaries of the cursor. */
static void test_sync_boundaries(void **state) {
  world_t *w = *state;
  tb_prio_sync_result_t r;
  tb_prio_sync_opts_t o = opts_batch(3);
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_OK);
  assert_int_equal(r.batches, 1);
  assert_int_equal(r.workspace_repos + r.tracked_only_repos, 0);
  tb_prio_sync_result_clear(&r);
  seed_table(tb__store_db(w->st), 3);
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_OK);
  assert_int_equal(r.batches, 2); /* a full batch, then an empty one that ends the run */
  assert_int_equal(r.workspace_repos, 1);
  assert_int_equal(r.tracked_only_repos, 2);
  tb_prio_sync_result_clear(&r);
  o.batch_size = 4;
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_OK);
  assert_int_equal(r.batches, 1);
  tb_prio_sync_result_clear(&r);
  tb_repo_batch_t b;
  assert_int_equal(tb_store_repo_sync_batch(w->st, "", 0, "x", NULL, NULL, &b), TB_ERR_INVALID);
}

/* ---------------------------------------------------------------- retries */

static int inject_budget;

/* inject(): fails while the budget lasts. The budget lives in C, so a rolled-back transaction
 * does not restore it. */
static void sql_inject(sqlite3_context *cx, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  if (inject_budget > 0) {
    inject_budget--;
    sqlite3_result_error(cx, "injected failure", -1);
  } else {
    sqlite3_result_null(cx);
  }
}

static void arm_injection(world_t *w, int failures) {
  sqlite3 *db = tb__store_db(w->st);
  inject_budget = failures;
  assert_int_equal(
      sqlite3_create_function(db, "inject", 0, SQLITE_UTF8, NULL, sql_inject, NULL, NULL),
      SQLITE_OK);
  exec(db, "CREATE TEMP TRIGGER IF NOT EXISTS audit_inject BEFORE INSERT ON main.priority_audit "
           "BEGIN SELECT inject(); END");
}

static void test_sync_two_retries(void **state) {
  world_t *w = *state;
  sqlite3 *db = tb__store_db(w->st);
  seed_table(db, 20);
  exec(db, "UPDATE tracked_repositories SET priority = 'low', priority_score = 25 "
           "WHERE repository_id IN ('repo-00002', 'repo-00012')");
  /* two failures: the batch succeeds on its third attempt */
  arm_injection(w, 2);
  tb_prio_sync_result_t r;
  tb_prio_sync_opts_t o = opts_batch(10);
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_OK);
  assert_int_equal(r.priority_changes, 2);
  assert_int_equal(r.batches, 3);
  assert_int_equal(r.attempts, 5);
  assert_int_equal(json_array_size(r.errors), 2);
  assert_non_null(
      strstr(json_string_value(json_array_get(r.errors, 0)), "batch after '', attempt 1: "));
  assert_non_null(strstr(json_string_value(json_array_get(r.errors, 1)), "attempt 2: "));
  assert_non_null(strstr(json_string_value(json_array_get(r.errors, 1)), "injected failure"));
  tb_prio_sync_result_clear(&r);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_audit"), 2); /* no duplicates */
  (void)jobs(w);

  /* three failures in a row: the run fails after 2 retries, the lease is released and the run is
   * recorded as failed */
  exec(db, "UPDATE tracked_repositories SET priority = 'low', priority_score = 25 "
           "WHERE repository_id = 'repo-00002'");
  arm_injection(w, 3);
  o.owner = "sync-2";
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_ERR_STORE);
  assert_non_null(strstr(tb_errdetail(), "attempt 3: "));
  assert_int_equal(r.attempts, 3);
  assert_int_equal(r.batches, 0);
  assert_int_equal(r.priority_changes, 0);
  assert_int_equal(json_array_size(r.errors), 3);
  tb_prio_sync_result_clear(&r);
  expect_row(w, "repo-00002", "low", 25, 0, 0); /* rolled back */
  assert_string_equal(jobs(w), "");
  assert_int_equal(q_int(w, "SELECT count(*) FROM job_leases"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_sync_runs WHERE status = 'failed' AND "
                            "owner = 'sync-2' AND attempts = 3 AND json_array_length(errors) = 3"),
                   1);
}

/* ---------------------------------------------------------------- the lease */

static void test_lease(void **state) {
  world_t *w = *state;
  int taken = 0;
  char holder[64];
  int64_t until = 0;
  assert_int_equal(
      tb_store_lease_take(w->st, "job", "a", 60000, &taken, holder, sizeof(holder), &until), TB_OK);
  assert_int_equal(taken, 1);
  assert_int_equal(
      tb_store_lease_take(w->st, "job", "b", 60000, &taken, holder, sizeof(holder), &until), TB_OK);
  assert_int_equal(taken, 0);
  assert_string_equal(holder, "a");
  assert_true(until > tb_wall_us());
  /* the holder may take it again (a redelivered step) */
  assert_int_equal(tb_store_lease_take(w->st, "job", "a", 60000, &taken, NULL, 0, NULL), TB_OK);
  assert_int_equal(taken, 1);
  /* release by someone else does nothing */
  assert_int_equal(tb_store_lease_release(w->st, "job", "b"), TB_OK);
  assert_int_equal(q_int(w, "SELECT count(*) FROM job_leases WHERE owner = 'a'"), 1);
  /* an expired lease is taken over, and its old holder can no longer renew it */
  assert_int_equal(tb_store_lease_take(w->st, "job2", "a", 1, &taken, NULL, 0, NULL), TB_OK);
  usleep(3000);
  assert_int_equal(tb_store_lease_take(w->st, "job2", "b", 60000, &taken, NULL, 0, NULL), TB_OK);
  assert_int_equal(taken, 1);
  int held = 1;
  assert_int_equal(tb_store_lease_renew(w->st, "job2", "a", 60000, &held), TB_OK);
  assert_int_equal(held, 0);
  assert_int_equal(tb_store_lease_renew(w->st, "job2", "b", 60000, &held), TB_OK);
  assert_int_equal(held, 1);
  assert_int_equal(tb_store_lease_take(w->st, "", "a", 1, &taken, NULL, 0, NULL), TB_ERR_INVALID);
}

/* A lease held by another is reported while a third connection keeps the write lock: a sync
 * asked for while another one writes batch after batch is refused, not queued behind it (with
 * only the busy handler it waited the whole sync out, then ran a second one). The busy timeout
 * still bounds the wait for a free lease. */
static void test_lease_while_the_lock_is_busy(void **state) {
  (void)state;
  char dir[] = "/tmp/tb_lease_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof(path), "%s/t.db", dir);
  tb_store_t *a = NULL, *b = NULL;
  assert_int_equal(tb_store_open(&a, path), TB_OK);
  assert_int_equal(tb_store_open(&b, path), TB_OK);
  assert_int_equal(tb_store_set_busy_timeout(b, 300), TB_OK);
  int taken = 0;
  char holder[64];
  int64_t until = 0;
  assert_int_equal(tb_store_lease_take(a, "job", "a", 60000, &taken, NULL, 0, NULL), TB_OK);
  assert_int_equal(taken, 1);

  sqlite3 *lock = NULL;
  assert_int_equal(sqlite3_open(path, &lock), SQLITE_OK);
  exec(lock, "BEGIN IMMEDIATE");
  assert_int_equal(
      tb_store_lease_take(b, "job", "b", 60000, &taken, holder, sizeof(holder), &until), TB_OK);
  assert_int_equal(taken, 0);
  assert_string_equal(holder, "a");
  assert_true(until > tb_wall_us());
  /* a free lease needs the lock: not got within the busy timeout */
  assert_int_equal(tb_store_lease_take(b, "job2", "b", 60000, &taken, NULL, 0, NULL), TB_ERR_BUSY);
  assert_int_equal(taken, 0);
  exec(lock, "COMMIT");
  sqlite3_close(lock);
  assert_int_equal(tb_store_lease_take(b, "job2", "b", 60000, &taken, NULL, 0, NULL), TB_OK);
  assert_int_equal(taken, 1);

  tb_store_close(b);
  tb_store_close(a);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* Two connections to one file, two threads: thread A's sync pauses after its first batch (lease
 * held, no transaction open) until the main thread's sync has tried; exactly one runs. */
typedef struct two {
  char path[128];
  const tb_config_t *cfg;
  const tb_catalogue_t *cat;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int a_paused, b_done;
  tb_status a_status;
  tb_prio_sync_result_t a;
} two_t;

static int pause_once(void *arg, const tb_prio_sync_result_t *so_far) {
  two_t *t = arg;
  if (so_far->batches != 1) return 0;
  pthread_mutex_lock(&t->mu);
  t->a_paused = 1;
  pthread_cond_broadcast(&t->cv);
  while (!t->b_done) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  return 0;
}

static void *thread_a(void *arg) {
  two_t *t = arg;
  tb_store_t *st = NULL;
  if (tb_store_open(&st, t->path) != TB_OK) return NULL;
  tb_prio_sync_opts_t o = {
      .owner = "sync-a", .batch_size = 10, .max_retries = -1, .progress = pause_once, .arg = t};
  t->a_status = tb_prio_sync_run(st, t->cfg, t->cat, &o, &t->a);
  tb_store_close(st);
  return NULL;
}

static void test_two_connections_one_runs(void **state) {
  world_t *w = *state;
  two_t t = {.cfg = &w->cfg, .cat = w->cat, .a_status = TB_ERR_HANDLER};
  char dir[] = "/tmp/tb_prio_XXXXXX";
  assert_non_null(mkdtemp(dir));
  snprintf(t.path, sizeof(t.path), "%s/t.db", dir);
  tb_store_t *b = NULL;
  assert_int_equal(tb_store_open(&b, t.path), TB_OK);
  seed_table(tb__store_db(b), 50);
  exec(tb__store_db(b), "UPDATE tracked_repositories SET priority = 'low', priority_score = 25 "
                        "WHERE repository_id = 'repo-00045'");
  pthread_mutex_init(&t.mu, NULL);
  pthread_cond_init(&t.cv, NULL);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, thread_a, &t), 0);
  pthread_mutex_lock(&t.mu);
  while (!t.a_paused) pthread_cond_wait(&t.cv, &t.mu);
  pthread_mutex_unlock(&t.mu);

  tb_prio_sync_result_t rb;
  tb_prio_sync_opts_t o = {.owner = "sync-b", .max_retries = -1};
  tb_status sb = tb_prio_sync_run(b, &w->cfg, w->cat, &o, &rb);
  char detail[256];
  snprintf(detail, sizeof(detail), "%s", tb_errdetail());
  pthread_mutex_lock(&t.mu);
  t.b_done = 1;
  pthread_cond_broadcast(&t.cv);
  pthread_mutex_unlock(&t.mu);
  pthread_join(th, NULL);

  assert_int_equal(sb, TB_ERR_BUSY);
  assert_int_equal(rb.skipped, 1);
  assert_string_equal(rb.holder, "sync-a");
  assert_int_equal(rb.batches, 0);
  assert_non_null(strstr(detail, "priority sync already running (held by sync-a, lease expires"));
  tb_prio_sync_result_clear(&rb);
  assert_int_equal(t.a_status, TB_OK);
  assert_int_equal(t.a.batches, 6); /* 5 full batches, then the empty one that ends the run */
  assert_int_equal(t.a.priority_changes, 1);
  tb_prio_sync_result_clear(&t.a);

  sqlite3 *db = tb__store_db(b);
  sqlite3_stmt *stmt = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(db, "SELECT group_concat(owner) FROM priority_sync_runs", -1, &stmt, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "sync-a");
  sqlite3_finalize(stmt);
  /* the lease is free again: the next sync runs */
  assert_int_equal(tb_prio_sync_run(b, &w->cfg, w->cat, &o, &rb), TB_OK);
  tb_prio_sync_result_clear(&rb);
  tb_store_close(b);
  pthread_cond_destroy(&t.cv);
  pthread_mutex_destroy(&t.mu);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* A sync whose lease was taken over (it expired while the sync stalled) stops at its next batch
 * instead of writing on, and is not retried. */
static int steal_lease(void *arg, const tb_prio_sync_result_t *so_far) {
  world_t *w = arg;
  if (so_far->batches == 1)
    exec(tb__store_db(w->st), "UPDATE job_leases SET owner = 'thief' WHERE name = "
                              "'" TB_PRIO_SYNC_LEASE "'");
  return 0;
}

static void test_lost_lease_stops(void **state) {
  world_t *w = *state;
  seed_table(tb__store_db(w->st), 30);
  tb_prio_sync_result_t r;
  tb_prio_sync_opts_t o = opts_batch(10);
  o.progress = steal_lease;
  o.arg = w;
  assert_int_equal(tb_prio_sync_run(w->st, &w->cfg, w->cat, &o, &r), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "priority sync sync-1: lost its lease"));
  assert_int_equal(r.batches, 1);
  assert_int_equal(r.attempts, 2);
  tb_prio_sync_result_clear(&r);
  assert_int_equal(q_int(w, "SELECT count(*) FROM job_leases WHERE owner = 'thief'"), 1);
}

/* ------------------------------------------------------------------------------------------------
 * The workflow that the workspace/priorities.sync event starts
 * --------------------------------------------------------------------------------------------- */

static void test_sync_workflow_steps(void **state) {
  world_t *w = *state;
  seed_table(tb__store_db(w->st), 12);
  exec(tb__store_db(w->st), "UPDATE tracked_repositories SET priority = 'medium', "
                            "priority_score = 50 WHERE repository_id = 'repo-00006'");
  const tb_workflow_def_t *def = tb_wf_find("workspace.priority-sync");
  assert_non_null(def);
  assert_string_equal(def->trigger_event, "workspace/priorities.sync");
  run_t a = run_new(w, "workspace.priority-sync", "wf-a", "{\"reason\":\"cron\"}");
  run_t b = run_new(w, "workspace.priority-sync", "wf-b", "{\"reason\":\"manual\"}");
  assert_string_equal(jtext(json_object_get(step_ok(&a, "acquire"), "acquired")), "true");
  /* the second run finds the lease held and runs nothing */
  assert_string_equal(jtext(step_ok(&b, "acquire")),
                      "{\"acquired\":false,\"holder\":\"wf-a\",\"skipped\":\"already running\"}");
  assert_int_equal(step_when(&b, "batch"), 0);
  assert_int_equal(step_when(&b, "more"), 0);
  assert_int_equal(step_when(&b, "finish"), 0);
  /* the first one: one batch covers 12 repositories */
  assert_int_equal(step_when(&a, "batch"), 1);
  json_t *res = step_ok(&a, "batch");
  assert_string_equal(jtext(res), "{\"batches\":1,\"cursor\":\"repo-00011\",\"done\":true,"
                                  "\"errors\":[],\"jobs_queued\":1,\"priority_changes\":1,"
                                  "\"rows_updated\":1,\"tracked_only_repos\":8,"
                                  "\"workspace_repos\":4}");
  assert_null(step_branch(&a, "more"));
  /* not done: back to batch */
  char saved[8192];
  snprintf(saved, sizeof(saved), "%s", jtext(res));
  step_set(&a, "batch", "{\"done\":false,\"cursor\":\"repo-00005\"}");
  assert_string_equal(step_branch(&a, "more"), "batch");
  step_set(&a, "batch", saved);
  json_t *fin = step_ok(&a, "finish");
  assert_int_equal(json_integer_value(json_object_get(fin, "workspaceRepos")), 4);
  assert_int_equal(json_integer_value(json_object_get(fin, "trackedOnlyRepos")), 8);
  assert_int_equal(json_integer_value(json_object_get(fin, "priorityChanges")), 1);
  assert_int_equal(json_array_size(json_object_get(fin, "errors")), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM job_leases"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_sync_runs WHERE owner = 'wf-a' AND "
                            "trigger = 'cron' AND status = 'completed'"),
                   1);
  assert_non_null(strstr(jobs(w), "tb.evt.high.workspace.repository-sync score=100 "));
  /* now the lease is free, b would get it */
  run_t c = run_new(w, "workspace.priority-sync", "wf-c", "{}");
  assert_string_equal(jtext(json_object_get(step_ok(&c, "acquire"), "acquired")), "true");
  /* onError gives the lease back and records the failure */
  tb_wf_run_t v = view(&c, "batch");
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(def->on_error(&v, "batch: injected"), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(q_int(w, "SELECT count(*) FROM job_leases"), 0);
  assert_int_equal(q_int(w, "SELECT count(*) FROM priority_sync_runs WHERE owner = 'wf-c' AND "
                            "trigger = 'event' AND status = 'failed' AND errors = "
                            "'[\"batch: injected\"]'"),
                   1);
  run_free(&a);
  run_free(&b);
  run_free(&c);
}

/* ---------------------------------------------------------------- issue 12 */

static int64_t syncs_queued(world_t *w) {
  return q_int(w, "SELECT count(*) FROM outbox WHERE subject = "
                  "'tb.evt.background.workspace.priorities-sync'");
}

/* Adding a repository to a workspace also queues workspace/priorities.sync (reason
 * workspace_add), debounced: the first add of a burst queues it due a window later, the adds
 * until then share it; a remove queues none; with no window every add queues one at once. */
static void test_workspace_add_sync(void **state) {
  world_t *w = *state;
  w->cfg.workspace_add_sync = 0; /* off (the default): an add queues none */
  assert_int_equal(deliver(w, ADD, "w0", "r0", 100), TB_OK);
  assert_int_equal(syncs_queued(w), 0);
  w->cfg.workspace_add_sync = 1;
  w->cfg.priority_sync_debounce_ms = 60000;
  int64_t before = tb_wall_us();
  assert_int_equal(deliver(w, ADD, "w1", "r1", 1), TB_OK);
  assert_int_equal(syncs_queued(w), 1);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  /* Not due yet: held back for the window. */
  assert_int_equal(tb_store_outbox_next(w->st, tb_wall_us(), 1000, &rows, &n), TB_OK);
  for (int i = 0; i < n; i++) assert_null(strstr(rows[i].subject, "priorities-sync"));
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_next(w->st, INT64_MAX, 1000, &rows, &n), TB_OK);
  int seen = 0;
  for (int i = 0; i < n; i++) {
    if (strstr(rows[i].subject, "priorities-sync") == NULL) continue;
    seen++;
    int64_t due = 0;
    int found = 0;
    assert_int_equal(tb_store_outbox_due_of(w->st, rows[i].msg_id, &due, &found), TB_OK);
    assert_int_equal(found, 1);
    assert_true(due >= before + 60000000LL && due <= tb_wall_us() + 60000000LL);
    tb_decoded_t d;
    assert_int_equal(tb_codec_decode(w->cat, rows[i].payload, rows[i].len, &d), TB_OK);
    assert_string_equal(d.env->type, "workspace/priorities.sync");
    json_t *p = NULL;
    assert_int_equal(tb_codec_payload_to_json(d.payload, &p), TB_OK);
    assert_string_equal(json_string_value(json_object_get(p, "reason")), "workspace_add");
    assert_string_equal(json_string_value(json_object_get(p, "workspace_id")), "w1");
    assert_string_equal(json_string_value(json_object_get(p, "repository_id")), "r1");
    json_decref(p);
    tb_decoded_free(&d);
  }
  tb_store_outbox_free(rows, n);
  assert_int_equal(seen, 1);

  /* The rest of the burst: more adds, a repeated add, a remove: still one sync. */
  assert_int_equal(deliver(w, ADD, "w1", "r2", 2), TB_OK);
  assert_int_equal(deliver(w, ADD, "w2", "r1", 3), TB_OK);
  assert_int_equal(deliver(w, ADD, "w2", "r1", 4), TB_OK);
  assert_int_equal(deliver(w, REMOVE, "w1", "r2", 5), TB_OK);
  assert_int_equal(syncs_queued(w), 1);

  /* The window is over (the queued sync went out): the next add queues the next one. */
  exec(tb__store_db(w->st),
       "UPDATE job_leases SET expires_us = 0 WHERE name = 'workspace-add-sync'");
  assert_int_equal(deliver(w, ADD, "w3", "r3", 6), TB_OK);
  assert_int_equal(syncs_queued(w), 2);
  /* A remove alone never queues one. */
  exec(tb__store_db(w->st),
       "UPDATE job_leases SET expires_us = 0 WHERE name = 'workspace-add-sync'");
  assert_int_equal(deliver(w, REMOVE, "w3", "r3", 7), TB_OK);
  assert_int_equal(syncs_queued(w), 2);

  /* No window: one per add, due at once. */
  w->cfg.priority_sync_debounce_ms = 0;
  assert_int_equal(deliver(w, ADD, "w4", "r4", 8), TB_OK);
  assert_int_equal(deliver(w, ADD, "w4", "r5", 9), TB_OK);
  assert_int_equal(syncs_queued(w), 4);
  assert_int_equal(tb_store_outbox_next(w->st, tb_wall_us(), 1000, &rows, &n), TB_OK);
  seen = 0;
  for (int i = 0; i < n; i++) seen += strstr(rows[i].subject, "priorities-sync") != NULL;
  tb_store_outbox_free(rows, n);
  assert_int_equal(seen, 2);
}

/* Seed 002's lookup before queueing: a capture/repository.sync published without a priority goes
 * by the repository's tracked row; untracked or without a database, as medium; a publisher's own
 * priority is left alone. The name set with tb_repo_set_ex rides on tierbus's own jobs too. */
static void test_route_sync_job(void **state) {
  world_t *w = *state;
  w->cfg.priority_sync_debounce_ms = 0;
  assert_int_equal(deliver(w, ADD, "w1", "rA", 1), TB_OK);
  int changed = 0;
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set_ex(&w->ctx, "rA", NULL, -1, "octo/a", "op-1", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_int_equal(changed, 1);
  (void)jobs(w); /* empties the outbox */
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set_ex(&w->ctx, "rA", "low", -1, NULL, "op-2", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  assert_non_null(strstr(jobs(w), "\"repository_name\":\"octo/a\""));
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set_ex(&w->ctx, "rA", "none", -1, NULL, "op-3", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
  (void)jobs(w);

  json_t *payload = json_pack("{s:s}", "repository_id", "rA");
  tb_publish_req_t req = {.event = "capture/repository.sync", .payload = payload};
  tb_repo_route_t rt;
  int routed = 0;
  assert_int_equal(tb_repo_route_sync_job(w->st, &w->cfg, &req, &rt, &routed), TB_OK);
  assert_int_equal(routed, 1);
  assert_int_equal(rt.tracked, 1);
  assert_string_equal(req.tier, "high");
  assert_int_equal(req.priority_score, 100);
  assert_int_equal(req.n_metadata, 4);
  assert_string_equal(req.metadata[0], "repository_priority");
  assert_string_equal(req.metadata[1], "high");
  assert_string_equal(req.metadata[3], "true");
  assert_string_equal(req.metadata[5], "1");
  assert_string_equal(req.metadata[7], "high");
  assert_string_equal(json_string_value(json_object_get(payload, "priority")),
                      "REPOSITORY_PRIORITY_HIGH");
  assert_int_equal(json_integer_value(json_object_get(payload, "priority_score")), 100);
  assert_string_equal(json_string_value(json_object_get(payload, "repository_name")), "octo/a");
  json_t *meta = json_object_get(payload, "metadata");
  assert_true(json_is_true(json_object_get(meta, "is_workspace_repo")));
  assert_int_equal(json_integer_value(json_object_get(meta, "workspace_count")), 1);
  tb_prepared_t p;
  assert_int_equal(tb_publish_prepare(&w->cfg, w->cat, &req, &p), TB_OK);
  assert_string_equal(p.tier, "high");
  assert_string_equal(p.subject, "tb.evt.high.workspace.repository-sync");
  tb_prepared_free(&p);
  json_decref(payload);

  /* Not tracked, and no database: medium, on normal. A name the publisher gave is kept. */
  for (int i = 0; i < 2; i++) {
    payload = json_pack("{s:s, s:s}", "repository_id", "rZ", "repository_name", "theirs/z");
    req = (tb_publish_req_t){.event = "capture/repository.sync", .payload = payload};
    assert_int_equal(tb_repo_route_sync_job(i ? NULL : w->st, &w->cfg, &req, &rt, &routed), TB_OK);
    assert_int_equal(routed, 1);
    assert_int_equal(rt.tracked, 0);
    assert_string_equal(req.tier, "normal");
    assert_int_equal(req.priority_score, 50);
    assert_string_equal(req.metadata[7], "none");
    assert_string_equal(json_string_value(json_object_get(payload, "repository_name")), "theirs/z");
    json_decref(payload);
  }

  /* The publisher's own priority (a tier, or the payload's) and other events: untouched. */
  payload = json_pack("{s:s}", "repository_id", "rA");
  req = (tb_publish_req_t){.event = "capture/repository.sync", .payload = payload, .tier = "low"};
  assert_int_equal(tb_repo_route_sync_job(w->st, &w->cfg, &req, &rt, &routed), TB_OK);
  assert_int_equal(routed, 0);
  assert_string_equal(req.tier, "low");
  assert_null(json_object_get(payload, "priority"));
  json_decref(payload);
  payload = json_pack("{s:s, s:i}", "repository_id", "rA", "priority_score", 25);
  req = (tb_publish_req_t){.event = "capture/repository.sync", .payload = payload};
  assert_int_equal(tb_repo_route_sync_job(w->st, &w->cfg, &req, &rt, &routed), TB_OK);
  assert_int_equal(routed, 0);
  assert_null(req.tier);
  json_decref(payload);
  payload = json_pack("{s:s, s:s}", "workspace_id", "w1", "repository_id", "rA");
  req = (tb_publish_req_t){.event = "WORKSPACE_REPO_ADDED", .payload = payload};
  assert_int_equal(tb_repo_route_sync_job(w->st, &w->cfg, &req, &rt, &routed), TB_OK);
  assert_int_equal(routed, 0);
  json_decref(payload);

  /* A name over its limit is refused, not cut. */
  char long_name[TB_REPO_NAME_MAX + 1];
  memset(long_name, 'n', TB_REPO_NAME_MAX);
  long_name[TB_REPO_NAME_MAX] = '\0';
  assert_int_equal(tb_store_begin(w->st), TB_OK);
  assert_int_equal(tb_repo_set_ex(&w->ctx, "rA", NULL, -1, long_name, "op-4", &changed),
                   TB_ERR_INVALID);
  long_name[TB_REPO_NAME_MAX - 1] = '\0'; /* 255: the longest allowed */
  assert_int_equal(tb_repo_set_ex(&w->ctx, "rA", NULL, -1, long_name, "op-5", &changed), TB_OK);
  assert_int_equal(tb_store_commit(w->st), TB_OK);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, world_setup, world_teardown)
  const struct CMUnitTest tests[] = {
      T(test_add_second_workspace_remove_one_then_both),
      T(test_removed_from_both_in_either_order),
      T(test_marked_low_and_override),
      T(test_job_tier_from_config),
      T(test_job_failure_keeps_membership),
      T(test_sync_fixes_exactly_the_drift),
      T(test_sync_boundaries),
      T(test_sync_two_retries),
      T(test_lease),
      T(test_lease_while_the_lock_is_busy),
      T(test_two_connections_one_runs),
      T(test_lost_lease_stops),
      T(test_sync_workflow_steps),
      T(test_workspace_add_sync),
      T(test_route_sync_job),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
