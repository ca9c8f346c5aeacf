/* `tierbus schedule`: the scheduled tasks of seed 001 (list, add, remove, enable, disable) and a
 * manual run of one task (`run NAME`), which is also how a task kept as failed is retried. Every
 * subcommand works on the database alone; the scheduler thread in the workers fires the slots. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/status.h"
#include "core/util.h"
#include "sched/sched.h"
#include "store/sched.h"

static void schedule_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus schedule list [--json]\n"
          "       tierbus schedule add --name NAME --cron PATTERN|CONSTANT --event TYPE\n"
          "                            [--payload JSON] [--priority TIER] [--description S]\n"
          "                            [--catch-up skip|once] [--disabled]\n"
          "       tierbus schedule remove NAME --yes\n"
          "       tierbus schedule enable|disable|run NAME\n"
          "       tierbus schedule reset-defaults [--json]\n"
          "A pattern has 5 fields (minute hour day-of-month month day-of-week; *, */n, a-b,\n"
          "a-b/n, lists a,b,c) and is read in UTC; or use one of seed 001's SCHEDULES names\n"
          "(EVERY_MINUTE ... MONTHLY_FIRST). TYPE is a built-in job (CLEANUP_FILES,\n"
          "BACKUP_DATABASE, CLEANUP_OLD_JOBS, SEND_REMINDER_EMAILS, UPDATE_CLIENT_METRICS) or a\n"
          "catalogue event, published with the payload on the task's tier. TIER may be a seed\n"
          "001 job priority number (1 critical, 3 high, 5 normal, 7 low). `run` runs the task\n"
          "now in this process (no automatic retry) and exits 1 if it fails. `remove` deletes a\n"
          "task only with --yes. `reset-defaults` puts the default tasks back as shipped\n"
          "(restoring removed ones, undoing changes and failure state) and leaves other tasks.\n"
          "examples:\n"
          "  tierbus schedule list\n"
          "  tierbus schedule add --name backup --cron '0 3 * * *' --event BACKUP_DATABASE\n"
          "  tierbus schedule disable cleanup-temp-files\n"
          "  tierbus schedule run workspace-priority-sync\n"
          "  tierbus schedule reset-defaults\n");
}

/* Parses options that are only the common ones plus --help (and --yes when |yes| is not NULL),
 * leaving one NAME argument. */
static int one_name(tb_cli_t *cli, int argc, char **argv, const char **name, int *yes) {
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"help", no_argument, NULL, 'h'},
                                       {"yes", no_argument, NULL, 'y'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "hy", opts, NULL)) != -1) {
    if (tb_cli_common_opt(cli, c, optarg)) continue;
    if (c == 'h') return schedule_usage(stdout), -1;
    if (c == 'y' && yes != NULL) {
      *yes = 1;
      continue;
    }
    return schedule_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind >= argc) return tb_cli_usage_error(cli, "which task? give its NAME");
  if (optind + 1 < argc)
    return tb_cli_usage_error(cli, "unexpected argument '%s'", argv[optind + 1]);
  *name = argv[optind];
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- list */

typedef struct list_ctx {
  int64_t now_us;
  json_t *arr;           /* --json */
  tb_cli_table_t *table; /* else: the rows, sized to their content once all are in */
  json_t *errors;        /* and "NAME: last error: ..." lines printed under the table */
} list_ctx_t;

/* The task's next slot as text ("-" when disabled or never). */
static void next_text(const tb_sched_task_t *t, int64_t now_us, char *buf, size_t cap) {
  int64_t next_us = tb_sched_next_us(t, now_us);
  snprintf(buf, cap, "-");
  if (next_us) tb_cron_format_utc(next_us, buf, cap);
}

