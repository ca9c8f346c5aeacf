/* Seed 001's client journey state (migration v5): clients, the monthly deliverables of the
 * 8-month programme, business plans and the journey's activity log. Only data access lives here;
 * the workflows that drive it are in src/workflows/crm.c. Every call runs inside the caller's
 * transaction. */
#ifndef TB_STORE_CRM_H
#define TB_STORE_CRM_H

#include <stdint.h>

#include "store/repo.h"
#include "store/store.h"

/* Programme months: deliverables M1..M8. */
#define TB_CRM_MONTHS 8

/* A client as stored. status: "onboarding" (created), "active", "completed" (programme done). */
typedef struct tb_crm_client {
  char client_id[TB_ID_MAX];
  char name[256];  /* "" when unknown; truncated */
  char email[256]; /* "" when unknown; truncated */
  char status[16];
  char created_by[TB_ID_MAX];
  int64_t created_us, updated_us, activated_us, completed_us; /* 0 = never */
} tb_crm_client_t;

/* Records client |client_id| (status onboarding when new). |name|, |email| and |created_by| may be
 * NULL or "" (unknown: an existing value is kept). TB_ERR_INVALID for an empty or over-long id. */
tb_status tb_store_crm_client_put(tb_store_t *st, const char *client_id, const char *name,
                                  const char *email, const char *created_by);

/* Sets the client's status ("onboarding", "active" or "completed"), creating the row when the
 * client is unknown (its journey may have started before tierbus saw it). The first activation and
 * the first completion are time-stamped. TB_ERR_INVALID for another status. */
tb_status tb_store_crm_client_status(tb_store_t *st, const char *client_id, const char *status);

/* *found = 0 (and |out| zeroed) when the client is unknown. */
tb_status tb_store_crm_client_get(tb_store_t *st, const char *client_id, tb_crm_client_t *out,
                                  int *found);

/* One monthly deliverable. status: "scheduled" (due date set, not generated yet), "generated"
 * (deliverable_id known), "completed", "overdue". */
typedef struct tb_crm_deliverable {
  char client_id[TB_ID_MAX];
  int month;
  char status[16];
  int64_t due_us;
  char deliverable_id[TB_ID_MAX]; /* "" until generated */
  char title[256];
  char workflow_id[TB_ID_MAX]; /* the workflow that scheduled it; "" when none */
  int64_t scheduled_us, generated_us, completed_us, updated_us;
} tb_crm_deliverable_t;

/* Schedules month |month| (1..8) of |client_id| due at |due_us| unless the month already has a row
 * (then nothing changes). |out| (may be NULL) receives the month's row as it now stands, so the
 * caller can tell whether it still needs generating. TB_ERR_INVALID for a month outside 1..8 or a
 * bad id. */
tb_status tb_store_crm_deliverable_schedule(tb_store_t *st, const char *client_id, int month,
                                            int64_t due_us, const char *workflow_id,
                                            tb_crm_deliverable_t *out);

/* Records the generated deliverable |deliverable_id| (required) of the month. A scheduled month
 * becomes "generated"; a completed or overdue one keeps its status. A month never scheduled is
 * created as generated, due at |due_us|. */
tb_status tb_store_crm_deliverable_generated(tb_store_t *st, const char *client_id, int month,
                                             const char *deliverable_id, int64_t due_us,
                                             const char *workflow_id);

/* Marks the month completed at |completed_us|. |deliverable_id| and |title| may be NULL (kept);
 * an unknown month is created completed. */
tb_status tb_store_crm_deliverable_completed(tb_store_t *st, const char *client_id, int month,
                                             const char *deliverable_id, const char *title,
                                             int64_t completed_us);

/* Marks the month overdue (|due_us| > 0 replaces the due date) unless it is already completed:
 * then nothing changes and *marked = 0. An unknown month is created overdue. */
tb_status tb_store_crm_deliverable_overdue(tb_store_t *st, const char *client_id, int month,
                                           const char *deliverable_id, const char *title,
                                           int64_t due_us, int *marked);

/* *found = 0 (and |out| zeroed) when the month has no row. */
tb_status tb_store_crm_deliverable_get(tb_store_t *st, const char *client_id, int month,
                                       tb_crm_deliverable_t *out, int *found);

