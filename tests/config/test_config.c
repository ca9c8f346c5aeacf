/* Unit tests for src/config: the shipped file, defaults, every error class with its exact
 * message, bounds at both edges, CLI and environment overrides, and the example round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/log.h"

/* ----------------------------------------------------------------------------------------
 * Helpers
 * -------------------------------------------------------------------------------------- */

/* Writes |text| to a fresh temp file; its path goes to |path| (PATH_MAX). Caller unlinks. */
static void write_tmp(const char *text, char *path) {
  snprintf(path, PATH_MAX, "/tmp/tbcfg-XXXXXX.yaml");
  int fd = mkstemps(path, 5);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* Loads |text| from a temp file into a defaults-initialised |cfg|; returns the status. */
static tb_status load_text(const char *text, tb_config_t *cfg, char *path) {
  write_tmp(text, path);
  tb_config_init(cfg);
  tb_status s = tb_config_load_file(cfg, path);
  unlink(path);
  return s;
}

/* Asserts that loading |text| fails with exactly |expected| ("%s" stands for the file path). */
static void expect_load_error(const char *text, const char *expected) {
  static tb_config_t cfg;
  char path[PATH_MAX], want[2048];
  tb_status s = load_text(text, &cfg, path);
  snprintf(want, sizeof(want), expected, path);
  if (s != TB_ERR_CONFIG || strcmp(tb_errdetail(), want) != 0)
    fail_msg("YAML:\n%s\nstatus %d\n got: %s\nwant: %s", text, s, tb_errdetail(), want);
}

static void expect_load_ok(const char *text, tb_config_t *cfg) {
  char path[PATH_MAX];
  tb_status s = load_text(text, cfg, path);
  if (s != TB_OK) fail_msg("YAML:\n%s\nunexpected failure: %s", text, tb_errdetail());
}

static const char *source_dir(void) {
  const char *dir = getenv("TB_SOURCE_DIR");
  return dir ? dir : TB_SOURCE_DIR;
}

/* Two configs hold the same settings (the file they came from aside). */
static void assert_same_config(const tb_config_t *a, const tb_config_t *b) {
  static tb_config_t x, y;
  x = *a;
  y = *b;
  memset(x.source_path, 0, sizeof(x.source_path));
  memset(y.source_path, 0, sizeof(y.source_path));
  /* Field checks first so a failure says which field differs. */
  assert_string_equal(x.nats_url, y.nats_url);
  assert_string_equal(x.db_path, y.db_path);
  assert_int_equal(x.commit_batch_us, y.commit_batch_us);
  assert_int_equal(x.n_tiers, y.n_tiers);
  for (int i = 0; i < x.n_tiers; i++) {
    assert_string_equal(x.tiers[i].name, y.tiers[i].name);
    assert_int_equal(x.tiers[i].n_backoff, y.tiers[i].n_backoff);
  }
  assert_int_equal(x.n_event_tiers, y.n_event_tiers);
  assert_int_equal(x.n_presets, y.n_presets);
  assert_memory_equal(&x, &y, sizeof(x));
}

/* ----------------------------------------------------------------------------------------
 * The shipped file and the defaults
 * -------------------------------------------------------------------------------------- */

static void test_shipped_config(void **state) {
  static tb_config_t cfg;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/config/tierbus.yaml", source_dir());
  tb_config_init(&cfg);
  tb_status s = tb_config_load_file(&cfg, path);
  if (s != TB_OK) fail_msg("%s", tb_errdetail());
  assert_int_equal(tb_config_validate(&cfg), TB_OK);
  assert_string_equal(cfg.source_path, path);

  assert_string_equal(cfg.nats_url, "nats://127.0.0.1:4222");
  assert_string_equal(cfg.db_path, "var/tierbus.db");
  assert_string_equal(cfg.data_dir, "var");
  assert_string_equal(cfg.stream_prefix, "TB");
  assert_int_equal(cfg.duplicate_window_ms, 120000);
  assert_int_equal(cfg.max_payload_bytes, 1048576);
  assert_int_equal(cfg.stream_max_age_ms, 0);
  assert_int_equal(cfg.commit_batch_max, 256);
  assert_int_equal(cfg.commit_batch_us, 2000);
  assert_int_equal(cfg.nats_connect_timeout_ms, 10000);
  assert_int_equal(cfg.publish_ack_wait_ms, 5000);
  assert_int_equal(cfg.publish_give_up_ms, 30000);
  assert_int_equal(cfg.log_level, TB_LOG_INFO);
  assert_int_equal(cfg.snapshot_interval_ms, 3600000);
  assert_int_equal(cfg.snapshot_keep, 3);
  assert_int_equal(cfg.http_threads, TB_HTTP_DEFAULT_THREADS);

  /* The design's tier table (seed 000 timeouts and concurrency, seed 001 job priorities). */
  static const struct {
    const char *name;
    int64_t timeout_ms;
    int concurrency, job_priority;
    int64_t backoff[3], aging_ms;
  } want[] = {
      {"critical", 120000, 50, 1, {1000, 5000, 30000}, 0},
      {"high", 300000, 30, 3, {1000, 5000, 30000}, 1000},
      {"normal", 900000, 15, 5, {2000, 10000, 60000}, 2000},
      {"low", 1800000, 8, 7, {5000, 30000, 120000}, 5000},
      {"background", 3600000, 5, 9, {10000, 60000, 300000}, 10000},
  };
  assert_int_equal(cfg.n_tiers, 5);
  for (int i = 0; i < 5; i++) {
    const tb_tier_config_t *t = &cfg.tiers[i];
    assert_string_equal(t->name, want[i].name);
    assert_int_equal(t->timeout_ms, want[i].timeout_ms);
    assert_int_equal(t->concurrency, want[i].concurrency);
    assert_int_equal(t->max_deliver, 5);
    assert_int_equal(t->n_backoff, 3);
    for (int k = 0; k < 3; k++) assert_int_equal(t->backoff_ms[k], want[i].backoff[k]);
    assert_int_equal(t->aging_ms, want[i].aging_ms);
    assert_int_equal(t->job_priority, want[i].job_priority);
    assert_int_equal(tb_config_tier_index(&cfg, want[i].name), i);
  }
  assert_int_equal(tb_config_tier_index(&cfg, "urgent"), -1);
  assert_int_equal(tb_config_tier_index(&cfg, ""), -1);

  assert_int_equal(cfg.n_event_tiers, 2);
  assert_string_equal(tb_config_event_tier(&cfg, "WORKSPACE_REPO_ADDED"), "high");
  assert_string_equal(tb_config_event_tier(&cfg, "WORKSPACE_REPO_REMOVED"), "high");
  assert_null(tb_config_event_tier(&cfg, "CLIENT_CREATED"));

  assert_int_equal(cfg.n_presets, 4);
  const tb_preset_t *all = tb_config_preset(&cfg, "all");
  assert_non_null(all);
  assert_int_equal(all->n_tiers, 5);
  for (int i = 0; i < 5; i++) assert_string_equal(all->tiers[i], want[i].name);
  const tb_preset_t *crit = tb_config_preset(&cfg, "critical");
  assert_non_null(crit);
  assert_int_equal(crit->n_tiers, 2);
  assert_string_equal(crit->tiers[0], "critical");
  assert_string_equal(crit->tiers[1], "high");
  const tb_preset_t *bg = tb_config_preset(&cfg, "background");
  assert_non_null(bg);
  assert_int_equal(bg->n_tiers, 2);
  assert_string_equal(bg->tiers[0], "low");
  assert_string_equal(bg->tiers[1], "background");
  const tb_preset_t *cust = tb_config_preset(&cfg, "customer");
  assert_non_null(cust);
  assert_int_equal(cust->n_tiers, 0); /* every tier */
  assert_int_equal(cust->n_domains, 2);
  assert_string_equal(cust->domains[0], "crm");
  assert_string_equal(cust->domains[1], "enrichment");
  assert_int_equal(cust->max_concurrent_workflows, 25);
  assert_int_equal(cfg.max_concurrent_workflows, 0);
  assert_null(tb_config_preset(&cfg, "crm"));
}

static void test_defaults(void **state) {
  static tb_config_t cfg;
  memset(&cfg, 0x5a, sizeof(cfg)); /* init must not depend on prior contents */
  tb_config_init(&cfg);
  assert_string_equal(cfg.nats_url, "nats://127.0.0.1:4222");
  assert_string_equal(cfg.db_path, "var/tierbus.db");
  assert_string_equal(cfg.data_dir, "var");
  assert_string_equal(cfg.stream_prefix, "TB");
  assert_int_equal(cfg.duplicate_window_ms, 120000);
  assert_int_equal(cfg.max_payload_bytes, 1048576);
  assert_int_equal(cfg.stream_max_age_ms, 0);
  assert_int_equal(cfg.commit_batch_max, 256);
  assert_int_equal(cfg.commit_batch_us, 2000);
  assert_int_equal(cfg.nats_connect_timeout_ms, 10000);
  assert_int_equal(cfg.publish_ack_wait_ms, 5000);
  assert_int_equal(cfg.publish_give_up_ms, 30000);
  assert_int_equal(cfg.log_level, TB_LOG_INFO);
  assert_int_equal(cfg.http_threads, 8); /* the constant it replaced, and the server's default */
  assert_int_equal(TB_HTTP_DEFAULT_THREADS, 8);
  assert_int_equal(cfg.n_tiers, 0);
  assert_int_equal(cfg.n_event_tiers, 0);
  assert_int_equal(cfg.n_presets, 0);
  assert_string_equal(cfg.source_path, "");
  /* Defaults alone are not a usable config: tiers come only from a file. No file, no prefix. */
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "tiers: at least one tier is required");
}

