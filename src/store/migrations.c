/* Versioned schema: an ordered array of SQL scripts, script i taking the database from
 * user_version i to i + 1. Scripts are append-only: a shipped script is never edited, a change is
 * a new script. */
#include <sqlite3.h>
#include <stdio.h>

#include "core/status.h"
#include "core/util.h"
#include "store/internal.h"

/* v1: engine bookkeeping. The tables written for every message (processed, tier_counters) are
 * WITHOUT ROWID so that a lookup or upsert touches one b-tree, not a rowid table plus an index. */
static const char v1_engine[] =
    "CREATE TABLE processed("
    "  msg_id TEXT PRIMARY KEY NOT NULL,"
    "  event_type TEXT,"
    "  tier TEXT,"
    "  eff_tier TEXT,"
    "  boost INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT,"
    "  stream TEXT,"
    "  stream_seq INTEGER NOT NULL DEFAULT 0,"
    "  deliveries INTEGER NOT NULL DEFAULT 0,"
    "  published_us INTEGER NOT NULL DEFAULT 0,"
    "  started_us INTEGER NOT NULL DEFAULT 0,"
    "  committed_us INTEGER NOT NULL,"
    "  outcome TEXT NOT NULL CHECK(outcome IN ('applied', 'dead', 'stale'))"
    ") STRICT, WITHOUT ROWID;"

    "CREATE TABLE activity_log("
    "  id INTEGER PRIMARY KEY,"
    "  msg_id TEXT NOT NULL,"
    "  event_type TEXT,"
    "  tier TEXT,"
    "  correlation_id TEXT,"
    "  key TEXT,"
    "  payload_json TEXT,"
    "  at_us INTEGER NOT NULL"
    ") STRICT;"
    /* A workflow's history is read by correlation id; most events of other kinds have none. */
    "CREATE INDEX idx_activity_log_correlation ON activity_log(correlation_id, id)"
    "  WHERE correlation_id IS NOT NULL;"

    "CREATE TABLE dead_letters("
    "  msg_id TEXT PRIMARY KEY NOT NULL,"
    "  event_type TEXT,"
    "  tier TEXT,"
    "  stream TEXT,"
    "  stream_seq INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT,"
    "  at_us INTEGER NOT NULL"
    ") STRICT;"

    "CREATE TABLE tier_counters("
    "  tier TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(tier, name)"
    ") STRICT, WITHOUT ROWID;"

    "CREATE TABLE latency_hist("
    "  tier TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK(kind IN ('start', 'commit')),"
    "  bucket INTEGER NOT NULL CHECK(bucket >= 0),"
    "  count INTEGER NOT NULL,"
    "  PRIMARY KEY(tier, kind, bucket)"
    ") STRICT, WITHOUT ROWID;"
    /* total and max cannot be rebuilt from bucket bounds, so they are kept beside the buckets. */
    "CREATE TABLE latency_summary("
    "  tier TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK(kind IN ('start', 'commit')),"
    "  total INTEGER NOT NULL,"
    "  max_us INTEGER NOT NULL,"
    "  PRIMARY KEY(tier, kind)"
    ") STRICT, WITHOUT ROWID;";

/* v2: seed 002, workspace repository priority. */
static const char v2_repo_priority[] =
    "CREATE TABLE workspace_repositories("
    "  workspace_id TEXT NOT NULL,"
    "  repository_id TEXT NOT NULL,"
    "  added_at INTEGER NOT NULL,"
    "  PRIMARY KEY(workspace_id, repository_id)"
    ") STRICT, WITHOUT ROWID;"
    /* workspace_count() asks by repository, which the primary key cannot serve. */
    "CREATE INDEX idx_workspace_repositories_repo ON workspace_repositories(repository_id);"

    /* The last applied change per pair, kept after a removal so a late add stays stale. */
    "CREATE TABLE workspace_membership_versions("
    "  workspace_id TEXT NOT NULL,"
    "  repository_id TEXT NOT NULL,"
    "  present INTEGER NOT NULL CHECK(present IN (0, 1)),"
    "  occurred_us INTEGER NOT NULL,"
    "  stream TEXT NOT NULL DEFAULT '',"
    "  seq INTEGER NOT NULL,"
    "  PRIMARY KEY(workspace_id, repository_id)"
    ") STRICT, WITHOUT ROWID;"

    "CREATE TABLE tracked_repositories("
    "  repository_id TEXT PRIMARY KEY NOT NULL,"
    "  priority TEXT NOT NULL DEFAULT 'medium' CHECK(priority IN ('high', 'medium', 'low')),"
    "  priority_score INTEGER NOT NULL DEFAULT 50,"
    "  is_workspace_repo INTEGER NOT NULL DEFAULT 0 CHECK(is_workspace_repo IN (0, 1)),"
    "  workspace_count INTEGER NOT NULL DEFAULT 0 CHECK(workspace_count >= 0),"
    "  tracking_enabled INTEGER NOT NULL DEFAULT 1 CHECK(tracking_enabled IN (0, 1)),"
    "  manual_override TEXT"
    "    CHECK(manual_override IS NULL OR manual_override IN ('high', 'medium', 'low')),"
    "  marked_low INTEGER NOT NULL DEFAULT 0 CHECK(marked_low IN (0, 1)),"
    "  updated_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX idx_tracked_repos_workspace_priority"
    "  ON tracked_repositories(is_workspace_repo, priority, tracking_enabled);"

    "CREATE TABLE priority_audit("
    "  id INTEGER PRIMARY KEY,"
    "  repository_id TEXT NOT NULL,"
    "  old_priority TEXT,"
    "  new_priority TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  msg_id TEXT,"
    "  at_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX idx_priority_audit_repo ON priority_audit(repository_id, id);";

