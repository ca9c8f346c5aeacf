/* `tierbus workflows list|show|runs|cancel|retry` (seed 004, seed 000): the registry of workflows
 * and activities by domain, and the runs kept in SQLite with their full step history and
 * escalations. Read-only except cancel and retry, which go through the runtime (tb_wf_cancel,
 * tb_wf_retry) so that a run's waits, timers and continuations change with it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"
#include "cli/cli.h"
#include "core/status.h"
#include "core/util.h"
#include "store/escalation.h"
#include "store/workflow.h"
#include "workflows/escalation.h"
#include "workflows/view.h"
#include "workflows/wf.h"

/* ---------------------------------------------------------------- formatting */

static const char *kind_name(tb_step_kind k) {
  switch (k) {
  case TB_STEP_RUN:
    return "run";
  case TB_STEP_COMMAND:
    return "command";
  case TB_STEP_WAIT:
    return "wait";
  case TB_STEP_SLEEP:
    return "sleep";
  case TB_STEP_BRANCH:
    return "branch";
  }
  return "?";
}

/* Milliseconds in the largest unit that divides them exactly ("90s", "2m", "24h"), as the
 * definitions write them. */
static void fmt_ms(int64_t ms, char *buf, size_t cap) {
  static const struct {
    int64_t ms;
    const char *unit;
  } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  for (size_t i = 0; i < TB_COUNTOF(units); i++)
    if (ms > 0 && ms % units[i].ms == 0) {
      snprintf(buf, cap, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
      return;
    }
  snprintf(buf, cap, "%lldms", (long long)ms);
}

/* A measured time, to the unit a reader wants: "8ms", "2.09s", "3m05s", "26h03m". */
static void fmt_elapsed(int64_t ms, char *buf, size_t cap) {
  if (ms < 1000)
    snprintf(buf, cap, "%lldms", (long long)ms);
  else if (ms < 60000)
    snprintf(buf, cap, "%.2fs", (double)ms / 1000.0);
  else if (ms < 3600000)
    snprintf(buf, cap, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms % 60000 / 1000));
  else
    snprintf(buf, cap, "%lldh%02lldm", (long long)(ms / 3600000),
             (long long)(ms % 3600000 / 60000));
}

/* "5 attempts, exponential 1s..1m, retryOn 429,500" or "1 attempt". */
static void fmt_retry(const tb_retry_policy_t *p, char *buf, size_t cap) {
  int n = p->max_attempts > 0 ? p->max_attempts : 1;
  if (n == 1) {
    snprintf(buf, cap, "1 attempt");
    return;
  }
  char init[32], max[32] = "", codes[TB_RETRY_ON_MAX * 5 + 16] = "";
  fmt_ms(p->initial_delay_ms, init, sizeof(init));
  if (p->max_delay_ms > 0) {
    max[0] = '.';
    max[1] = '.';
    fmt_ms(p->max_delay_ms, max + 2, sizeof(max) - 2);
  }
  if (p->n_retry_on > 0) {
    size_t off = (size_t)snprintf(codes, sizeof(codes), ", retryOn ");
    for (int i = 0; i < p->n_retry_on && off < sizeof(codes); i++)
      off +=
          (size_t)snprintf(codes + off, sizeof(codes) - off, "%s%d", i ? "," : "", p->retry_on[i]);
  }
  snprintf(buf, cap, "%d attempts, %s %s%s%s", n, tb_backoff_name(p->backoff), init, max, codes);
}

/* What a step acts on: "email.send", the awaited event, the sleep's duration. */
static void fmt_target(const tb_step_def_t *s, char *buf, size_t cap) {
  buf[0] = '\0';
  if (s->kind == TB_STEP_COMMAND)
    snprintf(buf, cap, "%s.%s", s->service ? s->service : "?", s->action ? s->action : "?");
  else if (s->kind == TB_STEP_WAIT)
    snprintf(buf, cap, "%s", s->event ? s->event : "?");
  else if (s->kind == TB_STEP_SLEEP)
    snprintf(buf, cap, "%s", s->duration ? s->duration : "?");
}