/* Omitted tier fields take the per-tier table's defaults. */
static void test_tier_defaults(void **state) {
  static tb_config_t cfg;
  expect_load_ok("tiers:\n  - name: only\n", &cfg);
  assert_int_equal(cfg.n_tiers, 1);
  const tb_tier_config_t *t = &cfg.tiers[0];
  assert_string_equal(t->name, "only");
  assert_int_equal(t->timeout_ms, 300000);
  assert_int_equal(t->concurrency, 10);
  assert_int_equal(t->max_deliver, 5);
  assert_int_equal(t->n_backoff, 3);
  assert_int_equal(t->backoff_ms[0], 1000);
  assert_int_equal(t->backoff_ms[1], 5000);
  assert_int_equal(t->backoff_ms[2], 30000);
  assert_int_equal(t->backoff_ms[3], 0);
  assert_int_equal(t->aging_ms, 0);
  assert_int_equal(t->job_priority, 5);
  /* An explicit empty list means no backoff at all, not the default. */
  expect_load_ok("tiers: [{name: a, backoff: []}]\n", &cfg);
  assert_int_equal(cfg.tiers[0].n_backoff, 0);
}

/* ----------------------------------------------------------------------------------------
 * Errors: every class, with its exact text
 * -------------------------------------------------------------------------------------- */

#define ONE_TIER "tiers: [{name: a}]\n"

static void test_errors_keys_and_values(void **state) {
  expect_load_error("nats_ur: nats://x:1\n" ONE_TIER,
                    "%s:1: unknown key 'nats_ur' (did you mean 'nats_url'?)");
  expect_load_error(ONE_TIER "bogus_option: 1\n", "%s:2: unknown key 'bogus_option'");
  expect_load_error("tier: []\n", "%s:1: unknown key 'tier' (did you mean 'tiers'?)");
  expect_load_error("tiers: [{name: a, timout: 1m}]\n",
                    "%s:1: tiers[0]: unknown key 'timout' (did you mean 'timeout'?)");
  expect_load_error("tiers:\n"
                    "  - name: a\n"
                    "  - name: b\n"
                    "    concurrency: abc\n",
                    "%s:4: tiers[1].concurrency: must be an integer between 1 and 10000 (got "
                    "'abc')");
  expect_load_error(ONE_TIER "duplicate_window: 5 minutes\n",
                    "%s:2: duplicate_window: duration '5 minutes': unknown unit ' minutes' (use "
                    "ms, s, m, h or d)");
  expect_load_error(ONE_TIER "log_level: loud\n",
                    "%s:2: log_level: must be one of debug, info, warn, error, off (got 'loud')");
  expect_load_error(ONE_TIER "stream_prefix: T.B\n",
                    "%s:2: stream_prefix: must contain only letters, digits, '_' or '-' (got "
                    "'T.B')");
  expect_load_error("tiers: [{name: High}]\n",
                    "%s:1: tiers[0].name: must contain only lowercase letters, digits, '_' or "
                    "'-' (got 'High')");
  expect_load_error("tiers: [{name: a, backoff: [1s, 0s]}]\n",
                    "%s:1: tiers[0].backoff[1]: must be a duration between 1ms and 24h (got "
                    "'0s')");
  expect_load_error("tiers: [{name: a, max_payload: 1}]\n",
                    "%s:1: tiers[0]: unknown key 'max_payload'");
  expect_load_error("max_payload: 1 MiB\n" ONE_TIER,
                    "%s:1: max_payload: must be a size in bytes between 1024 and 67108864 (got "
                    "'1 MiB')");
  expect_load_error("commit_batch_time: 5xs\n" ONE_TIER,
                    "%s:1: commit_batch_time: duration '5xs': unknown unit 'xs' (use ms, s, m, h "
                    "or d)");
  expect_load_error("commit_batch_time: -5us\n" ONE_TIER,
                    "%s:1: commit_batch_time: duration '-5us': expected a number with a unit (us, "
                    "ms, s, m, h, d)");
  /* The HTTP pool: a file's bad value names the option and its line. */
  expect_load_error(ONE_TIER "http_threads: 0\n",
                    "%s:2: http_threads: must be an integer between 1 and 256 (got '0')");
  expect_load_error(ONE_TIER "http_threads: many\n",
                    "%s:2: http_threads: must be an integer between 1 and 256 (got 'many')");
  /* Empty and null values are missing values, not the text "null". */
  expect_load_error("nats_url:\n" ONE_TIER, "%s:1: nats_url: missing value");
  expect_load_error("nats_url: ~\n" ONE_TIER, "%s:1: nats_url: missing value");
  expect_load_error("tiers: [{name: null}]\n", "%s:1: tiers[0].name: missing value");
  /* Quoted, "null" is an ordinary string. */
  static tb_config_t cfg;
  expect_load_ok("data_dir: \"null\"\n" ONE_TIER, &cfg);
  assert_string_equal(cfg.data_dir, "null");
}

