/* Configuration loading. One table of scalar options and one table of tier fields drive the
 * defaults, the YAML parser (libyaml's document API), the bounds checks, the environment and CLI
 * overrides and the example file, so an option is described in exactly one place. */
#include "config/config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/util.h"

#define MS_S 1000LL
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * MS_H)
#define KIB 1024LL
#define MIB (1024 * KIB)

/* Room for the dotted key path that a message quotes ("presets.critical.tiers"), and for an item
 * of a list under such a path ("presets.critical.tiers[3]"): the index, the part that tells which
 * item is wrong, is never what a full buffer cuts off. */
#define KEY_MAX 128
#define ITEM_KEY_MAX (KEY_MAX + 16)

/* Allowed characters of names that end up in subjects and stream names. */
#define CS_DIGITS "0123456789"
#define CS_LOWER "abcdefghijklmnopqrstuvwxyz"
#define CS_UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define CS_TIER CS_LOWER CS_DIGITS "_-"
#define CS_TIER_DESC "lowercase letters, digits, '_' or '-'"
#define CS_IDENT CS_LOWER CS_UPPER CS_DIGITS "_-"
#define CS_IDENT_DESC "letters, digits, '_' or '-'"
/* Credentials travel in nats-server's config file and in the CONNECT JSON, which cnats 3.4 builds
 * without escaping them: a '"' or '\\' there breaks the JSON and the server drops the
 * connection with a parse error. Printable ASCII without those and spaces is safe in both. */
#define CS_CREDENTIAL                                                                              \
  "!#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"
#define CS_CREDENTIAL_DESC "printable ASCII other than space, '\"' and '\\'"
/* Canonical event names follow their seeds: "CLIENT_CREATED", "workspace/priorities.sync". */
#define CS_EVENT CS_IDENT "/."
#define CS_EVENT_DESC "letters, digits, '_', '-', '/' or '.'"

/* ============================================================================================
 * The option tables
 * ========================================================================================== */

typedef enum opt_type {
  OPT_STRING,   /* char array: .min..size-1 characters, optionally from .charset */
  OPT_INT,      /* int or int64_t (by field size), plain decimal */
  OPT_BYTES,    /* size in bytes; k, m, g suffixes (with optional b / ib) are 1024-based */
  OPT_MS,       /* duration in ms, tb_duration_parse_ms text */
  OPT_US,       /* duration in us: "250us" or tb_duration_parse_ms text */
  OPT_LOGLEVEL, /* int holding a tb_log_level, by name */
  OPT_BOOL,     /* int 0 or 1, written true or false (YAML's core-schema spellings) */
  OPT_MS_LIST,  /* int64_t array of ms durations plus an int count at .count_offset */
} opt_type;

typedef struct opt {
  const char *name;
  opt_type type;
  size_t offset, size; /* the field inside tb_config_t or tb_tier_config_t */
  size_t count_offset; /* OPT_MS_LIST only */
  int64_t min, max;    /* numbers: value bounds (lists: per item); strings: .min is min length */
  const char *charset; /* OPT_STRING: allowed characters; NULL allows any */
  const char *charset_desc;
  bool required;   /* has no default: the file must give it */
  bool tier_ref;   /* OPT_STRING naming a tier: must be one of the config's tiers */
  bool secret;     /* OPT_STRING: never printed (errors, `config example` writes the default) */
  const char *def; /* default, as config text (lists: items separated by spaces) */
  const char *env; /* environment variable that overrides it, or NULL */
  const char *help;
} opt_t;

#define FIELD(T, f) .offset = offsetof(T, f), .size = sizeof(((T *)0)->f)
/* A numeric macro's value as default text, so that a default shared with C code is written once. */
#define STR_(x) #x
#define STR(x) STR_(x)

/* Every scalar option of tb_config_t, in the order the example file lists them. */
static const opt_t scalar_opts[] = {
    {.name = "nats_url",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_url),
     .min = 1,
     .def = "nats://127.0.0.1:4222",
     .env = "TIERBUS_NATS_URL",
     .help = "NATS server URL; separate the servers of one cluster with commas."},
    /* The locked bus (issue 11). One kind of credentials at most; validate() checks the pairs.
     * Why no default secret here: `tierbus dev` generates one per data directory, and every
     * command finds it there (src/bus/auth.c), so a config file never has to hold it. */
    {.name = "nats_user",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_user),
     .min = 0,
     .charset = CS_CREDENTIAL,
     .charset_desc = CS_CREDENTIAL_DESC,
     .def = "",
     .env = "TIERBUS_NATS_USER",
     .help = "NATS user name (with nats_password). `tierbus dev` starts its nats-server with\n"
             "these credentials; unset, it generates a password for user tierbus, kept in\n"
             "<data_dir>/nats-password (mode 0600), which every command then uses."},
    {.name = "nats_password",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_password),
     .min = 0,
     .charset = CS_CREDENTIAL,
     .charset_desc = CS_CREDENTIAL_DESC,
     .secret = true,
     .def = "",
     .env = "TIERBUS_NATS_PASSWORD",
     .help = "Password of nats_user. Prefer the environment variable to the file."},
    {.name = "nats_token",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_token),
     .min = 0,
     .charset = CS_CREDENTIAL,
     .charset_desc = CS_CREDENTIAL_DESC,
     .secret = true,
     .def = "",
     .env = "TIERBUS_NATS_TOKEN",
     .help = "NATS authentication token, instead of nats_user and nats_password."},
    {.name = "nats_creds",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_creds),
     .min = 0,
     .def = "",
     .env = "TIERBUS_NATS_CREDS",
     .help = "NATS credentials file (user JWT and NKey seed, as `nsc` writes it) for a server in\n"
             "operator mode; not for the server `tierbus dev` starts."},
    {.name = "nats_tls_ca",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_tls_ca),
     .min = 0,
     .def = "",
     .env = "TIERBUS_NATS_TLS_CA",
     .help = "PEM file of the CAs that sign the NATS server's certificate. Setting it (or\n"
             "nats_tls_cert, or a tls:// URL, which trusts the system's CAs) makes every\n"
             "connection use TLS."},
    {.name = "nats_tls_cert",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_tls_cert),
     .min = 0,
     .def = "",
     .env = "TIERBUS_NATS_TLS_CERT",
     .help = "PEM client certificate (chain) for a server that verifies clients; needs\n"
             "nats_tls_key."},
    {.name = "nats_tls_key",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_tls_key),
     .min = 0,
     .def = "",
     .env = "TIERBUS_NATS_TLS_KEY",
     .help = "PEM private key of nats_tls_cert."},
    {.name = "nats_tls_hostname",
     .type = OPT_STRING,
     FIELD(tb_config_t, nats_tls_hostname),
     .min = 0,
     .charset = CS_CREDENTIAL,
     .charset_desc = CS_CREDENTIAL_DESC,
     .def = "",
     .help = "Name the server's certificate must carry; empty = the host of the first URL in\n"
             "nats_url (an IP address there checks the CA chain only: set a name here)."},
    {.name = "db_path",
     .type = OPT_STRING,
     FIELD(tb_config_t, db_path),
     .min = 1,
     .def = "var/tierbus.db",
     .env = "TIERBUS_DB",
     .help = "SQLite database file. A relative path is relative to the working directory of\n"
             "the tierbus process, not to this file."},
    {.name = "data_dir",
     .type = OPT_STRING,
     FIELD(tb_config_t, data_dir),
     .min = 1,
     .def = "var",
     .env = "TIERBUS_DATA_DIR",
     .help = "Directory for local files (backups, exports); relative like db_path."},
    {.name = "stream_prefix",
     .type = OPT_STRING,
     FIELD(tb_config_t, stream_prefix),
     .min = 1,
     .charset = CS_IDENT,
     .charset_desc = CS_IDENT_DESC,
     .def = "TB",
     .help = "JetStream streams are named <prefix>_<TIER>_<DOMAIN>, e.g. TB_CRITICAL_CRM."},
    {.name = "duplicate_window",
     .type = OPT_MS,
     FIELD(tb_config_t, duplicate_window_ms),
     .min = 1 * MS_S,
     .max = 24 * MS_H,
     .def = "2m",
     .help = "JetStream dedupe window: a repeated Nats-Msg-Id inside it is dropped."},
    {.name = "replicas",
     .type = OPT_INT,
     FIELD(tb_config_t, replicas),
     .min = 1,
     .max = 5,
     .def = "1",
     .help = "Copies JetStream keeps of every tier, command and dead-letter stream (and so of\n"
             "their consumers). More than 1 needs a NATS cluster with at least that many\n"
             "JetStream servers; `tierbus init` applies it to existing streams too."},
    {.name = "max_payload",
     .type = OPT_BYTES,
     FIELD(tb_config_t, max_payload_bytes),
     .min = 1 * KIB,
     .max = 64 * MIB,
     .def = "1048576",
     .help = "Largest event payload: refused at publish, dead-lettered at consume.\n"
             "Accepts k, m and g suffixes (1024-based)."},
    {.name = "stream_max_age",
     .type = OPT_MS,
     FIELD(tb_config_t, stream_max_age_ms),
     .min = 0,
     .max = 3650 * MS_D,
     .def = "0s",
     .help = "How long the streams keep history for replay; 0s keeps it forever."},
    {.name = "commit_batch_max",
     .type = OPT_INT,
     FIELD(tb_config_t, commit_batch_max),
     .min = 1,
     .max = 100000,
     .def = "256",
     .help = "Most messages committed in one SQLite transaction."},
    {.name = "prefetch",
     .type = OPT_INT,
     FIELD(tb_config_t, prefetch),
     .min = 0,
     .max = 100000,
     .def = "128",
     .help = "Messages of one tier a worker holds fetched and ready, when more than the\n"
             "tier's concurrency: enough to cover a pull request's round trip at full speed.\n"
             "0 makes each tier's concurrency the only bound (a fraction of the throughput)."},
    {.name = "prefetch_yield",
     .type = OPT_INT,
     FIELD(tb_config_t, prefetch_yield),
     .min = 0,
     .max = 100000,
     .def = "32",
     .help = "Messages of each lower tier a worker holds ready while first-tier messages\n"
             "flow (one fetched within the last second), when more than the tier's\n"
             "concurrency and less than prefetch. Smaller leaves a core free for the first\n"
             "tier: its latency falls and a backlog drains slower (bench/RESULTS.md)."},
    {.name = "commit_batch_time",
     .type = OPT_US,
     FIELD(tb_config_t, commit_batch_us),
     .min = 0,
     .max = 1000 * 1000,
     .def = "2ms",
     .help = "Longest a commit batch stays open waiting for more messages (us, ms or s), and\n"
             "its longest run once it holds a message of the first (most urgent) tier."},
    /* Why a second bound: a commit costs about the same whatever the batch holds (0.3-0.5 ms
     * here), so 2 ms of workflow steps (5-6 messages at 0.4 ms each) spent a quarter of the
     * executor on commits; while work keeps coming nobody waits on a shorter batch except the
     * urgent tier, which keeps commit_batch_time (issue 9: 714 -> 899 workflows/s at 8 ms). */
    {.name = "commit_batch_busy_time",
     .type = OPT_US,
     FIELD(tb_config_t, commit_batch_busy_us),
     .min = 0,
     .max = 1000 * 1000,
     .def = "25ms",
     .help = "Longest a commit batch runs while ready messages keep coming and none of them\n"
             "is of the first tier (never shorter than commit_batch_time): a commit costs\n"
             "about the same whatever it holds, so slow handlers commit less often."},
    /* Why apart from the tiers' timeouts: the AckWait is how long a message held by a worker that
     * died stays stranded, and the seed's handler timeouts (up to 60 min) made that wait far too
     * long. Live workers renew what they hold with in-progress acks well within it. */
    {.name = "redelivery_bound",
     .type = OPT_MS,
     FIELD(tb_config_t, redelivery_bound_ms),
     .min = 1 * MS_S,
     .max = 1 * MS_H,
     .def = "30s",
     .help = "Longest a message held by a worker that died waits before another worker gets\n"
             "it: the consumers' AckWait. Live workers renew what they hold (in-progress acks)\n"
             "every third of it, so a tier's timeout may be longer. `tierbus init` updates the\n"
             "consumers."},
    {.name = "nats_connect_timeout",
     .type = OPT_MS,
     FIELD(tb_config_t, nats_connect_timeout_ms),
     .min = 0,
     .max = 1 * MS_H,
     .def = "10s",
     .help = "How long start-up keeps retrying an absent NATS server; 0s tries once."},
    /* `publish --file` and `trigger --batch` publish asynchronously; acks lost with a server
     * killed under them never come, so each publish has an ack wait of its own, and what has
     * none by then is sent again under its id (the stream's dedupe keeps one copy). */
    {.name = "publish_ack_wait",
     .type = OPT_MS,
     FIELD(tb_config_t, publish_ack_wait_ms),
     .min = 100,
     .max = 10 * MS_M,
     .def = "5s",
     .help = "A message of a batch publish (`publish --file`, `trigger --batch`) not\n"
             "acknowledged within this is sent again under its id (the stream keeps one copy)."},
    {.name = "publish_give_up",
     .type = OPT_MS,
     FIELD(tb_config_t, publish_give_up_ms),
     .min = 1 * MS_S,
     .max = 1 * MS_H,
     .def = "30s",
     .help = "A batch publish ends, exit 1, once the server has not answered for this long;\n"
             "what has no ack by then is reported as not acknowledged."},
    {.name = "http_port",
     .type = OPT_INT,
     FIELD(tb_config_t, http_port),
     .min = 0,
     .max = 65535,
     .def = "8080",
     .help = "Port of the HTTP API and metrics (`tierbus dev`, `tierbus api`); 0 = dev serves\n"
             "none."},
    {.name = "http_bind",
     .type = OPT_STRING,
     FIELD(tb_config_t, http_bind),
     .min = 1,
     .def = "127.0.0.1",
     .help = "IPv4 address the HTTP API listens on. Any other than loopback needs api_token."},
    /* Why a bound on both sides: a route that waits (a publish for its stream ack) holds its pool
     * thread, so the pool bounds the requests in progress; libmicrohttpd splits the connection
     * limit (1024) among the threads, and past 256 a thread would serve fewer than 4
     * connections. */
    {.name = "http_threads",
     .type = OPT_INT,
     FIELD(tb_config_t, http_threads),
     .min = 1,
     .max = 256,
     .def = STR(TB_HTTP_DEFAULT_THREADS),
     .help = "Threads of the HTTP API's pool (`tierbus dev`, `tierbus api`; --http-threads):\n"
             "the requests it works on at once, since a publish holds its thread until the\n"
             "stream acks. More helps many concurrent publishers on more cores."},
    {.name = "api_token",
     .type = OPT_STRING,
     FIELD(tb_config_t, api_token),
     .min = 0,
     .def = "",
     .env = "TIERBUS_API_TOKEN",
     .help = "Bearer token every /api call must carry (compared in constant time); empty = no\n"
             "token, and the API then serves loopback only."},
    {.name = "log_level",
     .type = OPT_LOGLEVEL,
     FIELD(tb_config_t, log_level),
     .min = TB_LOG_DEBUG,
     .max = TB_LOG_OFF,
     .def = "info",
     .help = "Least severe log line written."},
    {.name = "email_workflows",
     .type = OPT_BOOL,
     FIELD(tb_config_t, email_workflows),
     .min = 0,
     .max = 1,
     .def = "true",
     .env = "TIERBUS_EMAIL_WORKFLOWS",
     .help = "Client journey emails (welcome, notification, reminder, celebration); false skips\n"
             "every email step (seed 001's ENABLE_EMAIL_WORKFLOWS)."},
    {.name = "auto_generate_pdf",
     .type = OPT_BOOL,
     FIELD(tb_config_t, auto_generate_pdf),
     .min = 0,
     .max = 1,
     .def = "true",
     .env = "TIERBUS_AUTO_GENERATE_PDF",
     .help = "Generate a PDF when a business plan is completed (seed 001's AUTO_GENERATE_PDF)."},
    {.name = "enrichment_batch_max",
     .type = OPT_INT,
     FIELD(tb_config_t, enrichment_batch_max),
     .min = 1,
     .max = 100,
     .def = "100",
     .help = "Most pending enrichment jobs one subscriber-enrichment run claims and submits\n"
             "(seed 003's batches of at most 100)."},
    /* Why a bound at all: a run whose branch steps loop would otherwise go round inside one
     * handler call forever, holding the batch's transaction and its tier slot. */
    {.name = "workflow_steps_per_message",
     .type = OPT_INT,
     FIELD(tb_config_t, workflow_steps_per_message),
     .min = 1,
     .max = 1000,
     .def = "32",
     .help = "Most steps of one workflow run that one message runs: after a run or branch step\n"
             "succeeds, the next step runs in the same transaction instead of in a message of\n"
             "its own, up to this many. Commands, waits, sleeps, retries and tier changes always\n"
             "cross the bus. The bound keeps a loop of branch steps from holding a transaction\n"
             "and its tier slot; 1 = a message per step."},
    {.name = "max_concurrent_workflows",
     .type = OPT_INT,
     FIELD(tb_config_t, max_concurrent_workflows),
     .min = 0,
     .max = 100000,
     .def = "0",
     .help = "Per worker process: the most workflow steps and events in flight at once, across\n"
             "all its tiers (seed 004's max_concurrent_workflows); 0 = only the tiers' own\n"
             "concurrency. A preset or `worker --max-concurrent-workflows` overrides it."},
    /* Seed 002: the tier that carries a repository's sync jobs, by repository priority. The
     * design's tier table: high -> high, medium -> normal, low -> low. */
    {.name = "repo_tier_high",
     .type = OPT_STRING,
     FIELD(tb_config_t, repo_tier_high),
     .min = 1,
     .charset = CS_TIER,
     .charset_desc = CS_TIER_DESC,
     .tier_ref = true,
     .def = "high",
     .help = "Tier of the sync jobs of a high priority repository (in a workspace, score 100)."},
    {.name = "repo_tier_medium",
     .type = OPT_STRING,
     FIELD(tb_config_t, repo_tier_medium),
     .min = 1,
     .charset = CS_TIER,
     .charset_desc = CS_TIER_DESC,
     .tier_ref = true,
     .def = "normal",
     .help = "Tier of the sync jobs of a medium priority repository (tracked only, score 50)."},
    {.name = "repo_tier_low",
     .type = OPT_STRING,
     FIELD(tb_config_t, repo_tier_low),
     .min = 1,
     .charset = CS_TIER,
     .charset_desc = CS_TIER_DESC,
     .tier_ref = true,
     .def = "low",
     .help = "Tier of the sync jobs of a low priority repository (marked low, score 25)."},
    {.name = "workspace_add_sync",
     .type = OPT_BOOL,
     FIELD(tb_config_t, workspace_add_sync),
     .min = 0,
     .max = 1,
     .def = "true",
     .help = "Seed 002's hook: a repository added to a workspace also queues a full priority\n"
             "sync (workspace/priorities.sync, reason workspace_add), debounced by\n"
             "priority_sync_debounce."},
    {.name = "priority_sync_debounce",
     .type = OPT_MS,
     FIELD(tb_config_t, priority_sync_debounce_ms),
     .min = 0,
     .max = MS_H,
     .def = "5s",
     .help = "A repository added to a workspace also queues a full priority sync\n"
             "(workspace/priorities.sync, reason workspace_add, seed 002), this long after the\n"
             "first add of a burst: the adds until then share that one sync. 0s queues one per\n"
             "add, at once."},
    {.name = "escalation_sweep",
     .type = OPT_MS,
     FIELD(tb_config_t, escalation_sweep_ms),
     .min = 0,
     .max = 24 * MS_H,
     .def = "1m",
     .help = "How often each worker looks for workflow runs stuck past an escalation rule's\n"
             "'stuck' threshold (seed 000); 0s turns the sweeper off."},
    {.name = "run_timeout",
     .type = OPT_STRING,
     FIELD(tb_config_t, run_timeout),
     .min = 1,
     .charset = CS_LOWER,
     .charset_desc = "escalate, fail or off",
     .def = "escalate",
     .help = "What the sweeper does to a workflow run past its tier's timeout (seed 000: the\n"
             "timeout bounds the whole run; time parked in a wait or a sleep is not counted):\n"
             "escalate (one tier up with that tier's timeout, once; past that, fail), fail, or\n"
             "off. Checked every escalation_sweep."},
    {.name = "breaker_failures",
     .type = OPT_INT,
     FIELD(tb_config_t, breaker_failures),
     .min = 0,
     .max = 1000,
     .def = "5",
     .help = "Consecutive failures (a 5xx, 408 or 429 reply, or none before the step's timeout)\n"
             "within breaker_window that open a command service's circuit breaker (seed 000):\n"
             "its commands are then held, not failed, for breaker_cooldown. 0 turns it off."},
    {.name = "breaker_window",
     .type = OPT_MS,
     FIELD(tb_config_t, breaker_window_ms),
     .min = 1 * MS_S,
     .max = 24 * MS_H,
     .def = "1m",
     .help =
         "The window in which breaker_failures must fall; a failure after it starts a new count."},
    {.name = "breaker_cooldown",
     .type = OPT_MS,
     FIELD(tb_config_t, breaker_cooldown_ms),
     .min = 100,
     .max = 24 * MS_H,
     .def = "30s",
     .help = "How long an open breaker holds its service's commands; then one goes through, and\n"
             "its failure opens the breaker again at once."},
    {.name = "scheduler",
     .type = OPT_BOOL,
     FIELD(tb_config_t, scheduler),
     .min = 0,
     .max = 1,
     .def = "true",
     .env = "TIERBUS_SCHEDULER",
     .help = "Run the cron scheduler inside `tierbus worker` and `tierbus dev` (seed 001's\n"
             "ENABLE_SCHEDULER). Any number of processes may run it: one leads at a time\n"
             "(scheduler_lease_ttl), and each slot fires once even if two ever did."},
    {.name = "scheduler_lease_ttl",
     .type = OPT_MS,
     FIELD(tb_config_t, scheduler_lease_ttl_ms),
     .min = 3 * MS_S,
     .max = 10 * 60 * MS_S,
     .def = "15s",
     .help = "Of the processes that run the scheduler, one leads: it holds a lease in the\n"
             "<stream_prefix>_LEASES key-value bucket, renewed every second. When the leader\n"
             "dies, another takes over this long after the leader's last renewal."},
    {.name = "scheduler_grace",
     .type = OPT_MS,
     FIELD(tb_config_t, scheduler_grace_ms),
     .min = 1 * MS_S,
     .max = 24 * MS_H,
     .def = "1m",
     .help = "A slot found this late still fires as scheduled; an older one was missed and\n"
             "follows its task's catch-up policy (skip, or once)."},
    {.name = "schedule_retry_delay",
     .type = OPT_MS,
     FIELD(tb_config_t, schedule_retry_delay_ms),
     .min = 1,
     .max = 24 * MS_H,
     .def = "30s",
     .help = "Delay before the first retry of a failed scheduled task; each of the 3 retries\n"
             "waits twice as long as the one before."},
    {.name = "backup_keep",
     .type = OPT_INT,
     FIELD(tb_config_t, backup_keep),
     .min = 1,
     .max = 10000,
     .def = "7",
     .help = "How many database backups (<data_dir>/backups) the database-backup task keeps."},
    /* Why periodic: a rebuild replays the log from a snapshot's stream positions instead of
     * from the start of retained history, so the interval bounds how much a rebuild replays. */
    {.name = "snapshot_interval",
     .type = OPT_MS,
     FIELD(tb_config_t, snapshot_interval_ms),
     .min = 0,
     .max = 30 * MS_D,
     .def = "1h",
     .help = "How often `tierbus worker` and `tierbus dev` take a snapshot of the database\n"
             "(SQLite online backup, in the background) with every tier stream's position, into\n"
             "<data_dir>/snapshots; `tierbus rebuild --from-snapshot` restores the newest and\n"
             "replays only what came after it. However many workers share the database, one\n"
             "snapshot is taken per interval. 0s takes none (at least 1s otherwise)."},
    {.name = "snapshot_keep",
     .type = OPT_INT,
     FIELD(tb_config_t, snapshot_keep),
     .min = 1,
     .max = 1000,
     .def = "3",
     .help = "How many snapshots (<data_dir>/snapshots) are kept; older ones are deleted."},
};