/* |key| of object |o| as text; "" when it is absent or not a string (for table cells). */
static const char *jstr(const json_t *o, const char *key) {
  const char *v = json_string_value(json_object_get(o, key));
  return v ? v : "";
}

static void print_json(json_t *root) {
  json_dumpf(root, stdout, JSON_INDENT(2));
  putchar('\n');
}

/* ---------------------------------------------------------------- workflows list */

static void list_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus workflows list [--domain D] [--workflows-only | --activities-only]\n"
          "                              [--detailed] [--json]\n"
          "Lists the registered workflows (name, domain, tier, trigger event) and activities.\n"
          "--detailed adds every step: kind, target, timeout, retry policy, optional. --json\n"
          "always carries the full detail.\n"
          "examples:\n"
          "  tierbus workflows list --domain crm --detailed\n"
          "  tierbus workflows list --activities-only --json\n");
}

/* Only commands and waits wait for something; a run step is bounded by its tier's timeout and a
 * sleep by its duration, so a timeout shown for them would mislead. */
static int has_timeout(const tb_step_def_t *s) {
  return s->kind == TB_STEP_COMMAND || s->kind == TB_STEP_WAIT;
}

static json_t *step_json(const tb_step_def_t *s) {
  json_t *codes = json_array();
  for (int i = 0; i < s->retry.n_retry_on; i++)
    json_array_append_new(codes, json_integer(s->retry.retry_on[i]));
  char target[160];
  fmt_target(s, target, sizeof(target));
  json_t *timeout =
      has_timeout(s) ? json_string(s->timeout ? s->timeout : TB_WF_DEFAULT_TIMEOUT) : json_null();
  return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:b,s:b,s:{s:i,s:s,s:I,s:I,s:o}}", "name", s->name,
                   "kind", kind_name(s->kind), "description", tb_json_str_or_null(s->description),
                   "target", target[0] ? json_string(target) : json_null(), "timeout", timeout,
                   "timeout_field", tb_json_str_or_null(s->timeout_field), "optional",
                   s->optional != 0, "conditional", s->when != NULL, "retry", "max_attempts",
                   s->retry.max_attempts > 0 ? s->retry.max_attempts : 1, "backoff",
                   tb_backoff_name(s->retry.backoff), "initial_delay_ms",
                   (json_int_t)s->retry.initial_delay_ms, "max_delay_ms",
                   (json_int_t)s->retry.max_delay_ms, "retry_on", codes);
}

static json_t *workflow_json(const tb_cli_t *cli, const tb_workflow_def_t *w) {
  json_t *steps = json_array();
  for (int i = 0; i < w->n_steps; i++) json_array_append_new(steps, step_json(&w->steps[i]));
  json_t *v = json_pack(
      "{s:s,s:s,s:o,s:s,s:o,s:o,s:b,s:b,s:o}", "name", w->name, "domain", w->domain, "tier",
      tb_json_str_or_null(w->tier), "resolved_tier", tb_wf_tier(&cli->cfg, w), "description",
      tb_json_str_or_null(w->description), "trigger_event", tb_json_str_or_null(w->trigger_event),
      "filtered", w->should_start != NULL, "on_error", w->on_error != NULL, "steps", steps);
  if (v != NULL) {
    json_object_set_new(v, "alias", tb_json_str_or_null(w->alias)); /* seed 000's type name */
    json_object_set_new(v, "category", tb_json_str_or_null(w->category));
    json_object_set_new(v, "customer_facing", json_boolean(w->customer_facing));
    json_object_set_new(v, "business_impact", tb_json_str_or_null(w->business_impact));
  }
  return v;
}

