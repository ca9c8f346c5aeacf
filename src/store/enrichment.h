/* Seed 003's enrichment state (migration v5): subscribers, their enrichment jobs, the batches that
 * claim pending jobs, and the tracker that maps a provider's enrichment id to the workflow waiting
 * for its results. Only data access lives here; the workflow that drives it is
 * src/workflows/enrichment.c. Every call runs inside the caller's transaction. */
#ifndef TB_STORE_ENRICHMENT_H
#define TB_STORE_ENRICHMENT_H

#include <stdint.h>

#include "store/repo.h"
#include "store/store.h"

/* Seed 003: a batch holds at most this many jobs. */
#define TB_ENRICH_BATCH_MAX 100

/* A subscriber as stored. The strings are owned by the struct (NULL when unset); release them with
 * tb_store_subscriber_clear(). */
typedef struct tb_subscriber {
  char subscriber_id[TB_ID_MAX];
  char email_type[16]; /* "personal", "corporate", "unspecified" */
  char *email, *source;
  char *first_name, *last_name, *company, *linkedin_url;
  char *fields_json; /* every enriched field as a JSON object, NULL until enriched */
  int64_t created_us, updated_us, enriched_us;
} tb_subscriber_t;

void tb_store_subscriber_clear(tb_subscriber_t *s);

/* Inserts subscriber |id| or updates its email, type and (when given) source. |email_type| must be
 * "personal", "corporate" or "unspecified"; |source| may be NULL. TB_ERR_INVALID (nothing written)
 * for an empty or over-long id, an empty email or an unknown type. Enriched fields are kept. */
tb_status tb_store_subscriber_put(tb_store_t *st, const char *id, const char *email,
                                  const char *email_type, const char *source);

/* Reads subscriber |id| into |out| (cleared first; caller clears it). *found = 0 when unknown. */
tb_status tb_store_subscriber_get(tb_store_t *st, const char *id, tb_subscriber_t *out, int *found);

/* One enrichment job. status: "pending" (waiting for a batch), "batched", "done" or "failed".
 * In tb_store_enrich_job_get's result |email| and |error| are owned (tb_store_enrich_job_clear);
 * in callbacks they are borrowed for the call. */
typedef struct tb_enrich_job {
  int64_t id;
  char subscriber_id[TB_ID_MAX];
  char status[16];
  char batch_id[TB_ID_MAX]; /* "" while pending */
  char *email;
  char *error; /* NULL unless failed */
  int64_t created_us, updated_us;
} tb_enrich_job_t;

void tb_store_enrich_job_clear(tb_enrich_job_t *j);

/* Queues a pending job for subscriber |subscriber_id| (which must exist) unless it already has a
 * live one (pending, batched or done): then *queued = 0 and nothing is written. A failed job does
 * not count, so a subscriber whose enrichment failed can be queued again. *job_id (may be NULL)
 * receives the new or the live job's id. */
tb_status tb_store_enrich_job_queue(tb_store_t *st, const char *subscriber_id, const char *email,
                                    int64_t *job_id, int *queued);

/* Reads job |id| into |out| (cleared first; caller clears it). *found = 0 when unknown. */
tb_status tb_store_enrich_job_get(tb_store_t *st, int64_t id, tb_enrich_job_t *out, int *found);

/* *n = jobs in |status| (NULL = every job). */
tb_status tb_store_enrich_job_count(tb_store_t *st, const char *status, int64_t *n);

/* *n = pending jobs, counted up to |limit| (a batch's worth): the cost does not grow with a
 * backlog. */
tb_status tb_store_enrich_pending_upto(tb_store_t *st, int limit, int64_t *n);

/* Claims up to |limit| (1..TB_ENRICH_BATCH_MAX) pending jobs, oldest first, into a new batch
 * |batch_id| owned by |workflow_id|: the jobs become "batched", so no other batch can claim them.
 * *n receives the count; with no pending job nothing is written (no batch row) and *n = 0.
 * |fn| (may be NULL) is then called for every job of the batch in id order; a non-zero return
 * stops the walk. TB_ERR_INVALID (nothing written) for a bad limit, an empty or over-long id, or a
 * batch id that already exists. */
