/* `tierbus sim`: the command simulator as a process. Answers every command on tb.cmd.> as the
 * owning service would, with latency and failure injection, until SIGINT or SIGTERM. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "sim/sim.h"

static void sim_usage(FILE *out) {
  fprintf(
      out,
      "usage: tierbus sim [--nats-url URL] [--latency DUR] [--enrich-delay DUR]\n"
      "                   [--fail ACTION=CODE[:N]]... [--config FILE] [--log-level LEVEL]\n"
      "Answers every command (tb.cmd.<service>.<action>) as the real service would, with a\n"
      "command-reply event on the command's reply tier; enrichment.submit is followed by an\n"
      "enrichment-complete event after --enrich-delay. Several simulators share the work.\n"
      "  --latency DUR        wait before each reply (\"250ms\", \"2s\"); default 0\n"
      "  --enrich-delay DUR   wait between the submit reply and enrichment-complete; default 0\n"
      "  --fail ACTION=CODE[:N]  answer attempts 1..N (all when N is omitted) of ACTION with\n"
      "                       status CODE (400..599), or with nothing when CODE is 'drop';\n"
      "                       repeatable, e.g. --fail enrichment.submit=429:1\n"
      "actions: email.send, ai.generate-business-plan, ai.generate-deliverable, pdf.generate,\n"
      "         enrichment.submit\n"
      "examples:\n"
      "  tierbus sim --data-dir var --latency 250ms\n"
      "  tierbus sim --fail enrichment.submit=429:1 --fail email.send=drop\n");
}

enum { OPT_LATENCY = OPT__COMMON_END + 1, OPT_ENRICH_DELAY, OPT_FAIL };

/* Parses a duration flag; prints "PROG: FLAG: ..." and returns TB_EXIT_USAGE when it is bad. */
static int parse_duration(tb_cli_t *cli, const char *flag, const char *arg, int64_t *out) {
  if (tb_duration_parse_ms(arg, out) != TB_OK)
    return tb_cli_usage_error(cli, "%s: expected a duration such as 250ms, 2s or 1m, got '%s'",
                              flag, arg);
  return TB_EXIT_OK;
}

int tb_cmd_sim(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus sim"};
  tb_sim_opts_t so;
  tb_sim_opts_init(&so);
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"latency", required_argument, NULL, OPT_LATENCY},
                                       {"enrich-delay", required_argument, NULL, OPT_ENRICH_DELAY},
                                       {"fail", required_argument, NULL, OPT_FAIL},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c, rc;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case OPT_LATENCY:
      if ((rc = parse_duration(&cli, "--latency", optarg, &so.latency_ms)) != TB_EXIT_OK) return rc;
      break;
    case OPT_ENRICH_DELAY:
      rc = parse_duration(&cli, "--enrich-delay", optarg, &so.enrich_delay_ms);
      if (rc != TB_EXIT_OK) return rc;
      break;
    case OPT_FAIL: {
      if (so.n_fails == TB_SIM_MAX_FAILS)
        return tb_cli_usage_error(&cli, "--fail: at most %d rules", TB_SIM_MAX_FAILS);
      tb_sim_fail_t *f = &so.fails[so.n_fails];
      if (tb_sim_parse_fail(optarg, f) != TB_OK)
        return tb_cli_usage_error(&cli, "--fail %s", tb_errdetail());
      for (int i = 0; i < so.n_fails; i++)
        if (strcmp(so.fails[i].action, f->action) == 0)
          return tb_cli_usage_error(&cli, "--fail '%s': %s already has a rule", optarg, f->action);
      so.n_fails++;
      break;
    }
    case 'h':
      sim_usage(stdout);
      return TB_EXIT_OK;
    default:
      sim_usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);

  rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  tb_cli_trap_signals();
  rc = tb_cli_connect(&cli);
  tb_sim_t *sim = NULL;
  if (rc == TB_EXIT_OK) {
    so.bus = cli.bus;
    so.cfg = &cli.cfg;
    so.cat = cli.cat;
    /* Idempotent: the simulator may well be the first process to reach a fresh server. */
    tb_status st = tb_bus_provision(cli.bus, &cli.cfg);
    if (st == TB_OK) st = tb_sim_start(&sim, &so);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      rc = TB_EXIT_FAIL;
    }
  }
  if (rc == TB_EXIT_OK) {
    printf("tierbus sim: answering tb.cmd.> on %s\n", cli.cfg.nats_url);
    fflush(stdout);
    TB_LOG(TB_LOG_INFO, "sim", "latency=%lldms enrich_delay=%lldms failure rules=%d",
           (long long)so.latency_ms, (long long)so.enrich_delay_ms, so.n_fails);
    while (!tb_cli_stop) tb_sleep_us(100000);
    TB_LOG(TB_LOG_INFO, "sim", "stopping: finishing in-flight commands");
    tb_sim_stats_t s;
    tb_sim_stop(sim, &s);
    TB_LOG(TB_LOG_INFO, "sim",
           "stopped: commands=%lld replies=%lld failures=%lld dropped=%lld malformed=%lld "
           "enrichments=%lld",
           (long long)s.commands, (long long)s.replies, (long long)s.failures, (long long)s.dropped,
           (long long)s.malformed, (long long)s.enrichments);
  }
  tb_cli_close(&cli);
  return rc;
}
