/* tierbus configuration: one table of options (name, type, bounds, default, field) drives the
 * YAML parser, validation, environment and CLI overrides, and the example config. */
#ifndef TB_CONFIG_CONFIG_H
#define TB_CONFIG_CONFIG_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "tierbus.h"

#define TB_MAX_TIERS 8
#define TB_MAX_BACKOFF 8
#define TB_NAME_MAX 32
#define TB_MAX_EVENT_TIERS 64
#define TB_MAX_PRESETS 16
#define TB_MAX_DOMAINS 16
#define TB_URL_MAX 256
#define TB_MAX_WORKFLOW_TIERS 64
#define TB_MAX_ESC_RULES 16
#define TB_MAX_SERVICE_LIMITS 16
#define TB_SERVICE_LIMIT_MAX 10000
#define TB_MAX_JOB_TYPES 32
/* http_threads' default, and the HTTP server's when its caller gives none (tb_http_opts_t). */
#define TB_HTTP_DEFAULT_THREADS 8

/* One priority tier. The order of tiers in the config is the priority order: index 0 is served
 * first. */
typedef struct tb_tier_config {
  char name[TB_NAME_MAX];
  /* Another name the tier answers to wherever a tier is accepted (seed 000's task queue:
   * "default" for normal); "" = none. "<name>-priority" is always accepted too. */
  char task_queue[TB_NAME_MAX];
  int64_t timeout_ms; /* handler time limit: past it the message's lease is not renewed */
  int concurrency;    /* max messages in flight per worker process */
  int max_deliver;    /* deliveries before the message goes to the dead-letter stream */
  int64_t backoff_ms[TB_MAX_BACKOFF]; /* redelivery delays after a failed attempt */
  int n_backoff;
  int64_t aging_ms; /* a message ready this long rises one tier; 0 = never */
  int job_priority; /* seed 001 job priority number (1 = CRITICAL ... 9) */
  /* Retention of each of the tier's streams (0 = no limit; max_age 0 = stream_max_age): history
   * older or beyond these can no longer be replayed or rebuilt. */
  int64_t max_age_ms;
  int64_t max_bytes;
  int64_t max_msgs;
  int64_t redelivery_bound_ms; /* this tier's AckWait; 0 = the config's redelivery_bound */
} tb_tier_config_t;

/* Per-deployment override of the catalogue's default tier for one event type. */
typedef struct tb_event_tier {
  char event[64];
  char tier[TB_NAME_MAX];
} tb_event_tier_t;

/* A named worker preset: what a `tierbus worker --preset NAME` consumes. No tiers means every
 * tier; no domains means every domain. Domain names are checked against the catalogue by the
 * worker, since the config does not know the catalogue. */
typedef struct tb_preset {
  char name[TB_NAME_MAX];
  char tiers[TB_MAX_TIERS][TB_NAME_MAX];
  int n_tiers;
  char domains[TB_MAX_DOMAINS][TB_NAME_MAX];
  int n_domains;
  int max_concurrent_workflows; /* 0: the config's max_concurrent_workflows */
} tb_preset_t;

/* Seed 000's automatic assignment: the default tier of a workflow, by its name or its category
 * (tb_workflow_def_t.category, e.g. "customer-support"). */
typedef struct tb_workflow_tier {
  char workflow[64];
  char tier[TB_NAME_MAX];
} tb_workflow_tier_t;

/* One escalation rule (seed 000): when every condition it sets holds, the run goes to |tier| at
 * least. Rules only raise a tier. A condition left at zero / "" is not checked. */
typedef struct tb_esc_rule {
  char name[TB_NAME_MAX];   /* recorded with each escalation it causes */
  int failed_retry;         /* 1: the run is a retry of a failed run */
  int customer_facing;      /* 1: the run is customer-facing */
  char business_impact[16]; /* the run's business impact equals this ("high") */
  int64_t stuck_ms;         /* the run made no progress for longer than this */
  char tier[TB_NAME_MAX];
} tb_esc_rule_t;

/* Seed 001's per-queue concurrency: at most |limit| commands of |service| (tb.cmd.<service>.*)
 * in flight at once across every worker process of the deployment (they share the database). */
typedef struct tb_service_limit {
  char service[TB_NAME_MAX];
  int limit; /* 1 .. TB_SERVICE_LIMIT_MAX */
} tb_service_limit_t;

