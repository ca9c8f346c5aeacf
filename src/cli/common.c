/* Start-up shared by every command. */
#include "cli/cli.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/status.h"
#include "core/util.h"
#include "bus/deployment.h"
#include <unistd.h>

volatile sig_atomic_t tb_cli_stop = 0;

static void on_signal(int sig) {
  tb_cli_stop = 1;
}

void tb_cli_trap_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int tb_cli_common_opt(tb_cli_t *cli, int c, const char *arg) {
  switch (c) {
  case OPT_CONFIG:
    cli->config_path = arg;
    return 1;
  case OPT_NATS_URL:
    cli->nats_url = arg;
    return 1;
  case OPT_DB:
    cli->db = arg;
    return 1;
  case OPT_DATA_DIR:
    cli->data_dir = arg;
    return 1;
  case OPT_LOG_LEVEL:
    cli->log_level = arg;
    return 1;
  case OPT_SET:
    if (cli->n_sets < (int)TB_COUNTOF(cli->sets)) cli->sets[cli->n_sets++] = arg;
    return 1;
  default:
    return 0;
  }
}

int tb_cli_usage_error(const tb_cli_t *cli, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", cli->prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return TB_EXIT_USAGE;
}

int tb_cli_parse_long(tb_cli_t *cli, const char *opt, const char *arg, long lo, long hi,
                      long *out) {
  char *end = NULL;
  long v = strtol(arg, &end, 10);
  if (*arg == '\0' || *end != '\0' || v < lo || v > hi)
    return tb_cli_usage_error(cli, "%s: expected an integer from %ld to %ld, got '%s'", opt, lo, hi,
                              arg);
  *out = v;
  return TB_EXIT_OK;
}

void tb_cli_flag_option(tb_cli_t *cli, const char *flag, const char *key, const char *value) {
  /* A command has a fixed handful of such flags; repeating one replaces its value. */
  for (int i = 0; i < cli->n_flag_opts; i++)
    if (strcmp(cli->flag_opts[i].key, key) == 0) {
      cli->flag_opts[i].value = value;
      return;
    }
  assert(cli->n_flag_opts < (int)TB_COUNTOF(cli->flag_opts));
  cli->flag_opts[cli->n_flag_opts].flag = flag;
  cli->flag_opts[cli->n_flag_opts].key = key;
  cli->flag_opts[cli->n_flag_opts++].value = value;
}