/* Every field of one tier, in the order the example file writes them. */
static const opt_t tier_opts[] = {
    {.name = "name",
     .type = OPT_STRING,
     FIELD(tb_tier_config_t, name),
     .min = 1,
     .charset = CS_TIER,
     .charset_desc = CS_TIER_DESC,
     .required = true,
     .help = "used in subjects (tb.evt.<name>.>) and stream names"},
    {.name = "task_queue",
     .type = OPT_STRING,
     FIELD(tb_tier_config_t, task_queue),
     .min = 0,
     .charset = CS_TIER,
     .charset_desc = CS_TIER_DESC,
     .def = "",
     .help = "another name for it wherever a tier is accepted (seed 000's task queue)"},
    {.name = "timeout",
     .type = OPT_MS,
     FIELD(tb_tier_config_t, timeout_ms),
     .min = 1 * MS_S,
     .max = 24 * MS_H,
     .def = "5m",
     .help = "handler time limit; a handler past it loses its lease (no more in-progress acks)"},
    {.name = "concurrency",
     .type = OPT_INT,
     FIELD(tb_tier_config_t, concurrency),
     .min = 1,
     .max = 10000,
     .def = "10",
     .help = "messages in flight per worker process"},
    {.name = "max_deliver",
     .type = OPT_INT,
     FIELD(tb_tier_config_t, max_deliver),
     .min = 1,
     .max = 1000,
     .def = "5",
     .help = "deliveries before the dead-letter stream"},
    {.name = "backoff",
     .type = OPT_MS_LIST,
     FIELD(tb_tier_config_t, backoff_ms),
     .count_offset = offsetof(tb_tier_config_t, n_backoff),
     .min = 1,
     .max = 24 * MS_H,
     .def = "1s 5s 30s",
     .help = "redelivery delays; the last repeats; fewer than max_deliver"},
    {.name = "aging",
     .type = OPT_MS,
     FIELD(tb_tier_config_t, aging_ms),
     .min = 0,
     .max = 24 * MS_H,
     .def = "0s",
     .help = "waiting this long raises a message one tier; 0s = never"},
    {.name = "job_priority",
     .type = OPT_INT,
     FIELD(tb_tier_config_t, job_priority),
     .min = 1,
     .max = 100,
     .def = "5",
     .help = "job priority number (CRITICAL 1, HIGH 3, NORMAL 5, LOW 7), taken for the tier"},
    /* Retention of the tier's streams: what a replay or a rebuild can still read. The first
     * limit reached discards the oldest messages (JetStream limits retention). */
    {.name = "max_age",
     .type = OPT_MS,
     FIELD(tb_tier_config_t, max_age_ms),
     .min = 0,
     .max = 3650 * MS_D,
     .def = "0s",
     .help = "history kept per stream; 0s = stream_max_age"},
    {.name = "max_bytes",
     .type = OPT_BYTES,
     FIELD(tb_tier_config_t, max_bytes),
     .min = 0,
     .max = (int64_t)1 << 50,
     .def = "0",
     .help = "bytes kept per stream, oldest dropped first; 0 = no limit"},
    {.name = "max_msgs",
     .type = OPT_INT,
     FIELD(tb_tier_config_t, max_msgs),
     .min = 0,
     .max = (int64_t)1 << 50,
     .def = "0",
     .help = "messages kept per stream, oldest dropped first; 0 = no limit"},
    {.name = "redelivery_bound",
     .type = OPT_MS,
     FIELD(tb_tier_config_t, redelivery_bound_ms),
     .min = 0,
     .max = 1 * MS_H,
     .def = "0s",
     .help = "this tier's redelivery_bound (consumer AckWait); 0s = the global one"},
};

/* Every field of one escalation rule, in the order the example file writes them. */
static const opt_t rule_opts[] = {
    {.name = "name",
     .type = OPT_STRING,
     FIELD(tb_esc_rule_t, name),
     .min = 1,
     .charset = CS_IDENT,
     .charset_desc = CS_IDENT_DESC,
     .required = true,
     .help = "recorded with every escalation the rule causes"},
    {.name = "failed_retry",
     .type = OPT_BOOL,
     FIELD(tb_esc_rule_t, failed_retry),
     .min = 0,
     .max = 1,
     .def = "false",
     .help = "true: only a retry of a failed run"},
    {.name = "customer_facing",
     .type = OPT_BOOL,
     FIELD(tb_esc_rule_t, customer_facing),
     .min = 0,
     .max = 1,
     .def = "false",
     .help = "true: only a customer-facing run"},
    {.name = "business_impact",
     .type = OPT_STRING,
     FIELD(tb_esc_rule_t, business_impact),
     .min = 0,
     .charset = CS_LOWER,
     .charset_desc = "lowercase letters",
     .def = "",
     .help = "only a run of this business impact (low, medium, high)"},
    {.name = "stuck",
     .type = OPT_MS,
     FIELD(tb_esc_rule_t, stuck_ms),
     .min = 0,
     .max = 3650 * MS_D,
     .def = "0s",
     .help = "only a run without progress for longer than this; 0s = any"},
    {.name = "tier",
     .type = OPT_STRING,
     FIELD(tb_esc_rule_t, tier),
     .min = 1,
     .charset = CS_TIER,
     .charset_desc = CS_TIER_DESC,
     .required = true,
     .help = "the tier the run goes to (at least)"},
};