/* Seed 001's custom job types (`scheduler.addTask({jobType: 'MY_CUSTOM_JOB'})`): a scheduled task
 * naming |type| publishes a tierbus.v1.Command to tb.cmd.<service>.<action>, for the service that
 * does the job, with the task's payload as its input. */
typedef struct tb_job_type {
  char type[64];
  char service[TB_NAME_MAX];
  char action[TB_NAME_MAX];
} tb_job_type_t;

typedef struct tb_config {
  char nats_url[TB_URL_MAX];
  /* How every NATS connection authenticates (issue 11, the locked bus): at most one of
   * user/password, token or creds file. With none set, the secret `tierbus dev` keeps in
   * data_dir is used when it is there (src/bus/auth.h resolves this, once, for every command). */
  char nats_user[128];
  char nats_password[256];
  char nats_token[256];
  char nats_creds[PATH_MAX];
  /* TLS to the server: a CA file (or a tls:// URL and the system's CAs), an optional client
   * certificate and key, and the name the server's certificate must carry ("" = the URL's host,
   * or no name check when that host is an IP address). */
  char nats_tls_ca[PATH_MAX];
  char nats_tls_cert[PATH_MAX];
  char nats_tls_key[PATH_MAX];
  char nats_tls_hostname[256];
  char db_path[PATH_MAX];
  char data_dir[PATH_MAX];
  char stream_prefix[TB_NAME_MAX]; /* streams are <prefix>_<TIER>_<DOMAIN> */
  int64_t duplicate_window_ms;     /* JetStream dedupe window on every stream */
  int replicas;                    /* JetStream copies of every stream: 1, or 3 on a cluster */
  int64_t max_payload_bytes;       /* larger events are refused at publish, DLQ'd at consume */
  int64_t stream_max_age_ms;       /* history kept for replay; 0 = forever */
  int commit_batch_max;            /* messages per SQLite transaction */
  int prefetch;                    /* ready messages per tier, when above its concurrency */
  int prefetch_yield;              /* the same for lower tiers while the first tier flows */
  int64_t commit_batch_us;         /* a batch's wait for more work; its length with tier 0's */
  int64_t commit_batch_busy_us;    /* a batch's length while ready work keeps coming */
  int64_t redelivery_bound_ms;     /* AckWait: a dead worker's messages come back within it */
  int64_t nats_connect_timeout_ms; /* how long start-up keeps retrying an absent server */
  int64_t publish_ack_wait_ms;     /* a batch publish without its ack by then is sent again */
  int64_t publish_give_up_ms;      /* a batch publish ends after the server is silent this long */
  int http_port;                   /* the HTTP API's port (dev, api); 0 = dev serves none */
  char http_bind[64];              /* the HTTP API's IPv4 address */
  int http_threads;                /* the HTTP API's thread pool: requests worked on at once */
  char api_token[256];             /* bearer token of every /api call; "" = none (loopback) */
  int log_level;                   /* tb_log_level */
  int email_workflows;             /* seed 001: 1 sends client journey emails, 0 skips them */
  int auto_generate_pdf;           /* seed 001: 1 generates a business plan's PDF */
  int max_concurrent_workflows;    /* per worker: messages in flight across tiers; 0 = no cap */
  int enrichment_batch_max;        /* seed 003: most pending jobs one enrichment run claims */
  int workflow_steps_per_message;  /* most workflow steps one handled message runs on */
  /* Seed 002: tier of a repository's sync jobs by its priority (high, medium, low). */
  char repo_tier_high[TB_NAME_MAX], repo_tier_medium[TB_NAME_MAX], repo_tier_low[TB_NAME_MAX];
  int workspace_add_sync;            /* seed 002: an add queues a (debounced) full sync */
  int64_t priority_sync_debounce_ms; /* seed 002: a burst of workspace adds shares one sync */
  int64_t escalation_sweep_ms;       /* how often workers look for stuck runs; 0 = never */
  /* Seed 000: what the sweeper does to a run past its tier's timeout (the whole run, time parked
   * in waits and sleeps not counted): "escalate" (one tier up, once, then fail), "fail", "off". */
  char run_timeout[16];
  /* Seed 000's circuit breaker per command service: after |failures| consecutive failures
   * (5xx, 408, 429 or no reply) within |window|, the service's commands are held for
   * |cooldown|, then sent again. 0 failures = off. */
  int breaker_failures;
  int64_t breaker_window_ms;
  int64_t breaker_cooldown_ms;
  int scheduler;                   /* seed 001: 1 runs the cron scheduler in worker and dev */
  int64_t scheduler_lease_ttl_ms;  /* the leading scheduler's lease (bus/lease.h) */
  int64_t scheduler_grace_ms;      /* a slot this late still fires on time (else: catch-up) */
  int64_t schedule_retry_delay_ms; /* first retry of a failed task; doubles per retry */
  int backup_keep;                 /* database-backup keeps this many newest copies */
  int64_t snapshot_interval_ms;    /* workers snapshot the database this often; 0 = never */
  int snapshot_keep;               /* newest snapshots kept in <data_dir>/snapshots */
  tb_tier_config_t tiers[TB_MAX_TIERS];
  int n_tiers;
  tb_event_tier_t event_tiers[TB_MAX_EVENT_TIERS];
  int n_event_tiers;
  tb_preset_t presets[TB_MAX_PRESETS];
  int n_presets;
  /* -1: the section is not in the file, and the built-in seed 000 table applies (use the
   * accessors below, which resolve this). */
  tb_workflow_tier_t workflow_tiers[TB_MAX_WORKFLOW_TIERS];
  int n_workflow_tiers;
  tb_esc_rule_t escalation[TB_MAX_ESC_RULES];
  int n_escalation;
  /* Seed 000: an explicit priority is honoured both ways, except that a workflow (by name,
   * alias or category) listed here never runs below its tier when a caller names a lower one. */
  tb_workflow_tier_t priority_floors[TB_MAX_WORKFLOW_TIERS];
  int n_priority_floors;
  tb_service_limit_t service_limits[TB_MAX_SERVICE_LIMITS]; /* service_concurrency: */
  int n_service_limits;
  tb_job_type_t job_types[TB_MAX_JOB_TYPES]; /* job_types: */
  int n_job_types;
  char source_path[PATH_MAX]; /* file the config came from, for messages ("" = defaults) */
  /* The catalogue's domains, which partition every tier's subjects (tb.evt.<tier>.<domain>.>)
   * and its consumers. Not read from the file: set with tb_config_set_domains() once the
   * catalogue is loaded. */
  char domains[TB_MAX_DOMAINS][TB_NAME_MAX];
  int n_domains;
} tb_config_t;