static int list_row(void *arg, const tb_sched_task_t *t) {
  list_ctx_t *l = arg;
  if (l->arr != NULL) {
    json_array_append_new(l->arr, tb_sched_task_json(t, l->now_us));
    return 0;
  }
  char next[40], last[40] = "-";
  next_text(t, l->now_us, next, sizeof(next));
  if (t->last_run_us > 0) tb_cron_format_utc(t->last_run_us, last, sizeof(last));
  const char *expanded = tb_cron_constant(t->pattern);
  char pattern[160];
  snprintf(pattern, sizeof(pattern), "%s%s%s%s", t->pattern, expanded ? " (" : "",
           expanded ? expanded : "", expanded ? ")" : "");
  char fails[16];
  snprintf(fails, sizeof(fails), "%d", t->failure_count);
  tb_cli_table_add(l->table, t->name, t->enabled ? "on" : "off", pattern, next, t->job, t->tier,
                   t->catch_up_once ? "once" : "skip", t->status, fails, last);
  if (t->last_error[0])
    json_array_append_new(l->errors, json_sprintf("%s: last error: %s", t->name, t->last_error));
  return 0;
}

static int cmd_list(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus schedule list"};
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
      return schedule_usage(stdout), TB_EXIT_OK;
    else
      return schedule_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  static const char *const headers[] = {"NAME",     "ON",   "PATTERN", "NEXT (UTC)", "EVENT/JOB",
                                        "PRIORITY", "MISS", "STATUS",  ">FAILS",     "LAST RUN"};
  list_ctx_t l = {.now_us = tb_wall_us(),
                  .arr = as_json ? json_array() : NULL,
                  .table = tb_cli_table_new(10, headers),
                  .errors = json_array()};
  tb_status st = l.table == NULL ? tb__fail(TB_ERR_NOMEM, "out of memory")
                                 : tb_store_sched_list(cli.store, list_row, &l);
  if (st == TB_OK && !as_json && (st = tb_cli_table_print(l.table, stdout)) == TB_OK) {
    size_t i;
    json_t *e;
    json_array_foreach(l.errors, i, e) printf("%s\n", json_string_value(e));
  }
  tb_cli_table_free(l.table);
  json_decref(l.errors);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (as_json) {
    json_dumpf(l.arr, stdout, JSON_INDENT(2));
    putchar('\n');
  }
  json_decref(l.arr);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- add */

/* Copies |value| of option |opt| into |buf|, or prints why it does not fit. */
static int copy_opt(tb_cli_t *cli, const char *opt, const char *value, char *buf, size_t cap) {
  if (strlen(value) >= cap)
    return tb_cli_usage_error(cli, "%s: longer than %zu characters", opt, cap - 1);
  snprintf(buf, cap, "%s", value);
  return TB_EXIT_OK;
}

static int cmd_add(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus schedule add"};
  enum { O_NAME = OPT__COMMON_END, O_CRON, O_EVENT, O_PAYLOAD, O_PRIO, O_DESC, O_CATCH, O_OFF };
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"name", required_argument, NULL, O_NAME},
                                       {"cron", required_argument, NULL, O_CRON},
                                       {"event", required_argument, NULL, O_EVENT},
                                       {"payload", required_argument, NULL, O_PAYLOAD},
                                       {"priority", required_argument, NULL, O_PRIO},
                                       {"description", required_argument, NULL, O_DESC},
                                       {"catch-up", required_argument, NULL, O_CATCH},
                                       {"disabled", no_argument, NULL, O_OFF},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  tb_sched_task_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return TB_EXIT_FAIL;
  t->enabled = 1;
  const char *prio = NULL;
  int c, rc = TB_EXIT_OK;
  while (rc == TB_EXIT_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case O_NAME:
      rc = copy_opt(&cli, "--name", optarg, t->name, sizeof(t->name));
      break;
    case O_CRON:
      rc = copy_opt(&cli, "--cron", optarg, t->pattern, sizeof(t->pattern));
      break;
    case O_EVENT:
      rc = copy_opt(&cli, "--event", optarg, t->job, sizeof(t->job));
      break;
    case O_PAYLOAD:
      rc = copy_opt(&cli, "--payload", optarg, t->payload, sizeof(t->payload));
      break;
    case O_PRIO:
      prio = optarg;
      break;
    case O_DESC:
      rc = copy_opt(&cli, "--description", optarg, t->description, sizeof(t->description));
      break;
    case O_CATCH:
      if (strcmp(optarg, "skip") != 0 && strcmp(optarg, "once") != 0)
        rc = tb_cli_usage_error(&cli, "--catch-up: expected skip or once, got '%s'", optarg);
      t->catch_up_once = strcmp(optarg, "once") == 0;
      break;
    case O_OFF:
      t->enabled = 0;
      break;
    case 'h':
      free(t);
      return schedule_usage(stdout), TB_EXIT_OK;
    default:
      free(t);
      return schedule_usage(stderr), TB_EXIT_USAGE;
    }
  }
  if (rc == TB_EXIT_OK && optind < argc)
    rc = tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (rc == TB_EXIT_OK && (!t->name[0] || !t->pattern[0] || !t->job[0]))
    rc = tb_cli_usage_error(&cli, "missing %s (--name, --cron and --event are required)",
                            !t->name[0]      ? "--name"
                            : !t->pattern[0] ? "--cron"
                                             : "--event");
  if (rc == TB_EXIT_OK) rc = tb_cli_load(&cli);
  if (rc == TB_EXIT_OK) {
    /* Default priority: NORMAL, seed 001's JOB_PRIORITY for automated work. */
    const char *tier = prio ? prio
                       : tb_config_tier_index(&cli.cfg, "normal") >= 0
                           ? "normal"
                           : cli.cfg.tiers[cli.cfg.n_tiers - 1].name;
    /* Stored under the tier's name: a job priority number ("3") is resolved once, here. */
    int ti = tb_config_tier_index(&cli.cfg, tier);
    rc = copy_opt(&cli, "--priority", ti >= 0 ? cli.cfg.tiers[ti].name : tier, t->tier,
                  sizeof(t->tier));
  }
  if (rc == TB_EXIT_OK && tb_sched_check(&cli.cfg, cli.cat, t) != TB_OK)
    rc = tb_cli_usage_error(&cli, "%s", tb_errdetail());
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(&cli);
  if (rc == TB_EXIT_OK) {
    t->last_slot_us = tb_wall_us(); /* a new task fires from its next slot on */
    tb_status st = tb_store_sched_put(cli.store, t);
    if (st == TB_ERR_INVALID) {
      rc = tb_cli_usage_error(&cli, "%s", tb_errdetail());
    } else if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      rc = TB_EXIT_FAIL;
    } else {
      char next[40];
      next_text(t, t->last_slot_us, next, sizeof(next));
      printf("added %s: %s %s on %s, next %s%s\n", t->name, t->job, t->pattern, t->tier, next,
             t->enabled ? "" : " (disabled)");
    }
  }
  free(t);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- remove, enable, disable */

