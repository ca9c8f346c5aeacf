/* Integration test harness: a temporary directory per test, a real nats-server -js on a free
 * loopback port (started, stopped, killed and restarted by PID), the tierbus binary run in the
 * foreground with a deadline or in the background, polling on the worker's SQLite file, and raw
 * cnats access for what the CLI cannot do (arbitrary bytes, reading a stream's messages).
 *
 * Every child process is recorded by PID; tb_h_destroy() (the cmocka teardown) and the watchdog
 * kill whatever is still alive, so that a failing or hanging test never leaves a server or a
 * worker behind. Nothing here kills by name. */
#ifndef TB_TESTS_SUPPORT_HARNESS_H
#define TB_TESTS_SUPPORT_HARNESS_H

#include <limits.h>
#include <nats/nats.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "bus/server.h"

struct tb_cluster;
#include "tierbus.h"

#define TB_H_PATH 1024

/* What a foreground run produced. */
typedef struct tb_h_result {
  int status;         /* exit code; 128 + signal when a signal ended it; -1 if it never ran */
  int timed_out;      /* 1 when the harness killed it at the deadline */
  int64_t elapsed_ms; /* wall time from start to exit */
  char *out;          /* captured stdout, NUL-terminated, never NULL after a run */
  char *err;          /* captured stderr, likewise */
} tb_h_result_t;

/* A process running in the background; its stdout and stderr go to files in the temp dir. */
typedef struct tb_h_child {
  pid_t pid;  /* 0 once reaped */
  int status; /* exit status once reaped (same encoding as tb_h_result_t.status) */
  char name[64];
  char out_path[TB_H_PATH];
  char err_path[TB_H_PATH];
} tb_h_child_t;

/* One test's world. */
typedef struct tb_h {
  char dir[TB_H_PATH];        /* mkdtemp under /tmp; removed by tb_h_destroy() */
  char db[TB_H_PATH];         /* <dir>/tierbus.db: the SQLite file every tierbus command shares */
  char config[TB_H_PATH];     /* --config given to tierbus; <source>/config/tierbus.yaml at first */
  char binary[TB_H_PATH];     /* $TB_BINARY */
  char source_dir[TB_H_PATH]; /* $TB_SOURCE_DIR */
  tb_server_t srv;            /* srv.pid > 0 while the server runs */
  int port;                   /* chosen once, kept across restarts */
  char url[256];              /* nats://127.0.0.1:<port>, or a cluster's URLs with commas */
  natsConnection *nc;         /* the test's own connection, opened on first use */
  jsCtx *js;
  int runs; /* numbers the capture files of foreground runs */
} tb_h_t;

/* Creates the temp dir and reads TB_BINARY / TB_SOURCE_DIR (falling back to the build-time
 * paths), and clears the TIERBUS_* environment so that the caller's shell cannot leak into a
 * test. NULL (after printing why) on failure. Caller frees with tb_h_destroy(). */
tb_h_t *tb_h_create(void);

/* Kills every child still running (SIGKILL, by PID), stops the server, closes the NATS
 * connection, prints any sanitizer report found in the children's captured stderr and removes
 * the temp dir (kept when $TB_KEEP_TMP is set). Accepts NULL. tb_h_finish() returns -1 when a
 * sanitizer report was found, else 0; tb_h_destroy() ignores that. */
void tb_h_destroy(tb_h_t *h);
int tb_h_finish(tb_h_t *h);

/* cmocka per-test fixtures built on tb_h_create() and tb_h_finish(): *state becomes the tb_h_t,
 * and a sanitizer report in any child fails the test at teardown. */
int tb_h_setup(void **state);
int tb_h_teardown(void **state);

/* Arms a watchdog: after |seconds| the process kills every recorded child and exits with 3. Set
 * it below the ctest TIMEOUT, because ctest's own kill cannot be caught and would leave the
 * nats-server child running. Also installs the same cleanup for SIGTERM and SIGINT. */
void tb_h_watchdog(int seconds);

/* Joins |name| to the temp dir into |buf|. */
void tb_h_path(const tb_h_t *h, const char *name, char *buf, size_t cap);

/* Writes |text| to <dir>/<name> and puts the path in |path| (may be NULL). TB_ERR_IO on
 * failure. */
tb_status tb_h_write_file(const tb_h_t *h, const char *name, const char *text, char *path,
                          size_t cap);

/* Writes |yaml| to <dir>/<name> and makes it the --config of every later tierbus command. */
tb_status tb_h_use_config(tb_h_t *h, const char *name, const char *yaml);

/* Writes the current config with the first occurrence of |from| replaced by |to| to <dir>/<name>
 * and uses it from then on ("repo_tier_high: high" -> "repo_tier_high: low"). TB_ERR_INVALID
 * (after printing why) when |from| is not in it, TB_ERR_IO when it cannot be read or written. */