static void test_errors_structure(void **state) {
  expect_load_error("nats_url: x\n", "%s: tiers: at least one tier is required");
  expect_load_error("tiers: []\n", "%s:1: tiers: at least one tier is required");
  expect_load_error("tiers:\n  - {name: a}\n  - {name: b}\n  - {name: a}\n",
                    "%s:4: tiers[2].name: duplicate tier name 'a' (also tiers[0])");
  expect_load_error("tiers:\n  - timeout: 1m\n", "%s:2: tiers[0]: missing required key 'name'");
  expect_load_error("log_level: info\nlog_level: warn\n" ONE_TIER,
                    "%s:2: duplicate key 'log_level' (first at line 1)");
  expect_load_error(ONE_TIER "tiers: [{name: b}]\n",
                    "%s:2: duplicate key 'tiers' (first at line 1)");
  expect_load_error("tiers: [{name: a, name: b}]\n",
                    "%s:1: tiers[0]: duplicate key 'name' (first at line 1)");
  expect_load_error("tiers: [{name: a, max_deliver: 3, backoff: [1s, 2s, 3s]}]\n",
                    "%s:1: tiers[0].backoff: 3 delays but max_deliver 3 allows only 2 "
                    "redeliveries");
  expect_load_error("duplicate_window: 2h\nstream_max_age: 1h\n" ONE_TIER,
                    "%s:1: duplicate_window: 2h is longer than stream_max_age 1h");
  /* 0s turns snapshots off; anything else under a second is a typo. */
  expect_load_error("snapshot_interval: 999ms\n" ONE_TIER,
                    "%s:1: snapshot_interval: must be 0s (no snapshots) or at least 1s (got 999 "
                    "ms)");
  expect_load_error(
      "tiers: [{name: a, max_deliver: 20, backoff: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]}]\n",
      "%s:1: tiers[0].backoff: at most 8 items are allowed (got 9)");

  /* Too many tiers: the ninth is where the file goes wrong. */
  char text[1024] = "tiers:\n";
  for (int i = 0; i <= TB_MAX_TIERS; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "  - {name: t%d}\n", i);
  expect_load_error(text, "%s:10: tiers: at most 8 tiers are allowed (got 9)");
  /* ... and exactly TB_MAX_TIERS is fine. */
  static tb_config_t cfg;
  snprintf(text, sizeof(text), "tiers:\n");
  for (int i = 0; i < TB_MAX_TIERS; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "  - {name: t%d}\n", i);
  expect_load_ok(text, &cfg);
  assert_int_equal(cfg.n_tiers, TB_MAX_TIERS);
  assert_string_equal(cfg.tiers[7].name, "t7");
}

static void test_errors_event_tiers_and_presets(void **state) {
  expect_load_error("tiers: [{name: a}]\nevent_tiers:\n  X_Y: b\n",
                    "%s:3: event_tiers.X_Y: unknown tier 'b' (tiers are a)");
  expect_load_error("tiers: [{name: a}, {name: b}]\npresets:\n  p: [a, c]\n",
                    "%s:3: presets.p: unknown tier 'c' (tiers are a, b)");
  /* Sections may come before the tiers they name. */
  static tb_config_t cfg;
  expect_load_ok("event_tiers: {E: b}\npresets: {p: [b]}\ntiers: [{name: b}]\n", &cfg);
  assert_string_equal(tb_config_event_tier(&cfg, "E"), "b");
  expect_load_error("presets: {p: [b]}\ntiers: [{name: a}]\n",
                    "%s:1: presets.p: unknown tier 'b' (tiers are a)");

  expect_load_error(ONE_TIER "event_tiers:\n  X: a\n  X: a\n",
                    "%s:4: event_tiers: duplicate key 'X' (first at line 3)");
  expect_load_error(ONE_TIER "event_tiers:\n  X*Y: a\n",
                    "%s:3: event_tiers: event name must contain only letters, digits, '_', '-', "
                    "'/' or '.' (got 'X*Y')");
  /* The seed's canonical names carry '/' and '.'. */
  expect_load_ok(ONE_TIER "event_tiers:\n  workspace/priorities.sync: a\n", &cfg);
  assert_string_equal(tb_config_event_tier(&cfg, "workspace/priorities.sync"), "a");
  expect_load_error(ONE_TIER "presets:\n  p: []\n",
                    "%s:3: presets.p: must list tiers, domains or both");
  expect_load_error(ONE_TIER "presets:\n  p: {}\n",
                    "%s:3: presets.p: must list tiers, domains or both");
  expect_load_ok(ONE_TIER "presets:\n  p: {tiers: [a], domains: [crm, ops], "
                          "max_concurrent_workflows: 7}\n",
                 &cfg);
  assert_int_equal(cfg.presets[0].n_tiers, 1);
  assert_int_equal(cfg.presets[0].n_domains, 2);
  assert_string_equal(cfg.presets[0].domains[1], "ops");
  assert_int_equal(cfg.presets[0].max_concurrent_workflows, 7);
  expect_load_error(ONE_TIER "presets:\n  p: {domains: [crm, crm]}\n",
                    "%s:3: presets.p: domain 'crm' listed twice");
  expect_load_error(ONE_TIER "presets:\n  p: {domains: [c.rm]}\n",
                    "%s:3: presets.p: domain name must contain only letters, digits, '_' or '-' "
                    "(got 'c.rm')");
  expect_load_error(ONE_TIER "presets:\n  p: {domains: [crm], max_concurrent_workflows: -1}\n",
                    "%s:3: presets.p.max_concurrent_workflows: must be an integer between 0 and "
                    "100000 (got '-1')");
  expect_load_error(ONE_TIER "presets:\n  p: {domain: [crm]}\n",
                    "%s:3: presets.p: unknown key 'domain' (expected tiers, domains, "
                    "max_concurrent_workflows)");
  expect_load_error(ONE_TIER "presets:\n  p: {tiers: [a], tiers: [a]}\n",
                    "%s:3: presets.p: duplicate key 'tiers' (first at line 3)");
  expect_load_error(ONE_TIER "presets:\n  p: [a, a]\n", "%s:3: presets.p: tier 'a' listed twice");
  expect_load_error(ONE_TIER "presets:\n  p: a\n",
                    "%s:3: presets.p: expected a mapping, got a scalar");
  expect_load_error(ONE_TIER "presets:\n  p: [a]\n  p: [a]\n",
                    "%s:4: presets: duplicate key 'p' (first at line 3)");

  char text[2048], name[80];
  memset(name, 'E', 64);
  name[64] = '\0';
  snprintf(text, sizeof(text), ONE_TIER "event_tiers: {%s: a}\n", name);
  char want[256];
  snprintf(want, sizeof(want), "%%s:2: event_tiers: event name '%s' is longer than 63 characters",
           name);
  expect_load_error(text, want);
  name[63] = '\0'; /* 63 characters fit */
  snprintf(text, sizeof(text), ONE_TIER "event_tiers: {%s: a}\n", name);
  expect_load_ok(text, &cfg);
  assert_string_equal(tb_config_event_tier(&cfg, name), "a");

  snprintf(text, sizeof(text), ONE_TIER "presets:\n");
  for (int i = 0; i <= TB_MAX_PRESETS; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "  p%d: [a]\n", i);
  expect_load_error(text, "%s:19: presets: at most 16 presets are allowed (got 17)");
}

static void test_errors_node_kinds(void **state) {
  expect_load_error("tiers:\n  a: b\n", "%s:2: tiers: expected a list, got a mapping");
  expect_load_error("nats_url: [a, b]\n" ONE_TIER,
                    "%s:1: nats_url: expected a scalar value, got a list");
  expect_load_error("tiers: [x]\n", "%s:1: tiers[0]: expected a mapping, got a scalar");
  expect_load_error("tiers: [{name: a, backoff: 1s}]\n",
                    "%s:1: tiers[0].backoff: expected a list, got a scalar");
  expect_load_error("tiers: [{name: a, backoff: [[1s]]}]\n",
                    "%s:1: tiers[0].backoff[0]: expected a scalar value, got a list");
  expect_load_error(ONE_TIER "event_tiers: [a]\n",
                    "%s:2: event_tiers: expected a mapping, got a list");
  expect_load_error("- a\n- b\n",
                    "%s:1: expected a mapping of options at the top level, got a list");
  expect_load_error("? [a]\n: b\n", "%s:1: expected a scalar value, got a list");
}