static void print_workflow_detailed(const tb_cli_t *cli, const tb_workflow_def_t *w) {
  const char *tier = tb_wf_tier(&cli->cfg, w);
  printf("%s  (domain %s)\n", w->name, w->domain);
  if (w->description) printf("  %s\n", w->description);
  if (w->alias) printf("  alias:    %s (seed 000's name; trigger and the API take it)\n", w->alias);
  printf("  tier:     %s", tier);
  if (tb_wf_type_tier(&cli->cfg, w) != NULL)
    printf(" (config workflow_tiers%s%s)", w->category ? ", category " : "",
           w->category ? w->category : "");
  else if (w->tier == NULL || strcmp(w->tier, tier) != 0)
    printf(" (the definition's tier '%s' is not in this config)", w->tier ? w->tier : "");
  if (w->customer_facing || w->business_impact)
    printf("; escalation context:%s%s%s", w->customer_facing ? " customer-facing" : "",
           w->business_impact ? " impact " : "", w->business_impact ? w->business_impact : "");
  printf("\n  trigger:  %s%s\n", w->trigger_event ? w->trigger_event : "manual (tierbus trigger)",
         w->trigger_event && w->should_start ? " (when its filter accepts the event)" : "");
  printf("  on error: %s\n", w->on_error ? "handler" : "none");
  printf("  steps:\n");
  for (int i = 0; i < w->n_steps; i++) {
    const tb_step_def_t *s = &w->steps[i];
    char target[160], retry[160];
    fmt_target(s, target, sizeof(target));
    fmt_retry(&s->retry, retry, sizeof(retry));
    char timeout[96] = "";
    if (has_timeout(s))
      snprintf(timeout, sizeof(timeout), "  timeout %s%s",
               s->timeout ? s->timeout : TB_WF_DEFAULT_TIMEOUT, s->timeout ? "" : " (default)");
    /* The input field that overrides the timeout, or a sleep's duration, for one run. */
    if (s->timeout_field && (has_timeout(s) || s->kind == TB_STEP_SLEEP))
      snprintf(timeout + strlen(timeout), sizeof(timeout) - strlen(timeout),
               "%s(input.%s overrides)", timeout[0] ? " " : "  ", s->timeout_field);
    printf("    %2d. %-20s %s%s%s%s\n", i + 1, s->name, kind_name(s->kind), target[0] ? " " : "",
           target, timeout);
    if (s->description) printf("        %s\n", s->description);
    printf("        retry: %s%s%s\n", retry,
           s->optional ? "; optional (a failure does not fail the run)" : "",
           s->when ? "; conditional (skipped when its condition is false)" : "");
  }
  putchar('\n');
}

/* The domain of the activities every domain's workflows call (send_email, ...). */
#define TB_SHARED_DOMAIN "shared"