tb_status tb_h_config_edit(tb_h_t *h, const char *name, const char *from, const char *to);

/* Opens <dir>/<name> for writing (path in |path|); NULL after printing why. */
FILE *tb_h_fopen(const tb_h_t *h, const char *name, char *path, size_t cap);

/* Writes an NDJSON batch of |count| capture/repository.sync events with ids <prefix>-<n> for n in
 * [first, first + count), on |tier| (NULL: high). That event's handler only writes the activity
 * log, so a bus test sees exactly one processed row per event and no workflow traffic (a
 * CLIENT_CREATED would start the client journey). */
tb_status tb_h_write_events(const tb_h_t *h, const char *name, const char *prefix, int first,
                            int count, const char *tier, char *path, size_t cap);

/* Reads a whole file; NULL if it cannot be read. Caller frees with free(). */
char *tb_h_read_file(const char *path);

/* ---------------------------------------------------------------- nats-server */

/* Picks the port (once) and sets h->url without starting anything: for tests that need a URL
 * where nothing listens yet. Returns the port, or -1. */
int tb_h_reserve_port(tb_h_t *h);

/* Starts nats-server -js on h->port (reserved on first use) with <dir>/nats as its store, so a
 * restart finds the same streams. TB_ERR_IO (after printing the server's complaint) on
 * failure. */
tb_status tb_h_server_start(tb_h_t *h);

/* SIGTERM and reap (SIGKILL after 5 s); closes the test's own NATS connection first. */
void tb_h_server_stop(tb_h_t *h);

/* SIGKILL and reap. */
void tb_h_server_kill(tb_h_t *h);

/* ---------------------------------------------------------------- running tierbus */

/* Runs argv (argv[0] is the program path, NULL-terminated) and waits up to |timeout_ms|, killing
 * it (SIGKILL) when it overruns. Fills |r|; release it with tb_h_result_free(). Returns
 * r->status. */
int tb_h_execv(tb_h_t *h, tb_h_result_t *r, int timeout_ms, const char *const *argv);

/* Runs `tierbus ARGS...` (NULL-terminated) exactly as given: no common options are added. */
int tb_h_tierbus_raw(tb_h_t *h, tb_h_result_t *r, int timeout_ms, ...);

/* Runs `tierbus CMD --nats-url <url> --db <db> --config <config> ARGS...` (NULL-terminated). */
int tb_h_tierbus(tb_h_t *h, tb_h_result_t *r, int timeout_ms, const char *cmd, ...);

void tb_h_result_free(tb_h_result_t *r);

/* Starts `tierbus CMD --nats-url .. --db .. --config .. --log-level info ARGS...` in the
 * background, with its output in <dir>/<name>.out and <dir>/<name>.err. TB_ERR_IO on failure. */
tb_status tb_h_spawn(tb_h_t *h, tb_h_child_t *c, const char *name, const char *cmd, ...);

/* Starts `tierbus ARGS...` (NULL-terminated) in the background exactly as given, no common
 * options added (for `dev`, which starts its own server). */
tb_status tb_h_spawn_raw(tb_h_t *h, tb_h_child_t *c, const char *name, ...);

/* Records |pid|, a process the test did not start itself (dev's nats-server), so that teardown
 * and the watchdog kill it by PID if the test ends early. */
void tb_h_track_pid(pid_t pid);

/* 1 while the child runs (it is reaped here when it has exited). */
int tb_h_child_alive(tb_h_child_t *c);

/* Waits up to |timeout_ms| for the child to exit by itself; its status, or -1 if it still
 * runs. */
int tb_h_child_wait(tb_h_child_t *c, int timeout_ms);

/* SIGTERM, then waits up to |timeout_ms| for the exit (SIGKILL after that, status then 128+9).
 * Returns the exit status. */
int tb_h_child_term(tb_h_child_t *c, int timeout_ms);

/* SIGKILL at once and reap. */
void tb_h_child_kill(tb_h_child_t *c);

/* The child's stderr so far; caller frees with free(). Never NULL. */
char *tb_h_child_stderr(const tb_h_child_t *c);

/* Prints the last |lines| lines of every background child's stderr and of the server log: call
 * it before failing on a timeout, so that the ctest output shows why. */
void tb_h_dump_logs(const tb_h_t *h, int lines);

/* ---------------------------------------------------------------- SQLite */

/* Opens the worker's database read-only with a busy timeout. NULL (quietly) if the file is not
 * there yet. Caller closes with sqlite3_close(). */
sqlite3 *tb_h_db_open(const tb_h_t *h);

/* First column of the first row of the query (printf-style), opening and closing the database
 * each time so that no read transaction pins the worker's WAL. -1 when the database or the table
 * is not there yet or the query fails (the error is printed unless it is "no such table"). */
