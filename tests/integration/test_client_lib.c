/* Integration: libtierbus as another C service uses it (issue 12). The build is installed with
 * `cmake --install` into a fresh prefix; examples/publish_event.c is compiled against that copy
 * with the flags `pkg-config tierbus` gives; the program publishes to a real nats-server, and the
 * stream holds what it says it published: the tier, the id as Nats-Msg-Id, one copy per id. A
 * refused event exits 2 and publishes nothing; the library exports only the public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/itest.h"

#define RUN_TIMEOUT_MS 60000

/* Runs |cmd| through /bin/sh into r. */
static void sh(tb_h_t *h, tb_h_result_t *r, const char *cmd) {
  const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
  tb_h_execv(h, r, RUN_TIMEOUT_MS, argv);
}

/* Installs the build into <dir>/prefix and compiles the example against it into |prog|. */
static void install_and_build(tb_h_t *h, char *prog, size_t cap) {
  tb_h_result_t r;
  char prefix[TB_H_PATH], cmd[6 * TB_H_PATH];
  tb_h_path(h, "prefix", prefix, sizeof(prefix));
  snprintf(cmd, sizeof(cmd), "'%s' --install '%s' --prefix '%s'", TB_IT_CMAKE, TB_IT_BUILD_DIR,
           prefix);
  sh(h, &r, cmd);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);

  /* What the installed pkg-config file says, from the installed tree only. */
  snprintf(cmd, sizeof(cmd),
           "export PKG_CONFIG_PATH='%s/lib/pkgconfig'; pkg-config --modversion tierbus && "
           "pkg-config --cflags --libs tierbus",
           prefix);
  sh(h, &r, cmd);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "0.12.0");
  tb_assert_contains(r.out, "-ltierbus");
  tb_assert_contains(r.out, "/include");
  tb_h_result_free(&r);

  snprintf(prog, cap, "%s/publish_event", prefix);
  snprintf(cmd, sizeof(cmd),
           "'%s' %s '%s/examples/publish_event.c' "
           "$(PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs tierbus) "
           "-Wl,-rpath,'%s/lib' -o '%s'",
           TB_IT_CC, TB_IT_SANITIZE ? "-fsanitize=address,undefined" : "", h->source_dir, prefix,
           prefix, prog);
  sh(h, &r, cmd);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);

  /* Only include/tierbus.h is exported: no internal layer leaks into the user's namespace. */
  snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s/lib/libtierbus.so' | awk '{print $3}'",
           prefix);
  sh(h, &r, cmd);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tb_client_connect");
  tb_assert_contains(r.out, "tb_client_publish");
  tb_assert_contains(r.out, "tb_client_close");
  tb_assert_contains(r.out, "tb_strerror");
  tb_assert_not_contains(r.out, "tb_bus_");
  tb_assert_not_contains(r.out, "tb_publish_");
  tb_assert_not_contains(r.out, "tb_config_");
  tb_h_result_free(&r);
}

/* Runs the example with the test's config and server and |args| (shell words). */
static void run_example(tb_h_t *h, tb_h_result_t *r, const char *prog, const char *args) {
  char cmd[4 * TB_H_PATH];
  snprintf(cmd, sizeof(cmd), "TIERBUS_CONFIG='%s' TIERBUS_NATS_URL='%s' '%s' %s", h->config, h->url,
           prog, args);
  sh(h, r, cmd);
}

static void test_example_publishes(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char prog[TB_H_PATH + 32];
  tb_it_start_and_init(h);
  install_and_build(h, prog, sizeof(prog));

  run_example(h, &r, prog, "CLIENT_CREATED '{\"client_id\": \"c1\"}' --id lib-1");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published id=lib-1 tier=high subject=tb.evt.high.crm.CLIENT_CREATED");
  tb_assert_not_contains(r.out, "duplicate");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_CRM"), 1);
  natsMsg *m = tb_h_stream_get(h, "TB_HIGH_CRM", 1);
  assert_non_null(m);
  assert_string_equal(tb_h_header(m, "Nats-Msg-Id"), "lib-1");
  natsMsg_Destroy(m);

  /* The same id again: acknowledged as a duplicate, stored once. */
  run_example(h, &r, prog, "CLIENT_CREATED '{\"client_id\": \"c1\"}' --id lib-1");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "id=lib-1");
  tb_assert_contains(r.out, "duplicate");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_HIGH_CRM"), 1);

  /* An explicit priority, and an id the library makes. */
  run_example(h, &r, prog, "CLIENT_CREATED '{\"clientId\": \"c2\"}' --priority critical");
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "tier=critical subject=tb.evt.critical.crm.CLIENT_CREATED");
  tb_assert_contains(r.out, "id=evt-");
  tb_h_result_free(&r);
  assert_int_equal(tb_h_stream_msgs(h, "TB_CRITICAL_CRM"), 1);

  /* Refused before anything is sent, naming the problem and what is accepted. */
  run_example(h, &r, prog, "NOPE '{}'");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "ERR_UNKNOWN_EVENT");
  tb_assert_contains(r.err, "CLIENT_CREATED");
  tb_h_result_free(&r);
  run_example(h, &r, prog, "CLIENT_CREATED '{\"client_id\": \"c3\", \"zzz\": 1}'");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown field 'zzz'");
  tb_h_result_free(&r);
  run_example(h, &r, prog, "CLIENT_CREATED '{\"client_id\": \"c3\"}' --priority urgent");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "unknown tier 'urgent'");
  tb_h_result_free(&r);
  run_example(h, &r, prog, "CLIENT_CREATED '{bad'");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "bad JSON");
  tb_h_result_free(&r);
  tb_assert_streams(h, 1, 1, 0, 0, 0);

  /* No server: the bus failure is a 1, with the URL named. */
  tb_h_server_stop(h);
  run_example(h, &r, prog, "CLIENT_CREATED '{\"client_id\": \"c4\"}'");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, h->url);
  tb_h_result_free(&r);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_example_publishes, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
