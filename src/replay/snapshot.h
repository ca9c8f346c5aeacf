/* Snapshots of the database with the stream positions they cover, which bound how much of the log
 * a rebuild replays: taking one (`tierbus db snapshot`), the directory they are kept in
 * (<data_dir>/snapshots), the newest of them (`rebuild --from-snapshot`), and the background
 * thread of `worker` and `dev` that takes one every snapshot_interval and keeps snapshot_keep. */
#ifndef TB_REPLAY_SNAPSHOT_H
#define TB_REPLAY_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "config/config.h"
#include "store/logstate.h"

/* The snapshot directory, <data_dir>/snapshots, into |buf|; TB_ERR_INVALID when it does not fit. */
tb_status tb_snapshot_dir(const tb_config_t *cfg, char *buf, size_t cap);

/* Reads the ack floor of every tier consumer (each (tier, domain) of |cfg|), then writes a
 * snapshot of cfg->db_path to |path| recording floor + 1 per stream (tb_store_snapshot, paced by
 * |pace|, may be NULL): the floors first, so that everything before each position is committed
 * when the copy starts. *n_pos (may be NULL) gets the number of positions. TB_ERR_NATS /
 * TB_ERR_UNAVAILABLE when a floor cannot be read, else tb_store_snapshot's statuses. */
tb_status tb_snapshot_take(tb_bus_t *bus, const tb_config_t *cfg, const char *path,
                           const tb_snapshot_pace_t *pace, int *n_pos);

/* Takes a snapshot into the snapshot directory (created if needed) as
 * snapshot-<UTC time>.db, then deletes all but the newest cfg->snapshot_keep there, while holding
 * the directory's lock (<dir>/.lock, flock) so that two processes never write or prune at once.
 * With |min_age_ms| > 0 it takes none when the newest snapshot there is younger than that (another
 * process sharing the database took it): *path is then "". *path (|cap| bytes) gets the new
 * file, *pruned (may be NULL) the number deleted. TB_ERR_BUSY when another process holds the lock
 * (it is taking one), TB_ERR_IO for the directory, else tb_snapshot_take's statuses. */
tb_status tb_snapshot_take_dir(tb_bus_t *bus, const tb_config_t *cfg, int64_t min_age_ms,
                               const tb_snapshot_pace_t *pace, char *path, size_t cap, int *pruned);

/* The newest snapshot of the snapshot directory into |path|, and its time (wall clock, ms) into
 * *at_ms (may be NULL). TB_ERR_NOT_FOUND, with a detail naming the directory, when it holds
 * none. */
tb_status tb_snapshot_latest(const tb_config_t *cfg, char *path, size_t cap, int64_t *at_ms);

/* The periodic snapshots of a worker process. */
typedef struct tb_snapshotter tb_snapshotter_t;

/* Starts the thread: one interval (cfg->snapshot_interval_ms, > 0) after the newest snapshot in
 * the directory (after the start when there is none) it takes one, unless another process sharing
 * the directory did, prunes to cfg->snapshot_keep and logs it; a failure is logged and tried again
 * a minute later (or an interval, if shorter). It copies from a connection of its own, in steps,
 * at a lower priority: the executor is not held. |cfg| and |bus| are borrowed and must outlive
 * the thread. Caller stops and frees it with tb_snapshotter_stop(). */
tb_status tb_snapshotter_start(tb_snapshotter_t **out, const tb_config_t *cfg, tb_bus_t *bus);

/* Stops the thread; a snapshot under way is abandoned between two steps (no file is left).
 * Accepts NULL. */
void tb_snapshotter_stop(tb_snapshotter_t *s);

#endif
