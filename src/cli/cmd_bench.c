/* `tierbus bench` argument handling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "core/util.h"

/* Selects the scenarios that |name| names ("all" = every one); 0 if it names none. */
static int select_scenarios(tb_bench_opts_t *o, const char *name) {
  const struct {
    const char *name;
    int *run;
  } scenarios[] = {{"throughput", &o->run_throughput}, {"backlog", &o->run_backlog},
                   {"saturation", &o->run_saturation}, {"workflows", &o->run_workflows},
                   {"prio-sync", &o->run_prio_sync},   {"replay", &o->run_replay}};
  int any = 0;
  for (size_t i = 0; i < TB_COUNTOF(scenarios); i++) {
    *scenarios[i].run = strcmp(name, "all") == 0 || strcmp(name, scenarios[i].name) == 0;
    any |= *scenarios[i].run;
  }
  return any;
}

/* Parses --events: one size or a comma-separated list of up to 8 ("100000,200000,1000000"). */
static int parse_sizes(tb_cli_t *cli, const char *arg, tb_bench_opts_t *o) {
  char buf[256], *save = NULL;
  snprintf(buf, sizeof(buf), "%s", arg);
  o->n_events = 0;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (o->n_events == (int)TB_COUNTOF(o->events))
      return tb_cli_usage_error(cli, "--events: at most 8 sizes, got '%s'", arg);
    int rc = tb_cli_parse_long(cli, "--events", tok, 1, 100000000, &o->events[o->n_events]);
    if (rc != TB_EXIT_OK) return rc;
    o->n_events++;
  }
  if (o->n_events == 0)
    return tb_cli_usage_error(cli, "--events: expected N[,N...], got '%s'", arg);
  return TB_EXIT_OK;
}

int tb_cmd_bench(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus bench"};
  /* Three sizes by default: a slow mode that shows at one size only cannot hide (issue 9). */
  tb_bench_opts_t o = {.events = {100000, 200000, 1000000},
                       .n_events = 3,
                       .backlog = 200000,
                       .critical_rate = 200,
                       .saturate_seconds = 90,
                       .workflows = 10000,
                       .repos = 100000};
  select_scenarios(&o, "all");
  long rate = o.critical_rate, wf_rate = 0;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"events", required_argument, NULL, 'n'},
                                       {"backlog", required_argument, NULL, 'b'},
                                       {"critical-rate", required_argument, NULL, 'r'},
                                       {"workflows", required_argument, NULL, 'W'},
                                       {"workflow-rate", required_argument, NULL, 'R'},
                                       {"saturate-seconds", required_argument, NULL, 'S'},
                                       {"scenario", required_argument, NULL, 's'},
                                       {"repos", required_argument, NULL, 'p'},
                                       {"work-dir", required_argument, NULL, 'w'},
                                       {"no-msg-id", no_argument, NULL, 'M'},
                                       {"random-ids", no_argument, NULL, 'I'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c, rc = TB_EXIT_OK;
  while ((c = getopt_long(argc, argv, "n:b:r:s:w:p:h", opts, NULL)) != -1 && rc == TB_EXIT_OK) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 'n':
      rc = parse_sizes(&cli, optarg, &o);
      break;
    case 'b':
      rc = tb_cli_parse_long(&cli, "--backlog", optarg, 1, 100000000, &o.backlog);
      break;
    case 'W':
      rc = tb_cli_parse_long(&cli, "--workflows", optarg, 1, 10000000, &o.workflows);
      break;
    case 'R':
      rc = tb_cli_parse_long(&cli, "--workflow-rate", optarg, 0, 1000000, &wf_rate);
      break;
    case 'S':
      rc = tb_cli_parse_long(&cli, "--saturate-seconds", optarg, 5, 3600, &o.saturate_seconds);
      break;
    case 'r':
      rc = tb_cli_parse_long(&cli, "--critical-rate", optarg, 1, 100000, &rate);
      break;
    case 'p':
      rc = tb_cli_parse_long(&cli, "--repos", optarg, 1, 100000000, &o.repos);
      break;
    case 'w':
      o.work_dir = optarg;
      break;
    case 'M':
      o.no_msg_id = 1;
      break;
    case 'I':
      o.random_ids = 1;
      break;
    case 's':
      if (!select_scenarios(&o, optarg))
        rc = tb_cli_usage_error(&cli,
                                "--scenario: expected all, throughput, backlog, saturation, "
                                "workflows, prio-sync or replay, got '%s'",
                                optarg);
      break;
    case 'h':
      printf("usage: tierbus bench [--events N[,N...]] [--backlog N] [--critical-rate R]\n"
             "                     [--workflows N] [--workflow-rate R] [--saturate-seconds S]\n"
             "                     [--repos N] [--work-dir DIR] [--no-msg-id] [--random-ids]\n"
             "                     [--scenario "
             "all|throughput|backlog|saturation|workflows|prio-sync|replay]\n"
             "The ceiling is the plain pipeline (plain cnats, fetch 256, one SQLite insert per\n"
             "event keyed by stream sequence, ack), run before tierbus at each --events size\n"
             "(default 100000,200000,1000000); throughput is reported as a ratio to it. The\n"
             "saturation scenario reports each tier's wait against its aging bound. The\n"
             "workflows scenario publishes its triggers at once, or R per second with\n"
             "--workflow-rate R, and reports trigger-to-completion latency either way.\n"
             "--no-msg-id publishes the throughput events without Nats-Msg-Id, to measure\n"
             "the stream's dedupe; --random-ids publishes them with random ids, as a\n"
             "foreign publisher might, instead of tierbus's time-ordered ones. Each run\n"
             "works in a fresh directory, under --work-dir DIR when given (and kept there).\n"
             "It loads both cores for minutes: run it on a quiet machine.\n"
             "examples:\n"
             "  tierbus bench --events 100000 --scenario throughput\n"
             "  tierbus bench --scenario saturation --saturate-seconds 30\n");
      return TB_EXIT_OK;
    default:
      return TB_EXIT_USAGE;
    }
  }
  if (rc != TB_EXIT_OK) return rc;
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  o.critical_rate = (int)rate;
  o.workflow_rate = (int)wf_rate;
  rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  rc = tb_bench_run(&cli.cfg, cli.cat, &o);
  tb_cli_close(&cli);
  return rc;
}
