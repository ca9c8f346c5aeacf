/* tierbus: the single binary. Dispatches to one command per subcommand. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/util.h"

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} commands[] = {
    {"dev", tb_cmd_dev, "run nats-server + every tier's workers in one process (--demo)"},
    {"worker", tb_cmd_worker, "consume tiers from the shared durable consumers"},
    {"init", tb_cmd_init, "create or update the streams and consumers"},
    {"publish", tb_cmd_publish, "publish an event (--json) or a batch (--file F.ndjson)"},
    {"stats", tb_cmd_stats, "per-tier queue depth, counts, latency percentiles, inversions"},
    {"bench", tb_cmd_bench, "measure throughput and latency against the raw ceiling"},
    {"workflows", tb_cmd_workflows, "list workflows and activities; show, list or cancel runs"},
    {"trigger", tb_cmd_trigger, "start a workflow with a JSON input (--wait for its result)"},
    {"priority", tb_cmd_priority, "repository priority: sync, show, inversions, set (seed 002)"},
    {"schedule", tb_cmd_schedule, "cron tasks: list, add, remove, enable, disable, run NAME"},
    {"dlq", tb_cmd_dlq, "dead letters: list, show, replay (applies once), purge --yes"},
    {"activity", tb_cmd_activity, "the activity log: what happened to a key or a correlation id"},
    {"replay", tb_cmd_replay, "re-drive history from the streams through the handlers"},
    {"rebuild", tb_cmd_rebuild, "build an empty database from the log (--db NEW.db)"},
    {"db", tb_cmd_db, "database: checksum of the logical state, prune processed records"},
    {"events", tb_cmd_events, "list the event catalogue with tiers and subjects"},
    {"sim", tb_cmd_sim, "answer commands as the real services would (demo, tests)"},
    {"api", tb_cmd_api, "serve the HTTP API: publish, health, Prometheus metrics"},
    {"config", tb_cmd_config, "check the config, or print an example (config example)"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: tierbus COMMAND [options]   (tierbus COMMAND --help)\n\ncommands:\n");
  for (size_t i = 0; i < TB_COUNTOF(commands); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(out, "\nenvironment: TIERBUS_CONFIG, TIERBUS_NATS_URL, TIERBUS_DB, TIERBUS_DATA_DIR\n");
}

int main(int argc, char **argv) {
  /* Every delivered message is allocated by cnats' reader thread and freed by the executor, so
   * it goes back to the reader's malloc arena, whose top glibc trims with madvise() as soon as it
   * passes the default threshold: a TLB shootdown across both cores many times a second, 14% of
   * the worker's CPU under load (issue 9). A fixed threshold stops that churn; it bounds what a
   * process keeps cached, not what it uses. */
  mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
  if (argc < 2) {
    usage(stderr);
    return TB_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return TB_EXIT_OK;
  }
  for (size_t i = 0; i < TB_COUNTOF(commands); i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "tierbus: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return TB_EXIT_USAGE;
}