static int cmd_list(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus workflows list"};
  const char *domain = NULL;
  int wf_only = 0, act_only = 0, detailed = 0, as_json = 0;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"domain", required_argument, NULL, 'd'},
                                       {"workflows-only", no_argument, NULL, 'w'},
                                       {"activities-only", no_argument, NULL, 'a'},
                                       {"detailed", no_argument, NULL, 'D'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "d:wajh", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 'd':
      domain = optarg;
      break;
    case 'w':
      wf_only = 1;
      break;
    case 'a':
      act_only = 1;
      break;
    case 'D':
      detailed = 1;
      break;
    case 'j':
      as_json = 1;
      break;
    case 'h':
      list_usage(stdout);
      return TB_EXIT_OK;
    default:
      list_usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (wf_only && act_only)
    return tb_cli_usage_error(&cli, "give --workflows-only or --activities-only, not both");
  int n_doms = 0;
  const tb_wf_domain_t *const *doms = tb_wf_domains(&n_doms);
  int rc = tb_cli_load(&cli); /* the tiers a workflow resolves to depend on the config */
  if (rc != TB_EXIT_OK) return rc;
  /* One vocabulary with `worker --domains` and `events`: the config's (catalogue's) domains,
   * plus "shared" for the activities that no one domain owns. */
  if (domain != NULL && tb_config_domain_index(&cli.cfg, domain) < 0 &&
      strcmp(domain, TB_SHARED_DOMAIN) != 0) {
    char known[512];
    tb_cli_config_names(&cli.cfg, TB_CLI_DOMAINS, known, sizeof(known));
    rc = tb_cli_usage_error(&cli, "unknown domain '%s' (domains: %s; %s for the shared activities)",
                            domain, known, TB_SHARED_DOMAIN);
    tb_cli_close(&cli);
    return rc;
  }

  json_t *wfs = json_array(), *acts = json_array();
  /* Workflows belong to the domain they name; activities to their file's domain or their own
   * ("shared"), and each is listed once even when several files declare it. */
  for (int i = 0; i < n_doms; i++)
    for (int j = 0; j < doms[i]->n_workflows; j++) {
      const tb_workflow_def_t *w = doms[i]->workflows[j];
      if (domain && strcmp(w->domain, domain) != 0 && strcmp(doms[i]->name, domain) != 0) continue;
      json_array_append_new(wfs, workflow_json(&cli, w));
    }
  for (int i = 0; i < n_doms; i++)
    for (int j = 0; j < doms[i]->n_activities; j++) {
      const tb_activity_def_t *a = &doms[i]->activities[j];
      if (domain && strcmp(a->domain, domain) != 0 && strcmp(doms[i]->name, domain) != 0) continue;
      int dup = 0;
      size_t k;
      json_t *v;
      json_array_foreach(acts, k, v) dup |= strcmp(jstr(v, "name"), a->name) == 0;
      if (!dup)
        json_array_append_new(acts, json_pack("{s:s,s:o,s:o,s:o}", "name", a->name, "domain",
                                              tb_json_str_or_null(a->domain), "kind",
                                              tb_json_str_or_null(a->kind), "description",
                                              tb_json_str_or_null(a->description)));
    }

  if (as_json) {
    json_t *root = json_object();
    if (!act_only) json_object_set(root, "workflows", wfs);
    if (!wf_only) json_object_set(root, "activities", acts);
    print_json(root);
    json_decref(root);
  } else {
    if (!act_only) {
      if (detailed) {
        for (int i = 0; i < n_doms; i++)
          for (int j = 0; j < doms[i]->n_workflows; j++) {
            const tb_workflow_def_t *w = doms[i]->workflows[j];
            if (!domain || strcmp(w->domain, domain) == 0 || strcmp(doms[i]->name, domain) == 0)
              print_workflow_detailed(&cli, w);
          }
      } else {
        static const char *const headers[] = {"WORKFLOW", "DOMAIN", "TIER", "TRIGGER", ">STEPS"};
        tb_cli_table_t *t = tb_cli_table_new(5, headers);
        size_t k;
        json_t *v;
        json_array_foreach(wfs, k, v) {
          json_t *trig = json_object_get(v, "trigger_event");
          char steps[16];
          snprintf(steps, sizeof(steps), "%zu", json_array_size(json_object_get(v, "steps")));
          if (t)
            tb_cli_table_add(t, jstr(v, "name"), jstr(v, "domain"), jstr(v, "resolved_tier"),
                             json_is_string(trig) ? json_string_value(trig) : "(manual)", steps);
        }
        if (t == NULL || tb_cli_table_print(t, stdout) != TB_OK) rc = TB_EXIT_FAIL;
        tb_cli_table_free(t);
      }
      printf("%zu workflow%s\n", json_array_size(wfs), json_array_size(wfs) == 1 ? "" : "s");
    }
    if (!act_only && !wf_only) putchar('\n');
    if (!wf_only) {
      static const char *const headers[] = {"ACTIVITY", "DOMAIN", "KIND", "DESCRIPTION"};
      tb_cli_table_t *t = tb_cli_table_new(4, headers);
      size_t k;
      json_t *v;
      json_array_foreach(acts, k, v) {
        if (t)
          tb_cli_table_add(t, jstr(v, "name"), jstr(v, "domain"), jstr(v, "kind"),
                           jstr(v, "description"));
      }
      if (t == NULL || tb_cli_table_print(t, stdout) != TB_OK) rc = TB_EXIT_FAIL;
      tb_cli_table_free(t);
      printf("%zu activit%s\n", json_array_size(acts), json_array_size(acts) == 1 ? "y" : "ies");
    }
  }
  json_decref(wfs);
  json_decref(acts);
  tb_cli_close(&cli);
  if (rc != TB_EXIT_OK) fprintf(stderr, "%s: error: out of memory\n", cli.prog);
  return rc;
}