tb_status tb_store_enrich_batch_claim(tb_store_t *st, const char *batch_id, const char *workflow_id,
                                      int limit, int (*fn)(void *arg, const tb_enrich_job_t *job),
                                      void *arg, int *n);

/* Calls |fn| for every job of batch |batch_id| in id order (strings borrowed for the call); a
 * non-zero return stops the walk. */
tb_status tb_store_enrich_batch_jobs(tb_store_t *st, const char *batch_id,
                                     int (*fn)(void *arg, const tb_enrich_job_t *job), void *arg);

/* A batch as stored. status: "open" (claimed), "submitted", "done" or "failed". */
typedef struct tb_enrich_batch {
  char batch_id[TB_ID_MAX];
  char workflow_id[TB_ID_MAX];
  char status[16];
  int n_jobs;
  char enrichment_id[TB_ID_MAX]; /* "" until submitted */
  char error[256];               /* "" unless failed; truncated */
  int64_t created_us, updated_us;
} tb_enrich_batch_t;

/* Reads batch |batch_id|; *found = 0 when unknown. */
tb_status tb_store_enrich_batch_get(tb_store_t *st, const char *batch_id, tb_enrich_batch_t *out,
                                    int *found);

/* Records that batch |batch_id| was accepted by the provider as |enrichment_id|. TB_ERR_NOT_FOUND
 * for an unknown batch, TB_ERR_INVALID for an empty enrichment id. */
tb_status tb_store_enrich_batch_submitted(tb_store_t *st, const char *batch_id,
                                          const char *enrichment_id);

/* What the provider found for one subscriber. Every pointer may be NULL (not found); |fields_json|
 * is the whole result as a JSON object text. Borrowed. */
typedef struct tb_enrichment {
  const char *first_name, *last_name, *company, *linkedin_url;
  const char *fields_json;
} tb_enrichment_t;

/* Applies one successful result: the subscriber's enriched fields are updated (a field the result
 * lacks keeps its old value) and its job in |batch_id| becomes "done". A subscriber without a
 * batched job in that batch (not part of it, or already settled) changes nothing: *applied = 0. */
tb_status tb_store_enrich_result_ok(tb_store_t *st, const char *batch_id, const char *subscriber_id,
                                    const tb_enrichment_t *e, int *applied);

/* Applies one failed result: the subscriber's batched job in |batch_id| becomes "failed" with
 * |error| (required). *applied as for tb_store_enrich_result_ok. */
tb_status tb_store_enrich_result_failed(tb_store_t *st, const char *batch_id,
                                        const char *subscriber_id, const char *error, int *applied);

/* Closes batch |batch_id| with |status| "done" or "failed": every job still "batched" in it
 * becomes "failed" with |error| (required: why it got no result), and the batch keeps |error|
 * when it failed. *n_failed (may be NULL) receives how many jobs were failed here.
 * TB_ERR_NOT_FOUND for an unknown batch. */
tb_status tb_store_enrich_batch_close(tb_store_t *st, const char *batch_id, const char *status,
                                      const char *error, int64_t *n_failed);

/* The tracker (seed 003's workflow-tracker): enrichment id -> workflow id. track registers the
 * mapping (again by the same workflow: no-op); a mapping held by another workflow is
 * TB_ERR_INVALID naming both. lookup sets *found = 0 when none. untrack removes it; *removed
 * (may be NULL) = 1 when a row went. */
tb_status tb_store_enrich_track(tb_store_t *st, const char *enrichment_id, const char *workflow_id,
                                const char *batch_id);
tb_status tb_store_enrich_lookup(tb_store_t *st, const char *enrichment_id, char *workflow_id,
                                 size_t cap, int *found);
tb_status tb_store_enrich_untrack(tb_store_t *st, const char *enrichment_id, int *removed);

#endif
