/* Unit tests for seed 000's escalation: every default rule alone and at its boundary, the rule
 * order, never lowering a tier, expedite, the skip mask the sweeper uses, built-in defaults
 * against a config without seed tiers, the config errors of the escalation and workflow_tiers
 * sections, a run's starting context, and the workflow type's default tier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/status.h"
#include "workflows/escalation.h"
#include "workflows/wf.h"

#define H (3600LL * 1000)

enum { CRITICAL, HIGH, NORMAL, LOW, BACKGROUND };

static tb_config_t shipped;

static const char *source_dir(void) {
  const char *dir = getenv("TB_SOURCE_DIR");
  return dir ? dir : TB_SOURCE_DIR;
}

static int load_shipped(void **state) {
  (void)state;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/config/tierbus.yaml", source_dir());
  tb_config_init(&shipped);
  if (tb_config_load_file(&shipped, path) != TB_OK) {
    fprintf(stderr, "%s\n", tb_errdetail());
    return -1;
  }
  return 0;
}

/* Loads |yaml| into |cfg| from a temp file; returns the status. */
static tb_status load_text(const char *yaml, tb_config_t *cfg) {
  char path[] = "/tmp/tbesc-XXXXXX.yaml";
  int fd = mkstemps(path, 5);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(yaml, f);
  assert_int_equal(fclose(f), 0);
  tb_config_init(cfg);
  tb_status s = tb_config_load_file(cfg, path);
  unlink(path);
  return s;
}

#define TIERS5                                                                                     \
  "tiers: [{name: critical}, {name: high}, {name: normal}, {name: low}, {name: background}]\n"

/* Asserts escalate(base, in) gives tier |want| and rule |rule| (NULL = not raised). */
static void expect(const tb_config_t *cfg, int base, tb_esc_input_t in, int want,
                   const char *rule) {
  tb_esc_result_t r = tb_wf_escalate(cfg, base, &in);
  if (r.tier != want || (rule == NULL) != (r.rule == NULL) ||
      (rule != NULL && strcmp(rule, r.rule) != 0))
    fail_msg("base %d: got tier %d rule %s, want tier %d rule %s", base, r.tier,
             r.rule ? r.rule : "(none)", want, rule ? rule : "(none)");
}

static void test_default_rules_in_seed_order(void **state) {
  (void)state;
  static const struct {
    const char *name, *tier;
  } want[] = {{"failed-retry-customer-facing", "critical"},
              {"stuck-24h", "critical"},
              {"high-business-impact", "critical"},
              {"customer-facing", "high"},
              {"failed-retry", "high"},
              {"stuck-6h", "high"}};
  /* The shipped file and the built-in table (no section in the file) are the same six rules. */
  static tb_config_t builtin;
  assert_int_equal(load_text(TIERS5, &builtin), TB_OK);
  assert_int_equal(builtin.n_escalation, -1);
  const tb_config_t *cfgs[] = {&shipped, &builtin};
  for (int c = 0; c < 2; c++) {
    int n = 0;
    const tb_esc_rule_t *rules = tb_config_escalation(cfgs[c], &n);
    assert_int_equal(n, 6);
    for (int i = 0; i < 6; i++) {
      assert_string_equal(rules[i].name, want[i].name);
      assert_string_equal(rules[i].tier, want[i].tier);
    }
    assert_int_equal(rules[1].stuck_ms, 24 * H);
    assert_int_equal(rules[5].stuck_ms, 6 * H);
    assert_string_equal(rules[2].business_impact, "high");
    assert_true(rules[0].failed_retry && rules[0].customer_facing);
  }
}