int tb_cli_load(tb_cli_t *cli) {
  tb_config_init(&cli->cfg);
  const char *path = tb_config_default_path(cli->config_path);
  tb_status st = tb_config_load_file(&cli->cfg, path);
  if (st == TB_OK) st = tb_config_apply_env(&cli->cfg);
  if (st == TB_OK && cli->nats_url) st = tb_config_set(&cli->cfg, "nats_url", cli->nats_url);
  if (st == TB_OK && cli->data_dir) st = tb_config_set(&cli->cfg, "data_dir", cli->data_dir);
  /* A data dir given by flag or environment carries the database with it, unless a database is
   * named by flag or environment too: TIERBUS_DATA_DIR=D and --data-dir D resolve alike. */
  const char *env_dir = getenv("TIERBUS_DATA_DIR"), *env_db = getenv("TIERBUS_DB");
  int dir_given = cli->data_dir != NULL || (env_dir != NULL && env_dir[0] != '\0');
  int db_given = cli->db != NULL || (env_db != NULL && env_db[0] != '\0');
  if (st == TB_OK && dir_given && !db_given) {
    char db[PATH_MAX + 16];
    snprintf(db, sizeof(db), "%s/tierbus.db", cli->cfg.data_dir);
    st = tb_config_set(&cli->cfg, "db_path", db);
  }
  if (st == TB_OK && cli->db) st = tb_config_set(&cli->cfg, "db_path", cli->db);
  if (st == TB_OK && cli->log_level) st = tb_config_set(&cli->cfg, "log_level", cli->log_level);
  for (int i = 0; i < cli->n_flag_opts && st == TB_OK; i++) {
    st = tb_config_set(&cli->cfg, cli->flag_opts[i].key, cli->flag_opts[i].value);
    if (st != TB_OK) { /* name the flag the user typed, and the option the message speaks of */
      fprintf(stderr, "%s: config error: %s: %s\n", cli->prog, cli->flag_opts[i].flag,
              tb_errdetail());
      return TB_EXIT_USAGE;
    }
  }
  for (int i = 0; i < cli->n_sets && st == TB_OK; i++) {
    char key[64];
    const char *eq = strchr(cli->sets[i], '=');
    size_t klen = eq ? (size_t)(eq - cli->sets[i]) : 0;
    if (eq == NULL || klen == 0 || klen >= sizeof(key)) {
      fprintf(stderr, "%s: --set '%s': expected KEY=VALUE\n", cli->prog, cli->sets[i]);
      return TB_EXIT_USAGE;
    }
    memcpy(key, cli->sets[i], klen);
    key[klen] = '\0';
    st = tb_config_set(&cli->cfg, key, eq + 1);
  }
  if (st == TB_OK) st = tb_config_validate(&cli->cfg);
  if (st != TB_OK) {
    fprintf(stderr, "%s: config error: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_USAGE;
  }
  tb__log_level = cli->cfg.log_level;
  st = tb_catalogue_load(&cli->cat);
  if (st != TB_OK) {
    fprintf(stderr, "%s: catalogue error: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_USAGE;
  }
  const char *domains[TB_MAX_DOMAINS];
  int n_domains = tb_catalogue_domains(cli->cat, domains, TB_MAX_DOMAINS);
  st = tb_config_set_domains(&cli->cfg, domains, n_domains);
  if (st != TB_OK) {
    fprintf(stderr, "%s: catalogue error: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_USAGE;
  }
  /* A preset's domains are catalogue domains. */
  for (int p = 0; p < cli->cfg.n_presets; p++)
    for (int k = 0; k < cli->cfg.presets[p].n_domains; k++)
      if (tb_config_domain_index(&cli->cfg, cli->cfg.presets[p].domains[k]) < 0) {
        fprintf(stderr,
                "%s: config error: %s: presets.%s: unknown domain '%s' (domains: see `tierbus "
                "events`)\n",
                cli->prog, path, cli->cfg.presets[p].name, cli->cfg.presets[p].domains[k]);
        return TB_EXIT_USAGE;
      }
  /* Config and catalogue must agree: every event_tiers entry names a catalogue event, and every
   * event's tier exists in this deployment. */
  for (int i = 0; i < cli->cfg.n_event_tiers; i++) {
    if (tb_catalogue_find(cli->cat, cli->cfg.event_tiers[i].event) == NULL) {
      fprintf(stderr,
              "%s: config error: %s: event_tiers.%s: no such event in the catalogue (see "
              "`tierbus events`)\n",
              cli->prog, path, cli->cfg.event_tiers[i].event);
      return TB_EXIT_USAGE;
    }
  }
  for (size_t i = 0; i < tb_catalogue_count(cli->cat); i++) {
    const tb_event_def_t *ev = tb_catalogue_at(cli->cat, i);
    if (tb_config_tier_index(&cli->cfg, ev->default_tier) < 0 &&
        tb_config_event_tier(&cli->cfg, ev->name) == NULL) {
      fprintf(stderr,
              "%s: config error: %s: event %s defaults to tier '%s', which the config does not "
              "define; add the tier or an event_tiers entry\n",
              cli->prog, path, ev->name, ev->default_tier);
      return TB_EXIT_USAGE;
    }
  }
  return TB_EXIT_OK;
}

int tb_cli_resolve_auth(tb_cli_t *cli, int create) {
  tb_status st = tb_bus_auth_resolve(&cli->cfg, create, &cli->auth);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  cli->auth_resolved = 1;
  return TB_EXIT_OK;
}

/* Says why the server refused us and what would be accepted: the usual cause is a command run
 * without the deployment's data directory, where `tierbus dev` keeps the secret. */
static int refused(const tb_cli_t *cli) {
  /* cnats' text is the only way to tell the two apart once TB_ERR_AUTH covers both. */
  int tls_failed = strstr(tb_errdetail(), "SSL") != NULL;
  fprintf(stderr, "%s: error: NATS at %s refused the connection: %s\n  credentials: %s%s\n",
          cli->prog, cli->cfg.nats_url, tb_errdetail(), cli->auth.source,
          cli->auth.tls ? " (over TLS)" : "");
  if (tls_failed && cli->auth.tls_hostname[0] != '\0')
    fprintf(stderr,
            "  TLS: nats_tls_ca must hold the CA that signed the server's certificate, and that "
            "certificate must carry the name '%s' (nats_tls_hostname, else the URL's host)\n",
            cli->auth.tls_hostname);
  else if (tls_failed)
    fprintf(stderr,
            "  TLS: nats_tls_ca must hold the CA that signed the server's certificate (the URL "
            "names an IP address: only the CA is checked unless nats_tls_hostname names the "
            "server)\n");
  else if (cli->auth.kind == TB_AUTH_NONE)
    fprintf(stderr,
            "  give the deployment's data directory (--data-dir or TIERBUS_DATA_DIR: `tierbus dev` "
            "keeps its secret there in %s), or set nats_user/nats_password, nats_token or "
            "nats_creds (config, TIERBUS_NATS_* or --set)\n",
            TB_AUTH_SECRET_FILE);
  return TB_EXIT_FAIL;
}

int tb_cli_connect(tb_cli_t *cli) {
  if (!cli->auth_resolved && tb_cli_resolve_auth(cli, 0) != TB_EXIT_OK) return TB_EXIT_FAIL;
  int64_t deadline = tb_mono_us() + cli->cfg.nats_connect_timeout_ms * 1000;
  int attempts = 0;
  for (;;) {
    tb_status st = tb_bus_connect_auth(&cli->bus, cli->cfg.nats_url, cli->prog, &cli->auth);
    if (st == TB_OK) {
      if (attempts > 0) TB_LOG(TB_LOG_INFO, "cli", "connected to %s", cli->cfg.nats_url);
      return TB_EXIT_OK;
    }
    if (st == TB_ERR_AUTH) return refused(cli);
    if (st == TB_ERR_CONFIG) {
      fprintf(stderr, "%s: config error: %s\n", cli->prog, tb_errdetail());
      return TB_EXIT_USAGE;
    }
    attempts++;
    if (tb_mono_us() >= deadline || tb_cli_stop) {
      fprintf(stderr, "%s: error: NATS is not reachable at %s after %d attempts over %lld ms: %s\n",
              cli->prog, cli->cfg.nats_url, attempts, (long long)cli->cfg.nats_connect_timeout_ms,
              tb_errdetail());
      /* A server that verifies clients closes a connection without a certificate right after
       * the handshake, which cnats reports as a protocol error, not as a refusal. */
      if (cli->auth.tls && cli->auth.tls_cert[0] == '\0')
        fprintf(stderr, "  over TLS without a client certificate: if the server verifies "
                        "clients, set nats_tls_cert and nats_tls_key\n");
      return TB_EXIT_FAIL;
    }
    if (attempts == 1)
      TB_LOG(TB_LOG_WARN, "cli", "NATS not reachable at %s (%s); retrying for up to %lld ms",
             cli->cfg.nats_url, tb_errdetail(), (long long)cli->cfg.nats_connect_timeout_ms);
    tb_sleep_us(250000);
  }
}

/* How the database path was chosen, for messages. */
static const char *db_source(const tb_cli_t *cli) {
  const char *env_db = getenv("TIERBUS_DB"), *env_dir = getenv("TIERBUS_DATA_DIR");
  if (cli->db) return "--db";
  if (env_db && env_db[0]) return "TIERBUS_DB";
  if (cli->data_dir) return "--data-dir";
  if (env_dir && env_dir[0]) return "TIERBUS_DATA_DIR";
  return cli->cfg.source_path[0] ? "db_path in the config file" : "the default db_path";
}

int tb_cli_open_store(tb_cli_t *cli) {
  struct stat sb;
  int exists = stat(cli->cfg.db_path, &sb) == 0;
  if (!exists && !cli->create_db) {
    fprintf(stderr,
            "%s: error: no database at %s (from %s); this command never creates one. Point it at "
            "the deployment's database with --db, --data-dir, TIERBUS_DB or TIERBUS_DATA_DIR, or "
            "create it with `tierbus init` or a worker\n",
            cli->prog, cli->cfg.db_path, db_source(cli));
    return TB_EXIT_FAIL;
  }
  tb_mkdirs(cli->cfg.db_path, 0);
  cli->created_db = !exists;
  tb_status st = tb_store_open(&cli->store, cli->cfg.db_path);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: cannot open database %s: %s\n", cli->prog, cli->cfg.db_path,
            tb_errdetail());
    return TB_EXIT_FAIL;
  }
  return TB_EXIT_OK;
}

/* Removes the database files this run created, after a refusal: the next start must meet the
 * same question, not an empty database that now looks like a deployment's. */
static void remove_created_db(tb_cli_t *cli) {
  if (!cli->created_db) return;
  tb_store_close(cli->store);
  cli->store = NULL;
  char path[PATH_MAX + 8];
  unlink(cli->cfg.db_path);
  snprintf(path, sizeof(path), "%s-wal", cli->cfg.db_path);
  unlink(path);
  snprintf(path, sizeof(path), "%s-shm", cli->cfg.db_path);
  unlink(path);
}

int tb_cli_check_deployment(tb_cli_t *cli) {
  char db_id[80], srv_id[80], have[80];
  int db_found = 0, db_used = 0, srv_found = 0;
  tb_status st = tb_store_deployment(cli->store, db_id, sizeof(db_id), &db_found, &db_used);
  if (st == TB_OK)
    st = tb_bus_deployment_get(cli->bus, &cli->cfg, srv_id, sizeof(srv_id), &srv_found);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: cannot read the deployment id: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  if (db_found && srv_found && strcmp(db_id, srv_id) != 0) {
    fprintf(stderr,
            "%s: error: database %s (from %s) belongs to deployment %s, but the streams at %s "
            "belong to deployment %s; refusing to apply one deployment's events to another's "
            "state. Give this server's database (--db, --data-dir, TIERBUS_DB or "
            "TIERBUS_DATA_DIR), or this database's server (--nats-url)\n",
            cli->prog, cli->cfg.db_path, db_source(cli), db_id, cli->cfg.nats_url, srv_id);
    return TB_EXIT_FAIL;
  }
  if (!db_found && !db_used && srv_found) {
    uint64_t acked = 0;
    st = tb_bus_acked_history(cli->bus, &cli->cfg, &acked);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli->prog, tb_errdetail());
      return TB_EXIT_FAIL;
    }
    if (acked > 0) {
      fprintf(stderr,
              "%s: error: database %s (from %s) is new and empty, but the consumers at %s have "
              "already acked %llu messages of deployment %s into another database; their effects "
              "are not in this one. Give deployment %s's database (--db, --data-dir, TIERBUS_DB "
              "or TIERBUS_DATA_DIR)\n",
              cli->prog, cli->cfg.db_path, db_source(cli), cli->cfg.nats_url,
              (unsigned long long)acked, srv_id, srv_id);
      remove_created_db(cli);
      return TB_EXIT_FAIL;
    }
  }
  /* Whichever side knows an id gives it to the other; with neither, a new deployment begins. */
  const char *id = db_found ? db_id : srv_found ? srv_id : NULL;
  char fresh[80];
  if (id == NULL) {
    tb_deployment_new_id(fresh, sizeof(fresh));
    id = fresh;
  }
  if (!srv_found) st = tb_bus_deployment_claim(cli->bus, &cli->cfg, id, have, sizeof(have));
  if (st == TB_OK && !srv_found && strcmp(have, id) != 0) {
    /* Another process recorded another id first: check again against the winner. */
    return tb_cli_check_deployment(cli);
  }
  if (st == TB_OK && !db_found) {
    st = tb_store_set_deployment(cli->store, id, have, sizeof(have));
    if (st == TB_OK && strcmp(have, id) != 0) return tb_cli_check_deployment(cli);
  }
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: cannot record the deployment id: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  if (!db_found || !srv_found)
    TB_LOG(TB_LOG_INFO, "cli", "deployment %s recorded%s%s", id,
           !db_found ? " in the database" : "", !srv_found ? " on the server" : "");
  return TB_EXIT_OK;
}

