/* tierbus: the single binary. Dispatches to one command per subcommand. */
#include <ctype.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/util.h"
#include "workflows/wf.h"

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
    {"cluster", tb_cmd_cluster, "a loopback NATS cluster for development: up, status, down"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: tierbus COMMAND [options]   (tierbus COMMAND --help)\n\ncommands:\n");
  for (size_t i = 0; i < TB_COUNTOF(commands); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(out, "  %-10s %s\n  %-10s %s\n", "help",
          "this text; help COMMAND [SUB] is its --help; help --commands; help --values KIND",
          "completion", "print the bash completion script (completion bash)");
  fprintf(out, "\nenvironment: TIERBUS_CONFIG, TIERBUS_NATS_URL, TIERBUS_DB, TIERBUS_DATA_DIR\n"
               "\nexamples:\n"
               "  tierbus dev --demo                  # a whole deployment on this machine\n"
               "  tierbus publish CLIENT_CREATED --json '{\"client_id\": \"c1\"}'\n"
               "  tierbus stats --data-dir var        # what the workers did\n"
               "  tierbus workflows list --domain crm\n"
               "  tierbus help --commands             # every command and subcommand\n");
}

/* ---------------------------------------------------------------- the command tree */

/* What one command's --help run found: the subcommands its table lists (through
 * tb__cli_sub_visitor), and its help text. */
typedef struct probe {
  const char *subs[32]; /* borrowed from the command's static table */
  int n_subs;
  char *help; /* caller frees */
} probe_t;

static void collect_subs(const tb_cli_sub_t *subs, int n_subs, void *arg) {
  probe_t *p = arg;
  for (int i = 0; i < n_subs && p->n_subs < (int)TB_COUNTOF(p->subs); i++)
    p->subs[p->n_subs++] = subs[i].name;
}

/* Runs fn(argv) with its stdout captured into a string (caller frees; NULL when capturing
 * failed) and returns it, the exit status in *rc. For --help runs only: those print and return
 * without touching the bus or the database. */
static char *capture(int (*fn)(int, char **), int argc, char **argv, int *rc) {
  fflush(stdout);
  FILE *tmp = tmpfile();
  int saved = dup(STDOUT_FILENO);
  if (tmp == NULL || saved < 0 || dup2(fileno(tmp), STDOUT_FILENO) < 0) {
    if (tmp) fclose(tmp);
    if (saved >= 0) close(saved);
    return NULL;
  }
  optind = 0; /* each command runs its own getopt_long from the start */
  *rc = fn(argc, argv);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  long len = ftell(tmp);
  char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (text != NULL) {
    rewind(tmp);
    size_t got = fread(text, 1, (size_t)len, tmp);
    text[got] = '\0';
  }
  fclose(tmp);
  return text;
}

/* Probes command |i|: its subcommands (the visitor stops tb_cli_run_subcommand from running
 * any) and its help text. */
static void probe_command(size_t i, probe_t *p) {
  memset(p, 0, sizeof(*p));
  char *argv[] = {(char *)commands[i].name, "--help", NULL};
  int rc = 0;
  tb__cli_sub_visitor = collect_subs;
  tb__cli_sub_visitor_arg = p;
  free(capture(commands[i].fn, 2, argv, &rc));
  tb__cli_sub_visitor = NULL;
  tb__cli_sub_visitor_arg = NULL;
  p->help = capture(commands[i].fn, 2, argv, &rc);
}

/* The help text of `CMD SUB --help`; caller frees. */
static char *sub_help(size_t i, const char *sub) {
  char *argv[] = {(char *)commands[i].name, (char *)sub, "--help", NULL};
  int rc = 0;
  return capture(commands[i].fn, 3, argv, &rc);
}

/* 1 when the space-separated list |list| holds the |n| bytes at |word| as one of its words. */
static int has_word(const char *list, const char *word, size_t n) {
  for (const char *p = list; (p = strstr(p, "--")) != NULL; p++)
    if (strncmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == '\0') && (p == list || p[-1] == ' '))
      return 1;
  return 0;
}

/* Appends to |out| (a space-separated word list) every "--option" named in |help| not yet in
 * it: the completion's options come from the help text each command prints. */
static void add_options(char *out, size_t cap, const char *help) {
  for (const char *p = help ? strstr(help, "--") : NULL; p; p = strstr(p + 2, "--")) {
    if (p > help && (isalnum((unsigned char)p[-1]) || p[-1] == '-')) continue;
    size_t n = 2;
    while (isalnum((unsigned char)p[n]) || p[n] == '-') n++;
    if (n < 4 || p[n - 1] == '-') continue;
    if (has_word(out, p, n)) continue;
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%.*s", len ? " " : "", (int)n, p);
  }
}

