/* The outbox relay thread: reads due outbox rows on its own SQLite connection, publishes each with
 * its msg_id as Nats-Msg-Id, and records the outcome: the acked rows' deletes are handed to the
 * engine's next batch transaction (or, when none comes soon, written in one of its own), failed
 * rows get attempts and a retry time at once. It is a decider, so it logs: once per failing row,
 * and once per NATS outage rather than once per row of it. */
#include "engine/relay.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "store/store.h"

struct tb_relay {
  tb_store_t *store; /* owned: this thread's connection */
  tb_bus_t *bus;     /* borrowed */
  int interval_ms;
  tb_bgthread_t *thread;     /* owned */
  int64_t drain_deadline_us; /* monotonic; written by tb_relay_stop before it stops the thread */
  pthread_mutex_t mu;        /* guards stats only */
  tb_relay_stats_t stats;
  /* Relay thread only: */
  int down_streak; /* consecutive passes that found NATS unreachable */
  /* Rows the stream acked whose delete is not committed yet (tb_relay_take_acked): |acked| wait
   * for a taker, |taken| are in a taker's open transaction. Neither is published again. */
  pthread_mutex_t ack_mu;
  int64_t *acked, *taken;
  int n_acked, n_taken, cap; /* both arrays hold |cap| ids */
  int64_t acked_since_us;    /* monotonic: when the oldest of |acked| was acked */
};

/* ------------------------------------------------------------------------------------------------
 * Acked rows waiting for their delete
 * --------------------------------------------------------------------------------------------- */

/* 1 when row |id| is acked and its delete not committed: publishing it again would only make a
 * duplicate for the stream to drop. Called with ack_mu held. */
static int awaiting_delete(const tb_relay_t *r, int64_t id) {
  for (int i = 0; i < r->n_acked; i++)
    if (r->acked[i] == id) return 1;
  for (int i = 0; i < r->n_taken; i++)
    if (r->taken[i] == id) return 1;
  return 0;
}

/* Adds the acked row |id|. Returns 0 when there is no room (the caller deletes it itself). */
static int add_acked(tb_relay_t *r, int64_t id) {
  pthread_mutex_lock(&r->ack_mu);
  int ok = r->n_acked + r->n_taken < r->cap;
  if (ok) {
    if (r->n_acked == 0) r->acked_since_us = tb_mono_us();
    r->acked[r->n_acked++] = id;
  }
  pthread_mutex_unlock(&r->ack_mu);
  return ok;
}

int tb_relay_take_acked(tb_relay_t *r, const int64_t **ids) {
  *ids = NULL;
  if (r == NULL) return 0;
  pthread_mutex_lock(&r->ack_mu);
  int n = 0;
  if (r->n_taken == 0 && r->n_acked > 0) {
    int64_t *swap = r->taken;
    r->taken = r->acked;
    r->acked = swap;
    r->n_taken = n = r->n_acked;
    r->n_acked = 0;
    *ids = r->taken;
  }
  pthread_mutex_unlock(&r->ack_mu);
  return n;
}

void tb_relay_acked_settled(tb_relay_t *r, int committed) {
  if (r == NULL) return;
  pthread_mutex_lock(&r->ack_mu);
  if (!committed && r->n_taken > 0) { /* back in front of what was acked since */
    memmove(r->acked + r->n_taken, r->acked, (size_t)r->n_acked * sizeof(*r->acked));
    memcpy(r->acked, r->taken, (size_t)r->n_taken * sizeof(*r->acked));
    if (r->n_acked == 0) r->acked_since_us = tb_mono_us();
    r->n_acked += r->n_taken;
  }
  r->n_taken = 0;
  pthread_mutex_unlock(&r->ack_mu);
}

/* Commits the relay's open transaction when |st| is TB_OK, else (or when the commit fails) rolls
 * it back and logs "|n| <what>: detail". Returns the outcome. */
static tb_status commit_or_warn(tb_relay_t *r, tb_status st, int n, const char *what) {
  if (st == TB_OK) st = tb_store_commit(r->store);
  if (st == TB_OK) return TB_OK;
  char detail[1024];
  snprintf(detail, sizeof(detail), "%s", tb_errdetail());
  tb_store_rollback(r->store);
  TB_LOG(TB_LOG_WARN, "relay", "%d %s: %s", n, what, detail);
  return st;
}