static void test_each_rule(void **state) {
  (void)state;
  const tb_config_t *c = &shipped;
  expect(c, NORMAL, (tb_esc_input_t){0}, NORMAL, NULL);
  expect(c, NORMAL, (tb_esc_input_t){.failed_retry = 1, .customer_facing = 1}, CRITICAL,
         "failed-retry-customer-facing");
  expect(c, NORMAL, (tb_esc_input_t){.stuck_ms = 24 * H + 1}, CRITICAL, "stuck-24h");
  expect(c, NORMAL, (tb_esc_input_t){.business_impact = "high"}, CRITICAL, "high-business-impact");
  expect(c, NORMAL, (tb_esc_input_t){.customer_facing = 1}, HIGH, "customer-facing");
  expect(c, NORMAL, (tb_esc_input_t){.failed_retry = 1}, HIGH, "failed-retry");
  expect(c, NORMAL, (tb_esc_input_t){.stuck_ms = 6 * H + 1}, HIGH, "stuck-6h");
  /* Boundaries: "more than" is strict. */
  expect(c, NORMAL, (tb_esc_input_t){.stuck_ms = 24 * H}, HIGH, "stuck-6h");
  expect(c, NORMAL, (tb_esc_input_t){.stuck_ms = 6 * H}, NORMAL, NULL);
  expect(c, BACKGROUND, (tb_esc_input_t){.stuck_ms = 6 * H - 1}, BACKGROUND, NULL);
  /* Other impacts are not "high". */
  expect(c, LOW, (tb_esc_input_t){.business_impact = "medium"}, LOW, NULL);
  expect(c, LOW, (tb_esc_input_t){.business_impact = ""}, LOW, NULL);
  /* The seed's own example: failed retry, customer-facing, 12 h stuck, high impact. */
  expect(
      c, HIGH,
      (tb_esc_input_t){
          .failed_retry = 1, .customer_facing = 1, .stuck_ms = 12 * H, .business_impact = "high"},
      CRITICAL, "failed-retry-customer-facing");
}

static void test_never_lowers(void **state) {
  (void)state;
  const tb_config_t *c = &shipped;
  tb_esc_input_t all = {.failed_retry = 1,
                        .customer_facing = 1,
                        .business_impact = "high",
                        .stuck_ms = 48 * H,
                        .expedite = 1};
  expect(c, CRITICAL, all, CRITICAL, NULL);
  /* Already at the rule's tier: not raised, so nothing is recorded. */
  expect(c, HIGH, (tb_esc_input_t){.customer_facing = 1}, HIGH, NULL);
  expect(c, CRITICAL, (tb_esc_input_t){.failed_retry = 1}, CRITICAL, NULL);
  /* A rule naming a less urgent tier than the base does nothing either. */
  static tb_config_t cfg;
  assert_int_equal(load_text(TIERS5 "escalation: [{name: to-low, customer_facing: true, "
                                    "tier: low}]\n",
                             &cfg),
                   TB_OK);
  expect(&cfg, NORMAL, (tb_esc_input_t){.customer_facing = 1}, NORMAL, NULL);
  expect(&cfg, BACKGROUND, (tb_esc_input_t){.customer_facing = 1}, LOW, "to-low");
}

static void test_expedite(void **state) {
  (void)state;
  const tb_config_t *c = &shipped;
  expect(c, BACKGROUND, (tb_esc_input_t){.expedite = 1}, CRITICAL, "expedite");
  /* A rule that reaches the top already gets the credit. */
  expect(c, LOW, (tb_esc_input_t){.expedite = 1, .business_impact = "high"}, CRITICAL,
         "high-business-impact");
  /* "The highest tier the rules allow": with rules that name only high, expedite gives high. */
  static tb_config_t cfg;
  assert_int_equal(load_text(TIERS5 "escalation: [{name: cf, customer_facing: true, tier: high}, "
                                    "{name: slow, stuck: 1h, tier: normal}]\n",
                             &cfg),
                   TB_OK);
  expect(&cfg, BACKGROUND, (tb_esc_input_t){.expedite = 1}, HIGH, "expedite");
  /* No rules: nothing to expedite to. */
  assert_int_equal(load_text(TIERS5 "escalation: []\n", &cfg), TB_OK);
  assert_int_equal(cfg.n_escalation, 0);
  expect(&cfg, LOW, (tb_esc_input_t){.expedite = 1, .customer_facing = 1}, LOW, NULL);
}