/* v3: the transactional outbox. A row is written in the same transaction as the state change
 * that caused it and deleted once the stream acked it. next_attempt_us holds a failing row back
 * without holding back the rows behind it. No index beyond the rowid: the table is normally a
 * handful of rows, and "oldest first" is a rowid scan. */
static const char v3_outbox[] =
    "CREATE TABLE outbox("
    "  id INTEGER PRIMARY KEY,"
    "  msg_id TEXT NOT NULL UNIQUE CHECK(msg_id <> ''),"
    "  subject TEXT NOT NULL CHECK(subject <> ''),"
    "  payload BLOB NOT NULL,"
    "  headers TEXT"
    "    CHECK(headers IS NULL OR (json_valid(headers) AND json_type(headers) = 'object')),"
    "  created_us INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0 CHECK(attempts >= 0),"
    "  last_error TEXT,"
    "  next_attempt_us INTEGER NOT NULL DEFAULT 0"
    ") STRICT;";

/* v4: durable workflows. One row per run; one history row per step attempt (and per
 * cancellation or onError run); the waits a step has open; the inbox of events that resume
 * waits. An inbox row is either consumed by a wait (workflow_id, seq set) or waits for one to
 * start (an event that arrived early). Timers are outbox rows due later, hence the index. */
static const char v4_workflows[] =
    "CREATE TABLE workflows("
    "  id TEXT PRIMARY KEY CHECK(id <> ''),"
    "  name TEXT NOT NULL,"
    "  domain TEXT NOT NULL,"
    "  tier TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK(status IN ('running', 'waiting', 'sleeping', 'completed',"
    "    'failed', 'cancelled')),"
    "  step INTEGER NOT NULL DEFAULT 0,"
    "  step_state TEXT NOT NULL DEFAULT 'ready' CHECK(step_state IN ('ready', 'waiting',"
    "    'sleeping', 'done')),"
    "  attempt INTEGER NOT NULL DEFAULT 1,"
    "  seq INTEGER NOT NULL DEFAULT 1,"
    "  hist_id INTEGER NOT NULL DEFAULT 0,"
    "  data TEXT NOT NULL CHECK(json_valid(data)),"
    "  error TEXT,"
    "  correlation_id TEXT,"
    "  cause_msg_id TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  finished_us INTEGER"
    ") STRICT;"
    "CREATE INDEX workflows_status ON workflows(status, updated_us);"
    "CREATE INDEX workflows_name ON workflows(name, created_us);"
    "CREATE TABLE workflow_history("
    "  id INTEGER PRIMARY KEY,"
    "  workflow_id TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  status TEXT NOT NULL,"
    "  code INTEGER NOT NULL DEFAULT 0,"
    "  detail TEXT,"
    "  result TEXT,"
    "  error TEXT,"
    "  tier TEXT,"
    "  msg_id TEXT,"
    "  started_us INTEGER NOT NULL,"
    "  ended_us INTEGER"
    ") STRICT;"
    "CREATE INDEX workflow_history_wf ON workflow_history(workflow_id, id);"
    "CREATE TABLE workflow_waits("
    "  workflow_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  event TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  deadline_us INTEGER NOT NULL,"
    "  PRIMARY KEY(workflow_id, seq)"
    ") STRICT;"
    "CREATE INDEX workflow_waits_key ON workflow_waits(event, key);"
    "CREATE TABLE workflow_inbox("
    "  id INTEGER PRIMARY KEY,"
    "  event TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  msg_id TEXT NOT NULL UNIQUE,"
    "  payload TEXT,"
    "  code INTEGER NOT NULL DEFAULT 0,"
    "  workflow_id TEXT,"
    "  seq INTEGER,"
    "  at_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX workflow_inbox_key ON workflow_inbox(event, key, workflow_id);"
    "CREATE INDEX workflow_inbox_wf ON workflow_inbox(workflow_id, seq);"
    "CREATE INDEX outbox_due ON outbox(next_attempt_us);";

/* v5: the seed workflows' own state. Seed 003: subscribers, their enrichment jobs, the batches
 * that claim jobs (a job belongs to at most one batch: claiming moves it out of 'pending' in the
 * same write) and the tracker that maps a provider's enrichment id to the waiting workflow.
 * Seed 001: the client journey's clients, monthly deliverables (M1..M8), business plans and the
 * journey's activity log. */