/* `tierbus help --values KIND`: the names an option takes, one per line, from the config (its
 * usual flags and environment) and the catalogue, so that the completion offers this
 * deployment's tiers, domains, presets, events and workflows rather than a copy made when the
 * script was generated. */
static int print_values(int argc, char **argv) {
  static const char *const kinds = "tiers, domains, presets, events, workflows";
  if (argc < 3) {
    fprintf(stderr, "tierbus help --values: which names? (%s)\n", kinds);
    return TB_EXIT_USAGE;
  }
  const char *kind = argv[2];
  if (strcmp(kind, "workflows") == 0) { /* the registry is compiled in: no config needed */
    int n = 0;
    const tb_wf_domain_t *const *doms = tb_wf_domains(&n);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < doms[i]->n_workflows; j++) printf("%s\n", doms[i]->workflows[j]->name);
    return TB_EXIT_OK;
  }
  if (strcmp(kind, "tiers") != 0 && strcmp(kind, "domains") != 0 && strcmp(kind, "presets") != 0 &&
      strcmp(kind, "events") != 0) {
    fprintf(stderr, "tierbus help --values: unknown kind '%s' (%s)\n", kind, kinds);
    return TB_EXIT_USAGE;
  }
  tb_cli_t cli = {.prog = "tierbus help --values"};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS, {0}};
  int c;
  optind = 2; /* after "--values KIND" (argv[0] is "help") */
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1)
    if (!tb_cli_common_opt(&cli, c, optarg)) return TB_EXIT_USAGE;
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (strcmp(kind, "tiers") == 0)
    for (int i = 0; i < cli.cfg.n_tiers; i++) printf("%s\n", cli.cfg.tiers[i].name);
  if (strcmp(kind, "domains") == 0 || strcmp(kind, "presets") == 0) {
    if (kind[0] == 'p') /* --preset takes a preset or any domain */
      for (int i = 0; i < cli.cfg.n_presets; i++) printf("%s\n", cli.cfg.presets[i].name);
    for (int i = 0; i < cli.cfg.n_domains; i++) printf("%s\n", cli.cfg.domains[i]);
  }
  if (strcmp(kind, "events") == 0)
    for (size_t i = 0; i < tb_catalogue_count(cli.cat); i++)
      printf("%s\n", tb_catalogue_at(cli.cat, i)->name);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

/* `tierbus help --commands`: one line per command, and one per subcommand ("db checksum"). */
static int print_command_tree(void) {
  for (size_t i = 0; i < TB_COUNTOF(commands); i++) {
    probe_t p;
    probe_command(i, &p);
    free(p.help);
    printf("%s\n", commands[i].name);
    for (int k = 0; k < p.n_subs; k++) printf("%s %s\n", commands[i].name, p.subs[k]);
  }
  return TB_EXIT_OK;
}

/* `tierbus completion bash`: the script in contrib/tierbus.bash-completion, generated from the
 * command table, each command's subcommand table and the options its help text names. */