/* The most urgent tier wins; between rules naming it, the first in config order is recorded. */
static void test_rule_order(void **state) {
  (void)state;
  static tb_config_t ab, ba;
  assert_int_equal(load_text(TIERS5 "escalation:\n"
                                    "  - {name: a, customer_facing: true, tier: high}\n"
                                    "  - {name: b, failed_retry: true, tier: high}\n"
                                    "  - {name: c, business_impact: low, tier: critical}\n",
                             &ab),
                   TB_OK);
  assert_int_equal(load_text(TIERS5 "escalation:\n"
                                    "  - {name: b, failed_retry: true, tier: high}\n"
                                    "  - {name: a, customer_facing: true, tier: high}\n"
                                    "  - {name: c, business_impact: low, tier: critical}\n",
                             &ba),
                   TB_OK);
  tb_esc_input_t both = {.customer_facing = 1, .failed_retry = 1};
  expect(&ab, NORMAL, both, HIGH, "a");
  expect(&ba, NORMAL, both, HIGH, "b");
  /* A later rule naming a more urgent tier wins over an earlier one. */
  both.business_impact = "low";
  expect(&ab, NORMAL, both, CRITICAL, "c");
  /* Every condition of a rule must hold. */
  static tb_config_t and;
  assert_int_equal(load_text(TIERS5 "escalation: [{name: x, customer_facing: true, stuck: 2h, "
                                    "business_impact: high, tier: critical}]\n",
                             &and),
                   TB_OK);
  expect(&and, LOW, (tb_esc_input_t){.customer_facing = 1, .stuck_ms = 3 * H}, LOW, NULL);
  expect(&and, LOW,
         (tb_esc_input_t){.customer_facing = 1, .stuck_ms = 3 * H, .business_impact = "high"},
         CRITICAL, "x");
}

/* The sweeper leaves out a threshold that already fired for the run. */
static void test_skip_mask(void **state) {
  (void)state;
  expect(&shipped, NORMAL, (tb_esc_input_t){.stuck_ms = 25 * H, .skip = 1u << 1}, HIGH, "stuck-6h");
  expect(&shipped, NORMAL, (tb_esc_input_t){.stuck_ms = 25 * H, .skip = (1u << 1) | (1u << 5)},
         NORMAL, NULL);
}

/* Built-in rules name seed 000's tiers; a deployment without them escalates nothing, and its
 * file's own rules are checked strictly. */
static void test_builtin_rules_without_seed_tiers(void **state) {
  (void)state;
  static tb_config_t cfg;
  assert_int_equal(load_text("tiers: [{name: fast}, {name: slow}]\n", &cfg), TB_OK);
  expect(
      &cfg, 1,
      (tb_esc_input_t){.failed_retry = 1, .customer_facing = 1, .stuck_ms = 99 * H, .expedite = 1},
      1, NULL);
  assert_null(tb_config_workflow_tier(&cfg, "ops.daily-stand-up", "daily-stand-up"));
}

static void expect_config_error(const char *yaml, const char *needle) {
  static tb_config_t cfg;
  tb_status s = load_text(yaml, &cfg);
  if (s != TB_ERR_CONFIG || strstr(tb_errdetail(), needle) == NULL)
    fail_msg("YAML:\n%s\nstatus %d, detail: %s\nwanted: %s", yaml, s, tb_errdetail(), needle);
}

static void test_config_errors(void **state) {
  (void)state;
  expect_config_error(TIERS5 "escalation: [{name: x, tier: high}]\n",
                      "escalation[0]: rule 'x' has no condition");
  expect_config_error(TIERS5 "escalation: [{name: x, failed_retry: true, tier: urgent}]\n",
                      "escalation[0].tier: unknown tier 'urgent' (tiers are critical, high, "
                      "normal, low, background)");
  expect_config_error(TIERS5 "escalation:\n  - {name: x, failed_retry: true, tier: high}\n"
                             "  - {name: x, stuck: 1h, tier: high}\n",
                      ":4: escalation[1]: duplicate rule name 'x' (also escalation[0])");
  expect_config_error(TIERS5 "escalation: [{name: expedite, stuck: 1h, tier: high}]\n", "reserved");
  expect_config_error(TIERS5 "escalation: [{name: x, stuk: 1h, tier: high}]\n",
                      "escalation[0]: unknown key 'stuk' (did you mean 'stuck'?)");
  expect_config_error(TIERS5 "escalation: [{name: x, stuck: 1h}]\n",
                      "escalation[0]: missing required key 'tier'");
  expect_config_error(TIERS5 "escalation: [{name: x, stuck: soon, tier: high}]\n",
                      "escalation[0].stuck:");
  expect_config_error(TIERS5 "escalation: [{name: x, business_impact: High, tier: high}]\n",
                      "escalation[0].business_impact: must contain only lowercase letters");
  expect_config_error(TIERS5 "escalation: {a: 1}\n", "escalation: expected a list");
  expect_config_error(TIERS5 "workflow_tiers: {customer-support: urgent}\n",
                      "workflow_tiers.customer-support: unknown tier 'urgent'");
  expect_config_error(TIERS5 "workflow_tiers: {a: high, a: low}\n", "duplicate key 'a'");
  static tb_config_t cfg;
  assert_int_equal(tb_config_set(&cfg, "escalation", "x"), TB_ERR_CONFIG);
  assert_string_equal(tb_errdetail(), "escalation: can only be set in the config file");
}