/* Deletes the acked rows in a transaction of the relay's own, waiting for the write lock as long
 * as the store's busy timeout allows, when no engine batch took them in time (the worker is idle,
 * or a process runs a relay with no engine) or at stop. A failure leaves them for the next try;
 * until then they are not published again. */
static void delete_acked(tb_relay_t *r, int force) {
  pthread_mutex_lock(&r->ack_mu);
  int due = r->n_acked > 0 && (force || r->n_acked + r->n_taken >= TB_RELAY_HANDOFF_MAX ||
                               tb_mono_us() - r->acked_since_us >= TB_RELAY_HANDOFF_MS * 1000LL);
  pthread_mutex_unlock(&r->ack_mu);
  if (!due) return;
  const int64_t *ids = NULL;
  int n = tb_relay_take_acked(r, &ids);
  if (n == 0) return; /* an engine batch holds the others: it deletes them */
  tb_status st = tb_store_begin(r->store);
  for (int i = 0; i < n && st == TB_OK; i++) st = tb_store_outbox_delete(r->store, ids[i]);
  st = commit_or_warn(r, st, n,
                      "published outbox rows not deleted, will retry (they are not published again "
                      "meanwhile)");
  tb_relay_acked_settled(r, st == TB_OK);
}

/* ------------------------------------------------------------------------------------------------
 * One pass
 * --------------------------------------------------------------------------------------------- */

/* What happened to one row of a pass. */
typedef struct outcome {
  tb_status st; /* TB_OK = the stream has it */
  int duplicate;
  int tried; /* 0: the pass stopped before this row (left as it was) */
  char err[512];
} outcome_t;

static int connected(tb_bus_t *bus) {
  return natsConnection_Status(tb_bus_conn(bus)) == NATS_CONN_STATUS_CONNECTED;
}

/* Failures that say the server (not the row) is the problem: the rest of the pass would fail the
 * same way, each after a timeout. */
static int server_class(tb_status st) {
  return st == TB_ERR_UNAVAILABLE || st == TB_ERR_TIMEOUT;
}

static int64_t backoff_ms(int interval_ms, int attempts) {
  int64_t d = interval_ms;
  for (int i = 1; i < attempts && d < TB_RELAY_MAX_BACKOFF_MS; i++) d *= 2;
  return d < TB_RELAY_MAX_BACKOFF_MS ? d : TB_RELAY_MAX_BACKOFF_MS;
}

/* The row's headers as a NULL-terminated key, value list in *out (caller frees the array and
 * decrefs *json), or NULL when it has none. The headers were checked when the row was added; a
 * key whose value is not a string (only possible if the row was written by hand) is skipped
 * rather than failing the row forever. */
static tb_status row_headers(const tb_outbox_row_t *row, const char ***out, json_t **json) {
  *out = NULL;
  *json = NULL;
  if (row->headers_json == NULL) return TB_OK;
  json_error_t je;
  json_t *h = json_loads(row->headers_json, 0, &je);
  if (h == NULL || !json_is_object(h)) {
    json_decref(h);
    return tb__fail(TB_ERR_INVALID, "outbox row %s: headers are not a JSON object: %s", row->msg_id,
                    h == NULL ? je.text : "not an object");
  }
  const char **hdrs = calloc(2 * json_object_size(h) + 1, sizeof(*hdrs));
  if (hdrs == NULL) {
    json_decref(h);
    return tb__fail(TB_ERR_NOMEM, "outbox row %s: headers", row->msg_id);
  }
  size_t i = 0;
  const char *key;
  json_t *v;
  json_object_foreach(h, key, v) {
    if (!json_is_string(v)) continue;
    hdrs[i++] = key;
    hdrs[i++] = json_string_value(v);
  }
  *out = hdrs;
  *json = h;
  return TB_OK;
}

/* How long a pass waits for the stream acks of its rows. */
#define ACK_TIMEOUT_MS 5000