static void test_errors_files_and_syntax(void **state) {
  expect_load_error("key: a\n  b: c\n",
                    "%s:2: YAML syntax error: mapping values are not allowed in this context");
  expect_load_error("nats_url: [a\n", "%s:2: YAML syntax error: did not find expected ',' or "
                                      "']' (while parsing a flow sequence at line 1)");
  expect_load_error("nats_url: \xff\xfe\n", "%s: cannot read byte 10: invalid leading UTF-8 octet");
  expect_load_error("", "%s: file is empty (expected a mapping of options)");
  expect_load_error("# only a comment\n", "%s: file is empty (expected a mapping of options)");
  expect_load_error("log_level: info\n---\nlog_level: warn\n",
                    "%s:2: a config file holds one YAML document, found another");

  static tb_config_t cfg;
  tb_config_init(&cfg);
  assert_int_equal(tb_config_load_file(&cfg, "/nonexistent-tb/x.yaml"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "/nonexistent-tb/x.yaml: cannot open: No such file or directory");
  assert_int_equal(tb_config_load_file(&cfg, "/tmp"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "/tmp: cannot open: Is a directory");
  assert_int_equal(tb_config_load_file(&cfg, ""), TB_ERR_CONFIG);

  if (geteuid() != 0) { /* root reads mode-000 files, so only a normal user can test this */
    char path[PATH_MAX], want[PATH_MAX + 64];
    write_tmp(ONE_TIER, path);
    assert_int_equal(chmod(path, 0), 0);
    assert_int_equal(tb_config_load_file(&cfg, path), TB_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s: cannot open: Permission denied", path);
    assert_string_equal(tb_errdetail(), want);
    unlink(path);
  }
}

/* ----------------------------------------------------------------------------------------
 * Bounds at both edges
 * -------------------------------------------------------------------------------------- */

static void test_scalar_bounds(void **state) {
  static const struct {
    const char *key, *min_ok, *below, *max_ok, *above;
    int64_t min_v, max_v;
    size_t off, size;
  } cases[] = {
#define F(f) offsetof(tb_config_t, f), sizeof(((tb_config_t *)0)->f)
      {"duplicate_window", "1s", "999ms", "24h", "86400001ms", 1000, 86400000,
       F(duplicate_window_ms)},
      {"max_payload", "1024", "1023", "67108864", "67108865", 1024, 67108864, F(max_payload_bytes)},
      {"stream_max_age", "0s", NULL, "3650d", "315360000001", 0, 315360000000LL,
       F(stream_max_age_ms)},
      {"commit_batch_max", "1", "0", "100000", "100001", 1, 100000, F(commit_batch_max)},
      {"commit_batch_time", "0us", NULL, "1000000us", "1000001us", 0, 1000000, F(commit_batch_us)},
      {"commit_batch_busy_time", "0us", NULL, "1s", "1000001us", 0, 1000000,
       F(commit_batch_busy_us)},
      {"nats_connect_timeout", "0ms", NULL, "1h", "3600001", 0, 3600000,
       F(nats_connect_timeout_ms)},
      {"publish_ack_wait", "100ms", "99ms", "10m", "600001", 100, 600000, F(publish_ack_wait_ms)},
      {"publish_give_up", "1s", "999ms", "1h", "3600001", 1000, 3600000, F(publish_give_up_ms)},
      {"snapshot_interval", "0s", NULL, "30d", "2592000001", 0, 2592000000LL,
       F(snapshot_interval_ms)},
      {"snapshot_keep", "1", "0", "1000", "1001", 1, 1000, F(snapshot_keep)},
      {"http_threads", "1", "0", "256", "257", 1, 256, F(http_threads)},
      {"scheduler_lease_ttl", "3s", "2999ms", "10m", "600001", 3000, 600000,
       F(scheduler_lease_ttl_ms)},
#undef F
  };
  static tb_config_t cfg;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tb_config_init(&cfg);
    int64_t got;
    char *field = (char *)&cfg + cases[i].off;
#define FIELD_VALUE() (cases[i].size == sizeof(int) ? (int64_t) * (int *)field : *(int64_t *)field)
    assert_int_equal(tb_config_set(&cfg, cases[i].key, cases[i].min_ok), TB_OK);
    got = FIELD_VALUE();
    assert_int_equal(got, cases[i].min_v);
    assert_int_equal(tb_config_set(&cfg, cases[i].key, cases[i].max_ok), TB_OK);
    got = FIELD_VALUE();
    assert_int_equal(got, cases[i].max_v);
    assert_int_equal(tb_config_set(&cfg, cases[i].key, cases[i].above), TB_ERR_CONFIG);
    assert_int_equal(FIELD_VALUE(), cases[i].max_v); /* a refused value changes nothing */
    char want[256];
    snprintf(want, sizeof(want), "%s: must be ", cases[i].key);
    assert_memory_equal(tb_errdetail(), want, strlen(want));
    assert_non_null(strstr(tb_errdetail(), cases[i].above));
    if (cases[i].below) {
      assert_int_equal(tb_config_set(&cfg, cases[i].key, cases[i].below), TB_ERR_CONFIG);
      assert_memory_equal(tb_errdetail(), want, strlen(want));
    }
#undef FIELD_VALUE
  }
  /* Negative numbers are refused whatever the minimum. */
  assert_int_equal(tb_config_set(&cfg, "commit_batch_max", "-1"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "commit_batch_max: must be an integer between 1 and 100000 (got '-1')");
  assert_int_equal(tb_config_set(&cfg, "stream_max_age", "-1s"), TB_ERR_CONFIG);
  assert_int_equal(tb_config_set(&cfg, "commit_batch_max", "99999999999999999999"), TB_ERR_CONFIG);

  /* String lengths: the buffer size minus the terminator is the maximum. */
  char long_text[PATH_MAX + 2];
  memset(long_text, 'u', sizeof(long_text));
  long_text[TB_URL_MAX - 1] = '\0';
  assert_int_equal(tb_config_set(&cfg, "nats_url", long_text), TB_OK);
  assert_int_equal(strlen(cfg.nats_url), TB_URL_MAX - 1);
  long_text[TB_URL_MAX - 1] = 'u';
  long_text[TB_URL_MAX] = '\0';
  assert_int_equal(tb_config_set(&cfg, "nats_url", long_text), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "nats_url: must be 1 to 255 characters (got 256 characters)");
  assert_int_equal(strlen(cfg.nats_url), TB_URL_MAX - 1);
  long_text[TB_URL_MAX] = 'u';
  long_text[PATH_MAX - 1] = '\0';
  assert_int_equal(tb_config_set(&cfg, "db_path", long_text), TB_OK);
  long_text[PATH_MAX - 1] = 'u';
  long_text[PATH_MAX] = '\0';
  assert_int_equal(tb_config_set(&cfg, "db_path", long_text), TB_ERR_CONFIG);
  assert_int_equal(tb_config_set(&cfg, "db_path", ""), TB_ERR_CONFIG);
  char want[128];
  snprintf(want, sizeof(want), "db_path: must be 1 to %d characters (got 0 characters)",
           PATH_MAX - 1);
  assert_string_equal(tb_errdetail(), want);
  assert_int_equal(tb_config_set(&cfg, "stream_prefix", "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "stream_prefix", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"),
                   TB_ERR_CONFIG);
  assert_string_equal(cfg.stream_prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234");

  /* Every log level name, and nothing else. */
  static const char *levels[] = {"debug", "info", "warn", "error", "off"};
  for (int l = 0; l < 5; l++) {
    assert_int_equal(tb_config_set(&cfg, "log_level", levels[l]), TB_OK);
    assert_int_equal(cfg.log_level, l);
  }
  assert_int_equal(tb_config_set(&cfg, "log_level", "INFO"), TB_ERR_CONFIG);
  assert_int_equal(tb_config_set(&cfg, "log_level", "1"), TB_ERR_CONFIG);
}

/* Loads one tier with |fields| and returns the status; the tier lands in |cfg|. */
static tb_status load_tier(const char *fields, tb_config_t *cfg) {
  char text[512], path[PATH_MAX];
  snprintf(text, sizeof(text), "tiers: [{name: a, %s}]\n", fields);
  return load_text(text, cfg, path);
}

static void test_tier_bounds(void **state) {
  static const struct {
    const char *field, *min_ok, *below, *max_ok, *above;
    int64_t min_v, max_v;
    size_t off, size;
  } cases[] = {
#define F(f) offsetof(tb_tier_config_t, f), sizeof(((tb_tier_config_t *)0)->f)
      {"timeout", "1s", "999ms", "24h", "1441m", 1000, 86400000, F(timeout_ms)},
      {"concurrency", "1", "0", "10000", "10001", 1, 10000, F(concurrency)},
      {"max_deliver", "1", "0", "1000", "1001", 1, 1000, F(max_deliver)},
      {"aging", "0s", NULL, "24h", "86400001ms", 0, 86400000, F(aging_ms)},
      {"job_priority", "1", "0", "100", "101", 1, 100, F(job_priority)},
#undef F
  };
  static tb_config_t cfg;
  char fields[128], want[128];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *vals[4] = {cases[i].min_ok, cases[i].max_ok, cases[i].below, cases[i].above};
    for (int v = 0; v < 4; v++) {
      if (vals[v] == NULL) continue;
      /* backoff: [] so that max_deliver 1 is a valid tier on its own */
      snprintf(fields, sizeof(fields), "backoff: [], %s: %s", cases[i].field, vals[v]);
      tb_status s = load_tier(fields, &cfg);
      if (v < 2) {
        if (s != TB_OK) fail_msg("%s: %s", fields, tb_errdetail());
        const char *p = (const char *)&cfg.tiers[0] + cases[i].off;
        int64_t got = cases[i].size == sizeof(int) ? *(const int *)p : *(const int64_t *)p;
        assert_int_equal(got, v == 0 ? cases[i].min_v : cases[i].max_v);
      } else {
        assert_int_equal(s, TB_ERR_CONFIG);
        snprintf(want, sizeof(want), ":1: tiers[0].%s: must be ", cases[i].field);
        if (strstr(tb_errdetail(), want) == NULL) fail_msg("%s: %s", fields, tb_errdetail());
      }
    }
  }
  /* Backoff items: 1ms..24h each; as many as max_deliver - 1. */
  assert_int_equal(load_tier("backoff: [1ms, 24h]", &cfg), TB_OK);
  assert_int_equal(cfg.tiers[0].backoff_ms[0], 1);
  assert_int_equal(cfg.tiers[0].backoff_ms[1], 86400000);
  assert_int_equal(load_tier("backoff: [0ms]", &cfg), TB_ERR_CONFIG);
  assert_int_equal(load_tier("backoff: [86400001ms]", &cfg), TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), ":1: tiers[0].backoff[0]: must be a duration between "
                                         "1ms and 24h (got '86400001ms')"));
  assert_int_equal(load_tier("max_deliver: 4, backoff: [1s, 2s, 3s]", &cfg), TB_OK);
  assert_int_equal(load_tier("max_deliver: 3, backoff: [1s, 2s, 3s]", &cfg), TB_ERR_CONFIG);
  assert_int_equal(load_tier("max_deliver: 9, backoff: [1, 2, 3, 4, 5, 6, 7, 8]", &cfg), TB_OK);
  assert_int_equal(cfg.tiers[0].n_backoff, TB_MAX_BACKOFF);
  assert_int_equal(cfg.tiers[0].backoff_ms[7], 8);
  /* Tier names: 31 characters fit the buffer, 32 do not. */
  static tb_config_t c2;
  char path[PATH_MAX];
  assert_int_equal(load_text("tiers: [{name: abcdefghijklmnopqrstuvwxyz01234}]\n", &c2, path),
                   TB_OK);
  assert_int_equal(load_text("tiers: [{name: abcdefghijklmnopqrstuvwxyz012345}]\n", &c2, path),
                   TB_ERR_CONFIG);
  char want_name[PATH_MAX + 128];
  snprintf(want_name, sizeof(want_name),
           "%s:1: tiers[0].name: must be 1 to 31 characters of lowercase "
           "letters, digits, '_' or '-' (got 32 characters)",
           path);
  assert_string_equal(tb_errdetail(), want_name);
}

/* ----------------------------------------------------------------------------------------
 * Overrides: tb_config_set, environment, tb_config_validate on code-built configs
 * -------------------------------------------------------------------------------------- */

static void test_config_set(void **state) {
  static tb_config_t cfg;
  tb_config_init(&cfg);
  assert_int_equal(tb_config_set(&cfg, "nats_url", "nats://10.0.0.1:4222,nats://10.0.0.2:4222"),
                   TB_OK);
  assert_string_equal(cfg.nats_url, "nats://10.0.0.1:4222,nats://10.0.0.2:4222");
  assert_int_equal(tb_config_set(&cfg, "max_payload", "2MiB"), TB_OK);
  assert_int_equal(cfg.max_payload_bytes, 2 * 1024 * 1024);
  assert_int_equal(tb_config_set(&cfg, "max_payload", "64k"), TB_OK);
  assert_int_equal(cfg.max_payload_bytes, 65536);
  assert_int_equal(tb_config_set(&cfg, "max_payload", "1KB"), TB_OK);
  assert_int_equal(cfg.max_payload_bytes, 1024);
  assert_int_equal(tb_config_set(&cfg, "commit_batch_time", "500us"), TB_OK);
  assert_int_equal(cfg.commit_batch_us, 500);
  assert_int_equal(tb_config_set(&cfg, "commit_batch_time", "3ms"), TB_OK);
  assert_int_equal(cfg.commit_batch_us, 3000);
  assert_int_equal(tb_config_set(&cfg, "commit_batch_time", "1500"), TB_ERR_CONFIG); /* 1.5 s */
  assert_int_equal(cfg.commit_batch_us, 3000);
  assert_int_equal(tb_config_set(&cfg, "duplicate_window", "90s"), TB_OK);
  assert_int_equal(cfg.duplicate_window_ms, 90000);

  assert_int_equal(tb_config_set(&cfg, "duplicate_window", "0s"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "duplicate_window: must be a duration between 1s and 24h (got '0s')");
  assert_int_equal(cfg.duplicate_window_ms, 90000);
  assert_int_equal(tb_config_set(&cfg, "duplicate_window", "soon"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "duplicate_window: duration 'soon': expected a number with "
                                      "a unit (ms, s, m, h, d)");
  /* An unknown option lists every one (whole: the last is there), and suggests a close one. */
  assert_int_equal(tb_config_set(&cfg, "nope", "1"), TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), "unknown option 'nope' (options: nats_url, nats_user, "));
  assert_non_null(strstr(tb_errdetail(), ", snapshot_keep)"));
  assert_null(strstr(tb_errdetail(), "did you mean"));
  assert_int_equal(tb_config_set(&cfg, "max_payloa", "1"), TB_ERR_CONFIG);
  assert_non_null(
      strstr(tb_errdetail(), "unknown option 'max_payloa' (did you mean 'max_payload'? options: "));
  assert_int_equal(tb_config_set(&cfg, "tiers", "[]"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "tiers: can only be set in the config file");
  assert_int_equal(tb_config_set(&cfg, "name", "x"), TB_ERR_CONFIG); /* tier fields are not */
  assert_non_null(strstr(tb_errdetail(), "unknown option 'name' (options: "));
}

static void test_env_overrides(void **state) {
  static tb_config_t cfg;
  tb_config_init(&cfg);
  unsetenv("TIERBUS_NATS_URL");
  unsetenv("TIERBUS_DB");
  unsetenv("TIERBUS_DATA_DIR");
  assert_int_equal(tb_config_apply_env(&cfg), TB_OK);
  assert_string_equal(cfg.nats_url, "nats://127.0.0.1:4222");

  setenv("TIERBUS_NATS_URL", "nats://env:4333", 1);
  setenv("TIERBUS_DB", "/tmp/env.db", 1);
  setenv("TIERBUS_DATA_DIR", "", 1); /* empty = unset */
  assert_int_equal(tb_config_apply_env(&cfg), TB_OK);
  assert_string_equal(cfg.nats_url, "nats://env:4333");
  assert_string_equal(cfg.db_path, "/tmp/env.db");
  assert_string_equal(cfg.data_dir, "var");
  setenv("TIERBUS_DATA_DIR", "/srv/tb", 1);
  assert_int_equal(tb_config_apply_env(&cfg), TB_OK);
  assert_string_equal(cfg.data_dir, "/srv/tb");
  assert_int_equal(cfg.commit_batch_max, 256); /* options without a variable are untouched */

  char big[300];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  setenv("TIERBUS_NATS_URL", big, 1);
  assert_int_equal(tb_config_apply_env(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "TIERBUS_NATS_URL: nats_url: must be 1 to 255 characters (got 299 "
                      "characters)");
  assert_string_equal(cfg.nats_url, "nats://env:4333");
  unsetenv("TIERBUS_NATS_URL");
  unsetenv("TIERBUS_DB");
  unsetenv("TIERBUS_DATA_DIR");
}

static void add_tier(tb_config_t *cfg, const char *name) {
  tb_tier_config_t *t = &cfg->tiers[cfg->n_tiers++];
  memset(t, 0, sizeof(*t));
  snprintf(t->name, sizeof(t->name), "%s", name);
  t->timeout_ms = 60000;
  t->concurrency = 4;
  t->max_deliver = 3;
  t->backoff_ms[0] = 1500;
  t->n_backoff = 1;
  t->aging_ms = 250;
  t->job_priority = 2;
}

static void test_validate_built_config(void **state) {
  static tb_config_t cfg;
  tb_config_init(&cfg);
  add_tier(&cfg, "fast");
  add_tier(&cfg, "slow");
  assert_int_equal(tb_config_validate(&cfg), TB_OK);

  cfg.tiers[1].concurrency = 0;
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "tiers[1].concurrency: must be an integer between 1 and 10000 (got '0')");
  cfg.tiers[1].concurrency = 10000;
  cfg.tiers[1].timeout_ms = 999;
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "tiers[1].timeout: must be a duration between 1s and 24h (got '999ms')");
  cfg.tiers[1].timeout_ms = 1000;
  cfg.tiers[1].n_backoff = TB_MAX_BACKOFF + 1;
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "tiers[1].backoff: must have at most 8 items (got 9)");
  cfg.tiers[1].n_backoff = 1;
  snprintf(cfg.tiers[1].name, sizeof(cfg.tiers[1].name), "fast");
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "tiers[1].name: duplicate tier name 'fast' (also tiers[0])");
  snprintf(cfg.tiers[1].name, sizeof(cfg.tiers[1].name), "slow");
  assert_int_equal(tb_config_validate(&cfg), TB_OK);

  cfg.log_level = 7;
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "log_level: must be one of debug, info, warn, error, off (got '7')");
  cfg.log_level = TB_LOG_OFF;

  cfg.n_event_tiers = 1;
  snprintf(cfg.event_tiers[0].event, sizeof(cfg.event_tiers[0].event), "E");
  snprintf(cfg.event_tiers[0].tier, sizeof(cfg.event_tiers[0].tier), "medium");
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "event_tiers.E: unknown tier 'medium' (tiers are fast, slow)");
  snprintf(cfg.event_tiers[0].tier, sizeof(cfg.event_tiers[0].tier), "slow");
  assert_int_equal(tb_config_validate(&cfg), TB_OK);

  cfg.n_tiers = TB_MAX_TIERS + 1;
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "tiers: at most 8 tiers are allowed (got 9)");
}