static void test_workflow_tiers(void **state) {
  (void)state;
  static const struct {
    const char *workflow, *tier;
  } seed[] = {{"ops.customer-support-message", "high"},
              {"ops.lead-attention", "high"},
              {"ops.daily-stand-up", "normal"},
              {"ops.build-campaigns", "low"},
              {"ops.daily-operations", "background"}};
  for (size_t i = 0; i < sizeof(seed) / sizeof(seed[0]); i++) {
    const tb_workflow_def_t *def = tb_wf_find(seed[i].workflow);
    assert_non_null(def);
    assert_string_equal(tb_wf_tier(&shipped, def), seed[i].tier);
  }
  /* The workflow's name wins over its category; an empty table leaves the definition's tier. */
  static tb_config_t cfg;
  assert_int_equal(load_text(TIERS5 "workflow_tiers: {campaign-building: normal, "
                                    "ops.build-campaigns: critical}\n",
                             &cfg),
                   TB_OK);
  assert_string_equal(tb_wf_tier(&cfg, tb_wf_find("ops.build-campaigns")), "critical");
  assert_int_equal(load_text(TIERS5 "workflow_tiers: {campaign-building: normal}\n", &cfg), TB_OK);
  assert_string_equal(tb_wf_tier(&cfg, tb_wf_find("ops.build-campaigns")), "normal");
  assert_int_equal(load_text(TIERS5 "workflow_tiers: {}\n", &cfg), TB_OK);
  assert_string_equal(tb_wf_tier(&cfg, tb_wf_find("ops.daily-operations")), "background");
  assert_string_equal(tb_wf_tier(&cfg, tb_wf_find("ops.lead-attention")), "high");
}

static void test_start_context(void **state) {
  (void)state;
  const tb_workflow_def_t *support = tb_wf_find("ops.customer-support-message");
  const tb_workflow_def_t *sleep_wf = tb_wf_find("ops.sleep");
  tb_esc_input_t in;
  assert_int_equal(tb_wf_esc_context(support, NULL, &in), TB_OK);
  assert_int_equal(in.customer_facing, 1);
  assert_null(in.business_impact);
  assert_int_equal(in.expedite, 0);
  json_t *input =
      json_pack("{s:b,s:s,s:b}", "customer_facing", 0, "business_impact", "high", "expedite", 1);
  assert_int_equal(tb_wf_esc_context(support, input, &in), TB_OK);
  assert_int_equal(in.customer_facing, 0);
  assert_string_equal(in.business_impact, "high");
  assert_int_equal(in.expedite, 1);
  json_decref(input);
  input = json_pack("{s:s}", "customer_facing", "yes");
  assert_int_equal(tb_wf_esc_context(sleep_wf, input, &in), TB_ERR_INVALID);
  assert_string_equal(tb_errdetail(), "ops.sleep: input.customer_facing must be true or false");
  json_decref(input);
  input = json_pack("{s:s}", "business_impact", "huge");
  assert_int_equal(tb_wf_esc_context(sleep_wf, input, &in), TB_ERR_INVALID);
  assert_non_null(strstr(tb_errdetail(), "input.business_impact must be"));
  json_decref(input);
  input = json_pack("{s:i}", "expedite", 1);
  assert_int_equal(tb_wf_esc_context(sleep_wf, input, &in), TB_ERR_INVALID);
  json_decref(input);
}

/* Seed 000's names: tiers in any case, "<tier>-priority", a tier's task_queue; camelCase types,
 * which also key workflow_tiers; a task_queue or a name that another tier already answers to is
 * a config error. */