static int print_bash_completion(void) {
  static char opts[4096];
  printf("# bash completion for tierbus. Generated by `tierbus completion bash` from the command\n"
         "# table, the subcommand tables and each command's --help: regenerate it, never edit it.\n"
         "# Install: copy to /usr/share/bash-completion/completions/tierbus, or source it.\n"
         "# Option values (tiers, domains, events, workflows) are asked of the binary being "
         "completed\n"
         "# (`tierbus help --values KIND`), so they are this deployment's, from its config.\n"
         "_tierbus_values() {\n"
         "  \"${COMP_WORDS[0]}\" help --values \"$1\" 2>/dev/null\n"
         "}\n"
         "_tierbus() {\n"
         "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
         "  local cmd=\"${COMP_WORDS[1]}\" subs=\"\" opts=\"\" kind=\"\"\n"
         "  case \"$prev\" in\n"
         "    --config|--db|--file|--batch-file) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
         "    --data-dir|--work-dir) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
         "    --tier|--tiers|--priority|--task-queue) kind=tiers ;;\n"
         "    --domain|--domains) kind=domains ;;\n"
         "    --preset) kind=presets ;;\n"
         "    --event) kind=events ;;\n"
         "  esac\n"
         "  if [ \"$COMP_CWORD\" -eq 2 ]; then\n"
         "    case \"$cmd:$cur\" in\n"
         "      publish:-*|trigger:-*) ;;\n"
         "      publish:*) kind=events ;;\n"
         "      trigger:*) kind=workflows ;;\n"
         "    esac\n"
         "  fi\n"
         "  if [ -n \"$kind\" ]; then\n"
         "    COMPREPLY=($(compgen -W \"$(_tierbus_values $kind)\" -- \"$cur\"))\n"
         "    return\n"
         "  fi\n"
         "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
         "    COMPREPLY=($(compgen -W \"");
  for (size_t i = 0; i < TB_COUNTOF(commands); i++) printf("%s ", commands[i].name);
  printf("help completion\" -- \"$cur\"))\n"
         "    return\n"
         "  fi\n"
         "  case \"$cmd\" in\n");
  for (size_t i = 0; i < TB_COUNTOF(commands); i++) {
    probe_t p;
    probe_command(i, &p);
    opts[0] = '\0';
    add_options(opts, sizeof(opts), p.help);
    free(p.help);
    for (int k = 0; k < p.n_subs; k++) {
      char *h = sub_help(i, p.subs[k]);
      add_options(opts, sizeof(opts), h);
      free(h);
    }
    printf("    %s)", commands[i].name);
    if (p.n_subs > 0) {
      printf(" subs=\"");
      for (int k = 0; k < p.n_subs; k++) printf("%s%s", k ? " " : "", p.subs[k]);
      printf("\";");
    }
    printf(" opts=\"%s\" ;;\n", opts);
  }
  printf("    help) COMPREPLY=($(compgen -W \"");
  for (size_t i = 0; i < TB_COUNTOF(commands); i++) printf("%s ", commands[i].name);
  printf("--commands\" -- \"$cur\")); return ;;\n"
         "    completion) COMPREPLY=($(compgen -W \"bash\" -- \"$cur\")); return ;;\n"
         "  esac\n"
         "  if [ -n \"$subs\" ] && [ \"$COMP_CWORD\" -eq 2 ]; then\n"
         "    COMPREPLY=($(compgen -W \"$subs --help\" -- \"$cur\"))\n"
         "    return\n"
         "  fi\n"
         "  case \"$cur\" in\n"
         "    -*) COMPREPLY=($(compgen -W \"$opts --config --nats-url --db --data-dir "
         "--log-level --set --help\" -- \"$cur\")) ;;\n"
         "    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
         "  esac\n"
         "}\n"
         "complete -F _tierbus tierbus\n");
  return TB_EXIT_OK;
}

static int find_command(const char *name) {
  for (size_t i = 0; i < TB_COUNTOF(commands); i++)
    if (strcmp(name, commands[i].name) == 0) return (int)i;
  return -1;
}

/* Names every command, for an unknown one. */
static void unknown_command(const char *what, const char *name) {
  fprintf(stderr, "tierbus: unknown %s '%s' (", what, name);
  for (size_t i = 0; i < TB_COUNTOF(commands); i++)
    fprintf(stderr, "%s%s", i ? ", " : "", commands[i].name);
  fprintf(stderr, ", help, completion)\n");
}

/* `tierbus help [COMMAND [SUB...]]` and `tierbus help --commands`. */
static int cmd_help(int argc, char **argv) {
  if (argc < 2) return usage(stdout), TB_EXIT_OK;
  if (strcmp(argv[1], "--commands") == 0) return print_command_tree();
  if (strcmp(argv[1], "--values") == 0) return print_values(argc, argv);
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "completion") == 0 ||
      strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    return usage(stdout), TB_EXIT_OK;
  int i = find_command(argv[1]);
  if (i < 0) return unknown_command("command", argv[1]), TB_EXIT_USAGE;
  /* COMMAND SUB --help */
  char *sub_argv[argc + 1];
  int n = 0;
  for (int k = 1; k < argc; k++) sub_argv[n++] = argv[k];
  sub_argv[n++] = "--help";
  sub_argv[n] = NULL;
  return commands[i].fn(n, sub_argv);
}

static int cmd_completion(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("usage: tierbus completion bash\n"
           "Prints the bash completion script (commands, subcommands, options).\n"
           "examples:\n"
           "  tierbus completion bash > /usr/share/bash-completion/completions/tierbus\n"
           "  source <(tierbus completion bash)\n");
    return TB_EXIT_OK;
  }
  if (argc != 2 || strcmp(argv[1], "bash") != 0) {
    fprintf(stderr, "tierbus completion: unknown shell '%s' (bash)\n", argc >= 2 ? argv[1] : "");
    return TB_EXIT_USAGE;
  }
  return print_bash_completion();
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
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return TB_EXIT_OK;
  }
  if (strcmp(argv[1], "help") == 0) return cmd_help(argc - 1, argv + 1);
  if (strcmp(argv[1], "completion") == 0) return cmd_completion(argc - 1, argv + 1);
  int i = find_command(argv[1]);
  if (i >= 0) return commands[i].fn(argc - 1, argv + 1);
  unknown_command("command", argv[1]);
  fprintf(stderr, "(tierbus --help describes each)\n");
  return TB_EXIT_USAGE;
}
