/* The store's side of replay and rebuild: a checksum of the logical state (the domain tables a
 * rebuild from the log reproduces, without processing timestamps, row ids or bookkeeping), the
 * outbox clean-up a rebuild ends with, and pruning of processed-message records past a horizon. */
#ifndef TB_STORE_LOGSTATE_H
#define TB_STORE_LOGSTATE_H

#include <stdatomic.h>
#include <stdint.h>

#include "store/store.h"

/* One table of the checksum: its name, the columns hashed and the rows (a WHERE clause, or NULL
 * for all). The list is the one source of truth for what "logical state" means; `tierbus db
 * checksum --tables` prints it and the README copies it. */
typedef struct tb_checksum_table {
  const char *table;
  const char *columns; /* comma-separated, also the ORDER BY, so row order does not matter */
  const char *where;   /* NULL = every row */
  const char *why;     /* what is left out and why, for --tables */
} tb_checksum_table_t;

/* The checksummed tables; *n receives the count. Borrowed, static. */
const tb_checksum_table_t *tb_store_checksum_tables(int *n);

/* Per-table outcome of tb_store_checksum. */
typedef struct tb_checksum_part {
  int64_t rows;
  char hex[33];
} tb_checksum_part_t;

/* Hashes every table of tb_store_checksum_tables() in a read transaction: each table's rows in
 * the order of all their hashed columns, values with their type, so two databases with the same
 * logical rows have the same hex digest (32 hex digits) whatever order they were written in.
 * |parts| (may be NULL) receives one entry per table, in list order. TB_ERR_STORE on failure. */
tb_status tb_store_checksum(tb_store_t *st, char hex[33], tb_checksum_part_t *parts);

/* *empty = 1 when no message was ever processed here and every checksummed table is empty: a
 * target `rebuild` may fill. */
tb_status tb_store_is_empty(tb_store_t *st, int *empty);

/* One stream's position in a snapshot: every message before |next_seq| is in it. */
typedef struct tb_snapshot_pos {
  char stream[64];
  uint64_t next_seq;
} tb_snapshot_pos_t;

/* How a snapshot paces its copy. */
typedef struct tb_snapshot_pace {
  int step_pages;         /* pages copied per step; <= 0: every page in one step */
  int pause_ms;           /* sleep between steps, room for the workers' own I/O */
  const atomic_int *stop; /* non-zero: give up between two steps; may be NULL (borrowed) */
} tb_snapshot_pace_t;

/* Writes a snapshot of the database file |db_path| to |path| with the streams' positions |pos|
 * (|n| of them), which the caller read before calling: what was acked then is committed, so it is
 * in the copy. The copy is SQLite's online backup from a connection of its own, in steps of
 * |pace| (NULL: one step), all under one read transaction: the copy is the database as of its
 * start, the writers go on meanwhile (WAL: a reader blocks no writer; the WAL grows until the
 * copy ends instead), and no write restarts it. The file is written as <path>.part and renamed
 * when complete, as one self-contained file (rollback journal mode), so a crash never leaves a
 * half snapshot under |path|; a file at |path| is replaced. TB_ERR_STOPPED when |pace|'s stop
 * flag ended it (nothing is left behind), TB_ERR_STORE / TB_ERR_IO with the reason otherwise. */
tb_status tb_store_snapshot(const char *db_path, const char *path, const tb_snapshot_pos_t *pos,
                            int n, const tb_snapshot_pace_t *pace);

/* Replaces this (new, empty) database's content with the snapshot at |path|. */
tb_status tb_store_restore(tb_store_t *st, const char *path);

/* The position of |stream| recorded in this database by a snapshot, 0 when none. */
tb_status tb_store_snapshot_position(tb_store_t *st, const char *stream, uint64_t *next_seq);

/* Rebuild's last step: the outbox rows whose message is already in the log (an event this
 * database processed, or a message id in |logged_ids|, the command stream's) were published by
 * the live system and must not be sent again; they are deleted. What stays is what the live
 * system had not sent yet: timers not yet due. *dropped (may be NULL) gets the count.
 * |logged_ids| holds |n| borrowed strings. */
tb_status tb_store_outbox_drop_logged(tb_store_t *st, const char *const *logged_ids, int64_t n,
                                      int64_t *dropped);

/* Deletes the processed-message records committed before |before_us| (wall clock) and records
 * that horizon (the latest one wins), in the caller's transaction, which must be open: the two
 * commit together. *deleted (may be NULL) gets the count. The caller enforces the rule that keeps
 * dedupe correct (tb_config_dedupe_horizon_ms); the store only does it. */
tb_status tb_store_prune_processed(tb_store_t *st, int64_t before_us, int64_t *deleted);

/* *horizon_us = the latest prune horizon (0 when records were never pruned). A replayed message
 * published before it may have been applied although no record says so. */
tb_status tb_store_prune_horizon(tb_store_t *st, int64_t *horizon_us);

#endif