/* ---------------------------------------------------------------- workflows show */

static int hist_print(void *arg, const tb_wf_hist_t *h) {
  int *n = arg;
  char when[40], took[32] = "";
  tb_cli_fmt_time(h->started_us, when, sizeof(when));
  if (h->ended_us > 0 && h->started_us > 0)
    fmt_elapsed((h->ended_us - h->started_us) / 1000, took, sizeof(took));
  printf("  %3d. %s  %-24s %-7s #%-2d %-10s", ++*n, when, h->name ? h->name : "-",
         h->kind ? h->kind : "-", h->attempt, h->status ? h->status : "-");
  if (h->code) printf(" code %d", h->code);
  if (took[0]) printf(" took %s", took);
  if (h->tier && h->tier[0]) printf(" on %s", h->tier);
  putchar('\n');
  if (h->detail && h->detail[0]) printf("        %s\n", h->detail);
  if (h->result) printf("        result: %s\n", h->result);
  if (h->error) printf("        error: %s\n", h->error);
  return 0;
}

static int esc_print(void *arg, const tb_wf_escalation_t *e) {
  int *n = arg;
  char when[40];
  tb_cli_fmt_time(e->at_us, when, sizeof(when));
  printf("  %3d. %s  %s -> %s  rule %s (%s)%s%s\n", ++*n, when, e->from_tier, e->to_tier, e->rule,
         e->source, e->detail ? ": " : "", e->detail ? e->detail : "");
  return 0;
}

static void show_usage(FILE *out) {
  fprintf(out, "usage: tierbus workflows show ID [--json]\n"
               "Prints a run's state (status, step, attempt, tier, error, data), its escalations\n"
               "and every step attempt in its history. Exit 1 when there is no run ID.\n"
               "examples:\n"
               "  tierbus workflows show wf-3f2a9c\n"
               "  tierbus workflows show wf-3f2a9c --json | jq .history\n");
}

