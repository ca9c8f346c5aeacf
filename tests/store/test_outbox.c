/* Unit tests for the transactional outbox (src/store/outbox.c) and the handler's emit
 * (src/engine/emit.c), on real SQLite: in-memory for the table's rules, a temporary file where a
 * second connection or a reopen is part of the point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db_fixture.h"

#include "core/clock.h"
#include "core/status.h"
#include "api/handler.h"
#include "store/store.h"

/* The far future: every row is due. */
#define ALL_DUE INT64_MAX

static tb_store_t *open_mem(void) {
  tb_store_t *st = NULL;
  assert_int_equal(tb_store_open(&st, ":memory:"), TB_OK);
  return st;
}

static int64_t count(tb_store_t *st) {
  int64_t n = -1;
  assert_int_equal(tb_store_outbox_count(st, &n), TB_OK);
  return n;
}

/* Adds one row in its own transaction. */
static void add_committed(tb_store_t *st, const char *subject, const char *id, const char *data,
                          const char *headers) {
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, subject, id, data, strlen(data), headers), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
}

/* ------------------------------------------------------------------------------------------------
 * Transactions
 * --------------------------------------------------------------------------------------------- */

static void test_rollback_leaves_no_row(void **state) {
  tb_store_t *st = open_mem();
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.email.send", "m1", "x", 1, NULL), TB_OK);
  assert_int_equal(count(st), 1); /* visible inside the transaction */
  assert_int_equal(tb_store_rollback(st), TB_OK);
  assert_int_equal(count(st), 0);
  tb_outbox_row_t *rows = (tb_outbox_row_t *)1;
  int n = -1;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_null(rows);
  assert_int_equal(n, 0);
  tb_store_close(st);
}

static void test_commit_then_next_returns_row(void **state) {
  tb_store_t *st = open_mem();
  int64_t before = tb_wall_us();
  add_committed(st, "tb.cmd.email.send", "m1", "hello", "{\"Tb-Cause-Id\":\"e1\"}");
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, tb_wall_us(), 10, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_true(rows[0].id > 0);
  assert_string_equal(rows[0].msg_id, "m1");
  assert_string_equal(rows[0].subject, "tb.cmd.email.send");
  assert_int_equal(rows[0].len, 5);
  assert_memory_equal(rows[0].payload, "hello", 5);
  assert_string_equal(rows[0].headers_json, "{\"Tb-Cause-Id\":\"e1\"}");
  assert_true(rows[0].created_us >= before && rows[0].created_us <= tb_wall_us());
  assert_int_equal(rows[0].attempts, 0);
  assert_null(rows[0].last_error);
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

/* The relay reads on its own connection: it must not see a row before the writer commits. */
static void test_other_connection_sees_only_committed(void **state) {
  db_fixture_t *f = *state;
  tb_store_t *writer = NULL, *reader = NULL;
  assert_int_equal(tb_store_open(&writer, f->path), TB_OK);
  assert_int_equal(tb_store_open(&reader, f->path), TB_OK);
  assert_int_equal(tb_store_begin(writer), TB_OK);
  assert_int_equal(tb_store_outbox_add(writer, "tb.cmd.a.b", "m1", "1", 1, NULL), TB_OK);
  assert_int_equal(count(reader), 0);
  assert_int_equal(tb_store_commit(writer), TB_OK);
  assert_int_equal(count(reader), 1);
  int version = tb_store_schema_version(writer);
  tb_store_close(writer);
  tb_store_close(reader);

  /* Durable: a new process finds it. */
  tb_store_t *again = NULL;
  assert_int_equal(tb_store_open(&again, f->path), TB_OK);
  assert_int_equal(tb_store_schema_version(again), version);
  assert_int_equal(count(again), 1);
  tb_store_close(again);
}

/* ------------------------------------------------------------------------------------------------
 * Rows
 * --------------------------------------------------------------------------------------------- */

static void test_duplicate_msg_id_is_one_row(void **state) {
  tb_store_t *st = open_mem();
  add_committed(st, "tb.cmd.a.b", "m1", "first", NULL);
  add_committed(st, "tb.cmd.other.x", "m1", "second", "{\"k\":\"v\"}");
  /* And twice inside one transaction. */
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", "m2", "a", 1, NULL), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", "m2", "b", 1, NULL), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  assert_int_equal(count(st), 2);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 2);
  assert_string_equal(rows[0].msg_id, "m1"); /* the first add wins, whole */
  assert_string_equal(rows[0].subject, "tb.cmd.a.b");
  assert_int_equal(rows[0].len, 5);
  assert_memory_equal(rows[0].payload, "first", 5);
  assert_null(rows[0].headers_json);
  assert_string_equal(rows[1].msg_id, "m2");
  assert_memory_equal(rows[1].payload, "a", 1);
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