/* Publishes the rows of a pass, pipelined, and fills their outcomes. */
static void publish_rows(tb_relay_t *r, const tb_outbox_row_t *rows, outcome_t *out, int n) {
  tb_pub_item_t *items = calloc((size_t)n, sizeof(*items));
  const char ***hdrs = calloc((size_t)n, sizeof(*hdrs));
  json_t **hjson = calloc((size_t)n, sizeof(*hjson));
  int *slot = calloc((size_t)n, sizeof(*slot)); /* row -> item, -1 = not sent */
  if (!items || !hdrs || !hjson || !slot) {
    for (int i = 0; i < n; i++) {
      out[i].st = TB_ERR_NOMEM;
      snprintf(out[i].err, sizeof(out[i].err), "out of memory for the pass");
    }
  } else if (!connected(r->bus)) {
    for (int i = 0; i < n; i++) {
      out[i].st =
          tb__fail(TB_ERR_UNAVAILABLE, "publish to %s: not connected to NATS", rows[i].subject);
      snprintf(out[i].err, sizeof(out[i].err), "%s", tb_errdetail());
    }
  } else {
    int k = 0;
    for (int i = 0; i < n; i++) {
      slot[i] = -1;
      tb_status st = row_headers(&rows[i], &hdrs[i], &hjson[i]);
      if (st != TB_OK) {
        out[i].st = st;
        snprintf(out[i].err, sizeof(out[i].err), "%s", tb_errdetail());
        continue;
      }
      items[k] = (tb_pub_item_t){.subject = rows[i].subject,
                                 .msg_id = rows[i].msg_id,
                                 .data = rows[i].payload,
                                 .len = rows[i].len,
                                 .hdrs = hdrs[i]};
      slot[i] = k++;
    }
    tb_bus_publish_many(r->bus, items, k, ACK_TIMEOUT_MS);
    for (int i = 0; i < n; i++) {
      if (slot[i] < 0) continue;
      const tb_pub_item_t *it = &items[slot[i]];
      out[i].st = it->st;
      out[i].duplicate = it->duplicate;
      if (it->st != TB_OK) snprintf(out[i].err, sizeof(out[i].err), "%s", it->err);
    }
  }
  for (int i = 0; hdrs && hjson && i < n; i++) {
    free(hdrs[i]);
    json_decref(hjson[i]);
  }
  free(items);
  free(hdrs);
  free(hjson);
  free(slot);
}

/* Records the pass's outcomes: an acked row joins the ones waiting for their delete; the rest
 * (failures, and acked rows when too many wait) are written in one transaction now. If it cannot,
 * the rows stay as they were and the delivered ones go out again next pass, which the stream
 * deduplicates. */
static void record_pass(tb_relay_t *r, const tb_outbox_row_t *rows, const outcome_t *out, int n) {
  int64_t now = tb_wall_us();
  int now_rows = 0;
  for (int i = 0; i < n; i++) {
    if (!out[i].tried) continue;
    if (out[i].st == TB_OK && add_acked(r, rows[i].id)) continue;
    now_rows++;
  }
  if (now_rows == 0) return;
  tb_status st = tb_store_begin(r->store);
  for (int i = 0; i < n && st == TB_OK; i++) {
    if (!out[i].tried) continue;
    if (out[i].st == TB_OK) {
      pthread_mutex_lock(&r->ack_mu);
      int waiting = awaiting_delete(r, rows[i].id);
      pthread_mutex_unlock(&r->ack_mu);
      if (!waiting) st = tb_store_outbox_delete(r->store, rows[i].id);
    } else {
      st = tb_store_outbox_failed(r->store, rows[i].id, out[i].err,
                                  now + 1000 * backoff_ms(r->interval_ms, rows[i].attempts + 1));
    }
  }
  commit_or_warn(r, st, n,
                 "outbox rows of a pass not recorded (delivered ones will be published again and "
                 "deduplicated by the stream)");
}

/* Frees what one row read by tb_store_outbox_next owns (the array stays). */
static void row_free(tb_outbox_row_t *row) {
  free(row->msg_id);
  free(row->subject);
  free(row->payload);
  free(row->headers_json);
  free(row->last_error);
}

/* One pass over the due rows. Returns 1 when NATS was unreachable; *more = 1 when a full batch
 * went out, so more rows may be due right now. */
