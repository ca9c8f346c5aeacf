/* `tierbus priority`: seed 002's repository priority from the operator's side. `sync` runs the
 * full sync now and prints the SyncResult; `show` one repository with its audit trail;
 * `inversions` the seed's inversion query and the dispatcher's audit; `set` an override or a low
 * mark. All of them work on the SQLite file alone: NATS is not needed (the repository-sync jobs a
 * change queues wait in the outbox for a worker's relay). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "cli/cli.h"
#include "core/status.h"
#include "core/util.h"
#include "workflows/priority.h"

enum { EXIT_NOT_RUN = 3 }; /* sync: another sync holds the lease */

static void priority_usage(FILE *out) {
  fprintf(out, "usage: tierbus priority sync [--json] [--batch N]\n"
               "       tierbus priority show REPO [--json] [--audit N]\n"
               "       tierbus priority inversions [--json] [--limit N] [--check]\n"
               "       tierbus priority set REPO [--override high|medium|low|none] "
               "[--mark-low | --unmark-low]\n"
               "                                 [--name OWNER/NAME] [--create]\n"
               "       tierbus priority list [--workspace W] [--priority high|medium|low] "
               "[--limit N] [--json]\n"
               "`set` refuses a repository tierbus has never seen (exit 2) unless --create.\n"
               "examples:\n"
               "  tierbus priority sync\n"
               "  tierbus priority list --workspace w1 --priority high\n"
               "  tierbus priority show repo-42 --audit 10\n"
               "  tierbus priority inversions --check   # exit 1 when there are any\n"
               "  tierbus priority set repo-42 --override high\n");
}

/* Parses the options of one subcommand: the common ones, plus |extra|. Returns TB_EXIT_OK, or an
 * exit code after printing the problem. |handle| gets every non-common option. */
typedef int (*opt_fn)(tb_cli_t *cli, int c, const char *arg, void *state);

static int parse(tb_cli_t *cli, int argc, char **argv, const struct option *opts, opt_fn handle,
                 void *state, int n_pos, const char **pos) {
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(cli, c, optarg)) continue;
    if (c == '?') return TB_EXIT_USAGE;
    int rc = handle(cli, c, optarg, state);
    if (rc != TB_EXIT_OK) return rc;
  }
  int have = argc - optind;
  if (have < n_pos)
    return tb_cli_usage_error(cli, "missing repository id (see tierbus priority --help)");
  if (have > n_pos)
    return tb_cli_usage_error(cli, "unexpected argument '%s'", argv[optind + n_pos]);
  for (int i = 0; i < n_pos; i++) pos[i] = argv[optind + i];
  if (n_pos > 0 && (pos[0][0] == '\0' || strlen(pos[0]) >= TB_ID_MAX))
    return tb_cli_usage_error(cli, "repository id must be 1 to %d characters", TB_ID_MAX - 1);
  return tb_cli_load_and_open(cli);
}

static int fail(tb_cli_t *cli) {
  fprintf(stderr, "%s: error: %s\n", cli->prog, tb_errdetail());
  tb_cli_close(cli);
  return TB_EXIT_FAIL;
}

static void print_json(json_t *o) {
  json_dumpf(o, stdout, JSON_INDENT(2));
  putchar('\n');
  json_decref(o);
}

/* ---------------------------------------------------------------- sync */

typedef struct sync_state {
  int as_json;
  long batch;
} sync_state_t;

static int sync_opt(tb_cli_t *cli, int c, const char *arg, void *state) {
  sync_state_t *s = state;
  if (c == 'j') return s->as_json = 1, TB_EXIT_OK;
  if (c == 'b') return tb_cli_parse_long(cli, "--batch", arg, 1, 1000000, &s->batch);
  return TB_EXIT_USAGE;
}