/* Fills |cfg| with the table's defaults. Tiers, event tiers and presets are left empty: they come
 * only from the config file. workflow_tiers and escalation are marked "not set" (-1): the
 * built-in seed 000 tables apply until a file gives them. */
void tb_config_init(tb_config_t *cfg);

/* Parses the YAML file at |path| into |cfg| (which should hold defaults), then runs
 * tb_config_validate. On failure returns TB_ERR_CONFIG with a detail of the form
 * "FILE:LINE: tiers[2].concurrency: must be an integer between 1 and 10000 (got 'abc')" (the line
 * is left out where there is none, e.g. "FILE: tiers: at least one tier is required"); |cfg| is
 * then in an unspecified state. Unknown and repeated keys are errors. */
tb_status tb_config_load_file(tb_config_t *cfg, const char *path);

/* Applies TIERBUS_NATS_URL, TIERBUS_DB and TIERBUS_DATA_DIR when set and non-empty, with the
 * same checks as the file. TB_ERR_CONFIG with a detail naming the variable on failure. */
tb_status tb_config_apply_env(tb_config_t *cfg);

/* Sets one scalar option by its config name ("nats_url", "duplicate_window", ...), with the same
 * parsing and bounds as the file. TB_ERR_CONFIG with a detail on failure. */
tb_status tb_config_set(tb_config_t *cfg, const char *key, const char *value);

/* Cross-field checks: at least one tier, unique tier names, event tiers and presets name known
 * tiers. TB_ERR_CONFIG with a detail naming the file and key. */
tb_status tb_config_validate(const tb_config_t *cfg);

/* Index of the tier named |name|, or -1. Seed 000's names are accepted too, in any case: the
 * tier's name ("HIGH"), its task_queue ("default") and "<name>-priority" ("high-priority"); and
 * a seed 001 job priority number (tb_config_job_priority_tier): a tier's own name wins over a
 * number. Use cfg->tiers[i].name, never |name|, for anything stored or sent on. */