int tb_cli_load_and_open(tb_cli_t *cli) {
  int rc = tb_cli_load(cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(cli);
  return rc;
}

void tb_cli_close(tb_cli_t *cli) {
  tb_store_close(cli->store);
  cli->store = NULL;
  tb_bus_destroy(cli->bus);
  cli->bus = NULL;
  tb_catalogue_destroy(cli->cat);
  cli->cat = NULL;
  explicit_bzero(&cli->auth, sizeof(cli->auth));
  cli->auth_resolved = 0;
}

void tb_cli_config_names(const tb_config_t *cfg, tb_cli_names_t which, char *buf, size_t cap) {
  int n = which == TB_CLI_TIERS     ? cfg->n_tiers
          : which == TB_CLI_PRESETS ? cfg->n_presets
                                    : cfg->n_domains;
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && off < cap; i++) {
    const char *name = which == TB_CLI_TIERS     ? cfg->tiers[i].name
                       : which == TB_CLI_PRESETS ? cfg->presets[i].name
                                                 : cfg->domains[i];
    off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", name);
  }
  if (n == 0) snprintf(buf, cap, "none");
}

/* Parses a comma list of names into indexes with |lookup|; -1 after printing an error. */
static int parse_names(tb_cli_t *cli, const char *list, const char *flag, const char *what,
                       int (*lookup)(const tb_config_t *, const char *), int *out, int max) {
  char buf[512];
  snprintf(buf, sizeof(buf), "%s", list);
  char *save = NULL;
  int n = 0;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int v = lookup(&cli->cfg, tok);
    if (v < 0) { /* name what is accepted, from the same config the lookup read */
      char names[512];
      tb_cli_config_names(&cli->cfg, strcmp(what, "tier") == 0 ? TB_CLI_TIERS : TB_CLI_DOMAINS,
                          names, sizeof(names));
      tb_cli_usage_error(cli, "unknown %s '%s' in %s (%ss: %s)", what, tok, flag, what, names);
      return -1;
    }
    for (int i = 0; i < n; i++)
      if (out[i] == v) {
        tb_cli_usage_error(cli, "%s '%s' given twice in %s", what, tok, flag);
        return -1;
      }
    if (n == max) {
      tb_cli_usage_error(cli, "%s lists more than %d %ss", flag, max, what);
      return -1;
    }
    out[n++] = v;
  }
  if (n == 0) tb_cli_usage_error(cli, "%s is empty", flag);
  return n > 0 ? n : -1;
}