static int cmd_sync(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus priority sync"};
  sync_state_t ss = {.batch = TB_PRIO_SYNC_BATCH};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", no_argument, NULL, 'j'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {0}};
  int rc = parse(&cli, argc, argv, opts, sync_opt, &ss, 0, NULL);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  tb_prio_sync_opts_t o = {.trigger = "manual", .batch_size = (int)ss.batch, .max_retries = -1};
  tb_prio_sync_result_t r;
  tb_status st = tb_prio_sync_run(cli.store, &cli.cfg, cli.cat, &o, &r);
  if (r.skipped) {
    fprintf(stderr, "%s: not run: %s\n", cli.prog, tb_errdetail());
    if (ss.as_json)
      print_json(json_pack("{s:s, s:s, s:I}", "status", "already running", "holder", r.holder,
                           "holder_expires_us", (json_int_t)r.holder_expires_us));
    tb_prio_sync_result_clear(&r);
    tb_cli_close(&cli);
    return EXIT_NOT_RUN;
  }
  if (ss.as_json) {
    json_t *j = tb_prio_sync_result_json(&r);
    json_object_set_new(j, "status", json_string(st == TB_OK ? "completed" : "failed"));
    print_json(j);
  } else {
    printf("priority sync %s in %.3f s (%d batch%s, %d attempt%s)\n",
           st == TB_OK ? "completed" : "FAILED", r.elapsed_us / 1e6, r.batches,
           r.batches == 1 ? "" : "es", r.attempts, r.attempts == 1 ? "" : "s");
    printf("  workspace repos     %lld\n", (long long)r.workspace_repos);
    printf("  tracked-only repos  %lld\n", (long long)r.tracked_only_repos);
    printf("  priority changes    %lld\n", (long long)r.priority_changes);
    printf("  rows updated        %lld\n", (long long)r.rows_updated);
    printf("  sync jobs queued    %lld\n", (long long)r.jobs_queued);
    printf("  errors              %zu\n", json_array_size(r.errors));
    for (size_t i = 0; i < json_array_size(r.errors); i++)
      printf("    %s\n", json_string_value(json_array_get(r.errors, i)));
  }
  tb_prio_sync_result_clear(&r);
  if (st != TB_OK) return fail(&cli);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- show */

typedef struct show_state {
  int as_json;
  long audit;
} show_state_t;

static int show_opt(tb_cli_t *cli, int c, const char *arg, void *state) {
  show_state_t *s = state;
  if (c == 'j') return s->as_json = 1, TB_EXIT_OK;
  if (c == 'a') return tb_cli_parse_long(cli, "--audit", arg, 0, 100000, &s->audit);
  return TB_EXIT_USAGE;
}

static int cmd_show(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus priority show"};
  show_state_t ss = {.audit = 10};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", no_argument, NULL, 'j'},
                                       {"audit", required_argument, NULL, 'a'},
                                       {0}};
  const char *repo = NULL;
  int rc = parse(&cli, argc, argv, opts, show_opt, &ss, 1, &repo);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  json_t *v = NULL;
  tb_status st = tb_repo_view(cli.store, &cli.cfg, repo, (int)ss.audit, &v);
  if (st == TB_ERR_NOT_FOUND) {
    fprintf(stderr, "%s: repository '%s' is not tracked\n", cli.prog, repo);
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  if (st != TB_OK) return fail(&cli);
  if (ss.as_json) {
    print_json(v);
    tb_cli_close(&cli);
    return TB_EXIT_OK;
  }
#define STR(k) json_string_value(json_object_get(v, k))
#define INT(k) (long long)json_integer_value(json_object_get(v, k))
  const char *priority = STR("priority"), *expected = STR("expected_priority");
  const char *override = STR("manual_override"), *tier = STR("jobs_tier");
  printf("repository         %s\n", repo);
  printf("priority           %s (score %lld)\n", priority, INT("priority_score"));
  if (strcmp(expected, priority) != 0)
    printf("                   the rules give %s: an inversion (tierbus priority sync)\n",
           expected);
  printf("is_workspace_repo  %s\n",
         json_is_true(json_object_get(v, "is_workspace_repo")) ? "yes" : "no");
  printf("workspace count    %lld", INT("workspace_count"));
  if (INT("live_workspace_count") != INT("workspace_count"))
    printf(" (live membership: %lld)", INT("live_workspace_count"));
  putchar('\n');
  json_t *ws = json_object_get(v, "workspaces");
  printf("workspaces         ");
  for (size_t i = 0; i < json_array_size(ws); i++)
    printf("%s%s", i ? ", " : "",
           json_string_value(json_object_get(json_array_get(ws, i), "workspace_id")));
  printf("%s\n", json_array_size(ws) ? "" : "none");
  printf("override           %s\n", override ? override : "none");
  printf("marked low         %s\n", json_is_true(json_object_get(v, "marked_low")) ? "yes" : "no");
  printf("sync jobs tier     %s\n", tier ? tier : "?");
  printf("audit (newest first, last %ld):\n", ss.audit);
  json_t *rows = json_object_get(v, "audit");
  for (size_t i = 0; i < json_array_size(rows); i++) {
    json_t *a = json_array_get(rows, i);
    const char *old = json_string_value(json_object_get(a, "old_priority"));
    const char *msg = json_string_value(json_object_get(a, "msg_id"));
    printf("  %s  %s -> %s  %s%s%s%s\n", json_string_value(json_object_get(a, "at")),
           old[0] ? old : "(new)", json_string_value(json_object_get(a, "new_priority")),
           json_string_value(json_object_get(a, "reason")), msg[0] ? " [" : "", msg,
           msg[0] ? "]" : "");
  }
#undef STR
#undef INT
  json_decref(v);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- inversions */

typedef struct inv_state {
  int as_json, check;
  long limit;
} inv_state_t;

static int inv_opt(tb_cli_t *cli, int c, const char *arg, void *state) {
  inv_state_t *s = state;
  if (c == 'j') return s->as_json = 1, TB_EXIT_OK;
  if (c == 'c') return s->check = 1, TB_EXIT_OK;
  if (c == 'l') return tb_cli_parse_long(cli, "--limit", arg, 0, 1000000, &s->limit);
  return TB_EXIT_USAGE;
}

static void collect_inversion(void *arg, const tb_repo_inversion_t *v) {
  json_array_append_new(
      arg, json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:o}", "repository_id", v->repository_id,
                     "priority", v->priority, "expected_priority", v->expected_priority,
                     "is_workspace_repo", v->is_workspace_repo, "workspace_count",
                     v->workspace_count, "live_workspace_count", v->live_count, "manual_override",
                     v->manual_override[0] ? json_string(v->manual_override) : json_null()));
}