static int run_pass(tb_relay_t *r, int *more) {
  *more = 0;
  tb_outbox_row_t *rows = NULL;
  int n = 0;
  /* The rows acked but not yet deleted are read again and skipped: the read takes that many
   * more, so that they never crowd out rows to publish. */
  pthread_mutex_lock(&r->ack_mu);
  int limit = TB_RELAY_BATCH + r->n_acked + r->n_taken;
  pthread_mutex_unlock(&r->ack_mu);
  tb_status st = tb_store_outbox_next(r->store, tb_wall_us(), limit, &rows, &n);
  pthread_mutex_lock(&r->mu);
  r->stats.passes++;
  pthread_mutex_unlock(&r->mu);
  if (st != TB_OK) {
    TB_LOG(TB_LOG_WARN, "relay", "cannot read the outbox, will retry: %s", tb_errdetail());
    return 0;
  }
  int read = n, kept = 0;
  pthread_mutex_lock(&r->ack_mu);
  for (int i = 0; i < n; i++) {
    if (awaiting_delete(r, rows[i].id)) {
      row_free(&rows[i]);
      continue;
    }
    rows[kept++] = rows[i];
  }
  pthread_mutex_unlock(&r->ack_mu);
  n = kept;
  if (n == 0) {
    tb_store_outbox_free(rows, 0);
    return 0;
  }
  outcome_t *out = calloc((size_t)n, sizeof(*out));
  if (out == NULL) {
    tb_store_outbox_free(rows, n);
    TB_LOG(TB_LOG_WARN, "relay", "out of memory for a pass of %d rows, will retry", n);
    return 0;
  }
  int down = 0, published = 0, duplicates = 0, failures = 0;
  char down_detail[512] = "";
  publish_rows(r, rows, out, n);
  for (int i = 0; i < n; i++) {
    outcome_t *o = &out[i];
    o->tried = 1;
    if (o->st == TB_OK) {
      o->duplicate ? duplicates++ : published++;
      continue;
    }
    failures++;
    if (server_class(o->st)) {
      if (!down) snprintf(down_detail, sizeof(down_detail), "%s", o->err);
      down = 1;
    } else if (rows[i].attempts == 0) {
      TB_LOG(TB_LOG_WARN, "relay",
             "outbox row %s to %s failed, retrying with backoff (logged once): %s", rows[i].msg_id,
             rows[i].subject, o->err);
    }
  }
  record_pass(r, rows, out, n);

  if (down && r->down_streak == 0)
    TB_LOG(TB_LOG_WARN, "relay", "NATS unreachable, outbox rows wait (logged once per outage): %s",
           down_detail);
  if (!down && r->down_streak > 0) {
    TB_LOG(TB_LOG_INFO, "relay", "NATS reachable again after %d failed passes; publishing",
           r->down_streak);
  }
  r->down_streak = down ? r->down_streak + 1 : 0;
  *more = !down && read == limit;

  pthread_mutex_lock(&r->mu);
  r->stats.published += published;
  r->stats.duplicates += duplicates;
  r->stats.failures += failures;
  pthread_mutex_unlock(&r->mu);
  free(out);
  tb_store_outbox_free(rows, n);
  return down;
}

/* ------------------------------------------------------------------------------------------------
 * Thread and lifecycle
 * --------------------------------------------------------------------------------------------- */

/* How long to sleep before the next pass: the periodic interval, or less when a held-back row
 * (a workflow timer, a retry) falls due sooner. */
static int64_t until_due(tb_relay_t *r) {
  int64_t due = 0, wait_ms = r->interval_ms;
  if (tb_store_outbox_next_due(r->store, &due) == TB_OK && due > 0) {
    int64_t ms = (due - tb_wall_us()) / 1000 + 1;
    if (ms < wait_ms) wait_ms = ms > 1 ? ms : 1;
  }
  return wait_ms;
}

/* One tick of the relay thread: a pass, then how long to wait before the next. A stop is honoured
 * only after a pass that began after it was requested (the thread drains), so rows committed just
 * before the stop are still published; after that the relay keeps going while full batches go
 * out, up to the drain deadline, and gives up at once when NATS is down. */
