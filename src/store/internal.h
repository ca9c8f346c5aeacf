/* Store internals shared by the files of src/store: the connection struct, the one table of
 * prepared statements (prepared at open, finalized at close) and SQLite error wrapping. Nothing
 * outside src/store includes this header. */
#ifndef TB_STORE_INTERNAL_H
#define TB_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store/store.h"

/* The columns of a scheduled task, in the order store/sched.c reads them. */
#define TB__SCHED_COLS                                                                             \
  "name, pattern, job, payload, enabled, tier, description, catch_up, last_slot_us, "              \
  "failure_count, status, last_error, last_run_us, created_us, updated_us"
/* The columns of a dead-letter entry, in the order store/dlq.c reads them. */
#define TB__DLQ_COLS                                                                               \
  "rowid, msg_id, coalesce(event_type, ''), coalesce(tier, ''), class, coalesce(reason, ''), "     \
  "coalesce(subject, ''), headers, payload, coalesce(stream, ''), stream_seq, deliveries, "        \
  "dlq_seq, at_us, replays, replayed_us"
/* Workflow runs that finished before ?1 (cleanup-old-jobs). */
#define TB__FINISHED_WF                                                                            \
  "SELECT id FROM workflows WHERE status IN ('completed', 'failed', 'cancelled') "                 \
  "AND coalesce(finished_us, updated_us) < ?1"

/* X(name, sql): every statement the store runs after open. Transaction control is prepared too,
 * so the hot path never parses SQL. */