int tb_cli_parse_scope(tb_cli_t *cli, const char *tiers, const char *preset, const char *domains,
                       const char *max_cw, tb_worker_scope_t *scope) {
  const tb_config_t *cfg = &cli->cfg;
  tb_worker_scope_all(cfg, scope);
  scope->max_inflight = cfg->max_concurrent_workflows;
  if (tiers != NULL && preset != NULL) {
    tb_cli_usage_error(cli, "give --tiers or --preset, not both");
    return -1;
  }
  if (preset != NULL) {
    const tb_preset_t *p = tb_config_preset(cfg, preset);
    int d = p == NULL ? tb_config_domain_index(cfg, preset) : -1;
    if (p == NULL && d < 0) {
      char presets[256], doms[256];
      tb_cli_config_names(cfg, TB_CLI_PRESETS, presets, sizeof(presets));
      tb_cli_config_names(cfg, TB_CLI_DOMAINS, doms, sizeof(doms));
      tb_cli_usage_error(cli, "unknown preset '%s' (presets and domains: %s, %s)", preset, presets,
                         doms);
      return -1;
    }
    if (p == NULL) { /* a bare domain: every tier of it */
      scope->domains[0] = d;
      scope->n_domains = 1;
    } else {
      if (p->n_domains > 0 && domains != NULL) {
        tb_cli_usage_error(cli, "preset '%s' names its domains; drop --domains", preset);
        return -1;
      }
      if (p->n_tiers > 0) {
        scope->n_tiers = 0;
        for (int i = 0; i < p->n_tiers; i++)
          scope->tiers[scope->n_tiers++] = tb_config_tier_index(cfg, p->tiers[i]);
      }
      if (p->n_domains > 0) {
        scope->n_domains = 0;
        for (int i = 0; i < p->n_domains; i++)
          scope->domains[scope->n_domains++] = tb_config_domain_index(cfg, p->domains[i]);
      }
      if (p->max_concurrent_workflows > 0) scope->max_inflight = p->max_concurrent_workflows;
    }
  }
  if (tiers != NULL &&
      (scope->n_tiers = parse_names(cli, tiers, "--tiers", "tier", tb_config_tier_index,
                                    scope->tiers, TB_MAX_TIERS)) < 0)
    return -1;
  if (domains != NULL &&
      (scope->n_domains = parse_names(cli, domains, "--domains", "domain", tb_config_domain_index,
                                      scope->domains, TB_MAX_DOMAINS)) < 0)
    return -1;
  if (max_cw != NULL) {
    char *end = NULL;
    long v = strtol(max_cw, &end, 10);
    if (end == max_cw || *end != '\0' || v < 0 || v > 100000) {
      tb_cli_usage_error(
          cli, "--max-concurrent-workflows must be an integer 0 to 100000 (got '%s')", max_cw);
      return -1;
    }
    scope->max_inflight = (int)v;
  }
  return 0;
}