/* The NATS credentials and TLS options (issue 11): one kind of credentials, complete pairs,
 * readable files, safe characters, and a secret never shown. */
static void test_nats_auth_options(void **state) {
  static tb_config_t cfg;
  expect_load_error("nats_user: svc\n" ONE_TIER,
                    "%s:1: nats_password: is required with nats_user (or use "
                    "TIERBUS_NATS_PASSWORD)");
  expect_load_error(ONE_TIER "nats_password: pw\n",
                    "%s:2: nats_user: is required with nats_password");
  expect_load_error("nats_user: svc\nnats_password: pw\nnats_token: t\n" ONE_TIER,
                    "%s:3: nats_token: give nats_token or nats_user/nats_password, not both");
  expect_load_error("nats_token: t\nnats_creds: /etc/hostname\n" ONE_TIER,
                    "%s:2: nats_creds: give nats_creds or nats_token, not both");
  expect_load_error("nats_user: u\nnats_password: 'a\"b'\n" ONE_TIER,
                    "%s:2: nats_password: must contain only printable ASCII other than space, "
                    "'\"' and '\\' (character 2 is not; the value is not shown)");
  expect_load_error("nats_token: 'sec ret'\n" ONE_TIER,
                    "%s:1: nats_token: must contain only printable ASCII other than space, '\"' "
                    "and '\\' (character 4 is not; the value is not shown)");
  /* A user name is no secret: it is shown. */
  expect_load_error("nats_user: 'a\\b'\nnats_password: p\n" ONE_TIER,
                    "%s:1: nats_user: must contain only printable ASCII other than space, '\"' "
                    "and '\\' (got 'a\\b')");
  expect_load_error("nats_tls_ca: /nonexistent/ca.pem\n" ONE_TIER,
                    "%s:1: nats_tls_ca: cannot read '/nonexistent/ca.pem': No such file or "
                    "directory");
  expect_load_error("nats_tls_ca: /tmp\n" ONE_TIER,
                    "%s:1: nats_tls_ca: '/tmp' is not a regular file");
  expect_load_error("nats_tls_cert: /etc/hostname\n" ONE_TIER,
                    "%s:1: nats_tls_key: is required with nats_tls_cert");
  expect_load_error(ONE_TIER "nats_tls_key: /etc/hostname\n",
                    "%s:2: nats_tls_cert: is required with nats_tls_key");
  expect_load_error(
      "nats_creds: /nonexistent.creds\n" ONE_TIER,
      "%s:1: nats_creds: cannot read '/nonexistent.creds': No such file or directory");

  /* Length bounds at both edges: 255 characters of password or token, 127 of user. */
  char yaml[1024], long_pw[257], long_user[129];
  memset(long_pw, 'p', 256);
  long_pw[256] = '\0';
  memset(long_user, 'u', 128);
  long_user[128] = '\0';
  snprintf(yaml, sizeof(yaml), "nats_user: %.127s\nnats_password: %.255s\n" ONE_TIER, long_user,
           long_pw);
  expect_load_ok(yaml, &cfg);
  assert_int_equal(strlen(cfg.nats_password), 255);
  snprintf(yaml, sizeof(yaml), "nats_token: %s\n" ONE_TIER, long_pw);
  expect_load_error(yaml, "%s:1: nats_token: must be 0 to 255 characters of printable ASCII other "
                          "than space, '\"' and '\\' (got 256 characters)");
  snprintf(yaml, sizeof(yaml), "nats_user: %s\nnats_password: p\n" ONE_TIER, long_user);
  expect_load_error(yaml, "%s:1: nats_user: must be 0 to 127 characters of printable ASCII other "
                          "than space, '\"' and '\\' (got 128 characters)");

  /* Each kind alone, with readable TLS files, is accepted. */
  expect_load_ok("nats_token: 'a$b{c}#d'\n" ONE_TIER, &cfg);
  assert_string_equal(cfg.nats_token, "a$b{c}#d");
  expect_load_ok("nats_creds: /etc/hostname\nnats_tls_ca: /etc/hostname\n"
                 "nats_tls_cert: /etc/hostname\nnats_tls_key: /etc/hostname\n"
                 "nats_tls_hostname: nats.example.com\n" ONE_TIER,
                 &cfg);
  assert_string_equal(cfg.nats_tls_hostname, "nats.example.com");

  /* The environment sets them like the file, and is held to the same rules. */
  tb_config_init(&cfg);
  add_tier(&cfg, "a");
  setenv("TIERBUS_NATS_TOKEN", "from-env", 1);
  assert_int_equal(tb_config_apply_env(&cfg), TB_OK);
  unsetenv("TIERBUS_NATS_TOKEN");
  assert_string_equal(cfg.nats_token, "from-env");
  assert_int_equal(tb_config_validate(&cfg), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "nats_user", "u"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "nats_password", "p"), TB_OK);
  assert_int_equal(tb_config_validate(&cfg), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(),
                      "nats_token: give nats_token or nats_user/nats_password, not both");

  /* `config example` never writes a secret it was given. */
  cfg.nats_token[0] = '\0';
  assert_int_equal(tb_config_set(&cfg, "nats_password", "hunter2-secret"), TB_OK);
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  tb_config_write_example(&cfg, mem);
  fclose(mem);
  assert_null(strstr(text, "hunter2-secret"));
  assert_non_null(strstr(text, "\nnats_user: u\n"));
  assert_non_null(strstr(text, "\nnats_password: \"\"\n"));
  free(text);
}

