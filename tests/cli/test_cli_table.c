/* Unit: the CLI's text tables (tb_cli_table_*, src/cli/common.c). Each column is as wide as its
 * widest cell or header, from both sides of that boundary; numbers right-align; nothing is cut;
 * the last column carries no trailing blanks; an empty table is its header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"

/* Prints |t| into a string; caller frees. */
static char *render(const tb_cli_table_t *t) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(tb_cli_table_print(t, f), TB_OK);
  fclose(f);
  return buf;
}

static void test_header_wider_than_cells(void **state) {
  (void)state;
  static const char *const h[] = {"NAME", ">COUNT", "NOTE"};
  tb_cli_table_t *t = tb_cli_table_new(3, h);
  assert_non_null(t);
  tb_cli_table_add(t, "a", "7", "x");
  char *out = render(t);
  assert_string_equal(out, "NAME  COUNT  NOTE\n"
                           "a         7  x\n");
  free(out);
  tb_cli_table_free(t);
}

static void test_cell_wider_than_header(void **state) {
  (void)state;
  static const char *const h[] = {"NAME", ">N", "NOTE"};
  tb_cli_table_t *t = tb_cli_table_new(3, h);
  tb_cli_table_add(t, "a-much-longer-name", "12345", "short");
  tb_cli_table_add(t, "b", "1", "a note longer than its header, never cut");
  char *out = render(t);
  assert_string_equal(out, "NAME                    N  NOTE\n"
                           "a-much-longer-name  12345  short\n"
                           "b                       1  a note longer than its header, never cut\n");
  free(out);
  tb_cli_table_free(t);
}

/* A cell exactly as wide as its header changes nothing; one byte more widens the column. */
static void test_exact_width(void **state) {
  (void)state;
  static const char *const h[] = {"ABC", "Z"};
  tb_cli_table_t *t = tb_cli_table_new(2, h);
  tb_cli_table_add(t, "abc", "z");
  char *out = render(t);
  assert_string_equal(out, "ABC  Z\nabc  z\n");
  free(out);
  tb_cli_table_add(t, "abcd", NULL); /* NULL prints as "-" */
  out = render(t);
  assert_string_equal(out, "ABC   Z\nabc   z\nabcd  -\n");
  free(out);
  tb_cli_table_free(t);
}

static void test_empty_table_is_its_header(void **state) {
  (void)state;
  static const char *const h[] = {"ONE", ">TWO"};
  tb_cli_table_t *t = tb_cli_table_new(2, h);
  char *out = render(t);
  assert_string_equal(out, "ONE  TWO\n");
  free(out);
  tb_cli_table_free(t);
  tb_cli_table_free(NULL);
}

/* Many rows: the storage grows past its first allocation and keeps every row in order. */
static void test_many_rows(void **state) {
  (void)state;
  static const char *const h[] = {">I"};
  tb_cli_table_t *t = tb_cli_table_new(1, h);
  for (int i = 0; i < 1000; i++) {
    char v[16];
    snprintf(v, sizeof(v), "%d", i);
    tb_cli_table_add(t, v);
  }
  char *out = render(t);
  assert_int_equal(strncmp(out, "  I\n  0\n  1\n", 12), 0);
  assert_non_null(strstr(out, "\n999\n"));
  size_t lines = 0;
  for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++) lines++;
  assert_int_equal(lines, 1001);
  free(out);
  tb_cli_table_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_wider_than_cells),
      cmocka_unit_test(test_cell_wider_than_header),
      cmocka_unit_test(test_exact_width),
      cmocka_unit_test(test_empty_table_is_its_header),
      cmocka_unit_test(test_many_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
