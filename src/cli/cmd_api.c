/* `tierbus api`: the HTTP API on its own, for a deployment whose workers run elsewhere: it reads
 * the figures every worker records in the shared database and publishes through NATS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/status.h"
#include "http/http.h"

static void api_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus api [--http-port N] [--http-bind ADDR] [--http-threads N]\n"
          "                   [--nats-url URL] [--db FILE] [--config FILE] [--data-dir DIR]\n"
          "                   [--log-level LEVEL]\n"
          "Serves the HTTP API until SIGINT/SIGTERM (JSON in and out; see the README):\n"
          "  GET /healthz, GET /readyz, GET /metrics (Prometheus, no token)\n"
          "  POST /api/events, POST /api/execute-workflow[-with-priority]\n"
          "  GET /api/workflows, GET /api/workflows/ID, POST /api/workflows/ID/cancel\n"
          "  POST /api/jobs/ID/retry, GET /api/jobs/metrics (seed 001's shape)\n"
          "  GET /api/dlq, POST /api/dlq/ID/replay\n"
          "  GET /api/repositories, GET /api/repositories/ID,\n"
          "  GET /api/priority/distribution, GET /api/priority/syncs, GET /api/monitoring\n"
          "Every /api call needs 'Authorization: Bearer TOKEN' when api_token (config, or\n"
          "TIERBUS_API_TOKEN) is set; without a token the API binds to loopback only.\n"
          "  --http-port N     port to listen on (config http_port, default 8080; 0 = any)\n"
          "  --http-bind ADDR  IPv4 address to listen on (config http_bind, default 127.0.0.1)\n"
          "  --http-threads N  requests worked on at once (config http_threads, 1-256, default 8)\n"
          "examples:\n"
          "  TIERBUS_API_TOKEN=s3cret tierbus api --http-bind 0.0.0.0 --http-port 8080\n");
}

enum { OPT_HTTP_PORT = OPT__COMMON_END + 1, OPT_HTTP_BIND, OPT_HTTP_THREADS };

int tb_cmd_api(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus api"};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"http-port", required_argument, NULL, OPT_HTTP_PORT},
                                       {"http-bind", required_argument, NULL, OPT_HTTP_BIND},
                                       {"http-threads", required_argument, NULL, OPT_HTTP_THREADS},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  long port = -1; /* -1, NULL: the config's */
  const char *bind = NULL;
  int c, rc;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case OPT_HTTP_PORT:
      if ((rc = tb_cli_parse_long(&cli, "--http-port", optarg, 0, 65535, &port)) != TB_EXIT_OK)
        return rc;
      break;
    case OPT_HTTP_BIND:
      bind = optarg;
      break;
    case OPT_HTTP_THREADS:
      tb_cli_flag_option(&cli, "--http-threads", "http_threads", optarg);
      break;
    case 'h':
      api_usage(stdout);
      return TB_EXIT_OK;
    default:
      api_usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if ((rc = tb_cli_load_and_open(&cli)) != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  if (port < 0) port = cli.cfg.http_port;
  if (bind == NULL) bind = cli.cfg.http_bind;
  const char *token = cli.cfg.api_token;
  tb_cli_trap_signals();
  /* Without NATS the API still answers its figures; publishing and /readyz say what is wrong. */
  /* A bad credentials or TLS setting is the config's fault: exit 2 as every command does. */
  if ((rc = tb_cli_connect(&cli)) == TB_EXIT_USAGE) {
    tb_cli_close(&cli);
    return rc;
  }
  if (rc != TB_EXIT_OK)
    fprintf(stderr, "%s: warning: NATS unreachable at %s; publishing will answer 503\n", cli.prog,
            cli.cfg.nats_url);
  tb_http_t *http = NULL;
  tb_status st = tb_http_start(&http, &(tb_http_opts_t){.bind = bind,
                                                        .port = (int)port,
                                                        .token = token,
                                                        .threads = cli.cfg.http_threads,
                                                        .cfg = &cli.cfg,
                                                        .cat = cli.cat,
                                                        .bus = cli.bus,
                                                        .store = cli.store});
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    tb_cli_close(&cli);
    return st == TB_ERR_INVALID ? TB_EXIT_USAGE : TB_EXIT_FAIL;
  }
  printf("tierbus api: serving http://%s:%d with %d threads (%s)\n", bind, tb_http_port(http),
         cli.cfg.http_threads,
         token[0] ? "bearer token required on /api" : "no token: loopback only");
  fflush(stdout);
  while (!tb_cli_stop) tb_sleep_us(100000);
  tb_http_stop(http);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}