static void test_delete(void **state) {
  tb_store_t *st = open_mem();
  add_committed(st, "tb.cmd.a.b", "m1", "1", NULL);
  add_committed(st, "tb.cmd.a.b", "m2", "2", NULL);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 2);
  int64_t first = rows[0].id;
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_delete(st, first), TB_OK);
  assert_int_equal(count(st), 1);
  /* Gone already (another relay delivered it): not an error, nothing else removed. */
  assert_int_equal(tb_store_outbox_delete(st, first), TB_OK);
  assert_int_equal(count(st), 1);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].msg_id, "m2");
  tb_store_outbox_free(rows, n);
  /* A deleted id may be added again later (a new follow-up with a reused id is the caller's
   * business; the stream's window decides whether it goes out). */
  add_committed(st, "tb.cmd.a.b", "m1", "1", NULL);
  assert_int_equal(count(st), 2);
  tb_store_close(st);
}

/* Two relays (two worker processes) can both read the newest row. When the first deletes it and
 * a new follow-up is added, the second's late delete by the old id must not remove the new row:
 * ids are never reused. */
static void test_deleted_id_is_not_reused(void **state) {
  tb_store_t *st = open_mem();
  add_committed(st, "tb.cmd.a.b", "step-2", "2", NULL);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  int64_t newest = rows[0].id;
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_delete(st, newest), TB_OK); /* relay A delivered it */
  add_committed(st, "tb.cmd.a.b", "step-3", "3", NULL);        /* the next step's follow-up */
  assert_int_equal(tb_store_outbox_delete(st, newest), TB_OK); /* relay B, late, same id */
  assert_int_equal(count(st), 1);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].msg_id, "step-3");
  assert_true(rows[0].id > newest);
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

static void test_failed_counts_and_holds_back(void **state) {
  tb_store_t *st = open_mem();
  add_committed(st, "tb.cmd.a.b", "m1", "1", NULL);
  add_committed(st, "tb.cmd.a.b", "m2", "2", NULL);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 1, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  int64_t id = rows[0].id;
  tb_store_outbox_free(rows, n);

  const int64_t retry_at = 5000000;
  assert_int_equal(tb_store_outbox_failed(st, id, "publish: no server", retry_at), TB_OK);
  assert_int_equal(tb_store_outbox_failed(st, id, "publish: timeout", retry_at), TB_OK);
  /* One microsecond before its retry time it is held back, and m2 behind it is not. */
  assert_int_equal(tb_store_outbox_next(st, retry_at - 1, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].msg_id, "m2");
  assert_int_equal(rows[0].attempts, 0);
  tb_store_outbox_free(rows, n);
  /* At its retry time exactly it is due again, still first. */
  assert_int_equal(tb_store_outbox_next(st, retry_at, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 2);
  assert_int_equal(rows[0].id, id);
  assert_int_equal(rows[0].attempts, 2);
  assert_string_equal(rows[0].last_error, "publish: timeout");
  tb_store_outbox_free(rows, n);
  /* An empty error is stored as NULL; an unknown id is not an error. */
  assert_int_equal(tb_store_outbox_failed(st, id, "", 0), TB_OK);
  assert_int_equal(tb_store_outbox_failed(st, id + 1000, "x", 0), TB_OK);
  assert_int_equal(tb_store_outbox_next(st, 0, 1, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_int_equal(rows[0].attempts, 3);
  assert_null(rows[0].last_error);
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

static void test_oldest_first_and_limit(void **state) {
  tb_store_t *st = open_mem();
  const char *ids[] = {"z-last-alphabetically", "a-first", "m-middle", "b", "y"};
  assert_int_equal(tb_store_begin(st), TB_OK);
  for (int i = 0; i < 5; i++)
    assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", ids[i], "p", 1, NULL), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 5, &rows, &n), TB_OK);
  assert_int_equal(n, 5);
  for (int i = 0; i < 5; i++) {
    assert_string_equal(rows[i].msg_id, ids[i]);
    if (i > 0) assert_true(rows[i].id > rows[i - 1].id);
  }
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 1, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].msg_id, ids[0]);
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 4, &rows, &n), TB_OK);
  assert_int_equal(n, 4);
  assert_string_equal(rows[3].msg_id, ids[3]);
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 100, &rows, &n), TB_OK);
  assert_int_equal(n, 5);
  tb_store_outbox_free(rows, n);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 0, &rows, &n), TB_ERR_INVALID);
  assert_null(rows);
  assert_int_equal(n, 0);
  tb_store_close(st);
}