int64_t tb_h_sql_int(const tb_h_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Text of the first column of the first row; NULL when there is no row. Caller frees. */
char *tb_h_sql_text(const tb_h_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Polls the query every 10 ms until it returns >= |min|, |timeout_ms| passes, or a background
 * child that was not stopped exits (a crashed worker fails the wait at once). Returns the last
 * value (so the caller asserts on an exact count). Dumps the logs when it gives up. */
int64_t tb_h_wait_sql(const tb_h_t *h, int64_t min, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------------- raw NATS */

/* The test's own JetStream context, connecting on first use. NULL (after printing why) when the
 * server does not answer. */
jsCtx *tb_h_js(tb_h_t *h);

/* Publishes |len| bytes to |subject| with header Nats-Msg-Id |msg_id| (none when NULL) and waits
 * for the stream's ack. Returns 0, or -1 after printing the cnats error. */
int tb_h_publish_raw(tb_h_t *h, const char *subject, const char *msg_id, const void *data,
                     size_t len);

/* Messages in |stream| now; -1 if the stream does not exist or the server does not answer. */
int64_t tb_h_stream_msgs(tb_h_t *h, const char *stream);

/* Messages now in every stream of |tier| ("high"), summed: the streams whose subjects all lie
 * under tb.evt.<tier>., one per domain (TB_HIGH_CRM, TB_HIGH_WORKSPACE, ...). For an assertion
 * about a whole tier ("nothing reached critical") rather than one domain's stream. -1 if the tier
 * has no stream or the server does not answer. */
int64_t tb_h_tier_msgs(tb_h_t *h, const char *tier);

/* Messages in every tier stream of the shipped tiers (streams that do not answer count 0). */
int64_t tb_h_all_tier_msgs(tb_h_t *h);

/* Waits up to |timeout_ms| until every message of the tier streams is processed with nothing on
 * its way: the outbox empty before and after the counts, and the log unchanged across them (a
 * handler's follow-up sits in the outbox from its commit until the relay has it in the log, so
 * one read of each can see a drained log just before the follow-up lands). Returns 1 when so;
 * *msgs, *done and *outbox hold the last reads (log, processed rows, outbox rows). */
int tb_h_wait_settled(tb_h_t *h, int timeout_ms, int64_t *msgs, int64_t *done, int64_t *outbox);

/* The leader of |stream| as the cluster reports it, as a new string; NULL when none is reported
 * within 20 s (an election, or the test's connection moving off a killed node, takes seconds). */
char *tb_h_stream_leader(tb_h_t *h, const char *stream);

/* `tierbus cluster up --nodes 3 --dir DIR` (DIR = <test dir>/cluster): every node it started is
 * tracked (teardown and the watchdog kill them by pid), *c is read back from DIR/cluster.json,
 * and the harness's URL becomes the cluster's. TB_ERR_IO, with the command's output on stderr,
 * unless three nodes came up. */
tb_status tb_h_cluster_up(tb_h_t *h, struct tb_cluster *c);

/* Polls tb_h_stream_msgs() like tb_h_wait_sql() polls its query; returns the last count. */
int64_t tb_h_wait_stream(tb_h_t *h, const char *stream, int64_t min, int timeout_ms);

/* Figures of durable |consumer| on |stream|, or summed over every consumer of the stream when
 * |consumer| is NULL: deliveries made so far, redeliveries included
 * (Delivered.Consumer), messages not yet delivered (NumPending) and delivered but unacked
 * (NumAckPending). Any pointer may be NULL. Returns 0, or -1 if the consumer cannot be read. */
int tb_h_consumer_info(tb_h_t *h, const char *stream, const char *consumer, uint64_t *delivered,
                       uint64_t *pending, int64_t *ack_pending);

/* Stream message at |seq| with its headers (js_GetMsg); NULL if absent. Caller frees with
 * natsMsg_Destroy(). */
natsMsg *tb_h_stream_get(tb_h_t *h, const char *stream, uint64_t seq);

/* Header value of |m| (borrowed from the message), or "" when absent. */
const char *tb_h_header(natsMsg *m, const char *key);

/* ---------------------------------------------------------------- config */

/* YAML for an `event_tiers:` section that puts every catalogue event on |tier|, for test configs
 * whose tiers differ from the catalogue's defaults. Events whose names the config cannot hold as
 * keys (they contain '/' or '.') are left out: the test config must then define their default
 * tiers. Caller frees with free(); NULL on failure. */
char *tb_h_event_tiers_yaml(const tb_h_t *h, const char *tier);

/* Monotonic milliseconds and a sleep, for test pacing. */
int64_t tb_h_now_ms(void);
void tb_h_sleep_ms(int ms);

#endif
