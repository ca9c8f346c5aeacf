/* `tierbus bench`: throughput and latency of the full tierbus path, each figure reported against
 * the raw JetStream + SQLite ceiling measured in the same run on the same machine. */
#ifndef TB_BENCH_BENCH_H
#define TB_BENCH_BENCH_H

#include "config/config.h"
#include "codec/catalogue.h"

typedef struct tb_bench_opts {
  long events[8];        /* scenario "throughput": events published with the tier mix, per run */
  int n_events;          /* runs (sizes) in |events| */
  long backlog;          /* scenario "backlog": background events preloaded */
  int critical_rate;     /* scenario "backlog": critical events per second while it drains */
  long workflows;        /* scenario "workflows": enrichment workflows started */
  int workflow_rate;     /* scenario "workflows": triggers published per second at a steady rate;
                          * 0 = all at once (a burst) */
  long repos;            /* scenario "prio-sync": tracked repositories, 30% of them in workspaces */
  long saturate_seconds; /* scenario "saturation": how long every tier is kept saturated */
  int run_throughput, run_backlog, run_saturation, run_workflows, run_prio_sync, run_replay;
  const char *work_dir; /* where servers and databases live; NULL = a fresh temp dir */
  /* Throughput scenario: publish without Nats-Msg-Id, to measure what the stream's dedupe costs
   * (the processed record still dedupes by envelope id). */
  int no_msg_id;
  /* Throughput scenario: random ids, as a foreign publisher might send, instead of tierbus's
   * time-ordered ones (to measure what a random processed-record key costs). */
  int random_ids;
} tb_bench_opts_t;

/* Runs the selected scenarios and prints one JSON document on stdout. Returns a process exit code.
 */
int tb_bench_run(const tb_config_t *cfg, const tb_catalogue_t *cat, const tb_bench_opts_t *opts);

#endif