static int cmd_inversions(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus priority inversions"};
  inv_state_t ss = {.limit = 20};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"json", no_argument, NULL, 'j'},
                                       {"check", no_argument, NULL, 'c'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {0}};
  int rc = parse(&cli, argc, argv, opts, inv_opt, &ss, 0, NULL);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  json_t *rows = json_array(), *tiers = json_array();
  int64_t total = 0, seed = 0, dispatch = 0;
  tb_status st =
      tb_store_repo_inversions(cli.store, (int)ss.limit, collect_inversion, rows, &total, &seed);
  for (int i = 0; i < cli.cfg.n_tiers && st == TB_OK; i++) {
    static tb_store_tier_stats_t ts;
    st = tb_store_tier_stats(cli.store, cli.cfg.tiers[i].name, &ts);
    if (st != TB_OK) break;
    dispatch += ts.inversions;
    json_array_append_new(tiers, json_pack("{s:s, s:I, s:I}", "tier", cli.cfg.tiers[i].name,
                                           "inversions", (json_int_t)ts.inversions, "processed",
                                           (json_int_t)ts.processed));
  }
  if (st != TB_OK) {
    json_decref(rows);
    json_decref(tiers);
    return fail(&cli);
  }
  if (ss.as_json) {
    print_json(json_pack("{s:I, s:I, s:o, s:I, s:o}", "repository_inversions", (json_int_t)total,
                         "seed_query", (json_int_t)seed, "repositories", rows,
                         "dispatch_inversions", (json_int_t)dispatch, "dispatch_by_tier", tiers));
  } else {
    printf("repository priority (stored priority or flags disagree with the rules): %lld\n",
           (long long)total);
    static const char *const headers[] = {"  REPOSITORY", "STORED", "RULES",
                                          ">WORKSPACES",  ">LIVE",  "OVERRIDE"};
    tb_cli_table_t *table = json_array_size(rows) ? tb_cli_table_new(6, headers) : NULL;
    for (size_t i = 0; table != NULL && i < json_array_size(rows); i++) {
      json_t *v = json_array_get(rows, i);
      char repo[160], n_ws[24], n_live[24];
      snprintf(repo, sizeof(repo), "  %s", json_string_value(json_object_get(v, "repository_id")));
      snprintf(n_ws, sizeof(n_ws), "%lld",
               (long long)json_integer_value(json_object_get(v, "workspace_count")));
      snprintf(n_live, sizeof(n_live), "%lld",
               (long long)json_integer_value(json_object_get(v, "live_workspace_count")));
      tb_cli_table_add(table, repo, json_string_value(json_object_get(v, "priority")),
                       json_string_value(json_object_get(v, "expected_priority")), n_ws, n_live,
                       json_string_value(json_object_get(v, "manual_override")));
    }
    if (table != NULL && tb_cli_table_print(table, stdout) != TB_OK)
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    tb_cli_table_free(table);
    if (total > (int64_t)json_array_size(rows))
      printf("  ... %lld more (--limit)\n", (long long)(total - (int64_t)json_array_size(rows)));
    printf("seed query (is_workspace_repo and not high, overrides included): %lld\n",
           (long long)seed);
    printf("dispatch-time inversions (a lower tier served while a higher one waited): %lld\n",
           (long long)dispatch);
    for (size_t i = 0; i < json_array_size(tiers); i++) {
      json_t *t = json_array_get(tiers, i);
      printf("  %-11s %lld\n", json_string_value(json_object_get(t, "tier")),
             (long long)json_integer_value(json_object_get(t, "inversions")));
    }
    json_decref(rows);
    json_decref(tiers);
  }
  tb_cli_close(&cli);
  return ss.check && (total > 0 || dispatch > 0) ? TB_EXIT_FAIL : TB_EXIT_OK;
}

