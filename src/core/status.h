/* One status enum for all of tierbus, generated from a single macro table together with
 * tb_strerror() and tb_err_name(); the per-thread detail buffer keeps the wrapped library's text.
 */
#ifndef TB_CORE_STATUS_H
#define TB_CORE_STATUS_H

#include "tierbus.h"

/* Records a human-readable detail for the status about to be returned and returns |s|, so that a
 * failing call reads `return tb__fail(TB_ERR_STORE, "insert: %s", sqlite3_errmsg(db));`. The detail
 * is per thread and overwritten by the next failure; read it with tb_errdetail(). The current
 * detail may be an argument, to prefix it or to change the status it goes with:
 * `tb__fail(TB_ERR_CONFIG, "%s: %s", path, tb_errdetail())`. */
tb_status tb__fail(tb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the per-thread detail (used before an operation whose failure is reported later). */
void tb__clear_detail(void);

#endif