/* ----------------------------------------------------------------------------------------
 * Example file and YAML styles
 * -------------------------------------------------------------------------------------- */

/* Writes |cfg| as an example, loads it back and checks that nothing changed. */
static void round_trip(const tb_config_t *cfg) {
  static tb_config_t back;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "/tmp/tbcfg-rt-XXXXXX.yaml");
  int fd = mkstemps(path, 5);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  tb_config_write_example(cfg, f);
  assert_int_equal(fclose(f), 0);
  tb_config_init(&back);
  tb_status s = tb_config_load_file(&back, path);
  if (s != TB_OK) fail_msg("example does not load: %s", tb_errdetail());
  unlink(path);
  assert_same_config(cfg, &back);
}

static void test_example_round_trip(void **state) {
  static tb_config_t cfg;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/config/tierbus.yaml", source_dir());
  tb_config_init(&cfg);
  assert_int_equal(tb_config_load_file(&cfg, path), TB_OK);
  round_trip(&cfg);

  /* Values that need quoting or unusual units must survive too. */
  assert_int_equal(tb_config_set(&cfg, "db_path", "/tmp/my dir/db #1 \"q\" \\ x: y.db"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "data_dir", "null"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "nats_url", "nats://a:1,nats://b:2"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "stream_prefix", "-X"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "commit_batch_time", "1500us"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "stream_max_age", "3650d"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "duplicate_window", "1001ms"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "nats_connect_timeout", "0s"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "log_level", "off"), TB_OK);
  assert_int_equal(tb_config_set(&cfg, "max_payload", "67108864"), TB_OK);
  cfg.tiers[4].n_backoff = 0; /* memcmp below: items past the count must be zero too */
  memset(cfg.tiers[4].backoff_ms, 0, sizeof(cfg.tiers[4].backoff_ms));
  cfg.tiers[0].timeout_ms = 86400000;
  cfg.tiers[1].aging_ms = 1;
  round_trip(&cfg);

  /* A config without event tiers or presets writes empty mappings. */
  static tb_config_t small;
  tb_config_init(&small);
  add_tier(&small, "only");
  round_trip(&small);

  /* The example documents every option with its range, default and variable. */
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  tb_config_write_example(&small, mem);
  fclose(mem);
  assert_non_null(strstr(text, "\n# Must be a duration between 1s and 24h; default 2m.\n"
                               "duplicate_window: 2m\n"));
  assert_non_null(strstr(text, "; default var/tierbus.db; env TIERBUS_DB.\ndb_path: "));
  assert_non_null(strstr(text, "relative to the working directory"));
  assert_non_null(
      strstr(text, "\ntiers:\n  - {name: only, task_queue: \"\", timeout: 1m, concurrency: 4, "
                   "max_deliver: 3, backoff: [1500ms], aging: 250ms, "
                   "job_priority: 2, max_age: 0s, max_bytes: 0, max_msgs: 0, "
                   "redelivery_bound: 0s}\n"));
  assert_non_null(strstr(text, "\nevent_tiers: {}\n"));
  assert_non_null(strstr(text, "\npresets: {}\n"));
  free(text);
}