/* remove (|enable| < 0), enable (1) or disable (0). A removal needs |yes| (--yes): a task's
 * definition is gone with it (a default task comes back with reset-defaults). */
static int change(int argc, char **argv, const char *prog, int enable) {
  tb_cli_t cli = {.prog = prog};
  const char *name = NULL;
  int yes = 0;
  int rc = one_name(&cli, argc, argv, &name, enable < 0 ? &yes : NULL);
  if (rc != TB_EXIT_OK) return rc < 0 ? TB_EXIT_OK : rc;
  if (enable < 0 && !yes)
    return tb_cli_usage_error(&cli,
                              "removing task '%s' deletes its definition; add --yes to remove it "
                              "(or `tierbus schedule disable %s` to stop it)",
                              name, name);
  rc = tb_cli_load_and_open(&cli);
  if (rc == TB_EXIT_OK) {
    tb_status st = enable < 0 ? tb_store_sched_remove(cli.store, name)
                              : tb_store_sched_enable(cli.store, name, enable, tb_wall_us());
    if (st != TB_OK) {
      fprintf(stderr, "%s: %s%s\n", cli.prog,
              st == TB_ERR_NOT_FOUND ? "" : "error: ", tb_errdetail());
      rc = TB_EXIT_FAIL;
    } else {
      printf("%s %s\n", enable < 0 ? "removed" : enable ? "enabled" : "disabled", name);
    }
  }
  tb_cli_close(&cli);
  return rc;
}

static int cmd_remove(int argc, char **argv) {
  return change(argc, argv, "tierbus schedule remove", -1);
}
static int cmd_enable(int argc, char **argv) {
  return change(argc, argv, "tierbus schedule enable", 1);
}
static int cmd_disable(int argc, char **argv) {
  return change(argc, argv, "tierbus schedule disable", 0);
}

/* ---------------------------------------------------------------- reset-defaults */