/* ---------------------------------------------------------------- set */

typedef struct set_state {
  const char *override;
  int mark_low; /* -1 unchanged */
  const char *name;
  int create;
} set_state_t;

static int set_opt(tb_cli_t *cli, int c, const char *arg, void *state) {
  set_state_t *s = state;
  if (c == 'o') {
    if (strcmp(arg, "none") != 0 && !tb_repo_priority_valid(arg))
      return tb_cli_usage_error(cli, "--override: expected high, medium, low or none, got '%s'",
                                arg);
    s->override = arg;
    return TB_EXIT_OK;
  }
  if (c == 'n') {
    if (arg[0] == '\0' || strlen(arg) >= TB_REPO_NAME_MAX)
      return tb_cli_usage_error(cli, "--name: must be 1 to %d characters", TB_REPO_NAME_MAX - 1);
    s->name = arg;
    return TB_EXIT_OK;
  }
  if (c == 'c') return s->create = 1, TB_EXIT_OK;
  if (c == 'l' || c == 'u') {
    int want = c == 'l';
    if (s->mark_low >= 0 && s->mark_low != want)
      return tb_cli_usage_error(cli, "give --mark-low or --unmark-low, not both");
    s->mark_low = want;
    return TB_EXIT_OK;
  }
  return TB_EXIT_USAGE;
}

static int cmd_set(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus priority set"};
  set_state_t ss = {.mark_low = -1};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"override", required_argument, NULL, 'o'},
                                       {"mark-low", no_argument, NULL, 'l'},
                                       {"unmark-low", no_argument, NULL, 'u'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"create", no_argument, NULL, 'c'},
                                       {0}};
  const char *repo = NULL;
  int rc = parse(&cli, argc, argv, opts, set_opt, &ss, 1, &repo);
  if (rc == TB_EXIT_OK && ss.override == NULL && ss.mark_low < 0 && ss.name == NULL && !ss.create)
    rc = tb_cli_usage_error(&cli, "nothing to set: give --override, --mark-low, --unmark-low, "
                                  "--name or --create");
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  /* A typo in REPO would otherwise start tracking a repository nobody has: only --create may. */
  tb_tracked_repo_t seen;
  int known = 0;
  if (tb_store_repo_get(cli.store, repo, &seen, &known) != TB_OK) return fail(&cli);
  if (!known && !ss.create) {
    rc = tb_cli_usage_error(&cli,
                            "repository '%s' has never been seen (not tracked, in no workspace); "
                            "check the id (tierbus priority list), or add --create to start "
                            "tracking it",
                            repo);
    tb_cli_close(&cli);
    return rc;
  }
  char cause[64];
  tb_new_id(cause, sizeof(cause));
  memcpy(cause, "cli", 3); /* "cli-<32 hex>": the audit row's and the job's cause */
  tb_handler_ctx_t ctx = {.store = cli.store, .cfg = &cli.cfg, .cat = cli.cat};
  int changed = 0;
  tb_status st = tb_store_begin(cli.store);
  if (st == TB_OK)
    st = tb_repo_set_ex(&ctx, repo, ss.override, ss.mark_low, ss.name, cause, &changed);
  if (st == TB_OK) st = tb_store_commit(cli.store);
  if (st != TB_OK) {
    tb_store_rollback(cli.store);
    return fail(&cli);
  }
  tb_tracked_repo_t r;
  int found = 0;
  st = tb_store_repo_get(cli.store, repo, &r, &found);
  if (st != TB_OK) return fail(&cli);
  printf("%s: %s (score %d), override %s, marked low %s%s%s%s\n", repo, r.priority,
         r.priority_score, r.manual_override[0] ? r.manual_override : "none",
         r.marked_low ? "yes" : "no", r.repository_name[0] ? ", name " : "", r.repository_name,
         changed ? (known ? "" : " (now tracked)") : " (unchanged)");
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- list */

