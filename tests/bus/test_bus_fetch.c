/* Integration test of the bus layer against a real nats-server -js: provisioning is idempotent,
 * and the consumer fetch loses nothing and duplicates nothing across every batch shape (one
 * message, no-wait batches, long-polls that time out while messages arrive). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "bus/server.h"
#include "core/status.h"

typedef struct fixture {
  char dir[64];
  tb_server_t srv;
  tb_config_t cfg;
  tb_bus_t *bus;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  strcpy(f->dir, "/tmp/tb-bus-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(tb_server_start(&f->srv, f->dir, 0, NULL, 10000), TB_OK);
  tb_config_init(&f->cfg);
  f->cfg.n_tiers = 1;
  strcpy(f->cfg.tiers[0].name, "normal");
  f->cfg.tiers[0].timeout_ms = 60000;
  f->cfg.tiers[0].concurrency = 64;
  f->cfg.tiers[0].max_deliver = 5;
  const char *domains[] = {"x", "z"};
  assert_int_equal(tb_config_set_domains(&f->cfg, domains, 2), TB_OK);
  assert_int_equal(tb_bus_connect(&f->bus, f->srv.url, "test"), TB_OK);
  assert_int_equal(tb_bus_provision(f->bus, &f->cfg), TB_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  tb_bus_destroy(f->bus);
  tb_server_stop(&f->srv, 5000);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

static void test_provision_idempotent(void **state) {
  fixture_t *f = *state;
  assert_int_equal(tb_bus_provision(f->bus, &f->cfg), TB_OK);
  f->cfg.duplicate_window_ms = 60000; /* a changed setting updates the existing stream */
  assert_int_equal(tb_bus_provision(f->bus, &f->cfg), TB_OK);
}

/* Each domain has its own consumer; a subject outside every domain is refused at publish. */
static void test_domain_consumers(void **state) {
  fixture_t *f = *state;
  assert_int_equal(tb_bus_publish(f->bus, "tb.evt.normal.z.A", "z-1", "z", 1, NULL, NULL, NULL),
                   TB_OK);
  assert_int_not_equal(
      tb_bus_publish(f->bus, "tb.evt.normal.nope.A", "n-1", "n", 1, NULL, NULL, NULL), TB_OK);
  uint64_t pending = 0, ack_pending = 0, redelivered = 0;
  assert_int_equal(
      tb_consumer_pending(f->bus, &f->cfg, "normal", "z", &pending, &ack_pending, &redelivered),
      TB_OK);
  assert_int_equal(pending, 1);
  assert_int_equal(
      tb_consumer_pending(f->bus, &f->cfg, "normal", "x", &pending, &ack_pending, &redelivered),
      TB_OK);
  assert_int_equal(pending, 0);
  tb_consumer_t *c = NULL;
  natsMsg *m[4];
  int got = 0;
  assert_int_equal(tb_consumer_open(&c, f->bus, &f->cfg, "normal", "z"), TB_OK);
  assert_int_equal(tb_consumer_fetch(c, m, 4, &got, 2000), TB_OK);
  assert_int_equal(got, 1);
  assert_string_equal(natsMsg_GetSubject(m[0]), "tb.evt.normal.z.A");
  tb_bus_ack(f->bus, m[0]);
  natsMsg_Destroy(m[0]);
  tb_consumer_close(c);
}

/* Publishes |n| messages with ids m-0..m-(n-1), optionally while fetching, and checks that every
 * id is received exactly once when fetching with the given shape. */
static void fetch_all(fixture_t *f, int n, int max) {
  char id[32];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof(id), "m-%d", i);
    assert_int_equal(tb_bus_publish_async(f->bus, "tb.evt.normal.x.Y", id, id, strlen(id)), TB_OK);
  }
  int64_t failed = -1;
  assert_int_equal(tb_bus_publish_wait(f->bus, 30000, &failed), TB_OK);
  assert_int_equal(failed, 0);

  tb_consumer_t *c = NULL;
  assert_int_equal(tb_consumer_open(&c, f->bus, &f->cfg, "normal", "x"), TB_OK);
  unsigned char *seen = calloc((size_t)n, 1);
  natsMsg **buf = calloc((size_t)max, sizeof(*buf));
  int total = 0, timeouts = 0;
  while (total < n && timeouts < 20) {
    int got = 0;
    tb_status st = tb_consumer_fetch(c, buf, max, &got, 50);
    if (st == TB_ERR_TIMEOUT) {
      timeouts++;
      continue;
    }
    assert_int_equal(st, TB_OK);
    assert_true(got >= 1 && got <= max);
    for (int i = 0; i < got; i++) {
      int k = atoi(natsMsg_GetData(buf[i]) + 2);
      assert_true(k >= 0 && k < n);
      assert_int_equal(seen[k], 0); /* never twice */
      seen[k] = 1;
      assert_int_equal(tb_bus_ack(f->bus, buf[i]), TB_OK);
      natsMsg_Destroy(buf[i]);
    }
    total += got;
  }
  assert_int_equal(total, n);
  /* Nothing more: the consumer has no pending or unacked messages left. */
  uint64_t pending = 9, ack_pending = 9, redelivered = 9;
  natsConnection_Flush(tb_bus_conn(f->bus));
  usleep(100000);
  assert_int_equal(
      tb_consumer_pending(f->bus, &f->cfg, "normal", NULL, &pending, &ack_pending, &redelivered),
      TB_OK);
  assert_int_equal(pending, 0);
  assert_int_equal(ack_pending, 0);
  assert_int_equal(redelivered, 0);
  free(seen);
  free(buf);
  tb_consumer_close(c);
}

static void test_fetch_single(void **state) {
  fetch_all(*state, 300, 1);
}
static void test_fetch_batches(void **state) {
  fetch_all(*state, 20000, 50);
}
static void test_fetch_wide(void **state) {
  fetch_all(*state, 20000, 64);
}
static void test_fetch_odd(void **state) {
  fetch_all(*state, 5000, 7);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_provision_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_domain_consumers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_single, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_batches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_wide, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_odd, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