static int64_t relay_tick(void *arg, int stopping) {
  tb_relay_t *r = arg;
  /* |stopping| means the thread saw the stop under its lock, after tb_relay_stop set the
   * deadline: the deadline is read only then. */
  if (stopping && tb_mono_us() >= r->drain_deadline_us) return TB_BGTHREAD_EXIT;
  int more = 0;
  int down = run_pass(r, &more);
  delete_acked(r, stopping);
  if (down) return stopping ? TB_BGTHREAD_EXIT : backoff_ms(r->interval_ms, r->down_streak);
  if (more) return 0;
  if (stopping) return TB_BGTHREAD_EXIT;
  int64_t wait_ms = until_due(r);
  /* Acked rows no engine batch takes are deleted by the relay when their hand-off time is up. */
  pthread_mutex_lock(&r->ack_mu);
  if (r->n_acked > 0) {
    int64_t left_ms = TB_RELAY_HANDOFF_MS - (tb_mono_us() - r->acked_since_us) / 1000 + 1;
    if (left_ms < wait_ms) wait_ms = left_ms > 1 ? left_ms : 1;
  }
  pthread_mutex_unlock(&r->ack_mu);
  return wait_ms;
}

tb_status tb_relay_start(tb_relay_t **out, const char *db_path, tb_bus_t *bus, int interval_ms) {
  if (out == NULL || bus == NULL || db_path == NULL)
    return tb__fail(TB_ERR_INVALID, "relay start: NULL argument");
  if (db_path[0] == '\0' || strcmp(db_path, ":memory:") == 0 ||
      strncmp(db_path, "file::memory:", 13) == 0)
    return tb__fail(TB_ERR_INVALID,
                    "relay start: database '%s' is not a file; the relay's own connection would "
                    "see a different database",
                    db_path);
  if (interval_ms <= 0)
    return tb__fail(TB_ERR_INVALID, "relay start: interval %d ms must be > 0", interval_ms);
  tb_relay_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return tb__fail(TB_ERR_NOMEM, "relay");
  int rc = pthread_mutex_init(&r->mu, NULL);
  if (rc != 0) {
    free(r);
    return tb__fail(TB_ERR_NOMEM, "relay: pthread_mutex_init: %s", strerror(rc));
  }
  r->cap = TB_RELAY_HANDOFF_MAX + TB_RELAY_BATCH;
  r->acked = calloc((size_t)r->cap, sizeof(*r->acked));
  r->taken = calloc((size_t)r->cap, sizeof(*r->taken));
  rc = pthread_mutex_init(&r->ack_mu, NULL);
  if (r->acked == NULL || r->taken == NULL || rc != 0) {
    if (rc == 0) pthread_mutex_destroy(&r->ack_mu);
    free(r->acked);
    free(r->taken);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return tb__fail(TB_ERR_NOMEM, "relay: acked rows");
  }
  r->bus = bus;
  r->interval_ms = interval_ms;
  tb_status st = tb_store_open(&r->store, db_path);
  /* The first pass runs at once: rows left by a previous run. */
  if (st == TB_OK)
    st = tb_bgthread_start(
        &r->thread,
        &(tb_bgthread_opts_t){
            .name = "relay", .tick = relay_tick, .arg = r, .interval_ms = interval_ms, .drain = 1});
  if (st != TB_OK) {
    tb_store_close(r->store);
    pthread_mutex_destroy(&r->ack_mu);
    free(r->acked);
    free(r->taken);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return st;
  }
  *out = r;
  return TB_OK;
}

void tb_relay_kick(tb_relay_t *r) {
  if (r == NULL) return;
  tb_bgthread_kick(r->thread);
}

void tb_relay_stop(tb_relay_t *r) {
  if (r == NULL) return;
  r->drain_deadline_us = tb_mono_us() + (int64_t)TB_RELAY_DRAIN_MS * 1000;
  tb_bgthread_stop(r->thread);
  /* The thread is gone and the engine's batches are over (its dispatcher stops first): the
   * acked rows are deleted here. Any left (the store failed) go out again at the next start,
   * and the stream drops them. */
  delete_acked(r, 1);
  tb_store_close(r->store);
  pthread_mutex_destroy(&r->ack_mu);
  free(r->acked);
  free(r->taken);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

void tb_relay_stats(tb_relay_t *r, tb_relay_stats_t *out) {
  pthread_mutex_lock(&r->mu);
  *out = r->stats;
  pthread_mutex_unlock(&r->mu);
}