/* Seed 000's tables, in force while the file does not give workflow_tiers / escalation. */
static const tb_workflow_tier_t builtin_workflow_tiers[] = {
    {"customer-support", "high"},       {"lead-attention", "high"},
    {"email-sending", "high"}, /* seed 000: "Email/WhatsApp sending" is a high use case */
    {"daily-stand-up", "normal"},       {"campaign-building", "low"},
    {"daily-operations", "background"},
};
static const tb_esc_rule_t builtin_escalation[] = {
    {.name = "failed-retry-customer-facing",
     .failed_retry = 1,
     .customer_facing = 1,
     .tier = "critical"},
    {.name = "stuck-24h", .stuck_ms = 24 * MS_H, .tier = "critical"},
    {.name = "high-business-impact", .business_impact = "high", .tier = "critical"},
    {.name = "customer-facing", .customer_facing = 1, .tier = "high"},
    {.name = "failed-retry", .failed_retry = 1, .tier = "high"},
    {.name = "stuck-6h", .stuck_ms = 6 * MS_H, .tier = "high"},
};

#define N_SCALARS TB_COUNTOF(scalar_opts)
#define N_TIER_OPTS TB_COUNTOF(tier_opts)
#define N_RULE_OPTS TB_COUNTOF(rule_opts)

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

/* ============================================================================================
 * Values: parse, check, format
 * ========================================================================================== */

static int64_t get_num(const void *base, const opt_t *o) {
  const char *p = (const char *)base + o->offset;
  return o->size == sizeof(int) ? *(const int *)p : *(const int64_t *)p;
}

static void put_num(void *base, const opt_t *o, int64_t v) {
  char *p = (char *)base + o->offset;
  if (o->size == sizeof(int))
    *(int *)p = (int)v;
  else
    *(int64_t *)p = v;
}

static int *list_count(void *base, const opt_t *o) {
  return (int *)((char *)base + o->count_offset);
}

static int list_cap(const opt_t *o) {
  return (int)(o->size / sizeof(int64_t));
}

/* "0s", "250ms", "2m", "1h", "3650d": the largest unit that divides exactly, so the text parses
 * back to the same value. Days only past 24h because "24h" reads better than "1d". */
static void fmt_ms(int64_t ms, char *buf, size_t cap) {
  if (ms == 0)
    snprintf(buf, cap, "0s");
  else if (ms % MS_D == 0 && ms > MS_D)
    snprintf(buf, cap, "%lldd", (long long)(ms / MS_D));
  else if (ms % MS_H == 0)
    snprintf(buf, cap, "%lldh", (long long)(ms / MS_H));
  else if (ms % MS_M == 0)
    snprintf(buf, cap, "%lldm", (long long)(ms / MS_M));
  else if (ms % MS_S == 0)
    snprintf(buf, cap, "%llds", (long long)(ms / MS_S));
  else
    snprintf(buf, cap, "%lldms", (long long)ms);
}

static void fmt_us(int64_t us, char *buf, size_t cap) {
  if (us % 1000 == 0)
    fmt_ms(us / 1000, buf, cap);
  else
    snprintf(buf, cap, "%lldus", (long long)us);
}

/* A number as config text, for messages and the example file. */
static void fmt_num(const opt_t *o, int64_t v, char *buf, size_t cap) {
  switch (o->type) {
  case OPT_MS:
  case OPT_MS_LIST:
    fmt_ms(v, buf, cap);
    break;
  case OPT_US:
    fmt_us(v, buf, cap);
    break;
  case OPT_LOGLEVEL:
    snprintf(buf, cap, "%s", v >= 0 && v < (int64_t)TB_COUNTOF(level_names) ? level_names[v] : "?");
    break;
  case OPT_BOOL:
    snprintf(buf, cap, "%s", v == 0 ? "false" : v == 1 ? "true" : "?");
    break;
  default:
    snprintf(buf, cap, "%lld", (long long)v);
  }
}

/* What a valid value looks like: "an integer between 1 and 10000". */
static void describe(const opt_t *o, char *buf, size_t cap) {
  char lo[32], hi[32];
  fmt_num(o, o->min, lo, sizeof(lo));
  fmt_num(o, o->max, hi, sizeof(hi));
  switch (o->type) {
  case OPT_STRING:
    snprintf(buf, cap, "%lld to %zu characters%s%s", (long long)o->min, o->size - 1,
             o->charset ? " of " : "", o->charset ? o->charset_desc : "");
    break;
  case OPT_INT:
    snprintf(buf, cap, "an integer between %s and %s", lo, hi);
    break;
  case OPT_BYTES:
    snprintf(buf, cap, "a size in bytes between %s and %s", lo, hi);
    break;
  case OPT_MS:
  case OPT_US:
  case OPT_MS_LIST:
    snprintf(buf, cap, "a duration between %s and %s", lo, hi);
    break;
  case OPT_LOGLEVEL:
    snprintf(buf, cap, "one of debug, info, warn, error, off");
    break;
  case OPT_BOOL:
    snprintf(buf, cap, "true or false");
    break;
  }
}

static void range_msg(const opt_t *o, const char *shown, char *msg, size_t cap) {
  char want[160];
  describe(o, want, sizeof(want));
  snprintf(msg, cap, "must be %s (got '%s')", want, shown);
}

/* A decimal integer at the start of |text|: an optional '-', then digits (no space, no '+').
 * *end receives where the digits stop, for the caller to check or to read a suffix from. On
 * failure (no digits, out of range) returns false; *out and *end are still set (0 and |text|
 * when there are no digits), so a caller may read them on any path. */
static bool parse_int(const char *text, const char **end, long long *out) {
  const char *p = text[0] == '-' ? text + 1 : text;
  *out = 0;
  *end = text;
  if (*p < '0' || *p > '9') return false;
  errno = 0;
  char *e;
  *out = strtoll(text, &e, 10);
  *end = e;
  return errno == 0;
}

/* "1048576", "64k", "1MiB", "2gb": suffixes are case-insensitive and 1024-based. */
static bool parse_bytes(const char *text, int64_t *out) {
  static const struct {
    const char *suffix;
    int64_t mult;
  } units[] = {{"", 1},           {"b", 1},           {"k", KIB},         {"kb", KIB},
               {"kib", KIB},      {"m", MIB},         {"mb", MIB},        {"mib", MIB},
               {"g", 1024 * MIB}, {"gb", 1024 * MIB}, {"gib", 1024 * MIB}};
  const char *end;
  long long v;
  if (!parse_int(text, &end, &v) || v < 0) return false;
  for (size_t i = 0; i < TB_COUNTOF(units); i++) {
    if (strcasecmp(end, units[i].suffix) != 0) continue;
    if (v > INT64_MAX / units[i].mult) return false;
    *out = v * units[i].mult;
    return true;
  }
  return false;
}

/* YAML 1.2 core schema booleans: 1 for true, 0 for false, -1 for anything else. */
static int bool_parse(const char *text) {
  static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False", "FALSE"};
  for (size_t i = 0; i < TB_COUNTOF(t); i++) {
    if (strcmp(text, t[i]) == 0) return 1;
    if (strcmp(text, f[i]) == 0) return 0;
  }
  return -1;
}

/* Parses |text| as one value (one item for lists) of a numeric or log-level option and checks
 * its bounds. On failure returns false with the reason in |msg|. */
static bool parse_value(const opt_t *o, const char *text, int64_t *out, char *msg, size_t cap) {
  int64_t v = 0;
  bool ok = true;
  switch (o->type) {
  case OPT_INT: {
    const char *end;
    long long ll;
    ok = parse_int(text, &end, &ll) && *end == '\0';
    v = ll;
    break;
  }
  case OPT_BYTES:
    ok = parse_bytes(text, &v);
    break;
  case OPT_LOGLEVEL:
    v = tb_log_level_parse(text);
    ok = v >= 0;
    break;
  case OPT_BOOL:
    v = bool_parse(text);
    ok = v >= 0;
    break;
  case OPT_US: {
    size_t n = strlen(text);
    if (n > 2 && strcmp(text + n - 2, "us") == 0) {
      const char *end;
      long long ll;
      if (!parse_int(text, &end, &ll) || strcmp(end, "us") != 0 || ll < 0) {
        snprintf(msg, cap, "duration '%s': expected a number with a unit (us, ms, s, m, h, d)",
                 text);
        return false;
      }
      v = ll;
      break;
    }
    __attribute__((fallthrough)); /* anything not in us is milliseconds text */
  }
  case OPT_MS:
  case OPT_MS_LIST:
    if (tb_duration_parse_ms(text, &v) != TB_OK) {
      snprintf(msg, cap, "%s", tb_errdetail());
      return false;
    }
    if (o->type == OPT_US) {
      if (v > INT64_MAX / 1000) {
        snprintf(msg, cap, "duration '%s': out of range", text);
        return false;
      }
      v *= 1000;
    }
    break;
  case OPT_STRING:
    ok = false;
    break;
  }
  if (!ok || v < o->min || v > o->max) {
    range_msg(o, text, msg, cap);
    return false;
  }
  *out = v;
  return true;
}

static bool check_string(const opt_t *o, const char *s, char *msg, size_t cap) {
  size_t n = strnlen(s, o->size);
  if (n < (size_t)o->min || n >= o->size) {
    char want[160];
    describe(o, want, sizeof(want));
    snprintf(msg, cap, "must be %s (got %zu characters)", want, n);
    return false;
  }
  if (o->charset && strspn(s, o->charset) != n) {
    if (o->secret)
      snprintf(msg, cap, "must contain only %s (character %zu is not; the value is not shown)",
               o->charset_desc, strspn(s, o->charset) + 1);
    else
      snprintf(msg, cap, "must contain only %s (got '%s')", o->charset_desc, s);
    return false;
  }
  return true;
}

/* Sets a scalar (non-list) option from config text. On failure the field is unchanged and
 * |msg| holds the reason. */
static bool set_text(void *base, const opt_t *o, const char *text, char *msg, size_t cap) {
  if (o->type == OPT_STRING) {
    /* Length first: an over-long value is refused, never truncated into the field. */
    size_t n = strlen(text);
    if (n >= o->size) {
      char want[160];
      describe(o, want, sizeof(want));
      snprintf(msg, cap, "must be %s (got %zu characters)", want, n);
      return false;
    }
    if (!check_string(o, text, msg, cap)) return false;
    char *field = (char *)base + o->offset;
    memset(field, 0, o->size); /* zero padding keeps configs comparable with memcmp */
    memcpy(field, text, n);
    return true;
  }
  int64_t v;
  if (!parse_value(o, text, &v, msg, cap)) return false;
  put_num(base, o, v);
  return true;
}

/* Checks a field already in a struct (filled by the parser or by code). */
static bool check_field(const void *base, const opt_t *o, char *msg, size_t cap) {
  char shown[64];
  if (o->type == OPT_STRING) return check_string(o, (const char *)base + o->offset, msg, cap);
  if (o->type == OPT_MS_LIST) {
    int n = *list_count((void *)base, o);
    if (n < 0 || n > list_cap(o)) {
      snprintf(msg, cap, "must have at most %d items (got %d)", list_cap(o), n);
      return false;
    }
    const int64_t *items = (const int64_t *)((const char *)base + o->offset);
    for (int i = 0; i < n; i++) {
      if (items[i] >= o->min && items[i] <= o->max) continue;
      fmt_num(o, items[i], shown, sizeof(shown));
      char item[400];
      range_msg(o, shown, item, sizeof(item));
      snprintf(msg, cap, "item %d: %s", i, item);
      return false;
    }
    return true;
  }
  int64_t v = get_num(base, o);
  if (v >= o->min && v <= o->max) return true;
  if (o->type == OPT_LOGLEVEL || o->type == OPT_BOOL)
    snprintf(shown, sizeof(shown), "%lld", (long long)v);
  else
    fmt_num(o, v, shown, sizeof(shown));
  range_msg(o, shown, msg, cap);
  return false;
}

/* Applies every default of |opts| to |base|. The defaults are part of the table, so a bad one is
 * a programmer error. */
static void apply_defaults(void *base, const opt_t *opts, size_t n) {
  char msg[256];
  for (size_t i = 0; i < n; i++) {
    const opt_t *o = &opts[i];
    if (o->def == NULL) continue;
    if (o->type != OPT_MS_LIST) {
      bool ok = set_text(base, o, o->def, msg, sizeof(msg));
      (void)ok;
      assert(ok && "bad default in the option table");
      continue;
    }
    char items[128];
    snprintf(items, sizeof(items), "%s", o->def);
    int *count = list_count(base, o);
    *count = 0;
    char *save = NULL;
    for (char *t = strtok_r(items, " ", &save); t && *count < list_cap(o);
         t = strtok_r(NULL, " ", &save)) {
      int64_t v = 0;
      bool ok = parse_value(o, t, &v, msg, sizeof(msg));
      (void)ok;
      assert(ok && "bad default in the option table");
      ((int64_t *)((char *)base + o->offset))[(*count)++] = v;
    }
  }
}

static const opt_t *find_opt(const opt_t *opts, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(opts[i].name, name) == 0) return &opts[i];
  return NULL;
}

/* Edit distance, for "did you mean" on unknown keys. Keys are short; longer ones are not
 * compared. */
static size_t edit_distance(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > 63 || nb > 63) return (size_t)-1;
  size_t row[64];
  for (size_t j = 0; j <= nb; j++) row[j] = j;
  for (size_t i = 1; i <= na; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[nb];
}

/* ============================================================================================
 * Cross-field validation
 * ========================================================================================== */

