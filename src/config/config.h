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
#define TB_URL_MAX 256

/* One priority tier. The order of tiers in the config is the priority order: index 0 is served
 * first. */
typedef struct tb_tier_config {
  char name[TB_NAME_MAX];
  int64_t timeout_ms; /* consumer AckWait; handlers past half of it send in-progress */
  int concurrency;    /* max messages in flight per worker process */
  int max_deliver;    /* deliveries before the message goes to the dead-letter stream */
  int64_t backoff_ms[TB_MAX_BACKOFF]; /* redelivery delays after a failed attempt */
  int n_backoff;
  int64_t aging_ms; /* a message ready this long rises one tier; 0 = never */
  int job_priority; /* seed 001 job priority number (1 = CRITICAL ... 9) */
} tb_tier_config_t;

/* Per-deployment override of the catalogue's default tier for one event type. */
typedef struct tb_event_tier {
  char event[64];
  char tier[TB_NAME_MAX];
} tb_event_tier_t;

/* A named worker preset: the tiers a `tierbus worker --preset NAME` subscribes to. */
typedef struct tb_preset {
  char name[TB_NAME_MAX];
  char tiers[TB_MAX_TIERS][TB_NAME_MAX];
  int n_tiers;
} tb_preset_t;

typedef struct tb_config {
  char nats_url[TB_URL_MAX];
  char db_path[PATH_MAX];
  char data_dir[PATH_MAX];
  char stream_prefix[TB_NAME_MAX]; /* streams are <prefix>_<TIER>, e.g. TB_CRITICAL */
  int64_t duplicate_window_ms;     /* JetStream dedupe window on every stream */
  int64_t max_payload_bytes;       /* larger events are refused at publish, DLQ'd at consume */
  int64_t stream_max_age_ms;       /* history kept for replay; 0 = forever */
  int commit_batch_max;            /* messages per SQLite transaction */
  int64_t commit_batch_us;         /* longest a batch stays open */
  int64_t nats_connect_timeout_ms; /* how long start-up keeps retrying an absent server */
  int log_level;                   /* tb_log_level */
  int email_workflows;             /* seed 001: 1 sends client journey emails, 0 skips them */
  int auto_generate_pdf;           /* seed 001: 1 generates a business plan's PDF */
  int scheduler;                   /* seed 001: 1 runs the cron scheduler in worker and dev */
  int64_t scheduler_grace_ms;      /* a slot this late still fires on time (else: catch-up) */
  int64_t schedule_retry_delay_ms; /* first retry of a failed task; doubles per retry */
  int backup_keep;                 /* database-backup keeps this many newest copies */
  tb_tier_config_t tiers[TB_MAX_TIERS];
  int n_tiers;
  tb_event_tier_t event_tiers[TB_MAX_EVENT_TIERS];
  int n_event_tiers;
  tb_preset_t presets[TB_MAX_PRESETS];
  int n_presets;
  char source_path[PATH_MAX]; /* file the config came from, for messages ("" = defaults) */
} tb_config_t;

/* Fills |cfg| with the table's defaults. Tiers, event tiers and presets are left empty: they come
 * only from the config file. */
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

/* Index of the tier named |name|, or -1. */
int tb_config_tier_index(const tb_config_t *cfg, const char *name);

/* Tier configured for |event| in event_tiers, or NULL when the catalogue default applies. */
const char *tb_config_event_tier(const tb_config_t *cfg, const char *event);

/* Preset named |name|, or NULL. */
const tb_preset_t *tb_config_preset(const tb_config_t *cfg, const char *name);

/* Writes a commented example config generated from the option table (scalars with their
 * defaults and bounds), followed by |cfg|'s tiers, event tiers and presets. */
void tb_config_write_example(const tb_config_t *cfg, FILE *out);

/* Resolves the config file to load: |explicit_path| if non-NULL, else $TIERBUS_CONFIG, else
 * ./config/tierbus.yaml if it exists, else the source tree's config/tierbus.yaml. Borrowed. */
const char *tb_config_default_path(const char *explicit_path);

#endif
