/* Shared command-line plumbing: option handling common to every command, start-up (config,
 * catalogue, NATS with retry, store), and the exit-code convention: 0 ok, 1 runtime failure,
 * 2 bad usage, input or config. */
#ifndef TB_CLI_CLI_H
#define TB_CLI_CLI_H

#include <getopt.h>
#include <stdio.h>
#include <signal.h>

#include <jansson.h>

#include "api/publish.h"
#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "dispatch/dispatch.h"
#include "store/store.h"

enum { TB_EXIT_OK = 0, TB_EXIT_FAIL = 1, TB_EXIT_USAGE = 2 };

/* getopt codes of the options every command takes. */
enum {
  OPT_CONFIG = 1000,
  OPT_NATS_URL,
  OPT_DB,
  OPT_DATA_DIR,
  OPT_LOG_LEVEL,
  OPT_SET,
  OPT__COMMON_END
};

#define TB_CLI_COMMON_OPTIONS                                                                      \
  {"config", required_argument, NULL, OPT_CONFIG},                                                 \
      {"nats-url", required_argument, NULL, OPT_NATS_URL},                                         \
      {"db", required_argument, NULL, OPT_DB},                                                     \
      {"data-dir", required_argument, NULL, OPT_DATA_DIR},                                         \
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL}, {                                     \
    "set", required_argument, NULL, OPT_SET                                                        \
  }

typedef struct tb_cli {
  const char *prog;        /* "tierbus publish" for messages */
  const char *config_path; /* --config */
  const char *nats_url;    /* --nats-url (also marks the URL as explicit) */
  const char *db;          /* --db */
  const char *data_dir;    /* --data-dir */
  const char *log_level;   /* --log-level */
  const char *sets[32];    /* --set KEY=VALUE, any scalar config option, applied last */
  int n_sets;
  /* A command's own flags that stand for a config option (`--http-threads N` is http_threads),
   * from tb_cli_flag_option(): applied before --set, through the option table, so the flag and
   * the file share one set of bounds. */
  struct {
    const char *flag, *key, *value; /* borrowed (argv and literals) */
  } flag_opts[4];
  int n_flag_opts;
  tb_config_t cfg;
  tb_catalogue_t *cat;
  tb_bus_t *bus;
  /* The NATS credentials and TLS settings, from tb_cli_resolve_auth(); zeroed by
   * tb_cli_close(). */
  tb_bus_auth_t auth;
  int auth_resolved;
  tb_store_t *store;
  /* 1 for the commands that may create the database (worker, dev, init); every other command
   * refuses a database that does not exist, so that a mistyped path or a missing environment
   * variable never yields a fresh, empty database. */
  int create_db;
  int created_db; /* tb_cli_open_store() created the file */
} tb_cli_t;

/* Handles a common option; returns 1 if |c| was one. */
int tb_cli_common_opt(tb_cli_t *cli, int c, const char *arg);