/* Lines (1-based, 0 = unknown) of what the parser saw, so validation can point into the file. */
typedef struct src_lines {
  int opt[N_SCALARS];
  int section[8];
  int tier[TB_MAX_TIERS];
  int tier_field[TB_MAX_TIERS][N_TIER_OPTS];
  int event_tier[TB_MAX_EVENT_TIERS];
  int preset[TB_MAX_PRESETS];
  int preset_tier[TB_MAX_PRESETS][TB_MAX_TIERS];
  int preset_domain[TB_MAX_PRESETS][TB_MAX_DOMAINS];
  int workflow_tier[TB_MAX_WORKFLOW_TIERS];
  int priority_floor[TB_MAX_WORKFLOW_TIERS];
  int rule[TB_MAX_ESC_RULES];
  int rule_field[TB_MAX_ESC_RULES][N_RULE_OPTS];
} src_lines;

enum {
  SEC_TIERS,
  SEC_EVENT_TIERS,
  SEC_PRESETS,
  SEC_WORKFLOW_TIERS,
  SEC_ESCALATION,
  SEC_PRIORITY_FLOORS,
  SEC_SERVICE_LIMITS,
  SEC_JOB_TYPES
};

/* Fails with "FILE[:LINE]: KEY: message"; FILE is omitted for configs not read from a file. */
static tb_status vfail(const tb_config_t *cfg, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static tb_status vfail(const tb_config_t *cfg, int line, const char *key, const char *fmt, ...) {
  char msg[768], where[PATH_MAX + 32] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (cfg->source_path[0] && line > 0)
    snprintf(where, sizeof(where), "%s:%d: ", cfg->source_path, line);
  else if (cfg->source_path[0])
    snprintf(where, sizeof(where), "%s: ", cfg->source_path);
  return tb__fail(TB_ERR_CONFIG, "%s%s: %s", where, key, msg);
}

static void known_tiers(const tb_config_t *cfg, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < cfg->n_tiers && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", cfg->tiers[i].name);
}

static tb_status unknown_tier(const tb_config_t *cfg, int line, const char *key, const char *name) {
  char known[TB_MAX_TIERS * (TB_NAME_MAX + 2)];
  known_tiers(cfg, known, sizeof(known));
  return vfail(cfg, line, key, "unknown tier '%s' (tiers are %s)", name, known);
}

/* 1 when |name| is "<tier>-priority" in any case (seed 000's task queue names). */
static int is_priority_queue(const char *tier, const char *name) {
  size_t n = strlen(tier);
  return strncasecmp(name, tier, n) == 0 && strcasecmp(name + n, "-priority") == 0;
}

static tb_status validate_tiers(const tb_config_t *cfg, const src_lines *L) {
  char key[96], msg[512];
  if (cfg->n_tiers <= 0)
    return vfail(cfg, L ? L->section[SEC_TIERS] : 0, "tiers", "at least one tier is required");
  if (cfg->n_tiers > TB_MAX_TIERS)
    return vfail(cfg, L ? L->section[SEC_TIERS] : 0, "tiers",
                 "at most %d tiers are allowed (got %d)", TB_MAX_TIERS, cfg->n_tiers);
  for (int t = 0; t < cfg->n_tiers; t++) {
    const tb_tier_config_t *tier = &cfg->tiers[t];
    for (size_t i = 0; i < N_TIER_OPTS; i++) {
      if (check_field(tier, &tier_opts[i], msg, sizeof(msg))) continue;
      snprintf(key, sizeof(key), "tiers[%d].%s", t, tier_opts[i].name);
      return vfail(cfg, L ? L->tier_field[t][i] : 0, key, "%s", msg);
    }
    /* JetStream rejects a consumer whose BackOff has as many entries as MaxDeliver. */
    if (tier->n_backoff >= tier->max_deliver && tier->n_backoff > 0) {
      snprintf(key, sizeof(key), "tiers[%d].backoff", t);
      const opt_t *o = find_opt(tier_opts, N_TIER_OPTS, "backoff");
      return vfail(cfg, L ? L->tier_field[t][o - tier_opts] : 0, key,
                   "%d delays but max_deliver %d allows only %d redeliveries", tier->n_backoff,
                   tier->max_deliver, tier->max_deliver - 1);
    }
    /* nats-server refuses a dedupe window longer than the stream's max age. */
    if (tier->max_age_ms > 0 && cfg->duplicate_window_ms > tier->max_age_ms) {
      char win[32], age[32];
      fmt_ms(cfg->duplicate_window_ms, win, sizeof(win));
      fmt_ms(tier->max_age_ms, age, sizeof(age));
      snprintf(key, sizeof(key), "tiers[%d].max_age", t);
      const opt_t *o = find_opt(tier_opts, N_TIER_OPTS, "max_age");
      return vfail(cfg, L ? L->tier_field[t][o - tier_opts] : 0, key,
                   "%s is shorter than duplicate_window %s", age, win);
    }
    /* Job priority numbers (seed 001) find their tier by this order (tb_config_job_priority_tier):
     * a less urgent tier cannot carry a more urgent number. */
    if (t > 0 && tier->job_priority < cfg->tiers[t - 1].job_priority) {
      snprintf(key, sizeof(key), "tiers[%d].job_priority", t);
      const opt_t *o = find_opt(tier_opts, N_TIER_OPTS, "job_priority");
      return vfail(cfg, L ? L->tier_field[t][o - tier_opts] : 0, key,
                   "%d is more urgent than tiers[%d] (%s, %d): tiers are in priority order, so "
                   "job priorities must not decrease",
                   tier->job_priority, t - 1, cfg->tiers[t - 1].name,
                   cfg->tiers[t - 1].job_priority);
    }
    for (int u = 0; u < t; u++) {
      if (strcmp(cfg->tiers[u].name, tier->name) != 0) continue;
      snprintf(key, sizeof(key), "tiers[%d].name", t);
      return vfail(cfg, L ? L->tier[t] : 0, key, "duplicate tier name '%s' (also tiers[%d])",
                   tier->name, u);
    }
    /* Every name a tier answers to must pick that tier alone, or an alias would silently
     * route to whichever tier comes first. */
    for (int u = 0; u < t; u++) {
      const tb_tier_config_t *o = &cfg->tiers[u];
      const char *clash = NULL, *field = "name";
      if (strcasecmp(o->name, tier->name) == 0 || is_priority_queue(o->name, tier->name) ||
          (o->task_queue[0] && strcasecmp(o->task_queue, tier->name) == 0))
        clash = tier->name;
      else if (tier->task_queue[0] && (strcasecmp(o->name, tier->task_queue) == 0 ||
                                       is_priority_queue(o->name, tier->task_queue) ||
                                       strcasecmp(o->task_queue, tier->task_queue) == 0))
        clash = tier->task_queue, field = "task_queue";
      else if (is_priority_queue(tier->name, o->name) ||
               (o->task_queue[0] && is_priority_queue(tier->name, o->task_queue)))
        clash = o->task_queue[0] && is_priority_queue(tier->name, o->task_queue) ? o->task_queue
                                                                                 : o->name;
      if (clash == NULL) continue;
      snprintf(key, sizeof(key), "tiers[%d].%s", t, field);
      const opt_t *f = find_opt(tier_opts, N_TIER_OPTS, field);
      return vfail(cfg, L ? L->tier_field[t][f - tier_opts] : 0, key,
                   "'%s' is already a name of tier '%s' (tiers[%d])", clash, o->name, u);
    }
  }
  return TB_OK;
}

static tb_status validate_event_tiers(const tb_config_t *cfg, const src_lines *L) {
  static const opt_t ev = {.name = "event",
                           .type = OPT_STRING,
                           FIELD(tb_event_tier_t, event),
                           .min = 1,
                           .charset = CS_EVENT,
                           .charset_desc = CS_EVENT_DESC};
  char key[KEY_MAX], msg[512];
  if (cfg->n_event_tiers < 0 || cfg->n_event_tiers > TB_MAX_EVENT_TIERS)
    return vfail(cfg, L ? L->section[SEC_EVENT_TIERS] : 0, "event_tiers",
                 "at most %d entries are allowed (got %d)", TB_MAX_EVENT_TIERS, cfg->n_event_tiers);
  for (int i = 0; i < cfg->n_event_tiers; i++) {
    const tb_event_tier_t *e = &cfg->event_tiers[i];
    int line = L ? L->event_tier[i] : 0;
    if (!check_string(&ev, e->event, msg, sizeof(msg)))
      return vfail(cfg, line, "event_tiers", "event name %s", msg);
    snprintf(key, sizeof(key), "event_tiers.%s", e->event);
    if (memchr(e->tier, '\0', sizeof(e->tier)) == NULL || tb_config_tier_index(cfg, e->tier) < 0)
      return unknown_tier(cfg, line, key, memchr(e->tier, '\0', sizeof(e->tier)) ? e->tier : "?");
    for (int j = 0; j < i; j++)
      if (strcmp(cfg->event_tiers[j].event, e->event) == 0)
        return vfail(cfg, line, key, "listed twice");
  }
  return TB_OK;
}

static tb_status validate_presets(const tb_config_t *cfg, const src_lines *L) {
  static const opt_t pn = {.name = "preset",
                           .type = OPT_STRING,
                           FIELD(tb_preset_t, name),
                           .min = 1,
                           .charset = CS_IDENT,
                           .charset_desc = CS_IDENT_DESC};
  char key[96], msg[512];
  if (cfg->n_presets < 0 || cfg->n_presets > TB_MAX_PRESETS)
    return vfail(cfg, L ? L->section[SEC_PRESETS] : 0, "presets",
                 "at most %d presets are allowed (got %d)", TB_MAX_PRESETS, cfg->n_presets);
  for (int p = 0; p < cfg->n_presets; p++) {
    const tb_preset_t *ps = &cfg->presets[p];
    int line = L ? L->preset[p] : 0;
    if (!check_string(&pn, ps->name, msg, sizeof(msg)))
      return vfail(cfg, line, "presets", "preset name %s", msg);
    snprintf(key, sizeof(key), "presets.%s", ps->name);
    for (int q = 0; q < p; q++)
      if (strcmp(cfg->presets[q].name, ps->name) == 0) return vfail(cfg, line, key, "listed twice");
    if (ps->n_tiers < 0 || ps->n_tiers > TB_MAX_TIERS)
      return vfail(cfg, line, key, "must list at most %d tiers (got %d)", TB_MAX_TIERS,
                   ps->n_tiers);
    if (ps->n_domains < 0 || ps->n_domains > TB_MAX_DOMAINS)
      return vfail(cfg, line, key, "must list at most %d domains (got %d)", TB_MAX_DOMAINS,
                   ps->n_domains);
    if (ps->n_tiers == 0 && ps->n_domains == 0)
      return vfail(cfg, line, key, "must list tiers, domains or both");
    if (ps->max_concurrent_workflows < 0 || ps->max_concurrent_workflows > 100000)
      return vfail(cfg, line, key, "max_concurrent_workflows must be between 0 and 100000 (got %d)",
                   ps->max_concurrent_workflows);
    for (int k = 0; k < ps->n_domains; k++) {
      int dline = L ? L->preset_domain[p][k] : 0;
      const opt_t dn = {.name = "domain",
                        .type = OPT_STRING,
                        .offset = 0,
                        .size = TB_NAME_MAX,
                        .min = 1,
                        .charset = CS_IDENT,
                        .charset_desc = CS_IDENT_DESC};
      if (!check_string(&dn, ps->domains[k], msg, sizeof(msg)))
        return vfail(cfg, dline, key, "domain name %s", msg);
      for (int j = 0; j < k; j++)
        if (strcmp(ps->domains[j], ps->domains[k]) == 0)
          return vfail(cfg, dline, key, "domain '%s' listed twice", ps->domains[k]);
    }
    for (int k = 0; k < ps->n_tiers; k++) {
      int tline = L ? L->preset_tier[p][k] : 0;
      const char *name = ps->tiers[k];
      if (memchr(name, '\0', TB_NAME_MAX) == NULL || tb_config_tier_index(cfg, name) < 0)
        return unknown_tier(cfg, tline, key, memchr(name, '\0', TB_NAME_MAX) ? name : "?");
      for (int j = 0; j < k; j++)
        if (strcmp(ps->tiers[j], name) == 0)
          return vfail(cfg, tline, key, "tier '%s' listed twice", name);
    }
  }
  return TB_OK;
}

/* Only a file's workflow_tiers are checked: the built-in table names seed 000's tiers, which a
 * deployment with other tiers does not have (tb_config_workflow_tier then ignores them). */
static tb_status validate_tier_map(const tb_config_t *cfg, const src_lines *L, const char *section,
                                   int sec, const tb_workflow_tier_t *map, int n,
                                   const int *lines) {
  static const opt_t wn = {.name = "workflow",
                           .type = OPT_STRING,
                           FIELD(tb_workflow_tier_t, workflow),
                           .min = 1,
                           .charset = CS_EVENT,
                           .charset_desc = CS_EVENT_DESC};
  char key[KEY_MAX], msg[512];
  if (n < -1 || n > TB_MAX_WORKFLOW_TIERS)
    return vfail(cfg, L ? L->section[sec] : 0, section, "at most %d entries are allowed (got %d)",
                 TB_MAX_WORKFLOW_TIERS, n);
  for (int i = 0; i < n; i++) {
    const tb_workflow_tier_t *w = &map[i];
    int line = L ? lines[i] : 0;
    if (!check_string(&wn, w->workflow, msg, sizeof(msg)))
      return vfail(cfg, line, section, "workflow name %s", msg);
    snprintf(key, sizeof(key), "%s.%s", section, w->workflow);
    if (memchr(w->tier, '\0', sizeof(w->tier)) == NULL || tb_config_tier_index(cfg, w->tier) < 0)
      return unknown_tier(cfg, line, key, memchr(w->tier, '\0', sizeof(w->tier)) ? w->tier : "?");
    for (int j = 0; j < i; j++)
      if (strcmp(map[j].workflow, w->workflow) == 0) return vfail(cfg, line, key, "listed twice");
  }
  return TB_OK;
}

static tb_status validate_workflow_tiers(const tb_config_t *cfg, const src_lines *L) {
  tb_status s = validate_tier_map(cfg, L, "workflow_tiers", SEC_WORKFLOW_TIERS, cfg->workflow_tiers,
                                  cfg->n_workflow_tiers, L ? L->workflow_tier : NULL);
  if (s == TB_OK)
    s = validate_tier_map(cfg, L, "priority_floors", SEC_PRIORITY_FLOORS, cfg->priority_floors,
                          cfg->n_priority_floors, L ? L->priority_floor : NULL);
  return s;
}

/* A file's escalation rules: fields in bounds, a known tier, a unique name, and at least one
 * condition (a rule without one would raise every run). */
static tb_status validate_escalation(const tb_config_t *cfg, const src_lines *L) {
  char key[96], msg[512];
  if (cfg->n_escalation < -1 || cfg->n_escalation > TB_MAX_ESC_RULES)
    return vfail(cfg, L ? L->section[SEC_ESCALATION] : 0, "escalation",
                 "at most %d rules are allowed (got %d)", TB_MAX_ESC_RULES, cfg->n_escalation);
  for (int r = 0; r < cfg->n_escalation; r++) {
    const tb_esc_rule_t *rule = &cfg->escalation[r];
    for (size_t i = 0; i < N_RULE_OPTS; i++) {
      if (check_field(rule, &rule_opts[i], msg, sizeof(msg))) continue;
      snprintf(key, sizeof(key), "escalation[%d].%s", r, rule_opts[i].name);
      return vfail(cfg, L ? L->rule_field[r][i] : 0, key, "%s", msg);
    }
    int line = L ? L->rule[r] : 0;
    snprintf(key, sizeof(key), "escalation[%d]", r);
    if (tb_config_tier_index(cfg, rule->tier) < 0) {
      const opt_t *o = find_opt(rule_opts, N_RULE_OPTS, "tier");
      snprintf(key, sizeof(key), "escalation[%d].tier", r);
      return unknown_tier(cfg, L ? L->rule_field[r][o - rule_opts] : 0, key, rule->tier);
    }
    if (!rule->failed_retry && !rule->customer_facing && rule->business_impact[0] == '\0' &&
        rule->stuck_ms == 0)
      return vfail(cfg, line, key,
                   "rule '%s' has no condition (give failed_retry, customer_facing, "
                   "business_impact or stuck)",
                   rule->name);
    if (strcmp(rule->name, "expedite") == 0)
      return vfail(cfg, line, key, "the name 'expedite' is reserved for expedited runs");
    for (int q = 0; q < r; q++)
      if (strcmp(cfg->escalation[q].name, rule->name) == 0)
        return vfail(cfg, line, key, "duplicate rule name '%s' (also escalation[%d])", rule->name,
                     q);
  }
  return TB_OK;
}

/* The line of scalar option |name| in the file, 0 when unknown. */
static int opt_line(const src_lines *L, const char *name) {
  const opt_t *o = find_opt(scalar_opts, N_SCALARS, name);
  return L && o ? L->opt[o - scalar_opts] : 0;
}

/* Checks that option |name|'s file |path| (when set) is a readable regular file: a missing CA or
 * key is a config error at start, named, instead of a TLS failure on the first connect. */
static tb_status check_file_opt(const tb_config_t *cfg, const src_lines *L, const char *name,
                                const char *path) {
  struct stat sb;
  if (path[0] == '\0') return TB_OK;
  if (stat(path, &sb) != 0 || access(path, R_OK) != 0)
    return vfail(cfg, opt_line(L, name), name, "cannot read '%s': %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return vfail(cfg, opt_line(L, name), name, "'%s' is not a regular file", path);
  return TB_OK;
}

/* The NATS credentials and TLS options: at most one kind of credentials, pairs complete, files
 * readable. */
static tb_status validate_nats_auth(const tb_config_t *cfg, const src_lines *L) {
  int user = cfg->nats_user[0] != '\0', pass = cfg->nats_password[0] != '\0';
  int token = cfg->nats_token[0] != '\0', creds = cfg->nats_creds[0] != '\0';
  if (user && !pass)
    return vfail(cfg, opt_line(L, "nats_user"), "nats_password",
                 "is required with nats_user (or use TIERBUS_NATS_PASSWORD)");
  if (pass && !user)
    return vfail(cfg, opt_line(L, "nats_password"), "nats_user", "is required with nats_password");
  if (token && user)
    return vfail(cfg, opt_line(L, "nats_token"), "nats_token",
                 "give nats_token or nats_user/nats_password, not both");
  if (creds && (user || token))
    return vfail(cfg, opt_line(L, "nats_creds"), "nats_creds", "give nats_creds or %s, not both",
                 user ? "nats_user/nats_password" : "nats_token");
  int cert = cfg->nats_tls_cert[0] != '\0', key = cfg->nats_tls_key[0] != '\0';
  if (cert && !key)
    return vfail(cfg, opt_line(L, "nats_tls_cert"), "nats_tls_key",
                 "is required with nats_tls_cert");
  if (key && !cert)
    return vfail(cfg, opt_line(L, "nats_tls_key"), "nats_tls_cert",
                 "is required with nats_tls_key");
  tb_status s = check_file_opt(cfg, L, "nats_creds", cfg->nats_creds);
  if (s == TB_OK) s = check_file_opt(cfg, L, "nats_tls_ca", cfg->nats_tls_ca);
  if (s == TB_OK) s = check_file_opt(cfg, L, "nats_tls_cert", cfg->nats_tls_cert);
  if (s == TB_OK) s = check_file_opt(cfg, L, "nats_tls_key", cfg->nats_tls_key);
  return s;
}

static tb_status validate(const tb_config_t *cfg, const src_lines *L) {
  char msg[512];
  for (size_t i = 0; i < N_SCALARS; i++)
    if (!check_field(cfg, &scalar_opts[i], msg, sizeof(msg)))
      return vfail(cfg, L ? L->opt[i] : 0, scalar_opts[i].name, "%s", msg);
  /* nats-server refuses a dedupe window longer than the stream's max age. */
  if (cfg->stream_max_age_ms > 0 && cfg->duplicate_window_ms > cfg->stream_max_age_ms) {
    char win[32], age[32];
    fmt_ms(cfg->duplicate_window_ms, win, sizeof(win));
    fmt_ms(cfg->stream_max_age_ms, age, sizeof(age));
    const opt_t *o = find_opt(scalar_opts, N_SCALARS, "duplicate_window");
    return vfail(cfg, L ? L->opt[o - scalar_opts] : 0, "duplicate_window",
                 "%s is longer than stream_max_age %s", win, age);
  }
  /* Shorter than a second is a typo, not a schedule: a snapshot copies the whole database. */
  if (cfg->snapshot_interval_ms > 0 && cfg->snapshot_interval_ms < MS_S) {
    const opt_t *o = find_opt(scalar_opts, N_SCALARS, "snapshot_interval");
    return vfail(cfg, L ? L->opt[o - scalar_opts] : 0, "snapshot_interval",
                 "must be 0s (no snapshots) or at least 1s (got %lld ms)",
                 (long long)cfg->snapshot_interval_ms);
  }
  if (strcmp(cfg->run_timeout, "escalate") != 0 && strcmp(cfg->run_timeout, "fail") != 0 &&
      strcmp(cfg->run_timeout, "off") != 0) {
    const opt_t *o = find_opt(scalar_opts, N_SCALARS, "run_timeout");
    return vfail(cfg, L ? L->opt[o - scalar_opts] : 0, "run_timeout",
                 "must be escalate, fail or off (got '%s')", cfg->run_timeout);
  }
  tb_status s = validate_tiers(cfg, L);
  /* A tier reference left at its default may name a tier this deployment renamed (users of it
   * fall back, see tb_config_tier_ref); one that was set must name a tier. */
  for (size_t i = 0; i < N_SCALARS && s == TB_OK; i++) {
    const char *name = (const char *)cfg + scalar_opts[i].offset;
    if (scalar_opts[i].tier_ref && strcmp(name, scalar_opts[i].def) != 0 &&
        tb_config_tier_index(cfg, name) < 0)
      s = unknown_tier(cfg, L ? L->opt[i] : 0, scalar_opts[i].name, name);
  }
  if (s == TB_OK) s = validate_event_tiers(cfg, L);
  if (s == TB_OK) s = validate_presets(cfg, L);
  if (s == TB_OK) s = validate_workflow_tiers(cfg, L);
  if (s == TB_OK) s = validate_escalation(cfg, L);
  if (s == TB_OK) s = validate_nats_auth(cfg, L);
  return s;
}

/* ============================================================================================
 * YAML parsing (libyaml document API)
 * ========================================================================================== */

typedef struct parse_ctx {
  tb_config_t *cfg;
  yaml_document_t *doc;
  src_lines *lines;
} parse_ctx;

static int line_of(const yaml_node_t *n) {
  return (int)n->start_mark.line + 1;
}

static const char *kind_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return "a scalar";
  case YAML_SEQUENCE_NODE:
    return "a list";
  case YAML_MAPPING_NODE:
    return "a mapping";
  default:
    return "nothing";
  }
}

