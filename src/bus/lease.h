/* Leases: one holder at a time for a named duty of a deployment (the scheduler today; a
 * partition's state in issue 13's next steps), kept in a JetStream key-value bucket
 * (<prefix>_LEASES) rather than by anything home-made.
 *
 * A lease is one key. Its value names the holder and its time to live; an empty value is a free
 * lease. Every change is a compare-and-set on the key's revision (kvStore_Create when the key is
 * absent, kvStore_Update with the revision read), so two contenders cannot both take it.
 *
 * No clock is compared across machines. The holder renews every ttl/3 and holds only until ttl
 * minus a margin after it *sent* its last renewal that succeeded. A contender takes a lease over
 * only after watching the same revision unchanged for ttl on its own monotonic clock, and it
 * first saw that revision after the holder sent it. So a holder that stops renewing (killed,
 * frozen, cut off) has stopped acting before anyone else starts. */
#ifndef TB_BUS_LEASE_H
#define TB_BUS_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "config/config.h"

typedef struct tb_lease tb_lease_t;

/* The holder's margin: it stops this long before ttl runs out after its last renewal's send. */
#define TB_LEASE_MARGIN_DIV 5 /* ttl / 5 */

/* Opens lease |name| (a key: letters, digits, '-', '_', '.') for |holder| (a name that is unique
 * to this process, shown by `cluster status`), with time to live |ttl_ms| (>= 300). The bucket is
 * created with the streams' replica count when missing. |bus| and |cfg| are borrowed. Nothing is
 * taken until tb_lease_tick(). Caller frees with tb_lease_close(). */
tb_status tb_lease_open(tb_lease_t **out, tb_bus_t *bus, const tb_config_t *cfg, const char *name,
                        const char *holder, int64_t ttl_ms);

/* One step, to be called at least every ttl/3: renews the lease when held, takes it when it is
 * free or its holder has let it lapse. *held (may be NULL) gets tb_lease_held() afterwards.
 * Returns TB_OK whether or not the lease is held; a NATS failure is returned (the lease then
 * runs out on its own deadline). */
tb_status tb_lease_tick(tb_lease_t *l, int *held);

/* 1 while this holder may act: it holds the lease and its last renewal is recent enough. */
int tb_lease_held(const tb_lease_t *l);

/* Gives the lease up (an empty value, compare-and-set) if held, so that a successor need not wait
 * for the ttl. Accepts NULL; keeps |l| usable (a later tick may take it again). */
void tb_lease_release(tb_lease_t *l);

/* Releases, then frees. Accepts NULL. */
void tb_lease_close(tb_lease_t *l);

/* One lease as `cluster status` shows it. */
typedef struct tb_lease_info {
  char name[64];
  char holder[128]; /* "" when free */
  int64_t ttl_ms;
  uint64_t revision;
  int64_t age_ms; /* since the server stored the value (the server's clock against this host's) */
} tb_lease_info_t;

/* Every lease recorded on the server, in key order, into |out| (up to |cap|); *n gets the count
 * written. No bucket yet is zero leases. */
tb_status tb_lease_list(tb_bus_t *bus, const tb_config_t *cfg, tb_lease_info_t *out, int cap,
                        int *n);

#endif
