/* Integration: `tierbus publish --file` rides out a nats-server killed under it. The server is
 * killed with SIGKILL while the command publishes a 50,000-line file asynchronously and restarted
 * on the same store and port: the acks lost with the server come back as per-message ack
 * timeouts, those lines are sent again under their ids, and the command ends, in bounded time,
 * with exit 0 and exact counts, with every line in the stream exactly once (read back from the
 * stream by id). A server that never comes back ends the command too, with exit 1 and the counts
 * of what was and was not acknowledged. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define LINES 50000
#define STREAM "TB_HIGH_WORKSPACE"
#define SUBJECTS "tb.evt.high.workspace.>"
/* The kill comes once the stream holds this many of the lines: the command is publishing. */
#define KILL_AT (LINES / 5)
/* How long the server stays frozen before the kill, then dead. */
#define FREEZE_MS 200
#define DOWN_MS 500
/* The command's bound with a server that comes back: its ack wait (5 s) for the lost acks, a
 * round of resends and their acks, and slack for a loaded 2-core machine (ASan included). */
#define FINISH_MS 45000

/* Waits until the stream holds at least |n| messages or the child has exited. Returns the count
 * last read (-1 when the stream could not be read). */
static int64_t wait_stored(tb_h_t *h, tb_h_child_t *c, int64_t n, int timeout_ms) {
  int64_t deadline = tb_h_now_ms() + timeout_ms, got = -1;
  while (tb_h_now_ms() < deadline && tb_h_child_alive(c)) {
    got = tb_h_stream_msgs(h, STREAM);
    if (got >= n) break;
    tb_h_sleep_ms(1);
  }
  return got;
}

/* Reads the whole stream back through an ordered consumer and counts each line's id: seen[i] is
 * how many messages carry the id of line i ("pub-<i>"). Returns the number of messages read, -1
 * when the stream could not be read; ids that are not the file's count in *foreign. */
static int64_t read_back(tb_h_t *h, unsigned char *seen, int64_t *foreign) {
  jsCtx *js = tb_h_js(h);
  if (js == NULL) return -1;
  int64_t total = tb_h_stream_msgs(h, STREAM);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = STREAM;
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverAll;
  natsSubscription *sub = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_SubscribeSync(&sub, js, SUBJECTS, NULL, &so, &jerr);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, 256 * 1024 * 1024);
  int64_t read = 0;
  *foreign = 0;
  while (s == NATS_OK && read < total) {
    natsMsg *m = NULL;
    s = natsSubscription_NextMsg(&m, sub, 10000);
    if (s != NATS_OK) break;
    const char *id = tb_h_header(m, "Nats-Msg-Id");
    int i = strncmp(id, "pub-", 4) == 0 ? atoi(id + 4) : -1;
    if (i >= 0 && i < LINES && seen[i] < 255)
      seen[i]++;
    else
      (*foreign)++;
    read++;
    natsMsg_Destroy(m);
  }
  if (s != NATS_OK)
    print_error("read back %s: %s (js error %d) after %lld of %lld\n", STREAM,
                natsStatus_GetText(s), (int)jerr, (long long)read, (long long)total);
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return s == NATS_OK ? read : -1;
}

