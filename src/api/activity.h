/* The activity log seen from outside: each row with its payload as JSON, whichever form the row
 * stored it in (store/store.h, tb_activity_t), shared by `tierbus activity` (cli/cmd_activity.c)
 * and the HTTP monitor; and seed 002's repository-job success counts, read from the same rows. */
#ifndef TB_API_ACTIVITY_H
#define TB_API_ACTIVITY_H

#include <jansson.h>
#include <stdint.h>

#include "codec/catalogue.h"
#include "store/store.h"

/* Row |a| as JSON: id, at (RFC 3339), msg_id, event_type, tier, correlation_id, key and payload
 * (an object; null when the row has none). A payload that does not decode (an event type this
 * build does not know, or bytes that are not its message) is shown as payload null with
 * payload_error saying why: a trail is read to debug, so a bad row is shown, not refused. New
 * reference; NULL when memory runs out. */
json_t *tb_activity_json(const tb_catalogue_t *cat, const tb_activity_t *a);

/* Seed 002's repository jobs (capture/repository.sync) applied since |since_us|, by the
 * metadata.is_workspace_repo their payload carried, among the activity log's last |max_rows| rows
 * (the bound keeps a scrape's cost fixed). *truncated = 1 when rows inside the window lay beyond
 * that bound. */
tb_status tb_activity_repo_jobs_ok(tb_store_t *st, int64_t since_us, int64_t max_rows,
                                   int64_t *workspace_ok, int64_t *tracked_only_ok, int *truncated);

#endif