/* Fails with "FILE:LINE: KEY: message" (or "FILE:LINE: message" when |key| is NULL). */
static tb_status perr(const parse_ctx *c, const yaml_node_t *n, const char *key, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));
static tb_status perr(const parse_ctx *c, const yaml_node_t *n, const char *key, const char *fmt,
                      ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return tb__fail(TB_ERR_CONFIG, "%s:%d: %s%s%s", c->cfg->source_path, line_of(n), key ? key : "",
                  key ? ": " : "", msg);
}

static tb_status expect_kind(const parse_ctx *c, const yaml_node_t *n, yaml_node_type_t want,
                             const char *key) {
  if (n->type == want) return TB_OK;
  static const char *const want_names[] = {[YAML_SCALAR_NODE] = "a scalar value",
                                           [YAML_SEQUENCE_NODE] = "a list",
                                           [YAML_MAPPING_NODE] = "a mapping"};
  return perr(c, n, key, "expected %s, got %s", want_names[want], kind_name(n));
}

/* The text of a scalar node. Plain empty/null scalars are refused: a key with no value is almost
 * always a mistake, and "null" must not silently become the string "null". */
static tb_status scalar_text(const parse_ctx *c, const yaml_node_t *n, const char *key,
                             const char **out) {
  tb_status s = expect_kind(c, n, YAML_SCALAR_NODE, key);
  if (s != TB_OK) return s;
  const char *text = (const char *)n->data.scalar.value;
  if (strlen(text) != n->data.scalar.length) return perr(c, n, key, "value contains a NUL byte");
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
      (text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
       strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0))
    return perr(c, n, key, "missing value");
  *out = text;
  return TB_OK;
}

/* Rejects a repeated key in one mapping: libyaml accepts them but YAML does not. */
static tb_status seen_once(const parse_ctx *c, const yaml_node_t *key_node, const char *scope,
                           int *first_line) {
  if (*first_line)
    return perr(c, key_node, scope, "duplicate key '%s' (first at line %d)",
                (const char *)key_node->data.scalar.value, *first_line);
  *first_line = line_of(key_node);
  return TB_OK;
}

/* Unknown key |name| in a mapping whose valid keys are |opts| plus |extra|. */
static tb_status unknown_key(const parse_ctx *c, const yaml_node_t *key_node, const char *scope,
                             const char *name, const opt_t *opts, size_t n_opts,
                             const char *const *extra, size_t n_extra) {
  const char *best = NULL;
  size_t best_d = 3; /* suggest only close matches */
  for (size_t i = 0; i < n_opts + n_extra; i++) {
    const char *cand = i < n_opts ? opts[i].name : extra[i - n_opts];
    size_t d = edit_distance(name, cand);
    if (d < best_d) best = cand, best_d = d;
  }
  if (best) return perr(c, key_node, scope, "unknown key '%s' (did you mean '%s'?)", name, best);
  return perr(c, key_node, scope, "unknown key '%s'", name);
}

static tb_status parse_ms_list(const parse_ctx *c, void *base, const opt_t *o, const yaml_node_t *n,
                               const char *key) {
  char ikey[ITEM_KEY_MAX], msg[512];
  tb_status s = expect_kind(c, n, YAML_SEQUENCE_NODE, key);
  if (s != TB_OK) return s;
  int *count = list_count(base, o);
  int64_t *items = (int64_t *)((char *)base + o->offset);
  *count = 0;
  memset(items, 0, o->size);
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, *it);
    if (*count == list_cap(o))
      return perr(c, item, key, "at most %d items are allowed (got %d)", list_cap(o),
                  (int)(n->data.sequence.items.top - n->data.sequence.items.start));
    snprintf(ikey, sizeof(ikey), "%s[%d]", key, *count);
    const char *text;
    if ((s = scalar_text(c, item, ikey, &text)) != TB_OK) return s;
    if (!parse_value(o, text, &items[*count], msg, sizeof(msg)))
      return perr(c, item, ikey, "%s", msg);
    (*count)++;
  }
  return TB_OK;
}

static tb_status parse_tier(const parse_ctx *c, int t, const yaml_node_t *n) {
  char scope[32], key[96], msg[512];
  snprintf(scope, sizeof(scope), "tiers[%d]", t);
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, scope);
  if (s != TB_OK) return s;
  tb_tier_config_t *tier = &c->cfg->tiers[t];
  memset(tier, 0, sizeof(*tier));
  apply_defaults(tier, tier_opts, N_TIER_OPTS);
  c->lines->tier[t] = line_of(n);
  int *seen = c->lines->tier_field[t];
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *name, *text;
    if ((s = scalar_text(c, k, scope, &name)) != TB_OK) return s;
    const opt_t *o = find_opt(tier_opts, N_TIER_OPTS, name);
    if (o == NULL) return unknown_key(c, k, scope, name, tier_opts, N_TIER_OPTS, NULL, 0);
    if ((s = seen_once(c, k, scope, &seen[o - tier_opts])) != TB_OK) return s;
    snprintf(key, sizeof(key), "%s.%s", scope, o->name);
    if (o->type == OPT_MS_LIST) {
      if ((s = parse_ms_list(c, tier, o, v, key)) != TB_OK) return s;
      continue;
    }
    if ((s = scalar_text(c, v, key, &text)) != TB_OK) return s;
    if (!set_text(tier, o, text, msg, sizeof(msg))) return perr(c, v, key, "%s", msg);
  }
  for (size_t i = 0; i < N_TIER_OPTS; i++)
    if (tier_opts[i].required && seen[i] == 0)
      return perr(c, n, scope, "missing required key '%s'", tier_opts[i].name);
  return TB_OK;
}