static const char v5_seed_workflows[] =
    "CREATE TABLE subscribers("
    "  subscriber_id TEXT PRIMARY KEY CHECK(subscriber_id <> ''),"
    "  email TEXT NOT NULL CHECK(email <> ''),"
    "  email_type TEXT NOT NULL CHECK(email_type IN ('personal', 'corporate', 'unspecified')),"
    "  source TEXT,"
    "  first_name TEXT,"
    "  last_name TEXT,"
    "  company TEXT,"
    "  linkedin_url TEXT,"
    "  enriched_fields TEXT CHECK(enriched_fields IS NULL OR (json_valid(enriched_fields)"
    "    AND json_type(enriched_fields) = 'object')),"
    "  enriched_us INTEGER,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE enrichment_jobs("
    "  id INTEGER PRIMARY KEY,"
    "  subscriber_id TEXT NOT NULL REFERENCES subscribers(subscriber_id),"
    "  email TEXT NOT NULL CHECK(email <> ''),"
    "  status TEXT NOT NULL CHECK(status IN ('pending', 'batched', 'done', 'failed')),"
    "  batch_id TEXT,"
    "  error TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  CHECK((status = 'pending') = (batch_id IS NULL))"
    ") STRICT;"
    /* One live job per subscriber: a repeated subscriber-created does not queue it twice, while a
     * failed job may be queued again. */
    "CREATE UNIQUE INDEX enrichment_jobs_subscriber ON enrichment_jobs(subscriber_id)"
    "  WHERE status <> 'failed';"
    "CREATE INDEX enrichment_jobs_pending ON enrichment_jobs(id) WHERE status = 'pending';"
    "CREATE INDEX enrichment_jobs_batch ON enrichment_jobs(batch_id, subscriber_id)"
    "  WHERE batch_id IS NOT NULL;"
    "CREATE TABLE enrichment_batches("
    "  batch_id TEXT PRIMARY KEY CHECK(batch_id <> ''),"
    "  workflow_id TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK(status IN ('open', 'submitted', 'done', 'failed')),"
    "  n_jobs INTEGER NOT NULL CHECK(n_jobs >= 1),"
    "  enrichment_id TEXT,"
    "  error TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE enrichment_tracker("
    "  enrichment_id TEXT PRIMARY KEY CHECK(enrichment_id <> ''),"
    "  workflow_id TEXT NOT NULL CHECK(workflow_id <> ''),"
    "  batch_id TEXT,"
    "  registered_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE crm_clients("
    "  client_id TEXT PRIMARY KEY CHECK(client_id <> ''),"
    "  name TEXT,"
    "  email TEXT,"
    "  status TEXT NOT NULL CHECK(status IN ('onboarding', 'active', 'completed')),"
    "  created_by TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  activated_us INTEGER,"
    "  completed_us INTEGER"
    ") STRICT;"
    "CREATE TABLE crm_deliverables("
    "  client_id TEXT NOT NULL CHECK(client_id <> ''),"
    "  month INTEGER NOT NULL CHECK(month BETWEEN 1 AND 8),"
    "  status TEXT NOT NULL CHECK(status IN ('scheduled', 'generated', 'completed', 'overdue')),"
    "  due_us INTEGER NOT NULL,"
    "  deliverable_id TEXT,"
    "  title TEXT,"
    "  workflow_id TEXT,"
    "  scheduled_us INTEGER NOT NULL,"
    "  generated_us INTEGER,"
    "  completed_us INTEGER,"
    "  updated_us INTEGER NOT NULL,"
    "  PRIMARY KEY(client_id, month)"
    ") STRICT, WITHOUT ROWID;"
    /* An overdue sweep asks for open deliverables by due date. */
    "CREATE INDEX crm_deliverables_due ON crm_deliverables(status, due_us);"
    "CREATE TABLE crm_business_plans("
    "  client_id TEXT PRIMARY KEY CHECK(client_id <> ''),"
    "  business_plan_id TEXT,"
    "  status TEXT NOT NULL CHECK(status IN ('requested', 'generated', 'completed', 'failed')),"
    "  pdf_id TEXT,"
    "  pdf_path TEXT,"
    "  error TEXT,"
    "  workflow_id TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  completed_us INTEGER,"
    "  updated_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE crm_activity("
    "  id INTEGER PRIMARY KEY,"
    "  client_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL CHECK(kind <> ''),"
    "  description TEXT NOT NULL,"
    "  user_id TEXT,"
    "  workflow_id TEXT,"
    "  at_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX crm_activity_client ON crm_activity(client_id, id);";

/* v6 (issue 4, seed 002's full priority sync): leases, so a named job runs once at a time across
 * processes; the sync's scratch table, filled and emptied inside each batch's transaction so that
 * a batch is a few set-based statements; and one row per finished sync. */