static void test_publish_rides_out_kill(void **state) {
  tb_h_t *h = *state;
  char path[TB_H_PATH];
  tb_assert_ok(tb_h_write_events(h, "lines.ndjson", "pub", 0, LINES, NULL, path, sizeof(path)));
  tb_it_start_and_init(h);

  tb_h_child_t pub;
  int64_t t0 = tb_h_now_ms();
  tb_assert_ok(tb_h_spawn(h, &pub, "publish", "publish", "--file", path, NULL));
  /* The command reads and encodes the whole file before it connects: wait for the stream. */
  int64_t at_kill = wait_stored(h, &pub, KILL_AT, 30000);
  int alive_at_kill = tb_h_child_alive(&pub);
  /* Freeze the server before the kill, so that acks stop while the command goes on sending: at
   * the kill, lines are in flight whatever the machine's speed. Killed outright, a slow command
   * (ASan in CI) could have had every line it sent acknowledged, and nothing would be lost. */
  assert_int_equal(kill(h->srv.pid, SIGSTOP), 0);
  tb_h_sleep_ms(FREEZE_MS);
  tb_h_server_kill(h);
  int64_t t_kill = tb_h_now_ms();
  tb_h_sleep_ms(DOWN_MS);
  tb_assert_ok(tb_h_server_start(h));
  print_message("nats-server killed with %lld of %d lines in the stream, %lld ms after the command "
                "started; restarted %d ms later\n",
                (long long)at_kill, LINES, (long long)(t_kill - t0), DOWN_MS);
  /* Mid-way: the command was still publishing, and part of the file was in. */
  assert_true(alive_at_kill);
  assert_true(at_kill >= KILL_AT && at_kill < LINES);

  int status = tb_h_child_wait(&pub, FINISH_MS);
  int64_t t_done = tb_h_now_ms();
  char *out = tb_h_read_file(pub.out_path), *err = tb_h_child_stderr(&pub);
  if (status != 0)
    print_error("publish: exit %d after %lld ms\n--- stdout ---\n%s\n--- stderr ---\n%s\n", status,
                (long long)(t_done - t0), out ? out : "", err);
  assert_int_equal(status, 0);
  print_message("publish ended %lld ms after the kill: %s", (long long)(t_done - t_kill), out);
  /* Every line acknowledged, the lost acks' lines sent again (the kill cost some), no failure. */
  tb_assert_contains(out, "published 50000 events");
  tb_assert_contains(out, " 0 failed; ");
  tb_assert_contains(out, "sent again after a lost ack");
  long long fresh = -1, dups = -1, again = -1, again_dups = -1;
  const char *counts = strstr(out, "/s): ");
  assert_non_null(counts);
  assert_int_equal(sscanf(counts,
                          "/s): %lld new, %lld duplicates, 0 failed; %lld sent again after "
                          "a lost ack (%lld of them already stored)",
                          &fresh, &dups, &again, &again_dups),
                   4);
  assert_int_equal(fresh + dups, LINES);
  assert_true(again > 0);
  /* The stream was empty: every duplicate is a line stored before the kill whose ack was lost,
   * so none is named as a duplicate line of the file (those are the user's, not the resends). */
  assert_int_equal(dups, again_dups);
  tb_assert_not_contains(err, ": duplicate: id ");
  free(out);
  free(err);

  /* Every line in the stream exactly once. */
  assert_int_equal(tb_h_stream_msgs(h, STREAM), LINES);
  unsigned char *seen = calloc(LINES, 1);
  assert_non_null(seen);
  int64_t foreign = -1;
  assert_int_equal(read_back(h, seen, &foreign), LINES);
  assert_int_equal(foreign, 0);
  int missing = 0, twice = 0;
  for (int i = 0; i < LINES; i++) {
    missing += seen[i] == 0;
    twice += seen[i] > 1;
  }
  free(seen);
  assert_int_equal(missing, 0);
  assert_int_equal(twice, 0);
}

/* A server that is killed and never comes back: the command gives up once the server has not
 * answered for publish_give_up (5 s here, to keep the test short; 30 s shipped), says how many
 * lines were acknowledged and how many not (naming the first ones), and exits 1. */
static void test_publish_server_gone(void **state) {
  tb_h_t *h = *state;
  char path[TB_H_PATH];
  tb_assert_ok(tb_h_write_events(h, "lines.ndjson", "pub", 0, LINES, NULL, path, sizeof(path)));
  tb_it_start_and_init(h);
  tb_h_child_t pub;
  tb_assert_ok(tb_h_spawn(h, &pub, "publish", "publish", "--set", "publish_give_up=5s", "--file",
                          path, NULL));
  int64_t at_kill = wait_stored(h, &pub, KILL_AT, 30000);
  int alive_at_kill = tb_h_child_alive(&pub);
  tb_h_server_kill(h);
  int64_t t_kill = tb_h_now_ms();
  assert_true(alive_at_kill);
  assert_true(at_kill >= KILL_AT && at_kill < LINES);
  /* 5 s without an answer, then the ack wait (5 s) of what is in flight, plus slack. */
  int status = tb_h_child_wait(&pub, 30000);
  int64_t took = tb_h_now_ms() - t_kill;
  char *err = tb_h_child_stderr(&pub);
  print_message("publish ended %lld ms after the kill, exit %d\n", (long long)took, status);
  if (status != 1) print_error("--- stderr ---\n%s\n", err);
  assert_int_equal(status, 1);
  assert_true(took >= 5000);
  tb_assert_contains(err, "not acknowledged by the stream");
  tb_assert_contains(err, "no answer from the server for 5 s");
  tb_assert_contains(err, "(id pub-");
  /* The counts add up to the file. */
  long long failed = -1, acked = -1, fresh = -1, dups = -1;
  const char *line = strstr(err, "error: ");
  assert_non_null(line);
  assert_int_equal(sscanf(line, "error: %lld of 50000 events not acknowledged", &failed), 1);
  const char *rest = strstr(line, "), ");
  assert_non_null(rest);
  assert_int_equal(
      sscanf(rest, "), %lld acknowledged (%lld new, %lld duplicates)", &acked, &fresh, &dups), 3);
  assert_true(failed > 0);
  assert_int_equal(failed + acked, LINES);
  assert_int_equal(fresh + dups, acked);
  assert_true(acked > 0);
  free(err);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_publish_rides_out_kill, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_publish_server_gone, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