static void test_aliases(void **state) {
  (void)state;
  assert_int_equal(tb_config_tier_index(&shipped, "high"), HIGH);
  assert_int_equal(tb_config_tier_index(&shipped, "HIGH"), HIGH);
  assert_int_equal(tb_config_tier_index(&shipped, "critical-priority"), CRITICAL);
  assert_int_equal(tb_config_tier_index(&shipped, "Background-Priority"), BACKGROUND);
  assert_int_equal(tb_config_tier_index(&shipped, "default"), NORMAL);
  assert_int_equal(tb_config_tier_index(&shipped, "DEFAULT"), NORMAL);
  assert_int_equal(tb_config_tier_index(&shipped, "normal-priority"), NORMAL);
  assert_int_equal(tb_config_tier_index(&shipped, "default-priority"), -1);
  assert_int_equal(tb_config_tier_index(&shipped, "high-"), -1);
  assert_int_equal(tb_config_tier_index(&shipped, "-priority"), -1);
  assert_int_equal(tb_config_tier_index(&shipped, ""), -1);
  assert_int_equal(tb_config_tier_index(&shipped, NULL), -1);
  static const struct {
    const char *alias, *name;
  } types[] = {{"customerSupportMessageWorkflow", "ops.customer-support-message"},
               {"leadAttentionWorkflow", "ops.lead-attention"},
               {"dailyStandUpWorkflow", "ops.daily-stand-up"},
               {"buildCampaignsWorkflow", "ops.build-campaigns"},
               {"dailyOperationsWorkflow", "ops.daily-operations"}};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    const tb_workflow_def_t *def = tb_wf_find(types[i].alias);
    assert_non_null(def);
    assert_string_equal(def->name, types[i].name);
  }
  assert_null(tb_wf_find("customersupportmessageworkflow")); /* types are case-sensitive */
  static tb_config_t cfg;
  /* workflow_tiers by the seed's name, with an alias for the tier: the config's own name. */
  assert_int_equal(
      load_text(TIERS5 "workflow_tiers: {buildCampaignsWorkflow: HIGH-priority}\n", &cfg), TB_OK);
  assert_string_equal(tb_wf_tier(&cfg, tb_wf_find("ops.build-campaigns")), "high");
  /* Names that would pick two tiers. */
  assert_int_equal(load_text("tiers: [{name: a, task_queue: b}, {name: b}]\n", &cfg),
                   TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), "tiers[1].name: 'b' is already a name of tier 'a'"));
  assert_int_equal(load_text("tiers: [{name: a, task_queue: q}, {name: b, task_queue: q}]\n", &cfg),
                   TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), "tiers[1].task_queue: 'q' is already a name of tier 'a'"));
  assert_int_equal(load_text("tiers: [{name: a-priority}, {name: a}]\n", &cfg), TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), "'a-priority' is already a name of tier 'a-priority'"));
  assert_int_equal(load_text("tiers: [{name: a, task_queue: b-priority}, {name: b}]\n", &cfg),
                   TB_ERR_CONFIG);
  assert_int_equal(load_text("tiers: [{name: a, task_queue: Fast}]\n", &cfg), TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), "tiers[0].task_queue: must contain only"));
}

/* The decision at a run's start: automatic (type tier, raised by the rules), an explicit tier
 * honoured both ways, expedite still raising it, and a priority floor under it. */
