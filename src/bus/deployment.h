/* The deployment a server's tierbus streams belong to: one id in a small JetStream key-value
 * bucket (<prefix>_DEPLOYMENT), written by the first worker or `init` that finds none. A worker
 * compares it with its database's id, so that one deployment's events are never acked into
 * another deployment's state. */
#ifndef TB_BUS_DEPLOYMENT_H
#define TB_BUS_DEPLOYMENT_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "config/config.h"

/* The server's deployment id into |id|; *found 0 and "" when none is recorded (the bucket is
 * created then, empty). TB_ERR_NATS with the cnats text when the server cannot answer. */
tb_status tb_bus_deployment_get(tb_bus_t *bus, const tb_config_t *cfg, char *id, size_t cap,
                                int *found);

/* Records |id| unless an id is recorded already; |have| gets the id recorded now (another one
 * when another process won the race). */
tb_status tb_bus_deployment_claim(tb_bus_t *bus, const tb_config_t *cfg, const char *id, char *have,
                                  size_t cap);

/* Messages the tier consumers have acked so far, summed over every (tier, domain) consumer that
 * exists (its ack floor): more than 0 means their history went into some database. */
tb_status tb_bus_acked_history(tb_bus_t *bus, const tb_config_t *cfg, uint64_t *acked);

/* A new id: "dep-" and 24 random hex digits. */
void tb_deployment_new_id(char *buf, size_t cap);

#endif