/* Puts every default task back as shipped (tb_sched_default): a missing one is added, a changed
 * or failed one is reset; tasks that are not defaults are left alone. One transaction: all or
 * nothing. Prints what happened to each default ("restored", "reset", "unchanged"). */
static int cmd_reset_defaults(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus schedule reset-defaults"};
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
      return schedule_usage(stdout), TB_EXIT_OK;
    else
      return schedule_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  tb_sched_task_t *want = malloc(sizeof(*want)), *have = malloc(sizeof(*have));
  json_t *arr = json_array();
  int n = tb_sched_default_count();
  const char **what = calloc((size_t)n, sizeof(*what));
  int64_t now = tb_wall_us();
  tb_status st = want && have && arr && what ? tb_store_begin(cli.store)
                                             : tb__fail(TB_ERR_NOMEM, "reset-defaults");
  for (int i = 0; st == TB_OK && i < n; i++) {
    tb_sched_default(i, want);
    int found = 0;
    st = tb_store_sched_get(cli.store, want->name, have, &found);
    if (st != TB_OK) break;
    if (!found) {
      want->last_slot_us = now; /* from its next slot on, like a task added now */
      st = tb_store_sched_put(cli.store, want);
      what[i] = "restored";
    } else if (!tb_sched_same_definition(want, have) || have->failure_count > 0 ||
               strcmp(have->status, "failed") == 0 || strcmp(have->status, "retrying") == 0) {
      st = tb_store_sched_reset(cli.store, want, now, &found);
      what[i] = "reset";
    } else {
      what[i] = "unchanged";
    }
  }
  if (st == TB_OK)
    st = tb_store_commit(cli.store);
  else if (want && have && arr && what)
    tb_store_rollback(cli.store);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else {
    for (int i = 0; i < n; i++) {
      tb_sched_default(i, want);
      if (as_json)
        json_array_append_new(arr, json_pack("{s:s, s:s}", "name", want->name, "action", what[i]));
      else
        printf("%-24s %s\n", want->name, what[i]);
    }
    if (as_json) {
      json_dumpf(arr, stdout, JSON_INDENT(2));
      putchar('\n');
    }
  }
  json_decref(arr);
  free(what);
  free(want);
  free(have);
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- run */

static int cmd_run(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus schedule run"};
  const char *name = NULL;
  int rc = one_name(&cli, argc, argv, &name, NULL);
  if (rc != TB_EXIT_OK) return rc < 0 ? TB_EXIT_OK : rc;
  rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  tb_sched_task_t *t = malloc(sizeof(*t));
  int found = 0;
  tb_status st =
      t ? tb_store_sched_get(cli.store, name, t, &found) : tb__fail(TB_ERR_NOMEM, "task %s", name);
  free(t);
  tb_sched_outcome_t out = {0};
  if (st == TB_OK && !found) {
    fprintf(stderr, "%s: no task named '%s' (tierbus schedule list)\n", cli.prog, name);
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  tb_handler_ctx_t ctx = {.store = cli.store, .cfg = &cli.cfg, .cat = cli.cat};
  if (st == TB_OK) st = tb_store_begin(cli.store);
  if (st == TB_OK) {
    st = tb_sched_execute(&ctx, name, tb_wall_us(), 1, "manual", 0, &out);
    if (st == TB_OK)
      st = tb_store_commit(cli.store);
    else
      tb_store_rollback(cli.store);
  }
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (strcmp(out.status, "ok") == 0) {
    printf("%s: ok: %s\n", name, out.detail);
  } else {
    fprintf(stderr, "%s: %s %s: %s\n", cli.prog, name, out.status, out.detail);
    rc = TB_EXIT_FAIL;
  }
  tb_cli_close(&cli);
  return rc;
}

int tb_cmd_schedule(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {{"list", cmd_list},
                                      {"add", cmd_add},
                                      {"remove", cmd_remove},
                                      {"enable", cmd_enable},
                                      {"disable", cmd_disable},
                                      {"run", cmd_run},
                                      {"reset-defaults", cmd_reset_defaults}};
  return tb_cli_run_subcommand("tierbus schedule", argc, argv, subs, (int)TB_COUNTOF(subs),
                               schedule_usage);
}