/* A client's business plan (one per client; a new generation replaces it). status: "requested",
 * "generated", "completed", "failed". */
typedef struct tb_crm_plan {
  char client_id[TB_ID_MAX];
  char business_plan_id[TB_ID_MAX];
  char status[16];
  char pdf_id[TB_ID_MAX];
  char pdf_path[512];
  char error[256];
  char workflow_id[TB_ID_MAX];
  int64_t created_us, completed_us, updated_us;
} tb_crm_plan_t;

/* Sets the plan's status; |business_plan_id| and |workflow_id| may be NULL (kept), |error| is
 * stored as given (NULL clears it). TB_ERR_INVALID for an unknown status or a bad id. */
tb_status tb_store_crm_plan_put(tb_store_t *st, const char *client_id, const char *status,
                                const char *business_plan_id, const char *workflow_id,
                                const char *error);

/* Records the plan's PDF. TB_ERR_NOT_FOUND when the client has no plan row. */
tb_status tb_store_crm_plan_pdf(tb_store_t *st, const char *client_id, const char *pdf_id,
                                const char *pdf_path);

tb_status tb_store_crm_plan_get(tb_store_t *st, const char *client_id, tb_crm_plan_t *out,
                                int *found);

/* One entry of the journey's activity log. Strings borrowed for the callback. */
typedef struct tb_crm_activity {
  int64_t id;
  const char *client_id, *kind, *description;
  const char *user_id, *workflow_id; /* NULL when unknown */
  int64_t at_us;
} tb_crm_activity_t;

/* Appends to the activity log. |kind| ("client-created", "deliverable-completed", ...) and
 * |description| are required; |user_id| and |workflow_id| may be NULL. */
tb_status tb_store_crm_activity(tb_store_t *st, const char *client_id, const char *kind,
                                const char *description, const char *user_id,
                                const char *workflow_id);

/* Calls |fn| for each activity of |client_id|, oldest first; a non-zero return stops the walk. */
tb_status tb_store_crm_activity_list(tb_store_t *st, const char *client_id,
                                     int (*fn)(void *arg, const tb_crm_activity_t *a), void *arg);

/* Calls |fn| for each deliverable that is not completed and whose due date is before |now_us|
 * (scheduled, generated or already overdue), oldest due first; a non-zero return stops the walk.
 * The row is borrowed for the call; only client_id, month, status, due_us, deliverable_id and
 * title are filled. For the scheduler's send-reminder-emails. */
tb_status tb_store_crm_deliverables_past_due(tb_store_t *st, int64_t now_us,
                                             int (*fn)(void *arg, const tb_crm_deliverable_t *d),
                                             void *arg);

/* Calls |fn| with each active client's id (borrowed) and activation time (its creation time
 * when it has none), oldest client first; a non-zero return stops the walk. For the scheduler's
 * month-transition task. */
tb_status tb_store_crm_clients_active(
    tb_store_t *st, int (*fn)(void *arg, const char *client_id, int64_t activated_us), void *arg);

/* A client's engagement metrics (UPDATE_CLIENT_METRICS, table crm_client_metrics), as of
 * computed_us: deliverables completed, of those completed by their due date (on time) and after
 * it (late), deliverables open past their due date (overdue_open), the on-time share of the
 * completed ones (-1 when none is completed), the newest journey activity (0 = none) and whole
 * days since it (-1 = no activity). */
typedef struct tb_crm_metrics {
  char client_id[TB_ID_MAX];
  int64_t deliverables_completed, completed_on_time, completed_late, overdue_open;
  double on_time_rate;
  int64_t last_activity_us, days_since_activity, computed_us;
} tb_crm_metrics_t;

/* Recomputes every client's metrics as of |now_us| in one statement; *clients (may be NULL) gets
 * the number of clients written. */
tb_status tb_store_crm_metrics_update(tb_store_t *st, int64_t now_us, int64_t *clients);

/* *found = 0 (and |out| zeroed) when the client has no metrics yet. */
tb_status tb_store_crm_metrics_get(tb_store_t *st, const char *client_id, tb_crm_metrics_t *out,
                                   int *found);

#endif