static void test_decide(void **state) {
  (void)state;
  const tb_workflow_def_t *standup = tb_wf_find("ops.daily-stand-up");
  const tb_workflow_def_t *support = tb_wf_find("ops.customer-support-message");
  tb_wf_decision_t d;
  /* Automatic: normal by workflow_tiers; high business impact raises it to critical. */
  assert_int_equal(tb_wf_decide(&shipped, standup, NULL, NULL, NULL, NULL, NULL, &d), TB_OK);
  assert_int_equal(d.tier, NORMAL);
  assert_string_equal(d.rule, "workflow_tiers");
  assert_int_equal(d.requested, -1);
  json_t *bi = json_pack("{s:s}", "business_impact", "high");
  assert_int_equal(tb_wf_decide(&shipped, standup, NULL, NULL, NULL, bi, NULL, &d), TB_OK);
  assert_int_equal(d.tier, CRITICAL);
  assert_string_equal(d.rule, "high-business-impact");
  assert_string_equal(d.escalated_by, "high-business-impact");
  /* Explicit lower than the rules: honoured, and what the rules say is still reported. */
  assert_int_equal(tb_wf_decide(&shipped, standup, "background", "priority", NULL, bi, NULL, &d),
                   TB_OK);
  assert_int_equal(d.tier, BACKGROUND);
  assert_int_equal(d.requested, BACKGROUND);
  assert_int_equal(d.automatic, CRITICAL);
  assert_string_equal(d.rule, "priority");
  assert_null(d.escalated_by);
  /* Explicit higher: honoured. */
  assert_int_equal(
      tb_wf_decide(&shipped, standup, "critical-priority", "task-queue", NULL, NULL, NULL, &d),
      TB_OK);
  assert_int_equal(d.tier, CRITICAL);
  assert_string_equal(d.rule, "task-queue");
  /* Expedite still raises an explicit tier. */
  tb_esc_input_t flags = {.expedite = 1};
  assert_int_equal(tb_wf_decide(&shipped, standup, "low", "priority", NULL, NULL, &flags, &d),
                   TB_OK);
  assert_int_equal(d.tier, CRITICAL);
  assert_string_equal(d.rule, "expedite");
  /* A floor (the shipped customer-support: high) keeps an explicit tier from going lower, and
   * leaves a higher one alone. */
  assert_int_equal(tb_wf_decide(&shipped, support, "background", "priority", NULL, NULL, NULL, &d),
                   TB_OK);
  assert_int_equal(d.tier, HIGH);
  assert_int_equal(d.base, BACKGROUND);
  assert_string_equal(d.rule, "priority_floors");
  assert_string_equal(d.escalated_by, "priority_floors");
  assert_int_equal(tb_wf_decide(&shipped, support, "critical", "priority", NULL, NULL, NULL, &d),
                   TB_OK);
  assert_int_equal(d.tier, CRITICAL);
  assert_string_equal(d.rule, "priority");
  /* A base without explicit_by is raised, never lowered, by the rules (a trigger event's). */
  assert_int_equal(tb_wf_decide(&shipped, standup, "low", NULL, "trigger-event", bi, NULL, &d),
                   TB_OK);
  assert_int_equal(d.tier, CRITICAL);
  assert_string_equal(d.assigned_by, "trigger-event");
  assert_int_equal(tb_wf_decide(&shipped, standup, "urgent", "priority", NULL, NULL, NULL, &d),
                   TB_ERR_INVALID);
  json_decref(bi);
  /* Floors by alias or category, from a file; an unknown tier there is a config error. */
  static tb_config_t cfg;
  assert_int_equal(load_text(TIERS5 "priority_floors: {dailyStandUpWorkflow: normal}\n", &cfg),
                   TB_OK);
  assert_int_equal(tb_wf_decide(&cfg, standup, "low", "priority", NULL, NULL, NULL, &d), TB_OK);
  assert_int_equal(d.tier, NORMAL);
  assert_int_equal(load_text(TIERS5 "priority_floors: {daily-stand-up: urgent}\n", &cfg),
                   TB_ERR_CONFIG);
  assert_non_null(strstr(tb_errdetail(), "priority_floors.daily-stand-up"));
}

/* Seed 000's positional args: kept whole under "args", and their objects' fields are the
 * input's own (the first argument having a field wins). */
static void test_args_input(void **state) {
  (void)state;
  json_t *args = json_pack("[{s:s,s:s},{s:s,s:s},s]", "to", "a@b.c", "customer_facing", "x", "to",
                           "other", "origin", "email", "loose");
  json_t *in = tb_wf_args_input(args);
  assert_non_null(in);
  assert_true(json_equal(json_object_get(in, "args"), args));
  assert_string_equal(json_string_value(json_object_get(in, "to")), "a@b.c");
  assert_string_equal(json_string_value(json_object_get(in, "origin")), "email");
  json_decref(in);
  /* An argument named "args" never replaces the array. */
  json_t *odd = json_pack("[{s:i}]", "args", 1);
  in = tb_wf_args_input(odd);
  assert_true(json_is_array(json_object_get(in, "args")));
  json_decref(in);
  json_decref(odd);
  json_decref(args);
  in = tb_wf_args_input(NULL);
  assert_int_equal(json_object_size(in), 0);
  json_decref(in);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aliases),       cmocka_unit_test(test_decide),
      cmocka_unit_test(test_args_input),    cmocka_unit_test(test_default_rules_in_seed_order),
      cmocka_unit_test(test_each_rule),     cmocka_unit_test(test_never_lowers),
      cmocka_unit_test(test_expedite),      cmocka_unit_test(test_rule_order),
      cmocka_unit_test(test_skip_mask),     cmocka_unit_test(test_builtin_rules_without_seed_tiers),
      cmocka_unit_test(test_config_errors), cmocka_unit_test(test_workflow_tiers),
      cmocka_unit_test(test_start_context),
  };
  return cmocka_run_group_tests(tests, load_shipped, NULL);
}