/* Wall-clock microseconds as "2025-11-23T15:00:01.123Z" ("-" for 0). */
void tb_cli_fmt_time(int64_t us, char *buf, size_t cap) {
  tb_time_format(us, buf, cap);
}

/* Index of the subcommand in argv: the first argument that is neither an option nor the value
 * of a common option, so that `tierbus workflows --db X list` works like `... list --db X`.
 * 0 when there is none. */
int tb_cli_find_subcommand(int argc, char **argv) {
  static const char *const with_value[] = {"--config",   "--nats-url",  "--db",
                                           "--data-dir", "--log-level", "--set"};
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] != '-') return i;
    for (size_t k = 0; k < TB_COUNTOF(with_value); k++)
      if (strcmp(argv[i], with_value[k]) == 0) {
        i++; /* its value */
        break;
      }
  }
  return 0;
}

int tb_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) return 0;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
  }
  return 0;
}

void (*tb__cli_sub_visitor)(const tb_cli_sub_t *subs, int n_subs, void *arg);
void *tb__cli_sub_visitor_arg;

static int run_subcommand(const char *prog, int argc, char **argv, const tb_cli_sub_t *subs,
                          int n_subs, void (*usage)(FILE *out), int own_help) {
  if (tb__cli_sub_visitor != NULL) {
    tb__cli_sub_visitor(subs, n_subs, tb__cli_sub_visitor_arg);
    return TB_EXIT_OK;
  }
  int at = tb_cli_find_subcommand(argc, argv);
  if (at != 0 && strcmp(argv[at], "help") == 0) return usage(stdout), TB_EXIT_OK;
  if (at == 0) { /* a --help before any subcommand is for this level */
    for (int i = 1; i < argc; i++)
      if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
        return usage(stdout), TB_EXIT_OK;
    return usage(stderr), TB_EXIT_USAGE;
  }
  /* The subcommand becomes argv[0]; the options around it keep their order. */
  char *sub_argv[argc + 1];
  int n = 0;
  sub_argv[n++] = argv[at];
  for (int i = 1; i < argc; i++)
    if (i != at) sub_argv[n++] = argv[i];
  sub_argv[n] = NULL;
  for (int i = 0; i < n_subs; i++)
    if (strcmp(argv[at], subs[i].name) == 0) {
      /* Help never reaches a subcommand's parser that has none: it would call --help an
       * unrecognized option and exit 2. */
      if (!own_help && tb_cli_wants_help(n, sub_argv)) return usage(stdout), TB_EXIT_OK;
      return subs[i].fn(n, sub_argv);
    }
  fprintf(stderr, "%s: unknown subcommand '%s' (", prog, argv[at]);
  for (int i = 0; i < n_subs; i++) fprintf(stderr, "%s%s", i ? ", " : "", subs[i].name);
  fprintf(stderr, ")\n");
  return TB_EXIT_USAGE;
}