static int cmd_show(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus workflows show"};
  int as_json = 0;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 'j')
      as_json = 1;
    else if (c == 'h')
      return show_usage(stdout), TB_EXIT_OK;
    else
      return show_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind >= argc) return tb_cli_usage_error(&cli, "which workflow? give its ID");
  if (optind + 1 < argc)
    return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind + 1]);
  const char *id = argv[optind];
  int rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;

  tb_wf_row_t row;
  int found = 0;
  tb_status st = tb_store_wf_get(cli.store, id, &row, &found);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (!found) {
    fprintf(stderr, "%s: no workflow '%s' in %s\n", cli.prog, id, cli.cfg.db_path);
    rc = TB_EXIT_FAIL;
  } else if (as_json) {
    json_t *root = NULL;
    st = tb_wf_run_view(cli.store, id, &root);
    if (st == TB_OK) {
      print_json(root);
      json_decref(root);
    }
  } else {
    char created[40], updated[40], finished[40];
    tb_cli_fmt_time(row.created_us, created, sizeof(created));
    tb_cli_fmt_time(row.updated_us, updated, sizeof(updated));
    tb_cli_fmt_time(row.finished_us, finished, sizeof(finished));
    printf("workflow    %s\nname        %s (domain %s)\nstatus      %s\n", row.id, row.name,
           row.domain, row.status);
    printf("step        %d %s (attempt %d, %s)\ntier        %s\n", row.step,
           tb_wf_step_name(row.name, row.step), row.attempt, row.step_state, row.tier);
    json_t *decision = NULL;
    if (tb_wf_decision_view(cli.store, id, &decision) == TB_OK && json_is_object(decision)) {
      /* Seed 000: which rule chose the starting tier, and the run's deadline. */
      const char *req = json_string_value(json_object_get(decision, "requested_tier"));
      char deadline[40] = "-";
      json_t *dl = json_object_get(decision, "deadline_us");
      if (json_is_integer(dl)) tb_cli_fmt_time(json_integer_value(dl), deadline, sizeof(deadline));
      printf("tier rule   %s (requested %s, automatic %s)\ndeadline    %s\n",
             json_string_value(json_object_get(decision, "rule")), req ? req : "-",
             json_string_value(json_object_get(decision, "automatic_tier")), deadline);
    }
    json_decref(decision);
    printf("created     %s\nupdated     %s\nfinished    %s\n", created, updated, finished);
    if (row.correlation_id[0]) printf("correlation %s\n", row.correlation_id);
    if (row.cause_msg_id[0]) printf("cause       %s\n", row.cause_msg_id);
    if (row.error) printf("error       %s\n", row.error);
    json_t *data = tb_json_text(row.data);
    char *text = json_dumps(data, JSON_INDENT(2) | JSON_ENCODE_ANY);
    printf("data        %s\n\nescalations\n", text ? text : "null");
    free(text);
    json_decref(data);
    int n = 0;
    st = tb_store_wf_escalations(cli.store, id, esc_print, &n);
    if (st == TB_OK && n == 0) printf("  (none)\n");
    printf("\nhistory\n");
    n = 0;
    if (st == TB_OK) st = tb_store_wf_history(cli.store, id, hist_print, &n);
    if (st == TB_OK && n == 0) printf("  (none)\n");
  }
  if (st != TB_OK && rc == TB_EXIT_OK) {
    fprintf(stderr, "%s: error: reading the history of %s: %s\n", cli.prog, id, tb_errdetail());
    rc = TB_EXIT_FAIL;
  }
  if (found) tb_store_wf_row_clear(&row);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- workflows runs */

static void runs_usage(FILE *out) {
  fprintf(out, "usage: tierbus workflows runs [--status S] [--name N] [--limit K] [--json]\n"
               "Lists recent runs, newest first (default limit 20). S is one of running, "
               "waiting,\nsleeping, completed, failed, cancelled.\n"
               "examples:\n"
               "  tierbus workflows runs --status failed --limit 50\n"
               "  tierbus workflows runs --name subscriber-enrichment --json\n");
}

typedef struct runs_state {
  int as_json;
  json_t *rows;
  tb_cli_table_t *table; /* the text view, sized to its rows once they are all in */
  int n;
} runs_state_t;

static int run_row(void *arg, const tb_wf_row_t *r) {
  runs_state_t *s = arg;
  s->n++;
  if (s->as_json) return json_array_append_new(s->rows, tb_wf_row_json(r)) != 0;
  char created[40], took[32] = "-";
  tb_cli_fmt_time(r->created_us, created, sizeof(created));
  /* Only a finished run has taken a time; a running one's age is its CREATED column. */
  if (r->finished_us >= r->created_us && r->created_us > 0 && r->finished_us > 0)
    fmt_elapsed((r->finished_us - r->created_us) / 1000, took, sizeof(took));
  char attempt[16];
  snprintf(attempt, sizeof(attempt), "%d", r->attempt);
  tb_cli_table_add(s->table, r->id, r->name, r->status, tb_wf_step_name(r->name, r->step), attempt,
                   r->tier, created, took);
  return 0;
}