/* More rows than the first allocation (16) so that the array grows. */
static void test_next_grows(void **state) {
  tb_store_t *st = open_mem();
  assert_int_equal(tb_store_begin(st), TB_OK);
  for (int i = 0; i < 40; i++) {
    char id[16];
    snprintf(id, sizeof(id), "m%02d", i);
    assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", id, id, strlen(id), NULL), TB_OK);
  }
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 33, &rows, &n), TB_OK);
  assert_int_equal(n, 33);
  assert_string_equal(rows[32].msg_id, "m32");
  assert_memory_equal(rows[32].payload, "m32", 3);
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

static void test_empty_payload(void **state) {
  tb_store_t *st = open_mem();
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", "m1", NULL, 0, NULL), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", "m2", "", 0, NULL), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(rows[i].len, 0);
    assert_non_null(rows[i].payload);
  }
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

static void expect_invalid(tb_store_t *st, const char *subject, const char *id, const char *hdrs,
                           const char *detail_part) {
  tb_status s = tb_store_outbox_add(st, subject, id, "p", 1, hdrs);
  if (s != TB_ERR_INVALID)
    fail_msg("add(%s, %s, %s) = %s, expected ERR_INVALID", subject ? subject : "NULL",
             id ? id : "NULL", hdrs ? hdrs : "NULL", tb_err_name(s));
  if (strstr(tb_errdetail(), detail_part) == NULL)
    fail_msg("detail '%s' does not contain '%s'", tb_errdetail(), detail_part);
}