static void test_flow_and_block_styles(void **state) {
  static const char block[] = "nats_url: nats://h:1\n"
                              "commit_batch_time: 750us\n"
                              "tiers:\n"
                              "  - name: critical\n"
                              "    timeout: 2m\n"
                              "    concurrency: 50\n"
                              "    backoff:\n"
                              "      - 1s\n"
                              "      - 5s\n"
                              "  - name: high\n"
                              "    aging: 1s\n"
                              "event_tiers:\n"
                              "  WORKSPACE_REPO_ADDED: critical\n"
                              "presets:\n"
                              "  all:\n"
                              "    - critical\n"
                              "    - high\n";
  static const char flow[] = "{nats_url: \"nats://h:1\", commit_batch_time: '750us', tiers: "
                             "[{name: critical, timeout: 2m, concurrency: 50, backoff: [1s, "
                             "5s]}, {name: high, aging: 1s}], event_tiers: "
                             "{WORKSPACE_REPO_ADDED: critical}, presets: {all: [critical, "
                             "high]}}\n";
  static tb_config_t a, b;
  expect_load_ok(block, &a);
  expect_load_ok(flow, &b);
  assert_same_config(&a, &b);
  assert_int_equal(a.commit_batch_us, 750);
  assert_int_equal(a.tiers[0].n_backoff, 2);
  assert_int_equal(a.tiers[1].aging_ms, 1000);
  assert_int_equal(a.presets[0].n_tiers, 2);
  /* Aliases resolve to the anchored node. */
  static const char aliased[] = "tiers:\n  - {name: &c critical, timeout: 2m, concurrency: 50, "
                                "backoff: [1s, 5s]}\n  - {name: high, aging: 1s}\n"
                                "nats_url: nats://h:1\ncommit_batch_time: 750us\n"
                                "event_tiers: {WORKSPACE_REPO_ADDED: *c}\n"
                                "presets: {all: [*c, high]}\n";
  expect_load_ok(aliased, &b);
  assert_same_config(&a, &b);
}