static tb_status parse_tiers(const parse_ctx *c, const yaml_node_t *n) {
  tb_status s = expect_kind(c, n, YAML_SEQUENCE_NODE, "tiers");
  if (s != TB_OK) return s;
  memset(c->cfg->tiers, 0, sizeof(c->cfg->tiers));
  c->cfg->n_tiers = 0;
  int total = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
  for (int i = 0; i < total; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
    if (i == TB_MAX_TIERS)
      return perr(c, item, "tiers", "at most %d tiers are allowed (got %d)", TB_MAX_TIERS, total);
    if ((s = parse_tier(c, i, item)) != TB_OK) return s;
    c->cfg->n_tiers = i + 1;
  }
  return TB_OK;
}

/* Copies a name into a fixed buffer, refusing (not truncating) names that do not fit. */
static tb_status copy_name(const parse_ctx *c, const yaml_node_t *n, const char *key,
                           const char *what, char *dst, size_t cap, const char *text) {
  size_t len = strlen(text);
  if (len >= cap)
    return perr(c, n, key, "%s '%s' is longer than %zu characters", what, text, cap - 1);
  memset(dst, 0, cap);
  memcpy(dst, text, len);
  return TB_OK;
}

static tb_status parse_event_tiers(const parse_ctx *c, const yaml_node_t *n) {
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, "event_tiers");
  if (s != TB_OK) return s;
  tb_config_t *cfg = c->cfg;
  memset(cfg->event_tiers, 0, sizeof(cfg->event_tiers));
  cfg->n_event_tiers = 0;
  int total = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *event, *tier;
    if ((s = scalar_text(c, k, "event_tiers", &event)) != TB_OK) return s;
    for (int j = 0; j < cfg->n_event_tiers; j++)
      if (strcmp(cfg->event_tiers[j].event, event) == 0)
        return perr(c, k, "event_tiers", "duplicate key '%s' (first at line %d)", event,
                    c->lines->event_tier[j]);
    if (cfg->n_event_tiers == TB_MAX_EVENT_TIERS)
      return perr(c, k, "event_tiers", "at most %d entries are allowed (got %d)",
                  TB_MAX_EVENT_TIERS, total);
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "event_tiers.%s", event);
    tb_event_tier_t *e = &cfg->event_tiers[cfg->n_event_tiers];
    if ((s = copy_name(c, k, "event_tiers", "event name", e->event, sizeof(e->event), event)) !=
        TB_OK)
      return s;
    if ((s = scalar_text(c, v, key, &tier)) != TB_OK) return s;
    if ((s = copy_name(c, v, key, "tier name", e->tier, sizeof(e->tier), tier)) != TB_OK) return s;
    c->lines->event_tier[cfg->n_event_tiers++] = line_of(k);
  }
  return TB_OK;
}

/* Parses a list of names into dst[max][TB_NAME_MAX], recording each item's line. */
static tb_status parse_name_list(const parse_ctx *c, const yaml_node_t *v, const char *key,
                                 const char *what, char (*dst)[TB_NAME_MAX], int max, int *n,
                                 int *lines) {
  tb_status s = expect_kind(c, v, YAML_SEQUENCE_NODE, key);
  if (s != TB_OK) return s;
  int n_items = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
  char ikey[ITEM_KEY_MAX];
  for (int i = 0; i < n_items; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
    if (i == max) return perr(c, item, key, "at most %d %ss (got %d)", max, what, n_items);
    snprintf(ikey, sizeof(ikey), "%s[%d]", key, i);
    const char *text;
    if ((s = scalar_text(c, item, ikey, &text)) != TB_OK) return s;
    char desc[32];
    snprintf(desc, sizeof(desc), "%s name", what);
    if ((s = copy_name(c, item, ikey, desc, dst[i], TB_NAME_MAX, text)) != TB_OK) return s;
    lines[i] = line_of(item);
    *n = i + 1;
  }
  return TB_OK;
}

/* A preset is either a list of tiers ("critical: [critical, high]") or a mapping with tiers,
 * domains and max_concurrent_workflows, each optional. */
static tb_status parse_preset_body(const parse_ctx *c, int idx, const yaml_node_t *v,
                                   const char *key) {
  tb_preset_t *ps = &c->cfg->presets[idx];
  if (v->type == YAML_SEQUENCE_NODE)
    return parse_name_list(c, v, key, "tier", ps->tiers, TB_MAX_TIERS, &ps->n_tiers,
                           c->lines->preset_tier[idx]);
  tb_status s = expect_kind(c, v, YAML_MAPPING_NODE, key);
  int seen[3] = {0};
  for (yaml_node_pair_t *p = v->data.mapping.pairs.start;
       s == TB_OK && p < v->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *fv = yaml_document_get_node(c->doc, p->value);
    const char *field;
    char fkey[KEY_MAX];
    if ((s = scalar_text(c, k, key, &field)) != TB_OK) return s;
    snprintf(fkey, sizeof(fkey), "%s.%s", key, field);
    if (strcmp(field, "tiers") == 0) {
      if ((s = seen_once(c, k, key, &seen[0])) == TB_OK)
        s = parse_name_list(c, fv, fkey, "tier", ps->tiers, TB_MAX_TIERS, &ps->n_tiers,
                            c->lines->preset_tier[idx]);
    } else if (strcmp(field, "domains") == 0) {
      if ((s = seen_once(c, k, key, &seen[1])) == TB_OK)
        s = parse_name_list(c, fv, fkey, "domain", ps->domains, TB_MAX_DOMAINS, &ps->n_domains,
                            c->lines->preset_domain[idx]);
    } else if (strcmp(field, "max_concurrent_workflows") == 0) {
      const char *text, *end;
      long long ll;
      if ((s = seen_once(c, k, key, &seen[2])) == TB_OK) s = scalar_text(c, fv, fkey, &text);
      if (s == TB_OK && (!parse_int(text, &end, &ll) || *end != '\0' || ll < 0 || ll > 100000))
        s = perr(c, fv, fkey, "must be an integer between 0 and 100000 (got '%s')", text);
      if (s == TB_OK) ps->max_concurrent_workflows = (int)ll;
    } else {
      s = perr(c, k, key, "unknown key '%s' (expected tiers, domains, max_concurrent_workflows)",
               field);
    }
  }
  return s;
}

static tb_status parse_presets(const parse_ctx *c, const yaml_node_t *n) {
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, "presets");
  if (s != TB_OK) return s;
  tb_config_t *cfg = c->cfg;
  memset(cfg->presets, 0, sizeof(cfg->presets));
  cfg->n_presets = 0;
  int total = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *name;
    if ((s = scalar_text(c, k, "presets", &name)) != TB_OK) return s;
    for (int j = 0; j < cfg->n_presets; j++)
      if (strcmp(cfg->presets[j].name, name) == 0)
        return perr(c, k, "presets", "duplicate key '%s' (first at line %d)", name,
                    c->lines->preset[j]);
    if (cfg->n_presets == TB_MAX_PRESETS)
      return perr(c, k, "presets", "at most %d presets are allowed (got %d)", TB_MAX_PRESETS,
                  total);
    char key[96];
    snprintf(key, sizeof(key), "presets.%s", name);
    int idx = cfg->n_presets;
    tb_preset_t *ps = &cfg->presets[idx];
    if ((s = copy_name(c, k, "presets", "preset name", ps->name, sizeof(ps->name), name)) != TB_OK)
      return s;
    if ((s = parse_preset_body(c, idx, v, key)) != TB_OK) return s;
    c->lines->preset[cfg->n_presets++] = line_of(k);
  }
  return TB_OK;
}

/* A mapping of workflow (name, alias or category) to tier: workflow_tiers, priority_floors. */
static tb_status parse_tier_map(const parse_ctx *c, const yaml_node_t *n, const char *section,
                                tb_workflow_tier_t *map, int *count, int *lines) {
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, section);
  if (s != TB_OK) return s;
  memset(map, 0, sizeof(*map) * TB_MAX_WORKFLOW_TIERS);
  *count = 0;
  int total = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *name, *tier;
    if ((s = scalar_text(c, k, section, &name)) != TB_OK) return s;
    for (int j = 0; j < *count; j++)
      if (strcmp(map[j].workflow, name) == 0)
        return perr(c, k, section, "duplicate key '%s' (first at line %d)", name, lines[j]);
    if (*count == TB_MAX_WORKFLOW_TIERS)
      return perr(c, k, section, "at most %d entries are allowed (got %d)", TB_MAX_WORKFLOW_TIERS,
                  total);
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s.%s", section, name);
    tb_workflow_tier_t *w = &map[*count];
    if ((s = copy_name(c, k, section, "workflow name", w->workflow, sizeof(w->workflow), name)) !=
        TB_OK)
      return s;
    if ((s = scalar_text(c, v, key, &tier)) != TB_OK) return s;
    if ((s = copy_name(c, v, key, "tier name", w->tier, sizeof(w->tier), tier)) != TB_OK) return s;
    lines[(*count)++] = line_of(k);
  }
  return TB_OK;
}

static tb_status parse_workflow_tiers(const parse_ctx *c, const yaml_node_t *n) {
  return parse_tier_map(c, n, "workflow_tiers", c->cfg->workflow_tiers, &c->cfg->n_workflow_tiers,
                        c->lines->workflow_tier);
}

static tb_status parse_priority_floors(const parse_ctx *c, const yaml_node_t *n) {
  return parse_tier_map(c, n, "priority_floors", c->cfg->priority_floors,
                        &c->cfg->n_priority_floors, c->lines->priority_floor);
}

static tb_status parse_rule(const parse_ctx *c, int r, const yaml_node_t *n) {
  char scope[32], key[96], msg[512];
  snprintf(scope, sizeof(scope), "escalation[%d]", r);
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, scope);
  if (s != TB_OK) return s;
  tb_esc_rule_t *rule = &c->cfg->escalation[r];
  memset(rule, 0, sizeof(*rule));
  apply_defaults(rule, rule_opts, N_RULE_OPTS);
  c->lines->rule[r] = line_of(n);
  int *seen = c->lines->rule_field[r];
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *name, *text;
    if ((s = scalar_text(c, k, scope, &name)) != TB_OK) return s;
    const opt_t *o = find_opt(rule_opts, N_RULE_OPTS, name);
    if (o == NULL) return unknown_key(c, k, scope, name, rule_opts, N_RULE_OPTS, NULL, 0);
    if ((s = seen_once(c, k, scope, &seen[o - rule_opts])) != TB_OK) return s;
    snprintf(key, sizeof(key), "%s.%s", scope, o->name);
    if ((s = scalar_text(c, v, key, &text)) != TB_OK) return s;
    if (!set_text(rule, o, text, msg, sizeof(msg))) return perr(c, v, key, "%s", msg);
  }
  for (size_t i = 0; i < N_RULE_OPTS; i++)
    if (rule_opts[i].required && seen[i] == 0)
      return perr(c, n, scope, "missing required key '%s'", rule_opts[i].name);
  return TB_OK;
}

static tb_status parse_escalation(const parse_ctx *c, const yaml_node_t *n) {
  tb_status s = expect_kind(c, n, YAML_SEQUENCE_NODE, "escalation");
  if (s != TB_OK) return s;
  memset(c->cfg->escalation, 0, sizeof(c->cfg->escalation));
  c->cfg->n_escalation = 0;
  int total = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
  for (int i = 0; i < total; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
    if (i == TB_MAX_ESC_RULES)
      return perr(c, item, "escalation", "at most %d rules are allowed (got %d)", TB_MAX_ESC_RULES,
                  total);
    if ((s = parse_rule(c, i, item)) != TB_OK) return s;
    c->cfg->n_escalation = i + 1;
  }
  return TB_OK;
}

/* service_concurrency: {SERVICE: LIMIT, ...}. A service name is a subject token (lowercase
 * letters, digits, '_' or '-', as in tb.cmd.<service>.<action>); a limit is 1 to
 * TB_SERVICE_LIMIT_MAX. Checked here, where the lines are known. */
static tb_status parse_service_limits(const parse_ctx *c, const yaml_node_t *n) {
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, "service_concurrency");
  if (s != TB_OK) return s;
  tb_config_t *cfg = c->cfg;
  memset(cfg->service_limits, 0, sizeof(cfg->service_limits));
  cfg->n_service_limits = 0;
  int total = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *service, *text;
    if ((s = scalar_text(c, k, "service_concurrency", &service)) != TB_OK) return s;
    if (service[0] == '\0' || strspn(service, CS_LOWER CS_DIGITS "_-") != strlen(service))
      return perr(c, k, "service_concurrency",
                  "service name '%s' must be lowercase letters, digits, '_' or '-'", service);
    for (int j = 0; j < cfg->n_service_limits; j++)
      if (strcmp(cfg->service_limits[j].service, service) == 0)
        return perr(c, k, "service_concurrency", "service '%s' is listed twice", service);
    if (cfg->n_service_limits == TB_MAX_SERVICE_LIMITS)
      return perr(c, k, "service_concurrency", "at most %d services are allowed (got %d)",
                  TB_MAX_SERVICE_LIMITS, total);
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "service_concurrency.%s", service);
    tb_service_limit_t *e = &cfg->service_limits[cfg->n_service_limits];
    if ((s = copy_name(c, k, "service_concurrency", "service name", e->service, sizeof(e->service),
                       service)) != TB_OK)
      return s;
    if ((s = scalar_text(c, v, key, &text)) != TB_OK) return s;
    char *end = NULL;
    errno = 0;
    long limit = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || limit < 1 || limit > TB_SERVICE_LIMIT_MAX)
      return perr(c, v, key, "must be an integer between 1 and %d (got '%s')", TB_SERVICE_LIMIT_MAX,
                  text);
    e->limit = (int)limit;
    cfg->n_service_limits++;
  }
  return TB_OK;
}

/* job_types: {TYPE: SERVICE.ACTION, ...}. TYPE is an event-like name (letters, digits, '_', '-',
 * '/', '.'); SERVICE and ACTION are subject tokens (lowercase letters, digits, '_' or '-'), as in
 * tb.cmd.<service>.<action>. Checked here, where the lines are known. */