static void test_rejects_bad_input(void **state) {
  tb_store_t *st = open_mem();
  assert_int_equal(tb_store_begin(st), TB_OK);
  expect_invalid(st, "tb.cmd.a.b", "", NULL, "empty msg_id");
  expect_invalid(st, "tb.cmd.a.b", NULL, NULL, "empty msg_id");
  expect_invalid(st, "", "m1", NULL, "empty subject");
  expect_invalid(st, NULL, "m1", NULL, "empty subject");
  expect_invalid(st, "tb.cmd.*", "m1", NULL, "wildcard");
  expect_invalid(st, "tb.cmd.>", "m1", NULL, "wildcard");
  expect_invalid(st, "tb..cmd", "m1", NULL, "empty token");
  expect_invalid(st, ".tb.cmd", "m1", NULL, "empty token");
  expect_invalid(st, "tb.cmd.", "m1", NULL, "empty token");
  expect_invalid(st, "tb.cmd.a b", "m1", NULL, "whitespace");
  expect_invalid(st, "tb.cmd.a.b", "m1", "{\"a\":", "not valid JSON");
  expect_invalid(st, "tb.cmd.a.b", "m1", "[\"a\"]", "not array");
  expect_invalid(st, "tb.cmd.a.b", "m1", "\"s\"", "not text");
  expect_invalid(st, "tb.cmd.a.b", "m1", "{\"ok\":\"v\",\"n\":1}", "header 'n' is a JSON integer");
  expect_invalid(st, "tb.cmd.a.b", "m1", "{\"o\":{}}", "header 'o' is a JSON object");
  expect_invalid(st, "tb.cmd.a.b", "m1", "{\"nats-msg-id\":\"x\"}", "Nats-Msg-Id");
  expect_invalid(st, "tb.cmd.a.b", "m1", "{\"\":\"x\"}", "empty name");
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", "m1", NULL, 3, NULL), TB_ERR_INVALID);
  assert_int_equal(count(st), 0);
  /* Boundaries that are fine: a one-token subject, a '*' inside a token, an empty object. */
  assert_int_equal(tb_store_outbox_add(st, "x", "ok1", "p", 1, NULL), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.a*b.c", "ok2", "p", 1, NULL), TB_OK);
  assert_int_equal(tb_store_outbox_add(st, "tb.cmd.a.b", "ok3", "p", 1, "{}"), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  assert_int_equal(count(st), 3);
  tb_store_close(st);
}

/* ------------------------------------------------------------------------------------------------
 * Handler emit
 * --------------------------------------------------------------------------------------------- */

static void test_emit_rolled_back_savepoint_leaves_nothing(void **state) {
  tb_store_t *st = open_mem();
  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  env.id = "evt-1";
  env.correlation_id = "corr-9";
  tb_decoded_t d = {.env = &env};
  tb_handler_ctx_t ctx = {.store = st, .msg = &d, .tier = "normal"};

  assert_int_equal(tb_store_begin(st), TB_OK);
  /* A failing handler: its emit is undone with its savepoint. */
  assert_int_equal(tb_store_savepoint(st), TB_OK);
  assert_int_equal(tb_handler_emit(&ctx, "tb.cmd.email.send", "wf1:welcome:1", "x", 1), TB_OK);
  assert_int_equal(tb_store_rollback_to(st), TB_OK);
  /* A succeeding one in the same batch keeps its row. */
  assert_int_equal(tb_store_savepoint(st), TB_OK);
  assert_int_equal(tb_handler_emit(&ctx, "tb.cmd.email.send", "wf1:welcome:2", "yz", 2), TB_OK);
  assert_int_equal(tb_handler_emit(&ctx, "tb.cmd.email.send", "wf1:welcome:2", "yz", 2), TB_OK);
  assert_int_equal(tb_handler_emit(&ctx, "tb.cmd.x", "", "yz", 2), TB_ERR_INVALID);
  assert_int_equal(tb_store_release(st), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);

  tb_outbox_row_t *rows = NULL;
  int n = 0;
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].msg_id, "wf1:welcome:2");
  assert_memory_equal(rows[0].payload, "yz", 2);
  assert_string_equal(rows[0].headers_json,
                      "{\"Tb-Cause-Id\":\"evt-1\",\"Tb-Correlation-Id\":\"corr-9\"}");
  tb_store_outbox_free(rows, n);

  /* No correlation id: only the cause. No message at all: no headers. */
  env.correlation_id = "";
  assert_int_equal(tb_store_begin(st), TB_OK);
  assert_int_equal(tb_handler_emit(&ctx, "tb.cmd.a.b", "m-cause-only", "", 0), TB_OK);
  tb_handler_ctx_t bare = {.store = st};
  assert_int_equal(tb_handler_emit(&bare, "tb.cmd.a.b", "m-bare", "", 0), TB_OK);
  assert_int_equal(tb_store_commit(st), TB_OK);
  assert_int_equal(tb_store_outbox_next(st, ALL_DUE, 10, &rows, &n), TB_OK);
  assert_int_equal(n, 3);
  assert_string_equal(rows[1].headers_json, "{\"Tb-Cause-Id\":\"evt-1\"}");
  assert_null(rows[2].headers_json);
  tb_store_outbox_free(rows, n);
  tb_store_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rollback_leaves_no_row),
      cmocka_unit_test(test_commit_then_next_returns_row),
      cmocka_unit_test_setup_teardown(test_other_connection_sees_only_committed, db_fixture_setup,
                                      db_fixture_teardown),
      cmocka_unit_test(test_duplicate_msg_id_is_one_row),
      cmocka_unit_test(test_delete),
      cmocka_unit_test(test_deleted_id_is_not_reused),
      cmocka_unit_test(test_failed_counts_and_holds_back),
      cmocka_unit_test(test_oldest_first_and_limit),
      cmocka_unit_test(test_next_grows),
      cmocka_unit_test(test_empty_payload),
      cmocka_unit_test(test_rejects_bad_input),
      cmocka_unit_test(test_emit_rolled_back_savepoint_leaves_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