#define TB__STORE_STMTS(X)                                                                         \
  X(BEGIN, "BEGIN IMMEDIATE")                                                                      \
  X(COMMIT, "COMMIT")                                                                              \
  X(ROLLBACK, "ROLLBACK")                                                                          \
  X(SAVEPOINT, "SAVEPOINT tb_msg")                                                                 \
  X(RELEASE, "RELEASE tb_msg")                                                                     \
  X(ROLLBACK_TO, "ROLLBACK TO tb_msg")                                                             \
  X(STEP_SAVEPOINT, "SAVEPOINT tb_step")                                                           \
  X(STEP_RELEASE, "RELEASE tb_step")                                                               \
  X(STEP_ROLLBACK_TO, "ROLLBACK TO tb_step")                                                       \
  X(HIST_SAVEPOINT, "SAVEPOINT tb_hist")                                                           \
  X(HIST_RELEASE, "RELEASE tb_hist")                                                               \
  X(HIST_ROLLBACK_TO, "ROLLBACK TO tb_hist")                                                       \
  X(USER_VERSION, "PRAGMA user_version")                                                           \
  X(IS_PROCESSED, "SELECT 1 FROM processed WHERE msg_id = ?1 "                                     \
                  "UNION ALL SELECT 1 FROM dead_letters WHERE msg_id = ?1 LIMIT 1")                \
  X(MARK_PROCESSED,                                                                                \
    "INSERT INTO processed(msg_id, event_type, tier, eff_tier, boost, reason, stream, "            \
    "stream_seq, deliveries, published_us, started_us, committed_us, outcome) "                    \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")                              \
  X(CLAIM_PROCESSED,                                                                               \
    "INSERT INTO processed(msg_id, event_type, tier, eff_tier, boost, reason, stream, "            \
    "stream_seq, deliveries, published_us, started_us, committed_us, outcome) "                    \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT(msg_id) DO "       \
    "NOTHING")                                                                                     \
  X(ACTIVITY, "INSERT INTO activity_log(msg_id, event_type, tier, correlation_id, key, "           \
              "payload_json, payload, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")              \
  X(DEAD_LETTER,                                                                                   \
    "INSERT INTO dead_letters(msg_id, event_type, tier, stream, stream_seq, reason, at_us, "       \
    "class, "                                                                                      \
    "subject, headers, payload, deliveries, dlq_seq) "                                             \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT(msg_id) DO "       \
    "UPDATE "                                                                                      \
    "SET event_type = excluded.event_type, tier = excluded.tier, stream = excluded.stream, "       \
    "stream_seq = excluded.stream_seq, reason = excluded.reason, at_us = excluded.at_us, "         \
    "class = excluded.class, subject = excluded.subject, headers = excluded.headers, "             \
    "payload = excluded.payload, deliveries = excluded.deliveries, dlq_seq = excluded.dlq_seq")    \
  /* dlq.c: the columns of an entry, in the order tb__dlq_read reads them. */                      \
  X(DLQ_LIST, "SELECT " TB__DLQ_COLS " FROM dead_letters WHERE (?1 = '' OR class = ?1) AND "       \
              "(?2 = '' OR tier = ?2) AND at_us >= ?3 ORDER BY at_us, rowid LIMIT ?4")             \
  X(DLQ_GET_ID, "SELECT " TB__DLQ_COLS " FROM dead_letters WHERE msg_id = ?1")                     \
  X(DLQ_GET_NO, "SELECT " TB__DLQ_COLS " FROM dead_letters WHERE rowid = ?1")                      \
  X(DLQ_DELETE, "DELETE FROM dead_letters WHERE msg_id = ?1")                                      \
  X(DLQ_OUTCOME, "SELECT outcome FROM processed WHERE msg_id = ?1")                                \
  X(DLQ_UNCLAIM, "DELETE FROM processed WHERE msg_id = ?1 AND outcome = 'dead'")                   \
  X(DLQ_REPLAYED, "UPDATE dead_letters SET replays = replays + 1, replayed_us = ?2 "               \
                  "WHERE msg_id = ?1 RETURNING replays")                                           \
  X(COUNTER_ADD, "INSERT INTO tier_counters(tier, domain, name, value) VALUES(?1, ?2, ?3, ?4) "    \
                 "ON CONFLICT(tier, domain, name) DO UPDATE SET value = value + excluded.value")   \
  X(HIST_BUCKET_ADD,                                                                               \
    "INSERT INTO latency_hist(tier, kind, bucket, count) VALUES(?1, ?2, ?3, ?4) "                  \
    "ON CONFLICT(tier, kind, bucket) DO UPDATE SET count = count + excluded.count")                \
  X(HIST_SUMMARY_ADD,                                                                              \
    "INSERT INTO latency_summary(tier, kind, total, max_us) VALUES(?1, ?2, ?3, ?4) "               \
    "ON CONFLICT(tier, kind) DO UPDATE SET total = total + excluded.total, "                       \
    "max_us = max(max_us, excluded.max_us)")                                                       \
  X(STATS_COUNTERS, "SELECT name, sum(value) FROM tier_counters WHERE tier = ?1 GROUP BY name")    \
  X(STATS_DOMAIN_COUNTERS, "SELECT domain, name, value FROM tier_counters WHERE tier = ?1")        \
  X(STATS_BUCKETS, "SELECT kind, bucket, count FROM latency_hist WHERE tier = ?1")                 \
  X(STATS_SUMMARY, "SELECT kind, total, max_us FROM latency_summary WHERE tier = ?1")              \
  X(MEMBERSHIP_VERSION, "SELECT present, occurred_us, stream, seq "                                \
                        "FROM workspace_membership_versions "                                      \
                        "WHERE workspace_id = ?1 AND repository_id = ?2")                          \
  X(MEMBERSHIP_VERSION_PUT,                                                                        \
    "INSERT INTO workspace_membership_versions(workspace_id, repository_id, present, "             \
    "occurred_us, stream, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "                                    \
    "ON CONFLICT(workspace_id, repository_id) DO UPDATE SET present = excluded.present, "          \
    "occurred_us = excluded.occurred_us, stream = excluded.stream, seq = excluded.seq")            \
  X(MEMBERSHIP_ADD, "INSERT OR IGNORE INTO workspace_repositories(workspace_id, repository_id, "   \
                    "added_at) VALUES(?1, ?2, ?3)")                                                \
  X(MEMBERSHIP_REMOVE, "DELETE FROM workspace_repositories "                                       \
                       "WHERE workspace_id = ?1 AND repository_id = ?2")                           \
  X(WORKSPACE_COUNT, "SELECT count(*) FROM workspace_repositories WHERE repository_id = ?1")       \
  X(REPO_GET, "SELECT priority, priority_score, is_workspace_repo, workspace_count, "              \
              "tracking_enabled, manual_override, marked_low, repository_name "                    \
              "FROM tracked_repositories WHERE repository_id = ?1")                                \
  X(REPO_PUT,                                                                                      \
    "INSERT INTO tracked_repositories(repository_id, priority, priority_score, "                   \
    "is_workspace_repo, workspace_count, tracking_enabled, manual_override, marked_low, "          \
    "updated_at, repository_name) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "                \
    "ON CONFLICT(repository_id) DO UPDATE SET priority = excluded.priority, "                      \
    "priority_score = excluded.priority_score, is_workspace_repo = excluded.is_workspace_repo, "   \
    "workspace_count = excluded.workspace_count, tracking_enabled = excluded.tracking_enabled, "   \
    "manual_override = excluded.manual_override, marked_low = excluded.marked_low, "               \
    "updated_at = excluded.updated_at, "                                                           \
    "repository_name = coalesce(excluded.repository_name, repository_name)")                       \
  X(PRIORITY_AUDIT, "INSERT INTO priority_audit(repository_id, old_priority, new_priority, "       \
                    "reason, msg_id, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                       \
  X(REPO_AUDIT_LIST, "SELECT coalesce(old_priority, ''), new_priority, reason, "                   \
                     "coalesce(msg_id, ''), at_us FROM priority_audit WHERE repository_id = ?1 "   \
                     "ORDER BY id DESC LIMIT ?2")                                                  \
  X(REPO_COUNTS, "SELECT count(*), coalesce(sum(is_workspace_repo), 0) FROM tracked_repositories") \
  /* A page of tracked repositories in id order after ?1; ?2 a priority, ?3 a workspace ('' =      \
   * any). The workspace test is a primary-key probe of workspace_repositories per row. */         \
  X(REPO_LIST,                                                                                     \
    "SELECT repository_id, priority, priority_score, is_workspace_repo, workspace_count, "         \
    "tracking_enabled, manual_override, marked_low, repository_name FROM tracked_repositories t "  \
    "WHERE repository_id > ?1 AND (?2 = '' OR priority = ?2) AND (?3 = '' OR EXISTS (SELECT 1 "    \
    "FROM workspace_repositories w WHERE w.workspace_id = ?3 AND "                                 \
    "w.repository_id = t.repository_id)) ORDER BY repository_id LIMIT ?4")                         \
  X(REPO_WORKSPACES, "SELECT workspace_id, added_at FROM workspace_repositories "                  \
                     "WHERE repository_id = ?1 ORDER BY workspace_id")                             \
  /* Seed 002's "priority distribution" query, over the repositories still tracked. */             \
  X(REPO_DISTRIBUTION,                                                                             \
    "SELECT is_workspace_repo, priority, count(*), avg(workspace_count), "                         \
    "sum(manual_override IS NOT NULL), sum(marked_low) FROM tracked_repositories "                 \
    "WHERE tracking_enabled = 1 GROUP BY is_workspace_repo, priority "                             \
    "ORDER BY is_workspace_repo DESC, max(priority_score) DESC")                                   \
  X(PRIO_SYNC_LIST,                                                                                \
    "SELECT id, owner, trigger, status, started_us, finished_us, workspace_repos, "                \
    "tracked_only_repos, priority_changes, rows_updated, attempts, errors "                        \
    "FROM priority_sync_runs ORDER BY id DESC LIMIT ?1")                                           \
  /* The live view of every tracked repository: stored row, live count and the rules' answer. */   \
  X(REPO_INVERSIONS,                                                                               \
    "SELECT repository_id, priority, expected, is_workspace_repo, workspace_count, cnt, "          \
    "coalesce(manual_override, '') FROM (SELECT *, tb_repo_priority(cnt, marked_low, "             \
    "manual_override) AS expected FROM (SELECT t.*, (SELECT count(*) FROM "                        \
    "workspace_repositories w WHERE w.repository_id = t.repository_id) AS cnt "                    \
    "FROM tracked_repositories t)) WHERE priority <> expected OR "                                 \
    "priority_score <> tb_repo_score(expected) OR is_workspace_repo <> (cnt >= 1) OR "             \
    "workspace_count <> cnt ORDER BY repository_id")                                               \
  X(REPO_SEED_INVERSIONS, "SELECT count(*) FROM tracked_repositories "                             \
                          "WHERE is_workspace_repo = 1 AND priority != 'high'")                    \
  X(SYNC_CALC_CLEAR, "DELETE FROM priority_sync_calc")                                             \
  X(SYNC_CALC_FILL,                                                                                \
    "INSERT INTO priority_sync_calc(repository_id, old_priority, old_score, old_is_ws, "           \
    "old_count, new_priority, new_score, new_is_ws, new_count, manual_override, marked_low) "      \
    "SELECT repository_id, priority, priority_score, is_workspace_repo, workspace_count, p, "      \
    "tb_repo_score(p), cnt >= 1, cnt, manual_override, marked_low FROM (SELECT *, "                \
    "tb_repo_priority(cnt, marked_low, manual_override) AS p FROM (SELECT t.*, (SELECT count(*) "  \
    "FROM workspace_repositories w WHERE w.repository_id = t.repository_id) AS cnt "               \
    "FROM tracked_repositories t WHERE t.repository_id > ?1 ORDER BY t.repository_id "             \
    "LIMIT ?2))")                                                                                  \
  X(SYNC_CALC_SUMMARY,                                                                             \
    "SELECT count(*), coalesce(sum(new_is_ws), 0), coalesce(sum(new_priority <> old_priority), "   \
    "0), coalesce(sum(new_priority <> old_priority OR new_score <> old_score OR "                  \
    "new_is_ws <> old_is_ws OR new_count <> old_count), 0), coalesce(max(repository_id), '') "     \
    "FROM priority_sync_calc")                                                                     \
  X(SYNC_CALC_APPLY,                                                                               \
    "UPDATE tracked_repositories SET priority = c.new_priority, priority_score = c.new_score, "    \
    "is_workspace_repo = c.new_is_ws, workspace_count = c.new_count, updated_at = ?1 "             \
    "FROM priority_sync_calc c WHERE c.repository_id = tracked_repositories.repository_id AND "    \
    "(c.new_priority <> c.old_priority OR c.new_score <> c.old_score OR "                          \
    "c.new_is_ws <> c.old_is_ws OR c.new_count <> c.old_count)")                                   \
  X(SYNC_CALC_AUDIT,                                                                               \
    "INSERT INTO priority_audit(repository_id, old_priority, new_priority, reason, msg_id, "       \
    "at_us) "                                                                                      \
    "SELECT repository_id, old_priority, new_priority, 'priority sync: ' || CASE "                 \
    "WHEN manual_override IS NOT NULL THEN printf('manual override ''%s''', manual_override) "     \
    "WHEN new_count >= 1 THEN printf('in %d workspace%s', new_count, iif(new_count = 1, '', "      \
    "'s')) "                                                                                       \
    "WHEN marked_low THEN 'in no workspace, marked low' ELSE 'in no workspace' END || "            \
    "printf('; stored %s/%d, is_workspace_repo %d, %d workspace%s', old_priority, old_score, "     \
    "old_is_ws, old_count, iif(old_count = 1, '', 's')), ?1, ?2 FROM priority_sync_calc "          \
    "WHERE new_priority <> old_priority OR new_score <> old_score OR new_is_ws <> old_is_ws OR "   \
    "new_count <> old_count ORDER BY repository_id")                                               \
  X(SYNC_CALC_CHANGED,                                                                             \
    "SELECT repository_id, old_priority, new_priority, new_score, new_is_ws, new_count "           \
    "FROM priority_sync_calc WHERE new_priority <> old_priority ORDER BY repository_id")           \
  X(LEASE_TAKE,                                                                                    \
    "INSERT INTO job_leases(name, owner, acquired_us, expires_us) VALUES(?1, ?2, ?3, ?4) "         \
    "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, acquired_us = excluded.acquired_us, " \
    "expires_us = excluded.expires_us WHERE job_leases.expires_us <= excluded.acquired_us OR "     \
    "job_leases.owner = excluded.owner")                                                           \
  X(LEASE_GET, "SELECT owner, expires_us FROM job_leases WHERE name = ?1")                         \
  X(LEASE_RENEW, "UPDATE job_leases SET expires_us = ?3 WHERE name = ?1 AND owner = ?2")           \
  X(LEASE_RELEASE, "DELETE FROM job_leases WHERE name = ?1 AND owner = ?2")                        \
  X(PRIO_SYNC_RECORD,                                                                              \
    "INSERT INTO priority_sync_runs(owner, trigger, status, started_us, finished_us, "             \
    "workspace_repos, tracked_only_repos, priority_changes, rows_updated, attempts, errors) "      \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")                                        \
  X(OUTBOX_HDR_TYPE, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END")                     \
  X(OUTBOX_HDR_BAD, "SELECT key, type FROM json_each(?1) "                                         \
                    "WHERE type <> 'text' OR lower(key) = 'nats-msg-id' OR key = '' LIMIT 1")      \
  X(OUTBOX_ADD, "INSERT INTO outbox(msg_id, subject, payload, headers, created_us, "               \
                "next_attempt_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(msg_id) DO NOTHING")  \
  X(OUTBOX_CANCEL, "DELETE FROM outbox WHERE msg_id = ?1")                                         \
  X(OUTBOX_NEXT_NOW, "SELECT id, msg_id, subject, payload, headers, created_us, attempts, "        \
                     "last_error FROM outbox WHERE next_attempt_us = 0 AND id > ?3 "               \
                     "ORDER BY id LIMIT ?2")                                                       \
  X(OUTBOX_NEXT_DUE_HELD, "SELECT id, msg_id, subject, payload, headers, created_us, attempts, "   \
                          "last_error FROM outbox WHERE next_attempt_us > 0 AND "                  \
                          "next_attempt_us <= ?1 AND id > ?3 ORDER BY next_attempt_us LIMIT ?2")   \
  X(OUTBOX_DELETE, "DELETE FROM outbox WHERE id = ?1")                                             \
  X(OUTBOX_FAILED, "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, "                  \
                   "next_attempt_us = ?3 WHERE id = ?1")                                           \
  X(OUTBOX_COUNT, "SELECT count(*) FROM outbox")                                                   \
  X(OUTBOX_NEXT_DUE, "SELECT min(next_attempt_us) FROM outbox")                                    \
  X(OUTBOX_CANCEL_PREFIX, "DELETE FROM outbox WHERE substr(msg_id, 1, length(?1)) = ?1")           \
  X(WF_INSERT,                                                                                     \
    "INSERT INTO workflows(id, name, domain, tier, status, step, step_state, attempt, seq, data, " \
    "error, correlation_id, cause_msg_id, created_us, updated_us) "                                \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14) "                    \
    "ON CONFLICT(id) DO NOTHING")                                                                  \
  X(WF_GET, "SELECT id, name, domain, tier, status, step, step_state, attempt, seq, data, error, " \
            "correlation_id, cause_msg_id, created_us, updated_us, finished_us, hist_id, rowid "   \
            "FROM workflows WHERE id = ?1")                                                        \
  X(WF_UPDATE,                                                                                     \
    "UPDATE workflows SET status = ?2, step = ?3, step_state = ?4, attempt = ?5, "                 \
    "seq = ?6, data = ?7, error = ?8, finished_us = ?9, updated_us = ?10, hist_id = ?11 "          \
    "WHERE id = ?1")                                                                               \
  /* Newest first by rowid (insertion order), from before row ?4: a keyset page is one range       \
   * seek on the table's own b-tree, whatever the filters, with no index to maintain. */           \
  X(WF_LIST, "SELECT id, name, domain, tier, status, step, step_state, attempt, seq, data, "       \
             "error, correlation_id, cause_msg_id, created_us, updated_us, finished_us, hist_id, " \
             "rowid FROM workflows WHERE rowid < ?4 AND (?1 = '' OR status = ?1) AND "             \
             "(?2 = '' OR name = ?2) ORDER BY rowid DESC LIMIT ?3")                                \
  X(WF_HIST_ADD,                                                                                   \
    "INSERT INTO workflow_history(workflow_id, step, name, kind, attempt, status, code, detail, "  \
    "result, error, tier, msg_id, started_us, ended_us) "                                          \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")                         \
  X(WF_HIST_END, "UPDATE workflow_history SET status = ?2, code = ?3, detail = ?4, result = ?5, "  \
                 "error = ?6, ended_us = ?7 WHERE id = ?1")                                        \
  X(WF_HISTORY, "SELECT id, step, name, kind, attempt, status, code, detail, result, error, "      \
                "tier, msg_id, started_us, ended_us FROM workflow_history "                        \
                "WHERE workflow_id = ?1 ORDER BY id")                                              \
  X(WF_WAIT_PUT, "INSERT INTO workflow_waits(workflow_id, seq, event, key, deadline_us) "          \
                 "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(workflow_id, seq) DO UPDATE SET "         \
                 "event = excluded.event, key = excluded.key, deadline_us = excluded.deadline_us") \
  X(WF_WAIT_TAKE, "DELETE FROM workflow_waits WHERE rowid = (SELECT rowid FROM workflow_waits "    \
                  "WHERE event = ?1 AND key = ?2 ORDER BY rowid LIMIT 1) "                         \
                  "RETURNING workflow_id, seq")                                                    \
  X(WF_WAIT_DROP, "DELETE FROM workflow_waits WHERE workflow_id = ?1 AND seq = ?2")                \
  X(WF_WAIT_KEY_OF, "SELECT key FROM workflow_waits WHERE workflow_id = ?1 AND event = ?2 "        \
                    "ORDER BY seq DESC LIMIT 1")                                                   \
  X(WF_WAIT_DROP_ALL, "DELETE FROM workflow_waits WHERE workflow_id = ?1")                         \
  X(WF_INBOX_ADD, "INSERT INTO workflow_inbox(event, key, msg_id, payload, code, workflow_id, "    \
                  "seq, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "                            \
                  "ON CONFLICT(msg_id) DO NOTHING")                                                \
  X(WF_INBOX_CLAIM, "UPDATE workflow_inbox SET workflow_id = ?3, seq = ?4 WHERE id = (SELECT id "  \
                    "FROM workflow_inbox WHERE event = ?1 AND key = ?2 AND workflow_id IS NULL "   \
                    "ORDER BY id LIMIT 1)")                                                        \
  X(WF_INBOX_GET, "SELECT payload, code FROM workflow_inbox WHERE workflow_id = ?1 AND seq = ?2 "  \
                  "ORDER BY id LIMIT 1")                                                           \
  X(SUB_PUT, "INSERT INTO subscribers(subscriber_id, email, email_type, source, created_us, "      \
             "updated_us) VALUES(?1, ?2, ?3, ?4, ?5, ?5) "                                         \
             "ON CONFLICT(subscriber_id) DO UPDATE SET "                                           \
             "email = excluded.email, email_type = excluded.email_type, "                          \
             "source = coalesce(excluded.source, source), updated_us = excluded.updated_us")       \
  X(SUB_GET, "SELECT subscriber_id, email, email_type, source, first_name, last_name, company, "   \
             "linkedin_url, enriched_fields, created_us, updated_us, enriched_us "                 \
             "FROM subscribers WHERE subscriber_id = ?1")                                          \
  X(SUB_ENRICH, "UPDATE subscribers SET first_name = coalesce(?2, first_name), "                   \
                "last_name = coalesce(?3, last_name), company = coalesce(?4, company), "           \
                "linkedin_url = coalesce(?5, linkedin_url), enriched_fields = ?6, "                \
                "enriched_us = ?7, updated_us = ?7 WHERE subscriber_id = ?1")                      \
  X(EJOB_QUEUE, "INSERT INTO enrichment_jobs(subscriber_id, email, status, created_us, "           \
                "updated_us) VALUES(?1, ?2, 'pending', ?3, ?3) "                                   \
                "ON CONFLICT(subscriber_id) WHERE status <> 'failed' DO NOTHING")                  \
  X(EJOB_LIVE, "SELECT id FROM enrichment_jobs WHERE subscriber_id = ?1 AND status <> 'failed'")   \
  X(EJOB_GET, "SELECT id, subscriber_id, email, status, batch_id, error, created_us, updated_us "  \
              "FROM enrichment_jobs WHERE id = ?1")                                                \
  X(EJOB_COUNT, "SELECT count(*) FROM enrichment_jobs WHERE ?1 IS NULL OR status = ?1")            \
  X(EJOB_PENDING_UPTO, "SELECT count(*) FROM (SELECT 1 FROM enrichment_jobs "                      \
                       "WHERE status = 'pending' ORDER BY id LIMIT ?1)")                           \
  X(EJOB_CLAIM, "UPDATE enrichment_jobs SET status = 'batched', batch_id = ?1, updated_us = ?2 "   \
                "WHERE id IN (SELECT id FROM enrichment_jobs WHERE status = 'pending' "            \
                "ORDER BY id LIMIT ?3)")                                                           \
  X(EJOB_OF_BATCH, "SELECT id, subscriber_id, email, status, batch_id, error, created_us, "        \
                   "updated_us FROM enrichment_jobs WHERE batch_id = ?1 ORDER BY id")              \
  X(EJOB_RESULT, "UPDATE enrichment_jobs SET status = ?3, error = ?4, updated_us = ?5 "            \
                 "WHERE batch_id = ?1 AND subscriber_id = ?2 AND status = 'batched'")              \
  X(EJOB_FAIL_OPEN, "UPDATE enrichment_jobs SET status = 'failed', error = ?2, updated_us = ?3 "   \
                    "WHERE batch_id = ?1 AND status = 'batched'")                                  \
  X(EBATCH_INSERT, "INSERT INTO enrichment_batches(batch_id, workflow_id, status, n_jobs, "        \
                   "created_us, updated_us) VALUES(?1, ?2, 'open', ?3, ?4, ?4)")                   \
  X(EBATCH_GET, "SELECT batch_id, workflow_id, status, n_jobs, enrichment_id, error, created_us, " \
                "updated_us FROM enrichment_batches WHERE batch_id = ?1")                          \
  X(EBATCH_SUBMITTED, "UPDATE enrichment_batches SET status = 'submitted', enrichment_id = ?2, "   \
                      "updated_us = ?3 WHERE batch_id = ?1")                                       \
  X(EBATCH_CLOSE, "UPDATE enrichment_batches SET status = ?2, error = ?3, updated_us = ?4 "        \
                  "WHERE batch_id = ?1")                                                           \
  X(ETRACK_PUT, "INSERT INTO enrichment_tracker(enrichment_id, workflow_id, batch_id, "            \
                "registered_us) VALUES(?1, ?2, ?3, ?4) ON CONFLICT(enrichment_id) DO UPDATE SET "  \
                "batch_id = excluded.batch_id, registered_us = excluded.registered_us "            \
                "WHERE workflow_id = excluded.workflow_id")                                        \
  X(ETRACK_GET, "SELECT workflow_id FROM enrichment_tracker WHERE enrichment_id = ?1")             \
  X(ETRACK_DEL, "DELETE FROM enrichment_tracker WHERE enrichment_id = ?1")                         \
  X(CRM_CLIENT_PUT,                                                                                \
    "INSERT INTO crm_clients(client_id, name, email, status, created_by, created_us, updated_us) " \
    "VALUES(?1, ?2, ?3, 'onboarding', ?4, ?5, ?5) ON CONFLICT(client_id) DO UPDATE SET "           \
    "name = coalesce(excluded.name, name), email = coalesce(excluded.email, email), "              \
    "created_by = coalesce(created_by, excluded.created_by), updated_us = excluded.updated_us")    \
  X(CRM_CLIENT_STATUS,                                                                             \
    "INSERT INTO crm_clients(client_id, status, created_us, updated_us, activated_us, "            \
    "completed_us) VALUES(?1, ?2, ?3, ?3, CASE WHEN ?2 = 'active' THEN ?3 END, "                   \
    "CASE WHEN ?2 = 'completed' THEN ?3 END) ON CONFLICT(client_id) DO UPDATE SET "                \
    "status = excluded.status, updated_us = excluded.updated_us, "                                 \
    "activated_us = coalesce(activated_us, excluded.activated_us), "                               \
    "completed_us = coalesce(completed_us, excluded.completed_us)")                                \
  X(CRM_CLIENT_GET, "SELECT client_id, name, email, status, created_by, created_us, updated_us, "  \
                    "activated_us, completed_us FROM crm_clients WHERE client_id = ?1")            \
  X(CRM_DELIV_SCHEDULE,                                                                            \
    "INSERT INTO crm_deliverables(client_id, month, status, due_us, workflow_id, scheduled_us, "   \
    "updated_us) VALUES(?1, ?2, 'scheduled', ?3, ?4, ?5, ?5) "                                     \
    "ON CONFLICT(client_id, month) DO NOTHING")                                                    \
  X(CRM_DELIV_GENERATED,                                                                           \
    "INSERT INTO crm_deliverables(client_id, month, status, due_us, workflow_id, deliverable_id, " \
    "scheduled_us, generated_us, updated_us) VALUES(?1, ?2, 'generated', ?3, ?4, ?5, ?6, ?6, ?6) " \
    "ON CONFLICT(client_id, month) DO UPDATE SET deliverable_id = excluded.deliverable_id, "       \
    "generated_us = excluded.generated_us, updated_us = excluded.updated_us, "                     \
    "status = CASE WHEN status = 'scheduled' THEN 'generated' ELSE status END")                    \
  X(CRM_DELIV_COMPLETED,                                                                           \
    "INSERT INTO crm_deliverables(client_id, month, status, due_us, deliverable_id, title, "       \
    "scheduled_us, completed_us, updated_us) VALUES(?1, ?2, 'completed', ?3, ?4, ?5, ?6, ?7, ?6) " \
    "ON CONFLICT(client_id, month) DO UPDATE SET status = 'completed', "                           \
    "deliverable_id = coalesce(excluded.deliverable_id, deliverable_id), "                         \
    "title = coalesce(excluded.title, title), completed_us = excluded.completed_us, "              \
    "updated_us = excluded.updated_us")                                                            \
  X(CRM_DELIV_OVERDUE,                                                                             \
    "INSERT INTO crm_deliverables(client_id, month, status, due_us, deliverable_id, title, "       \
    "scheduled_us, updated_us) VALUES(?1, ?2, 'overdue', ?3, ?4, ?5, ?6, ?6) "                     \
    "ON CONFLICT(client_id, month) DO UPDATE SET status = 'overdue', "                             \
    "due_us = CASE WHEN excluded.due_us > 0 THEN excluded.due_us ELSE due_us END, "                \
    "deliverable_id = coalesce(excluded.deliverable_id, deliverable_id), "                         \
    "title = coalesce(excluded.title, title), updated_us = excluded.updated_us "                   \
    "WHERE status <> 'completed'")                                                                 \
  X(CRM_DELIV_GET, "SELECT client_id, month, status, due_us, deliverable_id, title, workflow_id, " \
                   "scheduled_us, generated_us, completed_us, updated_us "                         \
                   "FROM crm_deliverables WHERE client_id = ?1 AND month = ?2")                    \
  X(CRM_PLAN_PUT,                                                                                  \
    "INSERT INTO crm_business_plans(client_id, business_plan_id, status, error, workflow_id, "     \
    "created_us, completed_us, updated_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, "                        \
    "CASE WHEN ?3 = 'completed' THEN ?6 END, ?6) ON CONFLICT(client_id) DO UPDATE SET "            \
    "business_plan_id = coalesce(excluded.business_plan_id, business_plan_id), "                   \
    "status = excluded.status, error = excluded.error, "                                           \
    "workflow_id = coalesce(excluded.workflow_id, workflow_id), "                                  \
    "completed_us = coalesce(excluded.completed_us, completed_us), "                               \
    "updated_us = excluded.updated_us")                                                            \
  X(CRM_PLAN_PDF, "UPDATE crm_business_plans SET pdf_id = ?2, pdf_path = ?3, updated_us = ?4 "     \
                  "WHERE client_id = ?1")                                                          \
  X(CRM_PLAN_GET, "SELECT client_id, business_plan_id, status, pdf_id, pdf_path, error, "          \
                  "workflow_id, created_us, completed_us, updated_us "                             \
                  "FROM crm_business_plans WHERE client_id = ?1")                                  \
  X(CRM_ACTIVITY_ADD, "INSERT INTO crm_activity(client_id, kind, description, user_id, "           \
                      "workflow_id, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                        \
  X(CRM_ACTIVITY_LIST, "SELECT id, client_id, kind, description, user_id, workflow_id, at_us "     \
                       "FROM crm_activity WHERE client_id = ?1 ORDER BY id")                       \
  X(WF_CTX_PUT, "INSERT INTO workflow_context(workflow_id, category, customer_facing, "            \
                "business_impact, requested_tier, automatic_tier, tier_rule, deadline_us) "        \
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(workflow_id) DO NOTHING")      \
  X(WF_CTX_GET, "SELECT category, customer_facing, business_impact, retries, requested_tier, "     \
                "automatic_tier, tier_rule, deadline_us "                                          \
                "FROM workflow_context WHERE workflow_id = ?1")                                    \
  X(WF_CTX_DEADLINE, "UPDATE workflow_context SET deadline_us = ?2 WHERE workflow_id = ?1")        \
  X(BREAKER_GET, "SELECT failures, window_start_us, open_until_us, opened_us, trips, held, "       \
                 "last_error, updated_us FROM circuit_breakers WHERE service = ?1")                \
  X(BREAKER_PUT, "INSERT INTO circuit_breakers(service, failures, window_start_us, "               \
                 "open_until_us, opened_us, trips, held, last_error, updated_us) "                 \
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(service) DO UPDATE SET "  \
                 "failures = ?2, window_start_us = ?3, open_until_us = ?4, opened_us = ?5, "       \
                 "trips = ?6, held = ?7, last_error = ?8, updated_us = ?9")                        \
  X(BREAKER_LIST, "SELECT service, failures, window_start_us, open_until_us, opened_us, trips, "   \
                  "held, last_error, updated_us FROM circuit_breakers ORDER BY service")           \
  X(WF_CTX_DEADLINE_SHIFT, "UPDATE workflow_context SET deadline_us = deadline_us + ?2 "           \
                           "WHERE workflow_id = ?1 AND deadline_us IS NOT NULL")                   \
  X(WF_OVERDUE, "SELECT w.id, w.tier, c.deadline_us FROM workflow_context c "                      \
                "JOIN workflows w ON w.id = c.workflow_id "                                        \
                "WHERE c.deadline_us IS NOT NULL AND c.deadline_us <= ?1 "                         \
                "AND w.status = 'running' ORDER BY c.deadline_us LIMIT ?2")                        \
  X(WF_CTX_RETRIED, "INSERT INTO workflow_context(workflow_id, retries) VALUES(?1, 1) "            \
                    "ON CONFLICT(workflow_id) DO UPDATE SET retries = retries + 1")                \
  X(WF_SET_TIER, "UPDATE workflows SET tier = ?2 WHERE id = ?1")                                   \
  X(WF_STUCK, "SELECT w.id, w.tier, w.updated_us, coalesce(c.customer_facing, 0), "                \
              "c.business_impact FROM workflows w "                                                \
              "LEFT JOIN workflow_context c ON c.workflow_id = w.id "                              \
              "WHERE w.status IN ('running', 'waiting') AND w.updated_us <= ?1 "                   \
              "AND w.tier NOT IN (SELECT value FROM json_each(?3)) "                               \
              "ORDER BY w.updated_us LIMIT ?2")                                                    \
  X(ESC_ADD, "INSERT INTO workflow_escalations(workflow_id, from_tier, to_tier, rule, source, "    \
             "detail, at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING")           \
  X(ESC_LIST, "SELECT from_tier, to_tier, rule, source, detail, at_us "                            \
              "FROM workflow_escalations WHERE workflow_id = ?1 ORDER BY id")                      \
  X(ESC_FIRED, "SELECT 1 FROM workflow_escalations "                                               \
               "WHERE workflow_id = ?1 AND rule = ?2 AND source = 'sweeper'")                      \
  X(ESC_COUNTS, "SELECT rule, count(*) FROM workflow_escalations GROUP BY rule "                   \
                "ORDER BY count(*) DESC, rule")                                                    \
  X(OUTBOX_DUE_OF, "SELECT next_attempt_us FROM outbox WHERE msg_id = ?1")                         \
  X(CRM_DELIV_OPEN_DUE, "SELECT client_id, month, status, due_us, deliverable_id, title "          \
                        "FROM crm_deliverables WHERE status IN ('scheduled', 'generated', "        \
                        "'overdue') AND due_us > 0 AND due_us < ?1 ORDER BY due_us, client_id")    \
  X(SCHED_PUT,                                                                                     \
    "INSERT INTO sched_tasks(name, pattern, job, payload, enabled, tier, description, "            \
    "catch_up, last_slot_us, created_us, updated_us) "                                             \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) ON CONFLICT(name) DO NOTHING")           \
  X(SCHED_GET, "SELECT " TB__SCHED_COLS " FROM sched_tasks WHERE name = ?1")                       \
  X(SCHED_LIST, "SELECT " TB__SCHED_COLS " FROM sched_tasks ORDER BY name")                        \
  X(SCHED_REMOVE, "DELETE FROM sched_tasks WHERE name = ?1")                                       \
  X(SCHED_ENABLE, "UPDATE sched_tasks SET last_slot_us = CASE WHEN ?2 = 1 AND enabled = 0 "        \
                  "THEN max(last_slot_us, ?3) ELSE last_slot_us END, enabled = ?2, "               \
                  "updated_us = ?3 WHERE name = ?1")                                               \
  X(SCHED_ADVANCE,                                                                                 \
    "UPDATE sched_tasks SET last_slot_us = ?2 WHERE name = ?1 AND last_slot_us < ?2")              \
  X(SCHED_CLAIM, "INSERT INTO sched_runs(task, slot_us, trigger, attempts, status, started_us) "   \
                 "VALUES(?1, ?2, ?3, 1, 'running', ?4) ON CONFLICT(task, slot_us) DO NOTHING")     \
  X(SCHED_RECLAIM, "UPDATE sched_runs SET attempts = ?3, status = 'running' WHERE task = ?1 AND "  \
                   "slot_us = ?2 AND attempts = ?3 - 1 AND status = 'retrying'")                   \
  X(SCHED_RUN_END, "UPDATE sched_runs SET status = ?3, result = ?4, error = ?5, finished_us = ?6 " \
                   "WHERE task = ?1 AND slot_us = ?2")                                             \
  X(SCHED_TASK_END, "UPDATE sched_tasks SET status = ?2, failure_count = ?3, last_error = ?4, "    \
                    "last_run_us = ?5, updated_us = ?5 WHERE name = ?1")                           \
  X(SCHED_RUN_GET, "SELECT trigger, attempts, status, result, error, started_us, finished_us "     \
                   "FROM sched_runs WHERE task = ?1 AND slot_us = ?2")                             \
  /* crm.c: the active clients the month-transition task publishes for, oldest first. */           \
  X(CRM_CLIENTS_ACTIVE, "SELECT client_id, coalesce(activated_us, created_us) FROM crm_clients "   \
                        "WHERE status = 'active' ORDER BY created_us, client_id")                  \
  /* crm.c: UPDATE_CLIENT_METRICS, for every client, as of ?1. */                                  \
  X(CRM_METRICS_UPDATE,                                                                            \
    "INSERT INTO crm_client_metrics(client_id, deliverables_completed, completed_on_time, "        \
    "completed_late, overdue_open, on_time_rate, last_activity_us, days_since_activity, "          \
    "computed_us) SELECT m.client_id, m.done, m.on_time, m.done - m.on_time, m.overdue, "          \
    "CASE WHEN m.done > 0 THEN CAST(m.on_time AS REAL) / m.done END, m.last, "                     \
    "CASE WHEN m.last IS NOT NULL THEN (?1 - m.last) / 86400000000 END, ?1 FROM (SELECT "          \
    "c.client_id AS client_id, (SELECT count(*) FROM crm_deliverables d WHERE d.client_id = "      \
    "c.client_id AND d.status = 'completed') AS done, (SELECT count(*) FROM crm_deliverables d "   \
    "WHERE d.client_id = c.client_id AND d.status = 'completed' AND d.completed_us <= d.due_us) "  \
    "AS on_time, (SELECT count(*) FROM crm_deliverables d WHERE d.client_id = c.client_id AND "    \
    "d.status <> 'completed' AND d.due_us < ?1) AS overdue, (SELECT max(a.at_us) FROM "            \
    "crm_activity a WHERE a.client_id = c.client_id) AS last FROM crm_clients c) AS m WHERE true " \
    "ON CONFLICT(client_id) DO UPDATE SET deliverables_completed = "                               \
    "excluded.deliverables_completed, "                                                            \
    "completed_on_time = excluded.completed_on_time, completed_late = excluded.completed_late, "   \
    "overdue_open = excluded.overdue_open, on_time_rate = excluded.on_time_rate, "                 \
    "last_activity_us = excluded.last_activity_us, days_since_activity = "                         \
    "excluded.days_since_activity, computed_us = excluded.computed_us")                            \
  X(CRM_METRICS_GET, "SELECT client_id, deliverables_completed, completed_on_time, "               \
                     "completed_late, overdue_open, coalesce(on_time_rate, -1), "                  \
                     "coalesce(last_activity_us, 0), coalesce(days_since_activity, -1), "          \
                     "computed_us FROM crm_client_metrics WHERE client_id = ?1")                   \
  /* sched.c: cleanup-old-jobs' logs. The activity log and dead letters by age; escalations by     \
   * age, only of runs that are finished or gone (a live run's rows keep its sweeper thresholds    \
   * from firing twice). */                                                                        \
  X(PURGE_ACTIVITY, "DELETE FROM activity_log WHERE at_us < ?1")                                   \
  X(PURGE_DEAD_LETTERS, "DELETE FROM dead_letters WHERE at_us < ?1")                               \
  X(PURGE_INBOX_UNCLAIMED, "DELETE FROM workflow_inbox WHERE workflow_id IS NULL AND at_us < ?1")  \
  X(PURGE_ESCALATIONS,                                                                             \
    "DELETE FROM workflow_escalations WHERE at_us < ?1 AND workflow_id NOT IN (SELECT id FROM "    \
    "workflows WHERE status IN ('running', 'waiting', 'sleeping'))")                               \
  /* sched.c: `schedule reset-defaults` puts a default task back as the seed defines it. */        \
  X(SCHED_RESET,                                                                                   \
    "UPDATE sched_tasks SET pattern = ?2, job = ?3, payload = ?4, enabled = ?5, "                  \
    "tier = ?6, description = ?7, catch_up = ?8, status = 'idle', failure_count = 0, "             \
    "last_error = NULL, last_slot_us = max(last_slot_us, ?9), updated_us = ?9 "                    \
    "WHERE name = ?1")                                                                             \
  /* slots.c: seed 001's per-service concurrency (service_slots). Holders (waiting 0) count        \
   * against the limit; waiters (waiting 1) queue by acquired_us, the time they first waited. */   \
  X(SLOT_EXPIRE, "DELETE FROM service_slots WHERE service = ?1 AND expires_us <= ?2")              \
  X(SLOT_MINE, "SELECT waiting, acquired_us FROM service_slots WHERE workflow_id = ?1 AND "        \
               "step = ?2")                                                                        \
  X(SLOT_COUNT, "SELECT count(*) FROM service_slots WHERE service = ?1 AND waiting = 0 AND NOT "   \
                "(workflow_id = ?2 AND step = ?3)")                                                \
  X(SLOT_AHEAD, "SELECT count(*) FROM service_slots WHERE service = ?1 AND waiting = 1 AND "       \
                "acquired_us < ?2 AND NOT (workflow_id = ?3 AND step = ?4)")                       \
  X(SLOT_TAKE,                                                                                     \
    "INSERT INTO service_slots(service, workflow_id, step, command_id, acquired_us, "              \
    "expires_us, waiting) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(workflow_id, "            \
    "step) DO UPDATE SET service = excluded.service, command_id = excluded.command_id, "           \
    "acquired_us = CASE WHEN waiting = 1 AND excluded.waiting = 1 THEN acquired_us "               \
    "ELSE excluded.acquired_us END, expires_us = excluded.expires_us, "                            \
    "waiting = excluded.waiting")                                                                  \
  X(SLOT_RELEASE, "DELETE FROM service_slots WHERE workflow_id = ?1 AND (?2 = '' OR step = ?2)")   \
  X(SLOT_IN_USE, "SELECT count(*) FROM service_slots WHERE service = ?1 AND waiting = 0 AND "      \
                 "expires_us > ?2")                                                                \
  X(SCHED_PURGE_RUNS, "DELETE FROM sched_runs WHERE status IN ('ok', 'failed') "                   \
                      "AND finished_us < ?1")                                                      \
  X(PURGE_WF_HISTORY, "DELETE FROM workflow_history WHERE workflow_id IN (" TB__FINISHED_WF ")")   \
  X(PURGE_WF_INBOX, "DELETE FROM workflow_inbox WHERE workflow_id IN (" TB__FINISHED_WF ")")       \
  X(PURGE_WF_WAITS, "DELETE FROM workflow_waits WHERE workflow_id IN (" TB__FINISHED_WF ")")       \
  X(PURGE_WF, "DELETE FROM workflows WHERE id IN (" TB__FINISHED_WF ")")                           \
  /* monitor.c: read-only figures for /api/monitoring and /metrics. Runs finished since ?1:        \
   * updated_us is a finished run's finish time, so workflows_status serves the range. */          \
  X(MON_RUNS, "SELECT tier, count(*), sum(status = 'completed'), sum(status = 'failed'), "         \
              "avg(finished_us - created_us), max(finished_us - created_us) FROM workflows "       \
              "WHERE status IN ('completed', 'failed') AND updated_us >= ?1 "                      \
              "AND finished_us IS NOT NULL GROUP BY tier")                                         \
  /* The p50 and p99 run durations per tier: the rows at ranks ceil(n/2) and ceil(0.99 n). */      \
  X(MON_RUN_QUANTILES,                                                                             \
    "SELECT tier, rn, n, d FROM (SELECT tier, finished_us - created_us AS d, row_number() OVER "   \
    "(PARTITION BY tier ORDER BY finished_us - created_us) AS rn, count(*) OVER (PARTITION BY "    \
    "tier) AS n FROM workflows WHERE status IN ('completed', 'failed') AND updated_us >= ?1 "      \
    "AND finished_us IS NOT NULL) WHERE rn = (n * 50 + 99) / 100 OR rn = (n * 99 + 99) / 100")     \
  X(MON_ACTIVE, "SELECT tier, status, count(*) FROM workflows "                                    \
                "WHERE status IN ('running', 'waiting', 'sleeping') GROUP BY tier, status")        \
  X(MON_ESCALATIONS, "SELECT to_tier, rule, count(*) FROM workflow_escalations "                   \
                     "GROUP BY to_tier, rule ORDER BY to_tier, rule")                              \
  /* Due rows (lag) and held ones (timers): a due row waits since the later of its creation and    \
   * its retry time. */                                                                            \
  X(MON_OUTBOX, "SELECT count(*), coalesce(min(max(created_us, next_attempt_us)), 0), "            \
                "(SELECT count(*) FROM outbox WHERE next_attempt_us > ?1) "                        \
                "FROM outbox WHERE next_attempt_us <= ?1")                                         \
  X(MON_SCHED_RUNS, "SELECT task, status, count(*) FROM sched_runs GROUP BY task, status "         \
                    "ORDER BY task, status")                                                       \
  /* Held outbox rows (timers, retry delays) by the tier token of their event subject              \
   * (tb.evt.<tier>.<domain>.<event>); commands (tb.cmd.) and others have no tier: ''. */          \
  X(MON_DELAYED, "SELECT CASE WHEN substr(subject, 1, 7) = 'tb.evt.' THEN substr(subject, 8, "     \
                 "instr(substr(subject, 8), '.') - 1) ELSE '' END, '', count(*) FROM outbox "      \
                 "WHERE next_attempt_us > ?1 GROUP BY 1")                                          \
  /* The newest activity row outside a scan of the last ?1 rows: when it is inside the monitor's   \
   * window, the window was not read whole. */                                                     \
  X(MON_ACTIVITY_UNSCANNED,                                                                        \
    "SELECT at_us FROM activity_log WHERE id <= (SELECT coalesce(max(id), "                        \
    "0) FROM activity_log) - ?1 ORDER BY id DESC LIMIT 1")

typedef enum tb__store_stmt_id {
#define TB__STMT_ENUM(name, sql) TB__ST_##name,
  TB__STORE_STMTS(TB__STMT_ENUM)
#undef TB__STMT_ENUM
      TB__ST_COUNT
} tb__store_stmt_id;

struct tb_checkpointer;

struct tb_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[TB__ST_COUNT];
  int savepoints; /* open tb_msg savepoints, so a stray release/rollback_to is caught */
  int busy_ms;    /* the busy timeout in force, for code that shortens it for a while */
  struct tb_checkpointer *ckpt; /* background checkpoints, when offloaded; owned */
  int wal_busy_frames;          /* past this a busy writer restarts the WAL itself (store.c) */
};

/* Prepared statement |id|, ready to bind (it was reset after its last use). Borrowed. */
static inline sqlite3_stmt *tb__stmt(tb_store_t *st, tb__store_stmt_id id) {
  return st->stmt[id];
}

/* Resets |stmt| and clears its bindings so that it holds no read snapshot and no stale value;
 * every use of a statement ends here, on success and failure alike. */
static inline void tb__stmt_done(sqlite3_stmt *stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}

/* Binds |s| as text, or NULL when |s| is NULL or empty, so that optional fields read back as
 * NULL rather than as two different kinds of "nothing". */
int tb__bind_opt_text(sqlite3_stmt *stmt, int i, const char *s);

/* Column |col| of the current row copied into |buf| (cap bytes); "" for SQL NULL. */
void tb__col_copy(sqlite3_stmt *stmt, int col, char *buf, size_t cap);

/* Column |col| as a new string (caller frees), or NULL for SQL NULL; *oom set when the copy
 * failed. */
char *tb__col_dup(sqlite3_stmt *stmt, int col, int *oom);

/* Steps |stmt|, which returns no rows, and resets it; *changes (may be NULL) receives the rows it
 * changed. On failure the detail names |what| and |id|. */
tb_status tb__exec_done(tb_store_t *st, sqlite3_stmt *stmt, int *changes, const char *what,
                        const char *id);

/* Maps SQLite result |rc| to TB_ERR_BUSY (SQLITE_BUSY, SQLITE_LOCKED) or TB_ERR_STORE and sets the
 * detail to the formatted context, then ": ", then sqlite3_errmsg(db). Call it before the
 * statement is reset, while the message still describes the failure. */
tb_status tb__store_fail(sqlite3 *db, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Binds the priority rules (repo.c) to |db| as the SQL functions tb_repo_priority(count,
 * marked_low, override) and tb_repo_score(priority); runs before the statements are prepared. */
tb_status tb__repo_register_functions(sqlite3 *db);

/* Migrations (migrations.c): the schema version this build writes, and the upgrade of |db| to it.
 * Each pending migration runs in its own BEGIN IMMEDIATE transaction that also bumps
 * PRAGMA user_version, so a crash leaves the database at a whole version. A database from a
 * newer build is refused with TB_ERR_STORE; nothing is changed then. */
int tb__store_latest_version(void);
tb_status tb__store_migrate(sqlite3 *db, const char *path);

#endif