static tb_status parse_job_types(const parse_ctx *c, const yaml_node_t *n) {
  tb_status s = expect_kind(c, n, YAML_MAPPING_NODE, "job_types");
  if (s != TB_OK) return s;
  tb_config_t *cfg = c->cfg;
  memset(cfg->job_types, 0, sizeof(cfg->job_types));
  cfg->n_job_types = 0;
  int total = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *type, *text;
    if ((s = scalar_text(c, k, "job_types", &type)) != TB_OK) return s;
    if (type[0] == '\0' || strspn(type, CS_EVENT) != strlen(type))
      return perr(c, k, "job_types", "job type '%s' must be letters, digits, '_', '-', '/' or '.'",
                  type);
    for (int j = 0; j < cfg->n_job_types; j++)
      if (strcmp(cfg->job_types[j].type, type) == 0)
        return perr(c, k, "job_types", "job type '%s' is listed twice", type);
    if (cfg->n_job_types == TB_MAX_JOB_TYPES)
      return perr(c, k, "job_types", "at most %d job types are allowed (got %d)", TB_MAX_JOB_TYPES,
                  total);
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "job_types.%s", type);
    tb_job_type_t *e = &cfg->job_types[cfg->n_job_types];
    if ((s = copy_name(c, k, "job_types", "job type", e->type, sizeof(e->type), type)) != TB_OK)
      return s;
    if ((s = scalar_text(c, v, key, &text)) != TB_OK) return s;
    const char *dot = strchr(text, '.');
    size_t n_service = dot ? (size_t)(dot - text) : 0;
    static const char token[] = CS_LOWER CS_DIGITS "_-";
    if (dot == NULL || n_service == 0 || dot[1] == '\0' || n_service >= sizeof(e->service) ||
        strlen(dot + 1) >= sizeof(e->action) || strspn(text, token) != n_service ||
        strspn(dot + 1, token) != strlen(dot + 1))
      return perr(c, v, key,
                  "must be SERVICE.ACTION, each 1 to %zu lowercase letters, digits, '_' or '-' "
                  "(got '%s')",
                  sizeof(e->service) - 1, text);
    memcpy(e->service, text, n_service);
    snprintf(e->action, sizeof(e->action), "%s", dot + 1);
    cfg->n_job_types++;
  }
  return TB_OK;
}

static const struct section {
  const char *name;
  tb_status (*parse)(const parse_ctx *c, const yaml_node_t *n);
} sections[] = {
    [SEC_TIERS] = {"tiers", parse_tiers},
    [SEC_EVENT_TIERS] = {"event_tiers", parse_event_tiers},
    [SEC_PRESETS] = {"presets", parse_presets},
    [SEC_WORKFLOW_TIERS] = {"workflow_tiers", parse_workflow_tiers},
    [SEC_ESCALATION] = {"escalation", parse_escalation},
    [SEC_PRIORITY_FLOORS] = {"priority_floors", parse_priority_floors},
    [SEC_SERVICE_LIMITS] = {"service_concurrency", parse_service_limits},
    [SEC_JOB_TYPES] = {"job_types", parse_job_types},
};

static tb_status parse_root(const parse_ctx *c, const yaml_node_t *root) {
  char msg[512];
  if (root->type != YAML_MAPPING_NODE)
    return perr(c, root, NULL, "expected a mapping of options at the top level, got %s",
                kind_name(root));
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *name, *text;
    tb_status s = scalar_text(c, k, NULL, &name);
    if (s != TB_OK) return s;
    const opt_t *o = find_opt(scalar_opts, N_SCALARS, name);
    if (o != NULL) {
      if ((s = seen_once(c, k, NULL, &c->lines->opt[o - scalar_opts])) != TB_OK) return s;
      if ((s = scalar_text(c, v, o->name, &text)) != TB_OK) return s;
      if (!set_text(c->cfg, o, text, msg, sizeof(msg))) return perr(c, v, o->name, "%s", msg);
      continue;
    }
    size_t sec = 0;
    while (sec < TB_COUNTOF(sections) && strcmp(sections[sec].name, name) != 0) sec++;
    if (sec == TB_COUNTOF(sections)) {
      const char *extra[TB_COUNTOF(sections)];
      for (size_t i = 0; i < TB_COUNTOF(sections); i++) extra[i] = sections[i].name;
      return unknown_key(c, k, NULL, name, scalar_opts, N_SCALARS, extra, TB_COUNTOF(extra));
    }
    if ((s = seen_once(c, k, NULL, &c->lines->section[sec])) != TB_OK) return s;
    if ((s = sections[sec].parse(c, v)) != TB_OK) return s;
  }
  return TB_OK;
}

static tb_status yaml_error(const tb_config_t *cfg, const yaml_parser_t *parser) {
  const char *path = cfg->source_path;
  switch (parser->error) {
  case YAML_MEMORY_ERROR:
    return tb__fail(TB_ERR_NOMEM, "%s: out of memory while parsing YAML", path);
  case YAML_READER_ERROR:
    return tb__fail(TB_ERR_CONFIG, "%s: cannot read byte %zu: %s", path, parser->problem_offset,
                    parser->problem ? parser->problem : "input error");
  default:
    if (parser->context)
      return tb__fail(TB_ERR_CONFIG, "%s:%zu: YAML syntax error: %s (%s at line %zu)", path,
                      parser->problem_mark.line + 1, parser->problem, parser->context,
                      parser->context_mark.line + 1);
    return tb__fail(TB_ERR_CONFIG, "%s:%zu: YAML syntax error: %s", path,
                    parser->problem_mark.line + 1, parser->problem ? parser->problem : "?");
  }
}

/* ============================================================================================
 * Public API
 * ========================================================================================== */

void tb_config_init(tb_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  apply_defaults(cfg, scalar_opts, N_SCALARS);
  cfg->n_workflow_tiers = -1;
  cfg->n_escalation = -1;
}

tb_status tb_config_load_file(tb_config_t *cfg, const char *path) {
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(cfg->source_path))
    return tb__fail(TB_ERR_CONFIG, "config path '%.64s...': empty or longer than %zu characters",
                    path, sizeof(cfg->source_path) - 1);
  memset(cfg->source_path, 0, sizeof(cfg->source_path));
  memcpy(cfg->source_path, path, n);

  FILE *f = fopen(path, "rb");
  if (f == NULL) return tb__fail(TB_ERR_CONFIG, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    return tb__fail(TB_ERR_CONFIG, "%s: cannot open: %s", path, strerror(EISDIR));
  }

  yaml_parser_t parser;
  yaml_document_t doc, extra;
  bool have_doc = false, have_extra = false;
  src_lines *lines = calloc(1, sizeof(*lines));
  tb_status s = TB_OK;
  if (lines == NULL) {
    fclose(f);
    return tb__fail(TB_ERR_NOMEM, "%s: out of memory", path);
  }
  if (!yaml_parser_initialize(&parser)) {
    free(lines);
    fclose(f);
    return tb__fail(TB_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
  }
  yaml_parser_set_input_file(&parser, f);

  if (!yaml_parser_load(&parser, &doc)) {
    s = yaml_error(cfg, &parser);
    goto done;
  }
  have_doc = true;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root == NULL) {
    s = tb__fail(TB_ERR_CONFIG, "%s: file is empty (expected a mapping of options)", path);
    goto done;
  }
  /* A second document would be silently ignored otherwise. */
  if (!yaml_parser_load(&parser, &extra)) {
    s = yaml_error(cfg, &parser);
    goto done;
  }
  have_extra = true;
  yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
  if (extra_root != NULL) {
    s = tb__fail(TB_ERR_CONFIG, "%s:%zu: a config file holds one YAML document, found another",
                 path, extra.start_mark.line + 1);
    goto done;
  }

  parse_ctx c = {.cfg = cfg, .doc = &doc, .lines = lines};
  s = parse_root(&c, root);
  if (s == TB_OK) s = validate(cfg, lines);

done:
  if (have_extra) yaml_document_delete(&extra);
  if (have_doc) yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  free(lines);
  fclose(f);
  return s;
}

tb_status tb_config_apply_env(tb_config_t *cfg) {
  char msg[512];
  for (size_t i = 0; i < N_SCALARS; i++) {
    const opt_t *o = &scalar_opts[i];
    const char *value = o->env ? getenv(o->env) : NULL;
    if (value == NULL || value[0] == '\0') continue; /* empty means unset, as shells use it */
    if (!set_text(cfg, o, value, msg, sizeof(msg)))
      return tb__fail(TB_ERR_CONFIG, "%s: %s: %s", o->env, o->name, msg);
  }
  return TB_OK;
}

tb_status tb_config_set(tb_config_t *cfg, const char *key, const char *value) {
  char msg[512];
  const opt_t *o = find_opt(scalar_opts, N_SCALARS, key);
  if (o == NULL) {
    for (size_t i = 0; i < TB_COUNTOF(sections); i++)
      if (strcmp(sections[i].name, key) == 0)
        return tb__fail(TB_ERR_CONFIG, "%s: can only be set in the config file", key);
    /* Name what --set accepts: the closest option first, then all of them. They fit the
     * detail buffer with room to grow; a list that ever outgrows it ends by saying where the
     * whole one is, rather than stopping mid-name. */
    const char *best = NULL;
    size_t best_d = 3;
    char names[1536];
    size_t off = 0;
    names[0] = '\0';
    for (size_t i = 0; i < N_SCALARS; i++) {
      size_t d = edit_distance(key, scalar_opts[i].name);
      if (d < best_d) best = scalar_opts[i].name, best_d = d;
      size_t need = strlen(scalar_opts[i].name) + 2;
      if (off + need < sizeof(names) - 40)
        off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                scalar_opts[i].name);
      else if (off < sizeof(names) - 40)
        off += (size_t)snprintf(names + off, sizeof(names) - off,
                                ", ... (all: tierbus config example)");
    }
    if (best)
      return tb__fail(TB_ERR_CONFIG, "unknown option '%s' (did you mean '%s'? options: %s)", key,
                      best, names);
    return tb__fail(TB_ERR_CONFIG, "unknown option '%s' (options: %s)", key, names);
  }
  if (!set_text(cfg, o, value, msg, sizeof(msg)))
    return tb__fail(TB_ERR_CONFIG, "%s: %s", o->name, msg);
  return TB_OK;
}

tb_status tb_config_validate(const tb_config_t *cfg) {
  return validate(cfg, NULL);
}

int tb_config_tier_index(const tb_config_t *cfg, const char *name) {
  if (name == NULL) return -1;
  /* The exact name first: the hot path (every publish and start) costs one strcmp per tier. */
  for (int i = 0; i < cfg->n_tiers && i < TB_MAX_TIERS; i++)
    if (strcmp(cfg->tiers[i].name, name) == 0) return i;
  for (int i = 0; i < cfg->n_tiers && i < TB_MAX_TIERS; i++) {
    const tb_tier_config_t *t = &cfg->tiers[i];
    if (strcasecmp(t->name, name) == 0 || is_priority_queue(t->name, name) ||
        (t->task_queue[0] != '\0' && strcasecmp(t->task_queue, name) == 0))
      return i;
  }
  return tb_config_job_priority_tier(cfg, name);
}

int tb_config_job_priority_tier(const tb_config_t *cfg, const char *text) {
  /* Plain decimal only: "3", not "+3", " 3" or "03x". */
  if (text == NULL || text[0] < '0' || text[0] > '9' || strlen(text) > 3 ||
      strspn(text, CS_DIGITS) != strlen(text))
    return -1;
  int n = atoi(text);
  /* Lower numbers are more urgent (seed 001, as BullMQ): the most urgent tier at or below the
   * urgency asked for, so a number between two tiers' never gets more than it asked. */
  for (int i = 0; i < cfg->n_tiers && i < TB_MAX_TIERS; i++)
    if (cfg->tiers[i].job_priority >= n) return i;
  return -1;
}

int64_t tb_config_ack_wait_ms(const tb_config_t *cfg, int t) {
  int64_t ms = cfg->tiers[t].redelivery_bound_ms;
  if (ms <= 0) ms = cfg->redelivery_bound_ms;
  return ms < 1000 ? 1000 : ms; /* JetStream redelivers faster than a worker could renew */
}

int64_t tb_config_dedupe_horizon_ms(const tb_config_t *cfg) {
  int64_t worst = cfg->duplicate_window_ms;
  for (int i = 0; i < cfg->n_tiers; i++) {
    const tb_tier_config_t *t = &cfg->tiers[i];
    int64_t backoff = t->n_backoff ? t->backoff_ms[t->n_backoff - 1] : 0;
    int64_t redeliver = (int64_t)t->max_deliver * (t->timeout_ms + backoff);
    if (redeliver > worst) worst = redeliver;
  }
  return worst;
}

const char *tb_config_tier_ref(const tb_config_t *cfg, const char *name) {
  int i = tb_config_tier_index(cfg, name);
  return cfg->tiers[i >= 0 ? i : cfg->n_tiers - 1].name;
}

const tb_job_type_t *tb_config_job_type(const tb_config_t *cfg, const char *type) {
  for (int i = 0; type != NULL && i < cfg->n_job_types && i < TB_MAX_JOB_TYPES; i++)
    if (strcmp(cfg->job_types[i].type, type) == 0) return &cfg->job_types[i];
  return NULL;
}

int tb_config_service_limit(const tb_config_t *cfg, const char *service) {
  for (int i = 0; service != NULL && i < cfg->n_service_limits && i < TB_MAX_SERVICE_LIMITS; i++)
    if (strcmp(cfg->service_limits[i].service, service) == 0) return cfg->service_limits[i].limit;
  return 0;
}

const char *tb_config_event_tier(const tb_config_t *cfg, const char *event) {
  for (int i = 0; i < cfg->n_event_tiers && i < TB_MAX_EVENT_TIERS; i++)
    if (strcmp(cfg->event_tiers[i].event, event) == 0) {
      /* Under the tier's own name, also when the file gave a job priority number. */
      int t = tb_config_tier_index(cfg, cfg->event_tiers[i].tier);
      return t >= 0 ? cfg->tiers[t].name : cfg->event_tiers[i].tier;
    }
  return NULL;
}

tb_status tb_config_set_domains(tb_config_t *cfg, const char *const *names, int n) {
  if (n > TB_MAX_DOMAINS)
    return tb__fail(TB_ERR_CONFIG, "the catalogue has %d domains; at most %d are supported", n,
                    TB_MAX_DOMAINS);
  for (int i = 0; i < n; i++) {
    if (strlen(names[i]) >= TB_NAME_MAX)
      return tb__fail(TB_ERR_CONFIG, "domain '%s' is longer than %d characters", names[i],
                      TB_NAME_MAX - 1);
    snprintf(cfg->domains[i], TB_NAME_MAX, "%s", names[i]);
  }
  cfg->n_domains = n;
  return TB_OK;
}

int tb_config_domain_index(const tb_config_t *cfg, const char *name) {
  for (int i = 0; i < cfg->n_domains; i++)
    if (strcmp(cfg->domains[i], name) == 0) return i;
  return -1;
}

