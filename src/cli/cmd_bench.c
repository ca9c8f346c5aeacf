/* `tierbus bench` argument handling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"

int tb_cmd_bench(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus bench"};
  tb_bench_opts_t o = {.events = 200000,
                       .backlog = 200000,
                       .critical_rate = 200,
                       .workflows = 10000,
                       .repos = 100000,
                       .run_throughput = 1,
                       .run_backlog = 1,
                       .run_workflows = 1,
                       .run_prio_sync = 1};
  long rate = o.critical_rate;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"events", required_argument, NULL, 'n'},
                                       {"backlog", required_argument, NULL, 'b'},
                                       {"critical-rate", required_argument, NULL, 'r'},
                                       {"workflows", required_argument, NULL, 'W'},
                                       {"scenario", required_argument, NULL, 's'},
                                       {"repos", required_argument, NULL, 'p'},
                                       {"work-dir", required_argument, NULL, 'w'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c, rc = TB_EXIT_OK;
  while ((c = getopt_long(argc, argv, "n:b:r:s:w:p:h", opts, NULL)) != -1 && rc == TB_EXIT_OK) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 'n':
      rc = tb_cli_parse_long(&cli, "--events", optarg, 1, 100000000, &o.events);
      break;
    case 'b':
      rc = tb_cli_parse_long(&cli, "--backlog", optarg, 1, 100000000, &o.backlog);
      break;
    case 'W':
      rc = tb_cli_parse_long(&cli, "--workflows", optarg, 1, 10000000, &o.workflows);
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
    case 's':
      o.run_throughput = strcmp(optarg, "all") == 0 || strcmp(optarg, "throughput") == 0;
      o.run_backlog = strcmp(optarg, "all") == 0 || strcmp(optarg, "backlog") == 0;
      o.run_workflows = strcmp(optarg, "all") == 0 || strcmp(optarg, "workflows") == 0;
      o.run_prio_sync = strcmp(optarg, "all") == 0 || strcmp(optarg, "prio-sync") == 0;
      if (!o.run_throughput && !o.run_backlog && !o.run_workflows && !o.run_prio_sync)
        rc = tb_cli_usage_error(
            &cli, "--scenario: expected all, throughput, backlog, workflows or prio-sync, got '%s'",
            optarg);
      break;
    case 'h':
      printf("usage: tierbus bench [--events N] [--backlog N] [--critical-rate R] [--workflows N]\n"
             "                     [--repos N] [--work-dir DIR]\n"
             "                     [--scenario all|throughput|backlog|workflows|prio-sync]\n"
             "The raw JetStream + SQLite ceiling runs with the throughput and workflows\n"
             "scenarios; their figures are reported against it.\n");
      return TB_EXIT_OK;
    default:
      return TB_EXIT_USAGE;
    }
  }
  if (rc != TB_EXIT_OK) return rc;
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  o.critical_rate = (int)rate;
  rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  rc = tb_bench_run(&cli.cfg, cli.cat, &o);
  tb_cli_close(&cli);
  return rc;
}
