/* Language helpers every layer uses. Today one: the length of an array, so that no table's length
 * is counted by hand (a row added to a table whose length was typed in is silently never read). */
#ifndef TB_CORE_UTIL_H
#define TB_CORE_UTIL_H

#include <stddef.h>

/* The number of elements of the array |a| (a size_t constant). |a| must be an array, not a
 * pointer: for a pointer the result is meaningless, and -Wall (-Wsizeof-pointer-div) under
 * -Werror refuses to build it. */
#define TB_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

#endif