const tb_esc_rule_t *tb_config_escalation(const tb_config_t *cfg, int *n) {
  if (cfg->n_escalation >= 0) {
    *n = cfg->n_escalation < TB_MAX_ESC_RULES ? cfg->n_escalation : TB_MAX_ESC_RULES;
    return cfg->escalation;
  }
  *n = (int)TB_COUNTOF(builtin_escalation);
  return builtin_escalation;
}

const char *tb_config_workflow_tier(const tb_config_t *cfg, const char *name,
                                    const char *category) {
  const tb_workflow_tier_t *t = cfg->workflow_tiers;
  int n = cfg->n_workflow_tiers;
  if (n < 0) {
    t = builtin_workflow_tiers;
    n = (int)TB_COUNTOF(builtin_workflow_tiers);
  }
  if (n > TB_MAX_WORKFLOW_TIERS) n = TB_MAX_WORKFLOW_TIERS;
  const char *by_category = NULL;
  for (int i = 0; i < n; i++) {
    int ti = tb_config_tier_index(cfg, t[i].tier);
    if (ti < 0) continue;
    /* The config's own name: an entry may use an alias ("high-priority") or a job priority
     * number. */
    if (name != NULL && strcmp(t[i].workflow, name) == 0) return cfg->tiers[ti].name;
    if (category != NULL && by_category == NULL && strcmp(t[i].workflow, category) == 0)
      by_category = cfg->tiers[ti].name;
  }
  return by_category;
}

const char *tb_config_priority_floor(const tb_config_t *cfg, const char *name) {
  for (int i = 0; name != NULL && i < cfg->n_priority_floors && i < TB_MAX_WORKFLOW_TIERS; i++) {
    int ti = tb_config_tier_index(cfg, cfg->priority_floors[i].tier);
    if (ti >= 0 && strcmp(cfg->priority_floors[i].workflow, name) == 0) return cfg->tiers[ti].name;
  }
  return NULL;
}

const tb_preset_t *tb_config_preset(const tb_config_t *cfg, const char *name) {
  for (int i = 0; i < cfg->n_presets && i < TB_MAX_PRESETS; i++)
    if (strcmp(cfg->presets[i].name, name) == 0) return &cfg->presets[i];
  return NULL;
}

/* ============================================================================================
 * Example file
 * ========================================================================================== */

/* Writes |s| as a YAML scalar: plain when that is unambiguous, else double-quoted. */
static void write_str(FILE *out, const char *s) {
  static const char plain[] = CS_IDENT "./:@+";
  size_t n = strlen(s);
  bool ok = n > 0 && strspn(s, plain) == n && strchr(CS_IDENT "/.", s[0]) && s[0] != '-' &&
            s[n - 1] != ':' && strcmp(s, "null") != 0 && strcmp(s, "Null") != 0 &&
            strcmp(s, "NULL") != 0;
  if (ok) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(out, "\\x%02x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

static void write_value(FILE *out, const void *base, const opt_t *o) {
  char buf[64];
  if (o->type == OPT_STRING) {
    /* A secret set by the environment or --set must not end up in an example someone shares. */
    write_str(out, o->secret ? o->def : (const char *)base + o->offset);
  } else if (o->type == OPT_MS_LIST) {
    int n = *list_count((void *)base, o);
    const int64_t *items = (const int64_t *)((const char *)base + o->offset);
    fputc('[', out);
    for (int i = 0; i < n && i < list_cap(o); i++) {
      fmt_ms(items[i], buf, sizeof(buf));
      fprintf(out, "%s%s", i ? ", " : "", buf);
    }
    fputc(']', out);
  } else {
    fmt_num(o, get_num(base, o), buf, sizeof(buf));
    fputs(buf, out);
  }
}

/* Writes |text| as comment lines, each prefixed with |prefix|. */
static void write_comment(FILE *out, const char *prefix, const char *text) {
  while (*text) {
    const char *nl = strchr(text, '\n');
    size_t len = nl ? (size_t)(nl - text) : strlen(text);
    fprintf(out, "%s%.*s\n", prefix, (int)len, text);
    text += len + (nl != NULL);
  }
}

void tb_config_write_example(const tb_config_t *cfg, FILE *out) {
  char range[192];
  fputs(
      "# tierbus configuration. Every scalar option is listed with its accepted range and\n"
      "# default. Durations take ms, s, m, h or d (\"250ms\", \"30m\", \"24h\"). The environment\n"
      "# variables noted below override the file.\n",
      out);
  for (size_t i = 0; i < N_SCALARS; i++) {
    const opt_t *o = &scalar_opts[i];
    fputc('\n', out);
    write_comment(out, "# ", o->help);
    describe(o, range, sizeof(range));
    fprintf(out, "# Must be %s; default %s", range, o->def);
    if (o->env) fprintf(out, "; env %s", o->env);
    fputs(".\n", out);
    fprintf(out, "%s: ", o->name);
    write_value(out, cfg, o);
    fputc('\n', out);
  }

  fputs("\n# Priority tiers, in priority order: a worker serves the first tier that has a message\n"
        "# and a free slot. At most ",
        out);
  fprintf(out, "%d tiers. Fields:\n", TB_MAX_TIERS);
  for (size_t i = 0; i < N_TIER_OPTS; i++) {
    const opt_t *o = &tier_opts[i];
    describe(o, range, sizeof(range));
    fprintf(out, "#   %-12s %s\n#   %-12s ", o->name, o->help, "");
    if (o->type == OPT_MS_LIST) {
      /* The default is stored space-separated; show it as the YAML list it stands for. */
      fprintf(out, "up to %d items, each %s, default [", list_cap(o), range);
      for (const char *d = o->def; *d; d++) {
        if (*d == ' ')
          fputs(", ", out);
        else
          fputc(*d, out);
      }
      fputs("]\n", out);
      continue;
    }
    fputs(range, out);
    if (o->def) fprintf(out, ", default %s", o->def);
    fputs(o->required ? ", required\n" : "\n", out);
  }
  fputs(cfg->n_tiers > 0 ? "tiers:\n" : "tiers: []\n", out);
  for (int t = 0; t < cfg->n_tiers && t < TB_MAX_TIERS; t++) {
    fputs("  - {", out);
    for (size_t i = 0; i < N_TIER_OPTS; i++) {
      fprintf(out, "%s%s: ", i ? ", " : "", tier_opts[i].name);
      write_value(out, &cfg->tiers[t], &tier_opts[i]);
    }
    fputs("}\n", out);
  }

  fputs("\n# Per-deployment tier for an event type, overriding the catalogue's default tier.\n",
        out);
  fputs(cfg->n_event_tiers > 0 ? "event_tiers:\n" : "event_tiers: {}\n", out);
  for (int i = 0; i < cfg->n_event_tiers && i < TB_MAX_EVENT_TIERS; i++) {
    fputs("  ", out);
    write_str(out, cfg->event_tiers[i].event);
    fputs(": ", out);
    write_str(out, cfg->event_tiers[i].tier);
    fputc('\n', out);
  }

  fputs(
      "\n# Worker presets: `tierbus worker --preset NAME`. A list names tiers; a mapping may\n"
      "# name tiers, domains (catalogue domains: `tierbus events`) and max_concurrent_workflows.\n"
      "# No tiers means every tier, no domains every domain. `--preset DOMAIN` also works for\n"
      "# any catalogue domain without a preset of that name.\n",
      out);
  fputs("\n# Default tier of a workflow type (seed 000's automatic assignment), by workflow name\n"
        "# or by category; the workflow definition's own tier applies when neither is listed.\n",
        out);
  if (cfg->n_workflow_tiers < 0)
    fputs("# Not set: the built-in seed 000 table applies (customer-support, lead-attention and\n"
          "# email-sending high, daily-stand-up normal, campaign-building low, daily-operations\n"
          "# background).\n",
          out);
  else
    fputs(cfg->n_workflow_tiers > 0 ? "workflow_tiers:\n" : "workflow_tiers: {}\n", out);
  for (int i = 0; i < cfg->n_workflow_tiers && i < TB_MAX_WORKFLOW_TIERS; i++) {
    fputs("  ", out);
    write_str(out, cfg->workflow_tiers[i].workflow);
    fputs(": ", out);
    write_str(out, cfg->workflow_tiers[i].tier);
    fputc('\n', out);
  }

  fputs("\n# Floors under an explicit priority (seed 000): a caller's priority is honoured both\n"
        "# ways, raising or lowering the automatic tier, except that a workflow (name, seed\n"
        "# alias or category) listed here never runs below the tier given.\n",
        out);
  fputs(cfg->n_priority_floors > 0 ? "priority_floors:\n" : "priority_floors: {}\n", out);
  for (int i = 0; i < cfg->n_priority_floors && i < TB_MAX_WORKFLOW_TIERS; i++) {
    fputs("  ", out);
    write_str(out, cfg->priority_floors[i].workflow);
    fputs(": ", out);
    write_str(out, cfg->priority_floors[i].tier);
    fputc('\n', out);
  }

  fputs("\n# Escalation rules (seed 000), in order. A rule fires when every condition it gives\n"
        "# holds; the run goes to the most urgent tier a firing rule names (the first such rule\n"
        "# is recorded). Rules only raise a tier. An expedited run goes to the most urgent tier\n"
        "# any rule names. At most ",
        out);
  fprintf(out, "%d rules. Fields:\n", TB_MAX_ESC_RULES);
  for (size_t i = 0; i < N_RULE_OPTS; i++) {
    const opt_t *o = &rule_opts[i];
    describe(o, range, sizeof(range));
    fprintf(out, "#   %-16s %s\n#   %-16s %s", o->name, o->help, "", range);
    if (o->def && o->def[0]) fprintf(out, ", default %s", o->def);
    fputs(o->required ? ", required\n" : "\n", out);
  }
  if (cfg->n_escalation < 0)
    fputs("# Not set: the built-in seed 000 rules apply.\n", out);
  else
    fputs(cfg->n_escalation > 0 ? "escalation:\n" : "escalation: []\n", out);
  for (int r = 0; r < cfg->n_escalation && r < TB_MAX_ESC_RULES; r++) {
    tb_esc_rule_t defaults;
    memset(&defaults, 0, sizeof(defaults));
    apply_defaults(&defaults, rule_opts, N_RULE_OPTS);
    fputs("  - {", out);
    int first = 1;
    for (size_t i = 0; i < N_RULE_OPTS; i++) {
      const opt_t *o = &rule_opts[i];
      /* Conditions left at their default are not conditions: only the ones set are written. */
      if (!o->required && memcmp((const char *)&cfg->escalation[r] + o->offset,
                                 (const char *)&defaults + o->offset, o->size) == 0)
        continue;
      fprintf(out, "%s%s: ", first ? "" : ", ", o->name);
      write_value(out, &cfg->escalation[r], o);
      first = 0;
    }
    fputs("}\n", out);
  }

  fputs("\n# Seed 001's concurrency per queue: at most LIMIT commands of a service\n"
        "# (tb.cmd.<service>.*) in flight at once across every worker process sharing the\n"
        "# database; a command step past it is held (not failed) and tried again. A service not\n"
        "# listed has no limit. At most ",
        out);
  fprintf(out, "%d services; a limit is an integer between 1 and %d.\n", TB_MAX_SERVICE_LIMITS,
          TB_SERVICE_LIMIT_MAX);
  fputs(cfg->n_service_limits > 0 ? "service_concurrency:\n" : "service_concurrency: {}\n", out);
  for (int i = 0; i < cfg->n_service_limits && i < TB_MAX_SERVICE_LIMITS; i++) {
    fputs("  ", out);
    write_str(out, cfg->service_limits[i].service);
    fprintf(out, ": %d\n", cfg->service_limits[i].limit);
  }

  fputs("\n# Custom job types (seed 001's jobType) a scheduled task may name besides the built-in\n"
        "# jobs and catalogue events: TYPE: SERVICE.ACTION. The task publishes a command to\n"
        "# tb.cmd.<service>.<action> (stream TB_CMD) with its payload as the input, for the\n"
        "# service that does the job; its reply is kept, not awaited. At most ",
        out);
  fprintf(out, "%d types.\n", TB_MAX_JOB_TYPES);
  fputs(cfg->n_job_types > 0 ? "job_types:\n" : "job_types: {}\n", out);
  for (int i = 0; i < cfg->n_job_types && i < TB_MAX_JOB_TYPES; i++) {
    fputs("  ", out);
    write_str(out, cfg->job_types[i].type);
    fprintf(out, ": %s.%s\n", cfg->job_types[i].service, cfg->job_types[i].action);
  }

  fputs("\n# Worker presets: `tierbus worker --preset NAME` subscribes to these tiers.\n", out);
  fputs(cfg->n_presets > 0 ? "presets:\n" : "presets: {}\n", out);
  for (int p = 0; p < cfg->n_presets && p < TB_MAX_PRESETS; p++) {
    const tb_preset_t *ps = &cfg->presets[p];
    fputs("  ", out);
    write_str(out, ps->name);
    int mapping = ps->n_domains > 0 || ps->max_concurrent_workflows > 0;
    fputs(mapping ? ": {" : ": ", out);
    if (ps->n_tiers > 0) {
      fputs(mapping ? "tiers: [" : "[", out);
      for (int k = 0; k < ps->n_tiers && k < TB_MAX_TIERS; k++) {
        if (k) fputs(", ", out);
        write_str(out, ps->tiers[k]);
      }
      fputs("]", out);
    }
    if (ps->n_domains > 0) {
      fputs(ps->n_tiers > 0 ? ", domains: [" : "domains: [", out);
      for (int k = 0; k < ps->n_domains && k < TB_MAX_DOMAINS; k++) {
        if (k) fputs(", ", out);
        write_str(out, ps->domains[k]);
      }
      fputs("]", out);
    }
    if (ps->max_concurrent_workflows > 0)
      fprintf(out, "%smax_concurrent_workflows: %d", ps->n_tiers + ps->n_domains > 0 ? ", " : "",
              ps->max_concurrent_workflows);
    fputs(mapping ? "}\n" : "\n", out);
  }
}

const char *tb_config_default_path(const char *explicit_path) {
  if (explicit_path != NULL) return explicit_path;
  const char *env = getenv("TIERBUS_CONFIG");
  if (env != NULL && env[0] != '\0') return env;
  if (access("config/tierbus.yaml", F_OK) == 0) return "config/tierbus.yaml";
#ifdef TB_SOURCE_DIR
  return TB_SOURCE_DIR "/config/tierbus.yaml";
#else
  return "config/tierbus.yaml";
#endif
}
