/*
 * A small JSON reader: parses a document into a tree of values (RFC 8259), and a few
 * lookups. Enough for sm-kms's answers and the module's config file; not a general library.
 * Strings are decoded (escapes, \u with surrogate pairs) into NUL-terminated UTF-8; a string
 * holding a NUL is refused. Depth is bounded, so hostile input cannot exhaust the stack.
 */
#ifndef CU_JSON_H
#define CU_JSON_H
#include <stddef.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jvalue {
  jtype type;
  double num;
  int boolean;
  char *str;              /* J_STR */
  struct jvalue **items;  /* J_ARR: values; J_OBJ: values, with keys[] beside them */
  char **keys;
  size_t n;
} jvalue;

/* Parses `len` bytes; NULL when they are not one JSON value. */
jvalue *json_parse(const char *text, size_t len);
void json_free(jvalue *v);
/* Member `key` of an object, or NULL. */
const jvalue *json_get(const jvalue *obj, const char *key);
/* The string member `key`, or NULL when absent or not a string. */
const char *json_str(const jvalue *obj, const char *key);
/* The number member `key`, or `dflt`. */
double json_num(const jvalue *obj, const char *key, double dflt);
/* Writes `s` as a JSON string literal (with quotes) into buf; returns the length or -1 if it does not fit. */
int json_quote(char *buf, size_t cap, const char *s);

#endif