typedef struct list_state {
  const char *workspace, *priority;
  long limit;
  int as_json;
} list_state_t;

static int list_opt(tb_cli_t *cli, int c, const char *arg, void *state) {
  list_state_t *s = state;
  if (c == 'j') return s->as_json = 1, TB_EXIT_OK;
  if (c == 'L') return tb_cli_parse_long(cli, "--limit", arg, 1, 1000000000, &s->limit);
  if (c == 'w') {
    if (arg[0] == '\0' || strlen(arg) >= TB_ID_MAX)
      return tb_cli_usage_error(cli, "--workspace: must be 1 to %d characters", TB_ID_MAX - 1);
    s->workspace = arg;
    return TB_EXIT_OK;
  }
  if (c == 'p') {
    if (!tb_repo_priority_valid(arg))
      return tb_cli_usage_error(cli, "--priority: expected high, medium or low, got '%s'", arg);
    s->priority = arg;
    return TB_EXIT_OK;
  }
  return TB_EXIT_USAGE;
}

typedef struct list_out {
  const tb_config_t *cfg;
  json_t *arr; /* --json */
  int64_t n, limit;
  int more; /* a row past the limit was seen */
} list_out_t;

static int list_row(void *arg, const tb_tracked_repo_t *r) {
  list_out_t *o = arg;
  if (o->n == o->limit) return o->more = 1; /* the one past the limit: stop */
  o->n++;
  if (o->arr != NULL) {
    json_array_append_new(o->arr, tb_repo_json(o->cfg, r)); /* as `show` and the API */
    return 0;
  }
  printf("%-32s %-6s %5d %10d %-8s %-4s %s\n", r->repository_id, r->priority, r->priority_score,
         r->workspace_count, r->manual_override[0] ? r->manual_override : "-",
         r->marked_low ? "yes" : "no", r->repository_name[0] ? r->repository_name : "-");
  return 0;
}

/* Tracked repositories in id order, filtered by workspace and priority, at most --limit (default
 * 1000; the output says when more matched). */
static int cmd_list(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus priority list"};
  list_state_t ls = {.limit = 1000};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"workspace", required_argument, NULL, 'w'},
                                       {"priority", required_argument, NULL, 'p'},
                                       {"limit", required_argument, NULL, 'L'},
                                       {"json", no_argument, NULL, 'j'},
                                       {0}};
  int rc = parse(&cli, argc, argv, opts, list_opt, &ls, 0, NULL);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  list_out_t o = {.cfg = &cli.cfg, .arr = ls.as_json ? json_array() : NULL, .limit = ls.limit};
  if (!ls.as_json)
    printf("%-32s %-6s %5s %10s %-8s %-4s %s\n", "REPOSITORY", "PRIO", "SCORE", "WORKSPACES",
           "OVERRIDE", "LOW", "NAME");
  /* One row more than the limit is read, to say whether there are more. */
  tb_status st =
      tb_store_repo_list(cli.store, ls.priority, ls.workspace, "", (int)ls.limit + 1, list_row, &o);
  if (st != TB_OK) {
    json_decref(o.arr);
    return fail(&cli);
  }
  int more = o.more;
  if (ls.as_json) {
    print_json(json_pack("{s:o, s:I, s:b}", "repositories", o.arr, "count", (json_int_t)o.n,
                         "truncated", more));
  } else if (more) {
    printf("(more than %ld repositories match; raise --limit or narrow the filters)\n", ls.limit);
  }
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

int tb_cmd_priority(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {{"sync", cmd_sync},
                                      {"show", cmd_show},
                                      {"inversions", cmd_inversions},
                                      {"set", cmd_set},
                                      {"list", cmd_list}};
  return tb_cli_run_subcommand("tierbus priority", argc, argv, subs, (int)TB_COUNTOF(subs),
                               priority_usage);
}