static const char v6_priority_sync[] =
    "CREATE TABLE job_leases("
    "  name TEXT PRIMARY KEY NOT NULL CHECK(name <> ''),"
    "  owner TEXT NOT NULL CHECK(owner <> ''),"
    "  acquired_us INTEGER NOT NULL,"
    "  expires_us INTEGER NOT NULL"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE priority_sync_calc("
    "  repository_id TEXT PRIMARY KEY NOT NULL,"
    "  old_priority TEXT NOT NULL,"
    "  old_score INTEGER NOT NULL,"
    "  old_is_ws INTEGER NOT NULL,"
    "  old_count INTEGER NOT NULL,"
    "  new_priority TEXT NOT NULL,"
    "  new_score INTEGER NOT NULL,"
    "  new_is_ws INTEGER NOT NULL,"
    "  new_count INTEGER NOT NULL,"
    "  manual_override TEXT,"
    "  marked_low INTEGER NOT NULL"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE priority_sync_runs("
    "  id INTEGER PRIMARY KEY,"
    "  owner TEXT NOT NULL,"
    "  trigger TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK(status IN ('completed', 'failed')),"
    "  started_us INTEGER NOT NULL,"
    "  finished_us INTEGER NOT NULL,"
    "  workspace_repos INTEGER NOT NULL,"
    "  tracked_only_repos INTEGER NOT NULL,"
    "  priority_changes INTEGER NOT NULL,"
    "  rows_updated INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  errors TEXT NOT NULL CHECK(json_valid(errors) AND json_type(errors) = 'array')"
    ") STRICT;";

/* v7 (issue 4, seed 000): escalation. A run's context (what
 * the rules look at besides time: customer-facing, business impact, retries) and every
 * escalation with the rule that caused it. A sweeper threshold fires at most once per run: the
 * partial unique index makes a second record of the same (run, rule) a no-op, even from another
 * process. */
static const char v7_escalation[] =
    "CREATE TABLE workflow_context("
    "  workflow_id TEXT PRIMARY KEY CHECK(workflow_id <> ''),"
    "  category TEXT,"
    "  customer_facing INTEGER NOT NULL DEFAULT 0 CHECK(customer_facing IN (0, 1)),"
    "  business_impact TEXT,"
    "  retries INTEGER NOT NULL DEFAULT 0 CHECK(retries >= 0)"
    ") STRICT;"
    "CREATE TABLE workflow_escalations("
    "  id INTEGER PRIMARY KEY,"
    "  workflow_id TEXT NOT NULL,"
    "  from_tier TEXT NOT NULL,"
    "  to_tier TEXT NOT NULL,"
    "  rule TEXT NOT NULL,"
    "  source TEXT NOT NULL CHECK(source IN ('start', 'sweeper', 'retry')),"
    "  detail TEXT,"
    "  at_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX workflow_escalations_wf ON workflow_escalations(workflow_id, id);"
    "CREATE UNIQUE INDEX workflow_escalations_once ON workflow_escalations(workflow_id, rule)"
    "  WHERE source = 'sweeper';";

/* v8: the scheduler (seed 001). One row per task; last_slot_us is the newest slot already fired
 * or deliberately skipped (a new task starts at its creation time, so it never "catches up" on
 * slots from before it existed). sched_runs holds one row per (task, slot): the handler claims it
 * with an insert that does nothing when the slot already ran, in the transaction of the run, so a
 * slot fired by several schedulers runs once. The seed's default tasks are created here, once. */
static const char v8_scheduler[] =
    "CREATE TABLE sched_tasks("
    "  name TEXT PRIMARY KEY CHECK(name <> ''),"
    "  pattern TEXT NOT NULL CHECK(pattern <> ''),"
    "  job TEXT NOT NULL CHECK(job <> ''),"
    "  payload TEXT NOT NULL DEFAULT '{}' CHECK(json_valid(payload)"
    "    AND json_type(payload) = 'object'),"
    "  enabled INTEGER NOT NULL CHECK(enabled IN (0, 1)),"
    "  tier TEXT NOT NULL CHECK(tier <> ''),"
    "  description TEXT NOT NULL DEFAULT '',"
    "  catch_up TEXT NOT NULL CHECK(catch_up IN ('skip', 'once')),"
    "  last_slot_us INTEGER NOT NULL,"
    "  failure_count INTEGER NOT NULL DEFAULT 0,"
    "  status TEXT NOT NULL DEFAULT 'idle' CHECK(status IN ('idle', 'ok', 'retrying', 'failed')),"
    "  last_error TEXT,"
    "  last_run_us INTEGER,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE sched_runs("
    "  task TEXT NOT NULL,"
    "  slot_us INTEGER NOT NULL,"
    "  trigger TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL CHECK(attempts >= 1),"
    "  status TEXT NOT NULL CHECK(status IN ('running', 'ok', 'retrying', 'failed')),"
    "  result TEXT,"
    "  error TEXT,"
    "  started_us INTEGER NOT NULL,"
    "  finished_us INTEGER,"
    "  PRIMARY KEY(task, slot_us)"
    ") STRICT, WITHOUT ROWID;"
    "INSERT INTO sched_tasks(name, pattern, job, payload, enabled, tier, description, catch_up,"
    "  last_slot_us, created_us, updated_us) "
    "SELECT t.column1, t.column2, t.column3, t.column4, t.column5, t.column6, t.column7,"
    "  t.column8, n.now, n.now, n.now FROM (VALUES"
    "  ('cleanup-temp-files', 'DAILY_AT_2AM', 'CLEANUP_FILES',"
    "   '{\"dir\":\"tmp\",\"max_age\":\"24h\"}', 1, 'background',"
    "   'Clean up temporary files and old uploads', 'skip'),"
    "  ('database-backup', 'DAILY_AT_MIDNIGHT', 'BACKUP_DATABASE', '{}', 1, 'low',"
    "   'Create automated database backup', 'once'),"
    "  ('cleanup-old-jobs', 'WEEKLY_SUNDAY', 'CLEANUP_OLD_JOBS', '{\"older_than\":\"30d\"}', 1,"
    "   'background', 'Remove completed jobs older than 30 days', 'once'),"
    "  ('send-reminder-emails', 'DAILY_AT_NOON', 'SEND_REMINDER_EMAILS', '{}', 1, 'normal',"
    "   'Send reminder emails for overdue deliverables', 'once'),"
    "  ('update-client-metrics', 'EVERY_6_HOURS', 'UPDATE_CLIENT_METRICS', '{}', 0, 'low',"
    "   'Update client engagement metrics', 'skip'),"
    /* Seed 002: the full repository priority sync every 6 hours, through its event. */
    "  ('workspace-priority-sync', 'EVERY_6_HOURS', 'workspace/priorities.sync', '{}', 1,"
    "   'background', 'Full workspace repository priority sync (seed 002)', 'once')) AS t,"
    "  (SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) AS now) AS n;";

/* v9: outbox ids are never reused. With a plain INTEGER PRIMARY KEY, deleting the newest row let
 * the next insert take its id, and a second relay (another worker process) that had published
 * the deleted row then deleted the new one by that id: a follow-up was lost unpublished.
 * AUTOINCREMENT makes an id name one row for ever; the table is rebuilt to get it. */
static const char v9_outbox_ids[] =
    "CREATE TABLE outbox_v9("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  msg_id TEXT NOT NULL UNIQUE CHECK(msg_id <> ''),"
    "  subject TEXT NOT NULL CHECK(subject <> ''),"
    "  payload BLOB NOT NULL,"
    "  headers TEXT"
    "    CHECK(headers IS NULL OR (json_valid(headers) AND json_type(headers) = 'object')),"
    "  created_us INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0 CHECK(attempts >= 0),"
    "  last_error TEXT,"
    "  next_attempt_us INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    "INSERT INTO outbox_v9 SELECT id, msg_id, subject, payload, headers, created_us, attempts,"
    "  last_error, next_attempt_us FROM outbox;"
    "DROP TABLE outbox;"
    "ALTER TABLE outbox_v9 RENAME TO outbox;"
    "CREATE INDEX outbox_due ON outbox(next_attempt_us);";

/* v10: a dead-letter entry keeps the whole message (subject, headers, payload) and where it
 * was (stream, seq, deliveries, its copy's DLQ seq), so that `dlq show` needs no server and
 * `dlq replay` republishes it as it was. |reason| stays the last error's text; |class| is the
 * reason class (store/dlq.h), 'unclassified' for rows written before. |replays| counts
 * `dlq replay` rounds: the round names the replayed copy's Nats-Msg-Id. */
static const char v10_dead_letter_entries[] =
    "ALTER TABLE dead_letters ADD COLUMN class TEXT NOT NULL DEFAULT 'unclassified';"
    "ALTER TABLE dead_letters ADD COLUMN subject TEXT;"
    "ALTER TABLE dead_letters ADD COLUMN headers TEXT"
    "  CHECK(headers IS NULL OR (json_valid(headers) AND json_type(headers) = 'object'));"
    "ALTER TABLE dead_letters ADD COLUMN payload BLOB;"
    "ALTER TABLE dead_letters ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE dead_letters ADD COLUMN dlq_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE dead_letters ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE dead_letters ADD COLUMN replayed_us INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX dead_letters_at ON dead_letters(at_us);";

/* v11 (issue 10, replay): where processed-message records were pruned. A replayed message
 * published before the horizon may have been applied with no record left to say so, so replay
 * reads this before it trusts the absence of a record. */
static const char v11_prune_horizon[] = "CREATE TABLE prune_horizon("
                                        "  name TEXT PRIMARY KEY NOT NULL,"
                                        "  before_us INTEGER NOT NULL,"
                                        "  pruned_us INTEGER NOT NULL"
                                        ") STRICT, WITHOUT ROWID;";

/* v12 (issue 10): the deployment a database belongs to, one row, so that a worker refuses to ack
 * one deployment's events into another's state (store/deployment.c). */
static const char v12_deployment[] = "CREATE TABLE deployment("
                                     "  one INTEGER PRIMARY KEY CHECK(one = 1),"
                                     "  id TEXT NOT NULL CHECK(id <> ''),"
                                     "  created_us INTEGER NOT NULL"
                                     ") STRICT;";

/* v13 (issue 10, snapshots): in a snapshot file only, where each stream's replay resumes: every
 * message before next_seq was acked, so it is in the snapshot (`db snapshot`, `rebuild
 * --from-snapshot`). A live database keeps the table empty. */
static const char v13_snapshot_positions[] = "CREATE TABLE snapshot_positions("
                                             "  stream TEXT PRIMARY KEY NOT NULL,"
                                             "  next_seq INTEGER NOT NULL"
                                             ") STRICT, WITHOUT ROWID;";

/* v14 (issue 11, Prometheus): the counters by (tier, domain), so that /metrics can label them
 * with the domain as it does the consumers' gauges. The primary key changes, so the table is
 * rebuilt; the rows counted before are kept under domain '' (their domain was never recorded):
 * per-tier totals still add them up, the per-domain series start from zero. */
static const char v14_domain_counters[] =
    "CREATE TABLE tier_counters_v14("
    "  tier TEXT NOT NULL,"
    "  domain TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(tier, domain, name)"
    ") STRICT, WITHOUT ROWID;"
    "INSERT INTO tier_counters_v14 SELECT tier, '', name, value FROM tier_counters;"
    "DROP TABLE tier_counters;"
    "ALTER TABLE tier_counters_v14 RENAME TO tier_counters;";

/* v15 (issue 9): SQLite 3.40 evaluates a CHECK's IN list of three or more values through a
 * temporary b-tree built for every row written (OpenEphemeral: a pager, a page cache and three
 * inserts), which cost 5 us of the 7 of a processed-record insert. The tables written per event
 * or per workflow step say the same thing with OR chains, which are plain comparisons. SQLite
 * cannot alter a CHECK, so each table is rebuilt (once; the processed records are pruned, so the
 * copy is bounded) with its indexes. The other tables keep their IN lists: they are written per
 * operator command or per batch, not per event. */
static const char v15_checks_without_ephemeral_tables[] =
    "CREATE TABLE processed_v15("
    "  msg_id TEXT PRIMARY KEY NOT NULL,"
    "  event_type TEXT,"
    "  tier TEXT,"
    "  eff_tier TEXT,"
    "  boost INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT,"
    "  stream TEXT,"
    "  stream_seq INTEGER NOT NULL DEFAULT 0,"
    "  deliveries INTEGER NOT NULL DEFAULT 0,"
    "  published_us INTEGER NOT NULL DEFAULT 0,"
    "  started_us INTEGER NOT NULL DEFAULT 0,"
    "  committed_us INTEGER NOT NULL,"
    "  outcome TEXT NOT NULL CHECK(outcome = 'applied' OR outcome = 'dead' OR outcome = 'stale')"
    ") STRICT, WITHOUT ROWID;"
    "INSERT INTO processed_v15 SELECT * FROM processed;"
    "DROP TABLE processed;"
    "ALTER TABLE processed_v15 RENAME TO processed;"

    "CREATE TABLE tracked_repositories_v15("
    "  repository_id TEXT PRIMARY KEY NOT NULL,"
    "  priority TEXT NOT NULL DEFAULT 'medium'"
    "    CHECK(priority = 'high' OR priority = 'medium' OR priority = 'low'),"
    "  priority_score INTEGER NOT NULL DEFAULT 50,"
    "  is_workspace_repo INTEGER NOT NULL DEFAULT 0 CHECK(is_workspace_repo IN (0, 1)),"
    "  workspace_count INTEGER NOT NULL DEFAULT 0 CHECK(workspace_count >= 0),"
    "  tracking_enabled INTEGER NOT NULL DEFAULT 1 CHECK(tracking_enabled IN (0, 1)),"
    "  manual_override TEXT CHECK(manual_override IS NULL OR manual_override = 'high' OR"
    "    manual_override = 'medium' OR manual_override = 'low'),"
    "  marked_low INTEGER NOT NULL DEFAULT 0 CHECK(marked_low IN (0, 1)),"
    "  updated_at INTEGER NOT NULL"
    ") STRICT;"
    "INSERT INTO tracked_repositories_v15 SELECT * FROM tracked_repositories;"
    "DROP TABLE tracked_repositories;"
    "ALTER TABLE tracked_repositories_v15 RENAME TO tracked_repositories;"
    "CREATE INDEX idx_tracked_repos_workspace_priority"
    "  ON tracked_repositories(is_workspace_repo, priority, tracking_enabled);"

    "CREATE TABLE workflows_v15("
    "  id TEXT PRIMARY KEY CHECK(id <> ''),"
    "  name TEXT NOT NULL,"
    "  domain TEXT NOT NULL,"
    "  tier TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK(status = 'running' OR status = 'waiting' OR status = 'sleeping'"
    "    OR status = 'completed' OR status = 'failed' OR status = 'cancelled'),"
    "  step INTEGER NOT NULL DEFAULT 0,"
    "  step_state TEXT NOT NULL DEFAULT 'ready' CHECK(step_state = 'ready' OR"
    "    step_state = 'waiting' OR step_state = 'sleeping' OR step_state = 'done'),"
    "  attempt INTEGER NOT NULL DEFAULT 1,"
    "  seq INTEGER NOT NULL DEFAULT 1,"
    "  hist_id INTEGER NOT NULL DEFAULT 0,"
    "  data TEXT NOT NULL CHECK(json_valid(data)),"
    "  error TEXT,"
    "  correlation_id TEXT,"
    "  cause_msg_id TEXT,"
    "  created_us INTEGER NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  finished_us INTEGER"
    ") STRICT;"
    "INSERT INTO workflows_v15 SELECT * FROM workflows;"
    "DROP TABLE workflows;"
    "ALTER TABLE workflows_v15 RENAME TO workflows;"
    "CREATE INDEX workflows_status ON workflows(status, updated_us);"
    "CREATE INDEX workflows_name ON workflows(name, created_us);";

/* v16 (issue 9): the activity handler rendered every event's payload as JSON text for the activity
 * log, 14% of the executor's time in the throughput bench, for a trail that is read rarely. It now
 * stores the payload's protobuf bytes as published (no encode at all: the envelope's own bytes);
 * readers render them with the catalogue (`tierbus activity`). payload_json stays for the rows
 * that already carry JSON (workflow triggers and resumes render it for their own use anyway, and
 * rows written before v16). */
static const char v16_activity_payload_bytes[] =
    "ALTER TABLE activity_log ADD COLUMN payload BLOB;";

/* v17 (issue 12, seed 000): how a run's starting tier was decided (an explicit
 * priority is honoured both ways, so the rule that chose it is kept with the run), and the run's
 * deadline from its tier's timeout, which bounds the whole run. */
static const char v17_run_tier_decision_and_deadline[] =
    "ALTER TABLE workflow_context ADD COLUMN requested_tier TEXT;"
    "ALTER TABLE workflow_context ADD COLUMN automatic_tier TEXT;"
    "ALTER TABLE workflow_context ADD COLUMN tier_rule TEXT;"
    "ALTER TABLE workflow_context ADD COLUMN deadline_us INTEGER;"
    "CREATE INDEX workflow_context_deadline ON workflow_context(deadline_us)"
    "  WHERE deadline_us IS NOT NULL;";

/* v18 (issue 12, seed 000): a circuit breaker per command service, shared by
 * every worker of the deployment. |failures| counts consecutive failures since window_start_us;
 * the service's commands are held while open_until_us is ahead. */
static const char v18_command_circuit_breakers[] =
    "CREATE TABLE circuit_breakers("
    "  service TEXT PRIMARY KEY CHECK(service <> ''),"
    "  failures INTEGER NOT NULL DEFAULT 0 CHECK(failures >= 0),"
    "  window_start_us INTEGER NOT NULL DEFAULT 0,"
    "  open_until_us INTEGER NOT NULL DEFAULT 0,"
    "  opened_us INTEGER NOT NULL DEFAULT 0,"
    "  trips INTEGER NOT NULL DEFAULT 0 CHECK(trips >= 0),"
    "  held INTEGER NOT NULL DEFAULT 0 CHECK(held >= 0),"
    "  last_error TEXT,"
    "  updated_us INTEGER NOT NULL DEFAULT 0"
    ") STRICT;";

/* v19 (issue 12, seeds 001 and 002):
 * - seed 001's per-queue concurrency as rows: a command in flight holds its service's slot from
 *   the moment it is published until its reply or timeout is handled (or, if the run never comes
 *   back to it, until its deadline); a step held at the limit has a waiting row that keeps its
 *   place in line. Every worker process takes slots in its write transaction, so the count holds
 *   across processes (store/slots.h);
 * - the client metrics UPDATE_CLIENT_METRICS computes (store/crm.h);
 * - the default task month-transition: MONTH_TRANSITION for every active client at the start of
 *   each calendar month (src/sched/sched.c lists every default task);
 * - seed 002's repository_name on tracked repositories. */
static const char v19_service_slots_client_metrics_month_transition[] =
    "CREATE TABLE service_slots("
    "  service TEXT NOT NULL CHECK(service <> ''),"
    "  workflow_id TEXT NOT NULL,"
    "  step TEXT NOT NULL,"
    "  command_id TEXT NOT NULL,"
    "  acquired_us INTEGER NOT NULL,"
    "  expires_us INTEGER NOT NULL,"
    "  waiting INTEGER NOT NULL DEFAULT 0 CHECK(waiting IN (0, 1)),"
    "  PRIMARY KEY(workflow_id, step)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX service_slots_service ON service_slots(service, waiting, acquired_us);"
    "CREATE TABLE crm_client_metrics("
    "  client_id TEXT PRIMARY KEY CHECK(client_id <> ''),"
    "  deliverables_completed INTEGER NOT NULL,"
    "  completed_on_time INTEGER NOT NULL,"
    "  completed_late INTEGER NOT NULL,"
    "  overdue_open INTEGER NOT NULL,"
    "  on_time_rate REAL,"
    "  last_activity_us INTEGER,"
    "  days_since_activity INTEGER,"
    "  computed_us INTEGER NOT NULL"
    ") STRICT;"
    "INSERT INTO sched_tasks(name, pattern, job, payload, enabled, tier, description, catch_up,"
    "  last_slot_us, created_us, updated_us) "
    "SELECT 'month-transition', 'MONTHLY_FIRST', 'MONTH_TRANSITIONS', '{}', 1, 'normal',"
    "  'Publish MONTH_TRANSITION for every active client', 'once', n.now, n.now, n.now FROM"
    "  (SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) AS now) AS n "
    "WHERE NOT EXISTS (SELECT 1 FROM sched_tasks WHERE name = 'month-transition');"
    /* Seed 002's repository_name ("owner/name"), filled in the sync jobs when known. */
    "ALTER TABLE tracked_repositories ADD COLUMN repository_name TEXT"
    "  CHECK(repository_name IS NULL OR length(repository_name) BETWEEN 1 AND 255);";

/* v20 (issue 9): the processed record becomes a rowid table with a unique index on msg_id. As a
 * WITHOUT ROWID table keyed by the id, a publisher's random ids (a random UUID) put each insert
 * of a whole row on a random leaf page of the widest tree in the file: splits move whole rows, and
 * every commit rewrote about one page per event. Now the row is appended (rowid order is commit
 * order) and only the narrow (msg_id, rowid) index entry lands at random. Time-ordered ids append
 * to both and cost the same as before. `bench --random-ids`, 200k events: 16.4-17.1k -> 20.8-21.0k
 * events/s, the worker's CPU 5.3-5.4 -> 3.7-3.8 s per 100k (bench/RESULTS.md, eighth pass). */
static const char v20_processed_rows_in_commit_order[] =
    "CREATE TABLE processed_v20("
    "  msg_id TEXT NOT NULL UNIQUE,"
    "  event_type TEXT,"
    "  tier TEXT,"
    "  eff_tier TEXT,"
    "  boost INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT,"
    "  stream TEXT,"
    "  stream_seq INTEGER NOT NULL DEFAULT 0,"
    "  deliveries INTEGER NOT NULL DEFAULT 0,"
    "  published_us INTEGER NOT NULL DEFAULT 0,"
    "  started_us INTEGER NOT NULL DEFAULT 0,"
    "  committed_us INTEGER NOT NULL,"
    "  outcome TEXT NOT NULL CHECK(outcome = 'applied' OR outcome = 'dead' OR outcome = 'stale')"
    ") STRICT;"
    "INSERT INTO processed_v20 SELECT * FROM processed ORDER BY committed_us;"
    "DROP TABLE processed;"
    "ALTER TABLE processed_v20 RENAME TO processed;";

static const char *const migrations[] = {v1_engine,
                                         v2_repo_priority,
                                         v3_outbox,
                                         v4_workflows,
                                         v5_seed_workflows,
                                         v6_priority_sync,
                                         v7_escalation,
                                         v8_scheduler,
                                         v9_outbox_ids,
                                         v10_dead_letter_entries,
                                         v11_prune_horizon,
                                         v12_deployment,
                                         v13_snapshot_positions,
                                         v14_domain_counters,
                                         v15_checks_without_ephemeral_tables,
                                         v16_activity_payload_bytes,
                                         v17_run_tier_decision_and_deadline,
                                         v18_command_circuit_breakers,
                                         v19_service_slots_client_metrics_month_transition,
                                         v20_processed_rows_in_commit_order};

#define N_MIGRATIONS ((int)TB_COUNTOF(migrations))

int tb__store_latest_version(void) {
  return N_MIGRATIONS;
}

/* Reads PRAGMA user_version into *version. */
static tb_status read_version(sqlite3 *db, const char *path, int *version) {
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW) {
    tb_status s = tb__store_fail(db, rc, "store %s: read user_version", path);
    sqlite3_finalize(stmt);
    return s;
  }
  *version = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  return TB_OK;
}

static tb_status refuse_newer(const char *path, int version) {
  return tb__fail(TB_ERR_STORE,
                  "store %s: schema version %d is newer than this build supports (%d); "
                  "refusing to open it with an older tierbus",
                  path, version, N_MIGRATIONS);
}

/* Applies migration |v| (1-based) in its own transaction. Another process may have applied it
 * while this one waited for the write lock, so the version is read again under the lock. */
static tb_status apply_one(sqlite3 *db, const char *path, int v) {
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc != SQLITE_OK) return tb__store_fail(db, rc, "store %s: migration %d: begin", path, v);
  int have = 0;
  tb_status s = read_version(db, path, &have);
  if (s == TB_OK && have > N_MIGRATIONS) s = refuse_newer(path, have);
  if (s == TB_OK && have < v) {
    char set_version[48];
    snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d", v);
    rc = sqlite3_exec(db, migrations[v - 1], NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, set_version, NULL, NULL, NULL);
    if (rc != SQLITE_OK) s = tb__store_fail(db, rc, "store %s: migration %d", path, v);
  }
  if (s == TB_OK) {
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) s = tb__store_fail(db, rc, "store %s: migration %d: commit", path, v);
  }
  if (s != TB_OK && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return s;
}

tb_status tb__store_migrate(sqlite3 *db, const char *path) {
  int have = 0;
  tb_status s = read_version(db, path, &have);
  if (s != TB_OK) return s;
  if (have > N_MIGRATIONS) return refuse_newer(path, have);
  for (int v = have + 1; v <= N_MIGRATIONS && s == TB_OK; v++) s = apply_one(db, path, v);
  return s;
}
