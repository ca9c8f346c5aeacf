/* `tierbus activity`: the activity log, the end-to-end trail of what happened to a key or a
 * correlation id. It reads the database alone; payloads are rendered with the catalogue here,
 * since the worker stores them as published (api/activity.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/activity.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/status.h"

#define DEFAULT_LIMIT 50

static void usage(FILE *out) {
  fprintf(out,
          "usage: tierbus activity [--key K] [--correlation ID] [--event TYPE] [--since TIME]\n"
          "                        [--limit N] [--json]\n"
          "Lists the activity log, newest first (default the last %d rows): every event a\n"
          "handler recorded, with its tier, ids and payload as JSON. --key is the event's\n"
          "ordering key (a repository, client or workflow id). TIME is RFC 3339\n"
          "(2026-01-02T15:04:05Z) or an age (90s, 30m, 2h, 7d).\n"
          "examples:\n"
          "  tierbus activity --key repo-42\n"
          "  tierbus activity --correlation order-7 --json\n"
          "  tierbus activity --event CLIENT_CREATED --since 2h --limit 10\n",
          DEFAULT_LIMIT);
}

typedef struct print_ctx {
  const tb_catalogue_t *cat;
  json_t *arr; /* --json: rows gathered here */
  int n;
} print_ctx_t;

static int print_row(void *arg, const tb_activity_t *a) {
  print_ctx_t *pc = arg;
  pc->n++;
  json_t *row = tb_activity_json(pc->cat, a);
  if (row == NULL) return 1;
  if (pc->arr != NULL) {
    json_array_append_new(pc->arr, row);
    return 0;
  }
  char at[40];
  tb_cli_fmt_time(a->at_us, at, sizeof(at));
  json_t *payload = json_object_get(row, "payload");
  char *text = json_is_null(payload) ? NULL : json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
  const char *err = json_string_value(json_object_get(row, "payload_error"));
  printf("%-24s %-10s %-28s key %s\n  id %s", at, a->tier ? a->tier : "-",
         a->event_type ? a->event_type : "-", a->key && a->key[0] ? a->key : "-", a->msg_id);
  if (a->correlation_id != NULL) printf(", correlation %s", a->correlation_id);
  if (text != NULL)
    printf("\n  %s\n", text);
  else
    printf("\n  payload: %s\n", err ? err : "none");
  free(text);
  json_decref(row);
  return 0;
}

int tb_cmd_activity(int argc, char **argv) {
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"key", required_argument, NULL, 'k'},
                                       {"correlation", required_argument, NULL, 'c'},
                                       {"event", required_argument, NULL, 'e'},
                                       {"since", required_argument, NULL, 's'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  tb_cli_t cli = {.prog = "tierbus activity"};
  tb_activity_filter_t f = {.limit = DEFAULT_LIMIT};
  const char *since = NULL;
  int json = 0, c;
  long limit = DEFAULT_LIMIT;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case 'k':
      f.key = optarg;
      break;
    case 'c':
      f.correlation_id = optarg;
      break;
    case 'e':
      f.event_type = optarg;
      break;
    case 's':
      since = optarg;
      break;
    case 'l':
      if (tb_cli_parse_long(&cli, "--limit", optarg, 1, 1000000000L, &limit) != TB_EXIT_OK)
        return TB_EXIT_USAGE;
      break;
    case 'j':
      json = 1;
      break;
    case 'h':
      usage(stdout);
      return TB_EXIT_OK;
    default:
      usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  f.limit = limit;
  if (since != NULL && tb_time_parse_us(since, tb_wall_us(), &f.since_us) != TB_OK)
    return tb_cli_usage_error(&cli, "--since: %s", tb_errdetail());
  int rc = tb_cli_load_and_open(&cli);
  if (rc != TB_EXIT_OK) return tb_cli_close(&cli), rc;
  if (f.event_type != NULL && tb_catalogue_find(cli.cat, f.event_type) == NULL) {
    tb_cli_close(&cli);
    return tb_cli_usage_error(&cli, "--event: unknown event type '%s' (see tierbus events)",
                              f.event_type);
  }
  print_ctx_t pc = {.cat = cli.cat, .arr = json ? json_array() : NULL};
  tb_status st = tb_store_activity_list(cli.store, &f, print_row, &pc);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (json) {
    json_dumpf(pc.arr, stdout, JSON_INDENT(2));
    printf("\n");
  } else {
    printf("%d row%s%s\n", pc.n, pc.n == 1 ? "" : "s",
           pc.n == f.limit ? " (the limit; --limit N shows more)" : "");
  }
  json_decref(pc.arr);
  tb_cli_close(&cli);
  return rc;
}