int tb_config_tier_index(const tb_config_t *cfg, const char *name);

/* Seed 001's JOB_PRIORITY numbers (CRITICAL 1, HIGH 3, NORMAL 5, LOW 7; lower is more urgent),
 * read through the tiers' job_priority: |text| (plain decimal) goes to the most urgent tier whose
 * job_priority is that number or larger, so 3 is the tier marked 3 and 2 goes there too, never
 * to a more urgent tier than asked. -1 when |text| is not a number or is larger than every
 * tier's. */
int tb_config_job_priority_tier(const tb_config_t *cfg, const char *text);

/* The AckWait of tier |t|'s consumers in ms: its redelivery_bound, else the config's. A worker
 * that dies holding a message releases it within this time, whatever the tier's timeout. */
int64_t tb_config_ack_wait_ms(const tb_config_t *cfg, int t);

/* The shortest age in ms past which a processed-message record may be pruned without breaking
 * dedupe: a copy of a message can still arrive as long as the stream may redeliver it or a
 * publisher may retry it, and the record is what recognises it. That is the longest redelivery
 * window (every delivery of the slowest tier timing out and waiting its longest backoff) or the
 * stream's duplicate window, whichever is longer (a retry inside it is stopped by the stream,
 * so the record must outlive it too). `db prune` and CLEANUP_OLD_JOBS both keep to it. */
int64_t tb_config_dedupe_horizon_ms(const tb_config_t *cfg);

/* The tier named |name| (a tier reference option's value), or the last tier when the config has
 * none by that name: a reference left at its default in a deployment with other tier names.
 * Borrowed from |cfg|, which must have at least one tier. */
const char *tb_config_tier_ref(const tb_config_t *cfg, const char *name);

/* Tier configured for |event| in event_tiers, or NULL when the catalogue default applies. */
const char *tb_config_event_tier(const tb_config_t *cfg, const char *event);

/* Copies the |n| domain names (each a valid subject token). TB_ERR_CONFIG naming the domain
 * when there are more than TB_MAX_DOMAINS or one is too long. */
tb_status tb_config_set_domains(tb_config_t *cfg, const char *const *names, int n);

/* Index of domain |name| in cfg->domains, or -1. */
int tb_config_domain_index(const tb_config_t *cfg, const char *name);
/* The escalation rules in force, in order: the file's, else the built-in seed 000 rules (a
 * built-in rule naming a tier this config lacks is kept; tb_wf_escalate skips it). Borrowed. */
const tb_esc_rule_t *tb_config_escalation(const tb_config_t *cfg, int *n);

/* Default tier of workflow |name| of category |category| (may be NULL) from workflow_tiers (the
 * file's, else the built-in seed 000 table): the name's entry, else the category's; NULL when
 * neither is listed or the tier is not configured. Borrowed. */
const char *tb_config_workflow_tier(const tb_config_t *cfg, const char *name, const char *category);

/* The floor priority_floors sets for workflow |name| (its name, alias or category: the caller
 * asks once per name it has), or NULL. Borrowed; the config's own tier name. */
const char *tb_config_priority_floor(const tb_config_t *cfg, const char *name);

/* The concurrency limit of command service |service| (service_concurrency), or 0 when it has
 * none. */
int tb_config_service_limit(const tb_config_t *cfg, const char *service);

/* The custom job type named |type| (job_types), or NULL. Borrowed from |cfg|. */
const tb_job_type_t *tb_config_job_type(const tb_config_t *cfg, const char *type);

/* Preset named |name|, or NULL. */
const tb_preset_t *tb_config_preset(const tb_config_t *cfg, const char *name);

/* Writes a commented example config generated from the option table (scalars with their
 * defaults and bounds), followed by |cfg|'s tiers, event tiers and presets. */
void tb_config_write_example(const tb_config_t *cfg, FILE *out);

/* Resolves the config file to load: |explicit_path| if non-NULL, else $TIERBUS_CONFIG, else
 * ./config/tierbus.yaml if it exists, else the source tree's config/tierbus.yaml. Borrowed. */
const char *tb_config_default_path(const char *explicit_path);

#endif