int tb_cli_run_subcommand(const char *prog, int argc, char **argv, const tb_cli_sub_t *subs,
                          int n_subs, void (*usage)(FILE *out)) {
  return run_subcommand(prog, argc, argv, subs, n_subs, usage, 0);
}

int tb_cli_run_subcommand_own_help(const char *prog, int argc, char **argv,
                                   const tb_cli_sub_t *subs, int n_subs, void (*usage)(FILE *out)) {
  return run_subcommand(prog, argc, argv, subs, n_subs, usage, 1);
}

/* ---------------------------------------------------------------- tables */

struct tb_cli_table {
  int n_cols;
  const char *const *headers; /* borrowed */
  char **cells;               /* n_rows * n_cols, owned */
  size_t n_rows, cap_rows;
  int failed; /* a row could not be kept */
};

tb_cli_table_t *tb_cli_table_new(int n_cols, const char *const *headers) {
  assert(n_cols > 0);
  tb_cli_table_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->n_cols = n_cols;
  t->headers = headers;
  return t;
}

void tb_cli_table_add(tb_cli_table_t *t, ...) {
  if (t->failed) return;
  if (t->n_rows == t->cap_rows) {
    size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
    char **grown = realloc(t->cells, cap * (size_t)t->n_cols * sizeof(*grown));
    if (grown == NULL) {
      t->failed = 1;
      return;
    }
    t->cells = grown;
    t->cap_rows = cap;
  }
  char **row = t->cells + t->n_rows * (size_t)t->n_cols;
  va_list ap;
  va_start(ap, t);
  for (int c = 0; c < t->n_cols; c++) {
    const char *v = va_arg(ap, const char *);
    row[c] = strdup(v ? v : "-");
    if (row[c] == NULL) t->failed = 1;
  }
  va_end(ap);
  if (t->failed) { /* keep the rows whole: drop this one */
    for (int c = 0; c < t->n_cols; c++) free(row[c]);
    return;
  }
  t->n_rows++;
}