static void test_default_path(void **state) {
  assert_string_equal(tb_config_default_path("/x/explicit.yaml"), "/x/explicit.yaml");
  setenv("TIERBUS_CONFIG", "/x/env.yaml", 1);
  assert_string_equal(tb_config_default_path(NULL), "/x/env.yaml");
  assert_string_equal(tb_config_default_path("/x/explicit.yaml"), "/x/explicit.yaml");
  unsetenv("TIERBUS_CONFIG");

  char cwd[PATH_MAX], dir[] = "/tmp/tbcfg-cwd-XXXXXX", sub[PATH_MAX], file[PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_non_null(mkdtemp(dir));
  assert_int_equal(chdir(dir), 0);
  /* No ./config/tierbus.yaml here: the source tree's file. */
  assert_string_equal(tb_config_default_path(NULL), TB_SOURCE_DIR "/config/tierbus.yaml");
  snprintf(sub, sizeof(sub), "%s/config", dir);
  snprintf(file, sizeof(file), "%s/config/tierbus.yaml", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  assert_string_equal(tb_config_default_path(NULL), "config/tierbus.yaml");
  assert_int_equal(chdir(cwd), 0);
  unlink(file);
  rmdir(sub);
  rmdir(dir);
}

/* service_concurrency (seed 001's per-queue limits): the shipped values, the lookup, and each
 * error naming the key and line. */
static void test_service_concurrency(void **state) {
  static tb_config_t cfg;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/config/tierbus.yaml", source_dir());
  tb_config_init(&cfg);
  if (tb_config_load_file(&cfg, path) != TB_OK) fail_msg("%s", tb_errdetail());
  assert_int_equal(tb_config_service_limit(&cfg, "ai"), 1);
  assert_int_equal(tb_config_service_limit(&cfg, "pdf"), 3);
  assert_int_equal(tb_config_service_limit(&cfg, "file"), 3);
  assert_int_equal(tb_config_service_limit(&cfg, "database"), 3);
  assert_int_equal(tb_config_service_limit(&cfg, "scheduled"), 3);
  assert_int_equal(tb_config_service_limit(&cfg, "email"), 0); /* not listed: no limit */
  assert_int_equal(tb_config_service_limit(&cfg, NULL), 0);

  expect_load_ok(ONE_TIER "service_concurrency: {ai: 10000, b-2_x: 1}\n", &cfg);
  assert_int_equal(tb_config_service_limit(&cfg, "ai"), 10000);
  assert_int_equal(tb_config_service_limit(&cfg, "b-2_x"), 1);
  expect_load_error(ONE_TIER "service_concurrency:\n  ai: 0\n",
                    "%s:3: service_concurrency.ai: must be an integer between 1 and 10000 (got "
                    "'0')");
  expect_load_error(ONE_TIER "service_concurrency:\n  ai: 10001\n",
                    "%s:3: service_concurrency.ai: must be an integer between 1 and 10000 (got "
                    "'10001')");
  expect_load_error(ONE_TIER "service_concurrency:\n  ai: 2x\n",
                    "%s:3: service_concurrency.ai: must be an integer between 1 and 10000 (got "
                    "'2x')");
  expect_load_error(ONE_TIER "service_concurrency:\n  AI: 1\n",
                    "%s:3: service_concurrency: service name 'AI' must be lowercase letters, "
                    "digits, '_' or '-'");
  expect_load_error(ONE_TIER "service_concurrency:\n  ai: 1\n  ai: 2\n",
                    "%s:4: service_concurrency: service 'ai' is listed twice");
  expect_load_error(ONE_TIER "service_concurrency: [ai]\n",
                    "%s:2: service_concurrency: expected a mapping, got a list");
}

/* Seed 001's JOB_PRIORITY numbers, read through the tiers' job_priority (shipped 1, 3, 5, 7, 9),
 * wherever a tier name is accepted; every boundary on purpose. */
static void test_job_priority_numbers(void **state) {
  static tb_config_t cfg;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/config/tierbus.yaml", source_dir());
  tb_config_init(&cfg);
  if (tb_config_load_file(&cfg, path) != TB_OK) fail_msg("%s", tb_errdetail());
  static const struct {
    const char *text;
    const char *tier; /* NULL: refused */
  } cases[] = {
      {"1", "critical"},   {"2", "high"},     {"3", "high"},  {"4", "normal"},
      {"5", "normal"},     {"6", "low"},      {"7", "low"},   {"8", "background"},
      {"9", "background"}, {"0", "critical"}, /* more urgent than any: the most urgent tier */
      {"10", NULL},        {"100", NULL},     {"1000", NULL}, {"-1", NULL},
      {"+3", NULL},        {" 3", NULL},      {"3 ", NULL},   {"3x", NULL},
      {"", NULL},          {"high", "high"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int t = tb_config_tier_index(&cfg, cases[i].text);
    if (cases[i].tier == NULL) {
      if (t >= 0) fail_msg("'%s' gave tier %s, expected none", cases[i].text, cfg.tiers[t].name);
    } else {
      if (t < 0) fail_msg("'%s' gave no tier, expected %s", cases[i].text, cases[i].tier);
      assert_string_equal(cfg.tiers[t].name, cases[i].tier);
    }
  }
  /* A tier's own name wins over a number. */
  expect_load_ok("tiers: [{name: a, job_priority: 1}, {name: '3', job_priority: 5}]\n", &cfg);
  assert_int_equal(tb_config_tier_index(&cfg, "3"), 1);
  assert_int_equal(tb_config_tier_index(&cfg, "2"), 1);
  /* Numbers name tiers in config references too. */
  expect_load_ok("tiers: [{name: a, job_priority: 1}, {name: b, job_priority: 3}]\n"
                 "event_tiers: {E: 3}\nworkflow_tiers: {w: 1}\n",
                 &cfg);
  assert_string_equal(tb_config_event_tier(&cfg, "E"), "b");
  assert_string_equal(tb_config_workflow_tier(&cfg, "w", NULL), "a");
  /* Job priorities follow the tiers' priority order. */
  expect_load_error("tiers: [{name: a, job_priority: 3}, {name: b, job_priority: 1}]\n",
                    "%s:1: tiers[1].job_priority: 1 is more urgent than tiers[0] (a, 3): tiers are "
                    "in priority order, so job priorities must not decrease");
  expect_load_ok("tiers: [{name: a, job_priority: 3}, {name: b, job_priority: 3}]\n", &cfg);
  assert_int_equal(tb_config_tier_index(&cfg, "3"), 0); /* equal: the first, more urgent */
}

/* job_types (seed 001's custom job types): TYPE: SERVICE.ACTION, each part checked. */
static void test_job_types(void **state) {
  static tb_config_t cfg;
  expect_load_ok(ONE_TIER "job_types:\n  MY_CUSTOM_JOB: reports.build\n  x/y.z: a-1.b_2\n", &cfg);
  const tb_job_type_t *jt = tb_config_job_type(&cfg, "MY_CUSTOM_JOB");
  assert_non_null(jt);
  assert_string_equal(jt->service, "reports");
  assert_string_equal(jt->action, "build");
  jt = tb_config_job_type(&cfg, "x/y.z");
  assert_non_null(jt);
  assert_string_equal(jt->service, "a-1");
  assert_string_equal(jt->action, "b_2");
  assert_null(tb_config_job_type(&cfg, "OTHER"));
  assert_null(tb_config_job_type(&cfg, NULL));
  round_trip(&cfg);
  static const char *const bad[] = {"reports",       "reports.",       ".build",
                                    "Reports.build", "reports.bu ild", "reports.build.x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char yaml[256], want[512];
    snprintf(yaml, sizeof(yaml), ONE_TIER "job_types:\n  J: '%s'\n", bad[i]);
    snprintf(want, sizeof(want),
             "%%s:3: job_types.J: must be SERVICE.ACTION, each 1 to 31 lowercase letters, "
             "digits, '_' or '-' (got '%s')",
             bad[i]);
    expect_load_error(yaml, want);
  }
  expect_load_error(ONE_TIER "job_types:\n  J: a.b\n  J: a.c\n",
                    "%s:4: job_types: job type 'J' is listed twice");
  expect_load_error(ONE_TIER "job_types:\n  'J K': a.b\n",
                    "%s:3: job_types: job type 'J K' must be letters, digits, '_', '-', '/' or "
                    "'.'");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shipped_config),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_tier_defaults),
      cmocka_unit_test(test_errors_keys_and_values),
      cmocka_unit_test(test_errors_structure),
      cmocka_unit_test(test_errors_event_tiers_and_presets),
      cmocka_unit_test(test_errors_node_kinds),
      cmocka_unit_test(test_errors_files_and_syntax),
      cmocka_unit_test(test_scalar_bounds),
      cmocka_unit_test(test_tier_bounds),
      cmocka_unit_test(test_config_set),
      cmocka_unit_test(test_env_overrides),
      cmocka_unit_test(test_validate_built_config),
      cmocka_unit_test(test_nats_auth_options),
      cmocka_unit_test(test_example_round_trip),
      cmocka_unit_test(test_flow_and_block_styles),
      cmocka_unit_test(test_default_path),
      cmocka_unit_test(test_service_concurrency),
      cmocka_unit_test(test_job_priority_numbers),
      cmocka_unit_test(test_job_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