static int cmd_runs(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus workflows runs"};
  const char *status = NULL, *name = NULL;
  long limit = 20;
  int as_json = 0, rc;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"status", required_argument, NULL, 's'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "s:n:l:jh", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 's':
      status = optarg;
      break;
    case 'n':
      name = optarg;
      break;
    case 'l':
      if ((rc = tb_cli_parse_long(&cli, "--limit", optarg, 1, 100000, &limit)) != TB_EXIT_OK)
        return rc;
      break;
    case 'j':
      as_json = 1;
      break;
    case 'h':
      return runs_usage(stdout), TB_EXIT_OK;
    default:
      return runs_usage(stderr), TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (status != NULL) {
    if (!tb_wf_status_valid(status))
      return tb_cli_usage_error(&cli,
                                "--status: unknown status '%s' (running, waiting, sleeping, "
                                "completed, failed, cancelled)",
                                status);
  }
  rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  static const char *const headers[] = {"ID",   "WORKFLOW", "STATUS",  "STEP",
                                        ">TRY", "TIER",     "CREATED", "TOOK"};
  runs_state_t s = {
      .as_json = as_json, .rows = json_array(), .table = tb_cli_table_new(8, headers)};
  tb_status st = s.table == NULL
                     ? tb__fail(TB_ERR_NOMEM, "out of memory")
                     : tb_store_wf_list(cli.store, status, name, 0, (int)limit, run_row, &s);
  if (st == TB_OK && !as_json) st = tb_cli_table_print(s.table, stdout);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (as_json) {
    print_json(s.rows);
  } else {
    printf("%d run%s\n", s.n, s.n == 1 ? "" : "s");
  }
  json_decref(s.rows);
  tb_cli_table_free(s.table);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- workflows cancel */

/* Reports why cancel or retry (|verb|) of run |id| did not happen: an unknown id or a run in the
 * wrong state (the runtime's detail names its status) exits 1 like any runtime failure. */
static int run_refused(const tb_cli_t *cli, const char *id, const char *verb, tb_status st) {
  if (st == TB_ERR_NOT_FOUND)
    fprintf(stderr, "%s: no workflow '%s' in %s\n", cli->prog, id, cli->cfg.db_path);
  else if (st == TB_ERR_INVALID)
    fprintf(stderr, "%s: cannot %s: %s\n", cli->prog, verb, tb_errdetail());
  else
    fprintf(stderr, "%s: error: %s\n", cli->prog, tb_errdetail());
  return TB_EXIT_FAIL;
}

static void cancel_usage(FILE *out) {
  fprintf(out, "usage: tierbus workflows cancel ID [--reason TEXT]\n"
               "Cancels a run: it runs no further step, and its waits and timers are dropped.\n"
               "Exit 1 when there is no run ID or it has already finished.\n"
               "example:\n"
               "  tierbus workflows cancel wf-3f2a9c --reason 'customer left'\n");
}

static int cmd_cancel(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus workflows cancel"};
  const char *reason = NULL;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"reason", required_argument, NULL, 'r'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "r:h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 'r')
      reason = optarg;
    else if (c == 'h')
      return cancel_usage(stdout), TB_EXIT_OK;
    else
      return cancel_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind >= argc) return tb_cli_usage_error(&cli, "which workflow? give its ID");
  if (optind + 1 < argc)
    return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind + 1]);
  const char *id = argv[optind];
  int rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  /* Read first only to say where the run stood; the runtime decides under its transaction. */
  tb_wf_row_t row;
  int found = 0;
  tb_status st = tb_store_wf_get(cli.store, id, &row, &found);
  if (st == TB_OK && !found) {
    fprintf(stderr, "%s: no workflow '%s' in %s\n", cli.prog, id, cli.cfg.db_path);
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  if (st == TB_OK) st = tb_wf_cancel(cli.store, id, reason ? reason : "cancelled from the CLI");
  if (st == TB_OK) {
    printf("cancelled %s (%s, was %s at step %s, attempt %d)\n", id, row.name, row.status,
           tb_wf_step_name(row.name, row.step), row.attempt);
  } else {
    rc = run_refused(&cli, id, "cancel", st);
  }
  if (found) tb_store_wf_row_clear(&row);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- workflows retry */

static void retry_usage(FILE *out) {
  fprintf(out, "usage: tierbus workflows retry ID [--priority TIER]\n"
               "Retries a failed run from its failed step. Without --priority its tier is\n"
               "escalated as a failed retry by the config's escalation rules (with its\n"
               "customer-facing flag, business impact and hours since it failed); --priority\n"
               "puts it on TIER. A running worker's relay sends the step. Exit 1 when there is no\n"
               "run ID or it has not failed, 2 for a bad argument.\n"
               "examples:\n"
               "  tierbus workflows retry wf-3f2a9c\n"
               "  tierbus workflows retry wf-3f2a9c --priority critical\n");
}

static int cmd_retry(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus workflows retry"};
  const char *priority = NULL;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"priority", required_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "p:h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 'p')
      priority = optarg;
    else if (c == 'h')
      return retry_usage(stdout), TB_EXIT_OK;
    else
      return retry_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind >= argc) return tb_cli_usage_error(&cli, "which workflow? give its ID");
  if (optind + 1 < argc)
    return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind + 1]);
  const char *id = argv[optind];
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  if (priority != NULL && tb_config_tier_index(&cli.cfg, priority) < 0) {
    char tiers[256];
    tb_cli_config_names(&cli.cfg, TB_CLI_TIERS, tiers, sizeof(tiers));
    rc = tb_cli_usage_error(&cli, "--priority: unknown tier '%s' (tiers: %s)", priority, tiers);
    tb_cli_close(&cli);
    return rc;
  }
  rc = tb_cli_open_store(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  tb_wf_retry_result_t res;
  tb_status st = tb_wf_retry(cli.store, &cli.cfg, cli.cat, id, priority, &res);
  if (st == TB_OK) {
    printf("retrying %s from step %s on %s", id, res.step, res.to_tier);
    if (res.rule[0] && strcmp(res.rule, "priority") == 0)
      printf(" (was %s; --priority)", res.from_tier);
    else if (res.rule[0])
      printf(" (escalated from %s by rule %s)", res.from_tier, res.rule);
    printf("; failure %d\n", res.failures);
  } else {
    rc = run_refused(&cli, id, "retry", st);
  }
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- dispatch */

static void workflows_usage(FILE *out) {
  fprintf(out, "usage: tierbus workflows list [--domain D] [--workflows-only|--activities-only]\n"
               "                              [--detailed] [--json]\n"
               "       tierbus workflows show ID [--json]\n"
               "       tierbus workflows runs [--status S] [--name N] [--limit K] [--json]\n"
               "       tierbus workflows cancel ID [--reason TEXT]\n"
               "       tierbus workflows retry ID [--priority TIER]\n"
               "Start a run with `tierbus trigger WORKFLOW --json-input '{...}'`.\n"
               "`tierbus workflows SUBCOMMAND --help` says more about each.\n"
               "examples:\n"
               "  tierbus workflows list --domain crm\n"
               "  tierbus workflows runs --status failed\n"
               "  tierbus workflows show wf-3f2a9c\n");
}

int tb_cmd_workflows(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {{"list", cmd_list},
                                      {"show", cmd_show},
                                      {"runs", cmd_runs},
                                      {"cancel", cmd_cancel},
                                      {"retry", cmd_retry}};
  return tb_cli_run_subcommand_own_help("tierbus workflows", argc, argv, subs,
                                        (int)TB_COUNTOF(subs), workflows_usage);
}