tb_status tb_cli_table_print(const tb_cli_table_t *t, FILE *out) {
  if (t->failed) return tb__fail(TB_ERR_NOMEM, "out of memory building the table");
  int width[64];
  assert(t->n_cols <= (int)TB_COUNTOF(width));
  for (int c = 0; c < t->n_cols; c++) {
    const char *h = t->headers[c];
    width[c] = (int)strlen(h[0] == '>' ? h + 1 : h);
    for (size_t r = 0; r < t->n_rows; r++) {
      int w = (int)strlen(t->cells[r * (size_t)t->n_cols + c]);
      if (w > width[c]) width[c] = w;
    }
  }
  for (size_t r = 0; r <= t->n_rows; r++) {
    for (int c = 0; c < t->n_cols; c++) {
      const char *h = t->headers[c];
      int right = h[0] == '>';
      const char *v = r == 0 ? (right ? h + 1 : h) : t->cells[(r - 1) * (size_t)t->n_cols + c];
      int last = c == t->n_cols - 1;
      if (right)
        fprintf(out, "%*s", width[c], v);
      else if (last) /* no trailing blanks */
        fputs(v, out);
      else
        fprintf(out, "%-*s", width[c], v);
      fputs(last ? "\n" : "  ", out);
    }
  }
  return TB_OK;
}

void tb_cli_table_free(tb_cli_table_t *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n_rows * (size_t)t->n_cols; i++) free(t->cells[i]);
  free(t->cells);
  free(t);
}
