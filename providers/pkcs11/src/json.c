#include "json.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#define MAX_DEPTH 32

typedef struct { const char *p, *end; int depth; } reader;

static void skip_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static jvalue *new_value(jtype t) {
  jvalue *v = calloc(1, sizeof *v);
  if (v) v->type = t;
  return v;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) { o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f)); return 3; }
  o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)); o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Reads a string literal (r->p at the opening quote); the decoded text is never longer than the literal. */
static char *read_string(reader *r) {
  if (r->p >= r->end || *r->p != '"') return NULL;
  r->p++;
  const char *start = r->p;
  size_t cap = 0;
  while (r->p < r->end && *r->p != '"') {
    if (*r->p == '\\') r->p++;
    r->p++;
  }
  if (r->p >= r->end) return NULL;
  cap = (size_t)(r->p - start) + 1;
  char *out = malloc(cap), *o = out;
  if (!out) return NULL;
  const char *q = start;
  while (q < r->p) {
    unsigned char c = (unsigned char)*q++;
    if (c < 0x20) goto bad;
    if (c != '\\') { *o++ = (char)c; continue; }
    char e = *q++;
    switch (e) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (r->p - q < 4 || hex4(q, &cp)) goto bad;
        q += 4;
        if (cp >= 0xd800 && cp < 0xdc00) {
          if (r->p - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, &lo) || lo < 0xdc00 || lo > 0xdfff) goto bad;
          q += 6;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp < 0xe000) goto bad;
        if (cp == 0) goto bad;
        o += put_utf8(o, cp);
        break;
      }
      default: goto bad;
    }
  }
  *o = 0;
  r->p++;
  return out;
bad:
  free(out);
  return NULL;
}

static jvalue *parse_value(reader *r);

static int push(jvalue *v, jvalue *item, char *key) {
  jvalue **items = realloc(v->items, (v->n + 1) * sizeof *items);
  if (!items) return -1;
  v->items = items;
  if (v->type == J_OBJ) {
    char **keys = realloc(v->keys, (v->n + 1) * sizeof *keys);
    if (!keys) return -1;
    v->keys = keys;
    keys[v->n] = key;
  }
  items[v->n++] = item;
  return 0;
}

static jvalue *parse_container(reader *r, jtype t) {
  char close = t == J_ARR ? ']' : '}';
  jvalue *v = new_value(t);
  if (!v) return NULL;
  if (++r->depth > MAX_DEPTH) goto bad;
  r->p++;
  skip_ws(r);
  if (r->p < r->end && *r->p == close) { r->p++; r->depth--; return v; }
  for (;;) {
    char *key = NULL;
    skip_ws(r);
    if (t == J_OBJ) {
      key = read_string(r);
      if (!key) goto bad;
      skip_ws(r);
      if (r->p >= r->end || *r->p != ':') { free(key); goto bad; }
      r->p++;
    }
    jvalue *item = parse_value(r);
    if (!item || push(v, item, key)) { free(key); json_free(item); goto bad; }
    skip_ws(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == close) { r->p++; r->depth--; return v; }
    goto bad;
  }
bad:
  json_free(v);
  return NULL;
}

static jvalue *parse_value(reader *r) {
  skip_ws(r);
  if (r->p >= r->end) return NULL;
  char c = *r->p;
  if (c == '{') return parse_container(r, J_OBJ);
  if (c == '[') return parse_container(r, J_ARR);
  if (c == '"') {
    char *s = read_string(r);
    if (!s) return NULL;
    jvalue *v = new_value(J_STR);
    if (!v) { free(s); return NULL; }
    v->str = s;
    return v;
  }
  static const struct { const char *word; jtype t; int b; } words[] = {{"true", J_BOOL, 1}, {"false", J_BOOL, 0}, {"null", J_NULL, 0}};
  for (size_t i = 0; i < 3; i++) {
    size_t n = strlen(words[i].word);
    if ((size_t)(r->end - r->p) >= n && memcmp(r->p, words[i].word, n) == 0) {
      r->p += n;
      jvalue *v = new_value(words[i].t);
      if (v) v->boolean = words[i].b;
      return v;
    }
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    char num[64];
    size_t n = 0;
    while (r->p < r->end && n < sizeof num - 1 && strchr("0123456789+-.eE", *r->p)) num[n++] = *r->p++;
    num[n] = 0;
    char *endp;
    double d = strtod(num, &endp);
    if (endp != num + n) return NULL;
    jvalue *v = new_value(J_NUM);
    if (v) v->num = d;
    return v;
  }
  return NULL;
}

jvalue *json_parse(const char *text, size_t len) {
  reader r = {text, text + len, 0};
  jvalue *v = parse_value(&r);
  if (!v) return NULL;
  skip_ws(&r);
  if (r.p != r.end) { json_free(v); return NULL; }
  return v;
}

void json_free(jvalue *v) {
  if (!v) return;
  for (size_t i = 0; i < v->n; i++) {
    json_free(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
  free(v);
}

const jvalue *json_get(const jvalue *obj, const char *key) {
  if (!obj || obj->type != J_OBJ) return NULL;
  for (size_t i = 0; i < obj->n; i++)
    if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
  return NULL;
}

const char *json_str(const jvalue *obj, const char *key) {
  const jvalue *v = json_get(obj, key);
  return v && v->type == J_STR ? v->str : NULL;
}

double json_num(const jvalue *obj, const char *key, double dflt) {
  const jvalue *v = json_get(obj, key);
  return v && v->type == J_NUM ? v->num : dflt;
}

int json_quote(char *buf, size_t cap, const char *s) {
  size_t o = 0;
  if (cap < 3) return -1;
  buf[o++] = '"';
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    const char *piece;
    if (c == '"') piece = "\\\"";
    else if (c == '\\') piece = "\\\\";
    else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); piece = esc; }
    else { esc[0] = (char)c; esc[1] = 0; piece = esc; }
    size_t n = strlen(piece);
    if (o + n + 2 > cap) return -1;
    memcpy(buf + o, piece, n);
    o += n;
  }
  buf[o++] = '"';
  buf[o] = 0;
  return (int)o;
}
