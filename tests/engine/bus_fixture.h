/* The fixture the in-process engine tests share: a real nats-server -js in a temporary
 * directory, a config with one tier "normal" over every catalogue domain, the catalogue, and a
 * connected, provisioned bus. */
#ifndef TB_TESTS_BUS_FIXTURE_H
#define TB_TESTS_BUS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "bus/bus.h"
#include "bus/server.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "core/status.h"

typedef struct bus_fixture {
  char dir[64];
  tb_server_t srv;
  tb_config_t cfg;
  tb_catalogue_t *cat;
  tb_bus_t *bus;
} bus_fixture_t;

/* Starts it all in a fresh directory named after |name|. The tier's AckWait is |ack_wait_ms|
 * and its max_deliver |max_deliver|. Fails the test on any error. */
static inline void bus_fixture_up(bus_fixture_t *f, const char *name, int64_t ack_wait_ms,
                                  int max_deliver) {
  memset(f, 0, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/tb-%s-XXXXXX", name);
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(tb_server_start(&f->srv, f->dir, 0, NULL, 10000), TB_OK);
  tb_config_init(&f->cfg);
  f->cfg.n_tiers = 1;
  strcpy(f->cfg.tiers[0].name, "normal");
  f->cfg.tiers[0].timeout_ms = ack_wait_ms;
  f->cfg.redelivery_bound_ms = ack_wait_ms; /* the AckWait itself */
  f->cfg.tiers[0].concurrency = 8;
  f->cfg.tiers[0].max_deliver = max_deliver;
  assert_int_equal(tb_catalogue_load(&f->cat), TB_OK);
  const char *domains[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(f->cat, domains, TB_MAX_DOMAINS);
  assert_int_equal(tb_config_set_domains(&f->cfg, domains, n), TB_OK);
  assert_int_equal(tb_bus_connect(&f->bus, f->srv.url, "test"), TB_OK);
  assert_int_equal(tb_bus_provision(f->bus, &f->cfg), TB_OK);
}

/* Publishes MONTH_TRANSITION |id| on normal/crm and waits for the stream's ack. |with_msg_id| 0
 * sends it without Nats-Msg-Id, so that the stream keeps a second copy of an id it already has
 * (a publisher's retry after the stream's dedupe window). */
static inline void bus_fixture_publish(bus_fixture_t *f, const char *id, int with_msg_id) {
  json_t *payload = json_pack("{s:s,s:s}", "client_id", "c1", "user_id", "u1");
  tb_publish_req_t req = {
      .event = "MONTH_TRANSITION", .payload = payload, .tier = "normal", .id = id};
  tb_prepared_t p;
  assert_int_equal(tb_publish_prepare(&f->cfg, f->cat, &req, &p), TB_OK);
  if (with_msg_id)
    assert_int_equal(tb_publish_send(f->bus, &p, NULL, NULL), TB_OK);
  else
    assert_int_equal(tb_bus_publish(f->bus, p.subject, NULL, p.buf, p.len, NULL, NULL, NULL),
                     TB_OK);
  tb_prepared_free(&p);
  json_decref(payload);
}

/* Stops the server and removes the directory. Returns 0, or -1 when the removal failed. */
static inline int bus_fixture_down(bus_fixture_t *f) {
  tb_bus_destroy(f->bus);
  tb_catalogue_destroy(f->cat);
  tb_server_stop(&f->srv, 5000);
  char cmd[96];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  return system(cmd) == 0 ? 0 : -1;
}

#endif