/* Prints "PROG: MESSAGE" to stderr and returns TB_EXIT_USAGE. */
int tb_cli_usage_error(const tb_cli_t *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses option |opt|'s value |arg| as a decimal integer in [lo, hi] into *out. On anything else
 * prints "PROG: OPT: expected an integer from LO to HI, got 'ARG'" and returns TB_EXIT_USAGE;
 * *out is then unchanged. */
int tb_cli_parse_long(tb_cli_t *cli, const char *opt, const char *arg, long lo, long hi, long *out);

/* Records that |flag| (e.g. "--http-threads") gives config option |key| the text |value|, for
 * tb_cli_load() to apply through the option table; a value out of the option's bounds is then
 * refused with exit 2 and a message naming the flag and the option. All three are borrowed. */
void tb_cli_flag_option(tb_cli_t *cli, const char *flag, const char *key, const char *value);

/* Loads config (file, env, flags), validates it and loads the catalogue. Returns TB_EXIT_OK or
 * TB_EXIT_USAGE after printing what is wrong. */
int tb_cli_load(tb_cli_t *cli);

/* Resolves cli->auth from the loaded config with tb_bus_auth_resolve() (configured credentials,
 * else the secret in the data directory; |create| generates that secret when it is missing, for
 * dev only). The one resolution every command's connection uses. TB_EXIT_OK, or TB_EXIT_FAIL
 * after saying why (the secret cannot be read, or may be read by others). */
int tb_cli_resolve_auth(tb_cli_t *cli, int create);

/* Connects to NATS with the resolved credentials (tb_cli_resolve_auth(cli, 0) first if not yet
 * done), retrying with a clear message until nats_connect_timeout. TB_EXIT_FAIL if the server
 * never answers, or at once when it refuses the credentials or the TLS handshake fails (the
 * message says where the credentials came from and how to give the right ones). */
int tb_cli_connect(tb_cli_t *cli);

/* Opens the store: an existing database, or with cli->create_db a new one (and its directory).
 * TB_EXIT_FAIL, after saying which path and how it was chosen, when it does not exist or cannot
 * be opened. */
int tb_cli_open_store(tb_cli_t *cli);

/* Checks that the database and the NATS server belong to the same deployment, recording a new
 * deployment id where none is yet (cli->bus and cli->store open). Refuses (TB_EXIT_FAIL, naming
 * both) a database of another deployment, and a new, empty database while the consumers have
 * already acked messages into some other database; a database this run created is then removed
 * again. */
int tb_cli_check_deployment(tb_cli_t *cli);

/* tb_cli_load(), then tb_cli_open_store(): for commands that work on the database alone. */
int tb_cli_load_and_open(tb_cli_t *cli);

/* Releases whatever was opened. */
void tb_cli_close(tb_cli_t *cli);

/* Set by SIGINT/SIGTERM once tb_cli_trap_signals() ran. */
extern volatile sig_atomic_t tb_cli_stop;
void tb_cli_trap_signals(void);

typedef enum { TB_CLI_TIERS, TB_CLI_PRESETS, TB_CLI_DOMAINS } tb_cli_names_t;

/* Writes the config's tier, preset or domain names as "a, b, c" ("none" when there are none)
 * for error messages that list what is accepted; truncated to |cap|. */
void tb_cli_config_names(const tb_config_t *cfg, tb_cli_names_t which, char *buf, size_t cap);

/* Fills |scope| from `--tiers a,b`, `--preset NAME` (a config preset, or any catalogue domain),
 * `--domains a,b` and `--max-concurrent-workflows N` (each may be NULL). Defaults: every tier,
 * every domain, the config's max_concurrent_workflows. Returns 0, or -1 after printing an error
 * naming the bad entry. */
int tb_cli_parse_scope(tb_cli_t *cli, const char *tiers, const char *preset, const char *domains,
                       const char *max_cw, tb_worker_scope_t *scope);

/* Wall-clock microseconds as "2025-11-23T15:00:01.123Z" ("-" for 0). */
void tb_cli_fmt_time(int64_t us, char *buf, size_t cap);

/* Turns NDJSON line |lineno| of |file| (|line|, borrowed) into a prepared message in |out|.
 * Returns TB_EXIT_OK, or TB_EXIT_USAGE after printing "PROG: FILE:LINE: what is wrong" (|out| is
 * then untouched). */
typedef int (*tb_cli_ndjson_fn)(tb_cli_t *cli, void *arg, const char *file, int lineno,
                                json_t *line, tb_prepared_t *out);

/* The NDJSON batch of `publish --file` and `trigger --batch` (cmd_publish.c): reads |path| ("-" =
 * stdin), prepares every non-blank line with |prepare|, and only when all are good connects and
 * publishes them with async acks (tb_bus_publish_batch: a line whose ack was lost, with a server
 * killed under the command, is sent again under its id until the server is back). A bad line
 * publishes nothing. *rep gets the counts (every line stored, a duplicate, or failed), *secs_out
 * the publishing time. Returns TB_EXIT_OK when every line is in the stream, TB_EXIT_USAGE (bad
 * input, nothing sent) or TB_EXIT_FAIL (NATS: connecting, or some lines not published, after
 * printing the counts and which lines). |noun| names the items in messages ("events"). */
int tb_cli_publish_ndjson(tb_cli_t *cli, const char *path, tb_cli_ndjson_fn prepare, void *arg,
                          const char *noun, tb_pub_report_t *rep, double *secs_out);

/* One subcommand of a command that has them (workflows, schedule, priority). */
typedef struct tb_cli_sub {
  const char *name;
  int (*fn)(int argc, char **argv); /* argv[0] is the subcommand */
} tb_cli_sub_t;

/* 1 when argv[1..argc) asks for help: --help or -h before any "--". */
int tb_cli_wants_help(int argc, char **argv);

/* Set by the completion generator and `tierbus help --commands` (main.c): while it is non-NULL,
 * tb_cli_run_subcommand() runs nothing and hands its subcommand table to it instead, so that the
 * tables in each command's file stay the only list of subcommands. */
extern void (*tb__cli_sub_visitor)(const tb_cli_sub_t *subs, int n_subs, void *arg);
extern void *tb__cli_sub_visitor_arg;

/* Runs the subcommand named in argv (the first argument that is neither an option nor the value
 * of a common option, so `tierbus workflows --db X list` works like `... list --db X`), passing
 * it the other arguments in their order. `help`, or --help with no subcommand, prints |usage| to
 * stdout (exit 0), and so does `SUB --help`, so that every subcommand has help whatever its
 * option parser takes; no subcommand prints it to stderr, and an unknown one prints
 * "PROG: unknown subcommand 'X' (a, b, c)" (both exit 2). */
int tb_cli_run_subcommand(const char *prog, int argc, char **argv, const tb_cli_sub_t *subs,
                          int n_subs, void (*usage)(FILE *out));

/* Index in argv of the subcommand tb_cli_run_subcommand() would run; 0 when there is none. */
int tb_cli_find_subcommand(int argc, char **argv);

/* The same, except that `SUB --help` reaches the subcommand: for commands whose every
 * subcommand prints a help of its own (workflows). */
int tb_cli_run_subcommand_own_help(const char *prog, int argc, char **argv,
                                   const tb_cli_sub_t *subs, int n_subs, void (*usage)(FILE *out));

/* A text table whose columns are as wide as their widest cell, header included, so that no
 * value is cut and no column is padded for values it never holds. A header starting with '>'
 * right-aligns its column (numbers); the '>' is not printed. */
typedef struct tb_cli_table tb_cli_table_t;

/* A table of |n_cols| columns headed by |headers| (borrowed; they must outlive the table). NULL
 * when out of memory. Caller frees with tb_cli_table_free(). */
tb_cli_table_t *tb_cli_table_new(int n_cols, const char *const *headers);

/* Adds a row of n_cols strings (copied; NULL prints as "-"). An allocation failure is kept and
 * reported by tb_cli_table_print(). */
void tb_cli_table_add(tb_cli_table_t *t, ...);

/* Prints the header and the rows to |out|. TB_ERR_NOMEM (nothing printed, detail set) when a row
 * could not be kept. */
tb_status tb_cli_table_print(const tb_cli_table_t *t, FILE *out);

/* Accepts NULL. */
void tb_cli_table_free(tb_cli_table_t *t);

/* The commands. argv[0] is the command name. */
int tb_cmd_dev(int argc, char **argv);
int tb_cmd_worker(int argc, char **argv);
int tb_cmd_init(int argc, char **argv);
int tb_cmd_publish(int argc, char **argv);
int tb_cmd_stats(int argc, char **argv);
int tb_cmd_bench(int argc, char **argv);
int tb_cmd_config(int argc, char **argv);
int tb_cmd_events(int argc, char **argv);
int tb_cmd_sim(int argc, char **argv);
int tb_cmd_api(int argc, char **argv);
int tb_cmd_workflows(int argc, char **argv); /* list, show, runs, cancel (cmd_workflows.c) */
int tb_cmd_trigger(int argc, char **argv);   /* cmd_trigger.c */
int tb_cmd_priority(int argc, char **argv);  /* sync, show, inversions, set (cmd_priority.c) */
int tb_cmd_schedule(int argc, char **argv);  /* list, add, remove, enable, disable, run */
int tb_cmd_dlq(int argc, char **argv);       /* list, show, replay, purge (cmd_dlq.c) */
int tb_cmd_activity(int argc, char **argv);  /* cmd_activity.c */
int tb_cmd_replay(int argc, char **argv);    /* cmd_replay.c */
int tb_cmd_rebuild(int argc, char **argv);   /* cmd_replay.c */
int tb_cmd_db(int argc, char **argv);        /* checksum, prune (cmd_replay.c) */
int tb_cmd_cluster(int argc, char **argv);   /* up, status, down (cmd_cluster.c) */

/* Called by tb_cli_run_workers() every 100 ms with |arg|: TB_EXIT_OK to go on, anything else
 * stops the workers and becomes the exit status (dev's nats-server supervision). */
typedef int (*tb_cli_tick_fn)(void *arg);

/* Runs the workers for |scope| until tb_cli_stop, or until |tick| (NULL = none) returns
 * non-zero; logs progress every |report_s| seconds (0 = never). Shared by dev and worker. */
int tb_cli_run_workers(tb_cli_t *cli, const tb_worker_scope_t *scope, int report_s,
                       tb_cli_tick_fn tick, void *tick_arg);

#endif
