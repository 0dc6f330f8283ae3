/* Search spaces: the JSON format, canonical form, configurations, unit-cube encoding, the
 * built-in training and architecture spaces, and applying a configuration to a flow spec and a
 * training configuration. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search_internal.h"

const char *rf_param_kind_name(rf_param_kind k) {
    switch (k) {
    case RF_PARAM_FLOAT: return "float";
    case RF_PARAM_INT: return "int";
    case RF_PARAM_CAT: return "categorical";
    }
    return "?";
}

/* Shortest text that reads back to the same double. */
static void fmt_num(double v, char *buf, size_t n) {
    snprintf(buf, n, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, n, "%.17g", v);
}

/* Numbers as raw text in the shortest exact form (cJSON's own printing may drop the last bit). */
static void exactify(cJSON *j) {
    cJSON *c = j ? j->child : NULL;
    while (c) {
        cJSON *next = c->next;
        if (cJSON_IsNumber(c)) {
            char b[40];
            fmt_num(c->valuedouble, b, sizeof b);
            cJSON *r = cJSON_CreateRaw(b);
            if (r) {
                r->string = c->string;
                r->type |= c->type & cJSON_StringIsConst;
                c->string = NULL;
                cJSON_ReplaceItemViaPointer(j, c, r);
            }
        } else {
            exactify(c);
        }
        c = next;
    }
}

char *rf__json_print_exact(cJSON *j) {
    if (cJSON_IsNumber(j)) {
        char b[40];
        fmt_num(j->valuedouble, b, sizeof b);
        return strdup(b);
    }
    exactify(j);
    return cJSON_PrintUnformatted(j);
}

static void param_free(rf_param *p) {
    if (p->choice_label)
        for (int k = 0; k < p->n_choices; k++) free(p->choice_label[k]);
    free(p->choice_label);
    free(p->choice_num);
    free(p->choice_is_num);
    free(p->cond);
}

void rf_space_free(rf_space *sp) {
    if (!sp) return;
    for (int i = 0; i < sp->n; i++) param_free(&sp->p[i]);
    free(sp->p);
    free(sp);
}

int rf_space_find(const rf_space *sp, const char *name) {
    for (int i = 0; i < sp->n; i++)
        if (strcmp(sp->p[i].name, name) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * parsing
 * --------------------------------------------------------------------------------------- */

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= RF_PARAM_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.')) return 0;
    return 1;
}

/* Describes a JSON value for messages. */
static void describe(const cJSON *v, char *buf, size_t n) {
    if (!v) {
        snprintf(buf, n, "nothing");
    } else if (cJSON_IsString(v)) {
        snprintf(buf, n, "\"%.60s\"", v->valuestring ? v->valuestring : "");
    } else if (cJSON_IsNumber(v)) {
        fmt_num(v->valuedouble, buf, n);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(buf, n, "null");
    } else if (cJSON_IsArray(v)) {
        snprintf(buf, n, "an array");
    } else {
        snprintf(buf, n, "an object");
    }
}

/* Index of the choice that JSON value v names (string -> string choice with that label,
 * number -> numeric choice with that value), or -1. */
static int choice_index(const rf_param *p, const cJSON *v) {
    for (int k = 0; k < p->n_choices; k++) {
        if (cJSON_IsString(v) && !p->choice_is_num[k] && strcmp(v->valuestring, p->choice_label[k]) == 0)
            return k;
        if (cJSON_IsNumber(v) && p->choice_is_num[k] && v->valuedouble == p->choice_num[k]) return k;
    }
    return -1;
}

#define PERR(code, ...) \
    (rf_err_set(e, code, __VA_ARGS__), rf_err_prefix(e, code, "%s: parameter '%s'", what, p->name))

/* Parses the value v for parameter p into the internal representation; the message names the
 * field (the caller prefixes the source and the parameter). */
static int parse_value(const rf_param *p, const cJSON *v, double *out, const char *field, rf_err *e) {
    char d[96];
    describe(v, d, sizeof d);
    if (p->kind == RF_PARAM_CAT) {
        int k = v ? choice_index(p, v) : -1;
        if (k < 0) {
            char list[512] = "";
            size_t off = 0;
            for (int c = 0; c < p->n_choices && off < sizeof list - 80; c++)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s%s%s", c ? ", " : "",
                                        p->choice_is_num[c] ? "" : "\"", p->choice_label[c],
                                        p->choice_is_num[c] ? "" : "\"");
            return rf_err_set(e, RF_EFORMAT, "field '%s': %s is not one of the choices [%s]", field, d, list);
        }
        *out = k;
        return RF_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return rf_err_set(e, RF_EFORMAT, "field '%s': expected a finite number, got %s", field, d);
    double x = v->valuedouble;
    if (p->kind == RF_PARAM_INT && x != floor(x))
        return rf_err_set(e, RF_EFORMAT, "field '%s': expected an integer, got %s", field, d);
    if (x < p->low || x > p->high) {
        char lo[40], hi[40];
        fmt_num(p->low, lo, sizeof lo);
        fmt_num(p->high, hi, sizeof hi);
        return rf_err_set(e, RF_EFORMAT, "field '%s': %s is outside [%s, %s]", field, d, lo, hi);
    }
    *out = x;
    return RF_OK;
}

static int parse_param(const cJSON *pj, int idx, rf_space *sp, const char *what, rf_err *e) {
    rf_param *p = &sp->p[idx];
    memset(p, 0, sizeof *p);
    p->parent = -1;
    snprintf(p->name, sizeof p->name, "#%d", idx);
    if (!cJSON_IsObject(pj))
        return rf_err_set(e, RF_EFORMAT, "%s: parameters[%d]: expected an object", what, idx);
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(pj, "name");
    if (!cJSON_IsString(nm))
        return rf_err_set(e, RF_EFORMAT, "%s: parameters[%d]: field 'name': missing or not a string", what, idx);
    if (!valid_name(nm->valuestring))
        return rf_err_set(e, RF_EFORMAT,
                          "%s: parameters[%d]: field 'name': \"%.80s\" is not a valid name (1..%d "
                          "characters of A-Z a-z 0-9 _ - .)", what, idx, nm->valuestring, RF_PARAM_NAME_MAX - 1);
    snprintf(p->name, sizeof p->name, "%s", nm->valuestring);
    if (rf_space_find(sp, p->name) >= 0 && rf_space_find(sp, p->name) < idx)
        return PERR(RF_EFORMAT, "field 'name': declared twice");

    static const char *known[] = {"name", "type", "low", "high", "log", "choices", "condition", "default"};
    const cJSON *it;
    cJSON_ArrayForEach(it, pj) {
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= strcmp(it->string, known[k]) == 0;
        if (!ok) return PERR(RF_EFORMAT, "unknown field '%.60s' (known: name, type, low, high, log, choices, condition, default)", it->string);
    }

    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pj, "type");
    char d[96];
    if (!cJSON_IsString(ty)) {
        describe(ty, d, sizeof d);
        return PERR(RF_EFORMAT, "field 'type': expected \"float\", \"int\" or \"categorical\", got %s", d);
    }
    if (strcmp(ty->valuestring, "float") == 0) p->kind = RF_PARAM_FLOAT;
    else if (strcmp(ty->valuestring, "int") == 0) p->kind = RF_PARAM_INT;
    else if (strcmp(ty->valuestring, "categorical") == 0) p->kind = RF_PARAM_CAT;
    else return PERR(RF_EFORMAT, "field 'type': expected \"float\", \"int\" or \"categorical\", got \"%.60s\"", ty->valuestring);

    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(pj, "low");
    const cJSON *hi = cJSON_GetObjectItemCaseSensitive(pj, "high");
    const cJSON *lg = cJSON_GetObjectItemCaseSensitive(pj, "log");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(pj, "choices");
    if (p->kind == RF_PARAM_CAT) {
        if (lo || hi || lg)
            return PERR(RF_EFORMAT, "field '%s': not used by a categorical parameter (give 'choices')",
                        lo ? "low" : hi ? "high" : "log");
        if (!cJSON_IsArray(ch) || cJSON_GetArraySize(ch) < 1)
            return PERR(RF_EFORMAT, "field 'choices': expected a non-empty array of strings or numbers");
        int n = cJSON_GetArraySize(ch);
        if (n > RF_PARAM_MAX_CHOICES) return PERR(RF_EFORMAT, "field 'choices': %d choices, at most %d", n, RF_PARAM_MAX_CHOICES);
        p->choice_label = calloc((size_t)n, sizeof(char *));
        p->choice_num = calloc((size_t)n, sizeof(double));
        p->choice_is_num = calloc((size_t)n, 1);
        if (!p->choice_label || !p->choice_num || !p->choice_is_num) return rf_err_set(e, RF_ENOMEM, "out of memory");
        int k = 0;
        cJSON_ArrayForEach(it, ch) {
            char buf[64];
            if (cJSON_IsString(it)) {
                if (!it->valuestring[0] || strlen(it->valuestring) > 255)
                    return PERR(RF_EFORMAT, "field 'choices'[%d]: a string choice must have 1..255 characters", k);
                p->choice_label[k] = strdup(it->valuestring);
                p->choice_num[k] = NAN;
            } else if (cJSON_IsNumber(it) && isfinite(it->valuedouble)) {
                fmt_num(it->valuedouble, buf, sizeof buf);
                p->choice_label[k] = strdup(buf);
                p->choice_num[k] = it->valuedouble;
                p->choice_is_num[k] = 1;
            } else {
                describe(it, d, sizeof d);
                return PERR(RF_EFORMAT, "field 'choices'[%d]: expected a string or a finite number, got %s", k, d);
            }
            if (!p->choice_label[k]) return rf_err_set(e, RF_ENOMEM, "out of memory");
            p->n_choices = k + 1;
            for (int j = 0; j < k; j++)
                if (p->choice_is_num[j] == p->choice_is_num[k] && strcmp(p->choice_label[j], p->choice_label[k]) == 0)
                    return PERR(RF_EFORMAT, "field 'choices'[%d]: %s repeats choice %d", k, p->choice_label[k], j);
            k++;
        }
    } else {
        if (ch) return PERR(RF_EFORMAT, "field 'choices': only categorical parameters have choices");
        if (!cJSON_IsNumber(lo) || !isfinite(lo->valuedouble)) {
            describe(lo, d, sizeof d);
            return PERR(RF_EFORMAT, "field 'low': expected a finite number, got %s", d);
        }
        if (!cJSON_IsNumber(hi) || !isfinite(hi->valuedouble)) {
            describe(hi, d, sizeof d);
            return PERR(RF_EFORMAT, "field 'high': expected a finite number, got %s", d);
        }
        p->low = lo->valuedouble;
        p->high = hi->valuedouble;
        if (lg && !cJSON_IsBool(lg)) {
            describe(lg, d, sizeof d);
            return PERR(RF_EFORMAT, "field 'log': expected true or false, got %s", d);
        }
        p->log = lg && cJSON_IsTrue(lg);
        char a[40], b[40];
        fmt_num(p->low, a, sizeof a);
        fmt_num(p->high, b, sizeof b);
        if (p->kind == RF_PARAM_INT) {
            if (p->low != floor(p->low) || fabs(p->low) > 1e15)
                return PERR(RF_EFORMAT, "field 'low': expected an integer, got %s", a);
            if (p->high != floor(p->high) || fabs(p->high) > 1e15)
                return PERR(RF_EFORMAT, "field 'high': expected an integer, got %s", b);
            if (p->low > p->high) return PERR(RF_EFORMAT, "field 'high': %s is below low = %s", b, a);
            if (p->log && p->low < 1)
                return PERR(RF_EFORMAT, "field 'low': a log-scaled int needs low >= 1, got %s", a);
        } else {
            if (!(p->low < p->high))
                return PERR(RF_EFORMAT, "field 'high': must be greater than low = %s, got %s", a, b);
            if (p->log && !(p->low > 0))
                return PERR(RF_EFORMAT, "field 'low': a log-scaled float needs low > 0, got %s", a);
        }
    }

    const cJSON *cond = cJSON_GetObjectItemCaseSensitive(pj, "condition");
    if (cond) {
        if (!cJSON_IsObject(cond))
            return PERR(RF_EFORMAT, "field 'condition': expected {\"parent\": NAME, \"values\": [...]}");
        cJSON_ArrayForEach(it, cond) {
            if (strcmp(it->string, "parent") && strcmp(it->string, "values"))
                return PERR(RF_EFORMAT, "field 'condition': unknown field '%.60s' (known: parent, values)", it->string);
        }
        const cJSON *par = cJSON_GetObjectItemCaseSensitive(cond, "parent");
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(cond, "values");
        if (!cJSON_IsString(par))
            return PERR(RF_EFORMAT, "field 'condition.parent': missing or not a string");
        int pi = rf_space_find(sp, par->valuestring);
        if (pi < 0 || pi >= idx)
            return PERR(RF_EFORMAT, "field 'condition.parent': \"%.60s\" is not a parameter declared before this one", par->valuestring);
        const rf_param *pp = &sp->p[pi];
        if (pp->kind == RF_PARAM_FLOAT)
            return PERR(RF_EFORMAT, "field 'condition.parent': \"%s\" is a float; a parent must be categorical or int", pp->name);
        if (!cJSON_IsArray(vals) || cJSON_GetArraySize(vals) < 1)
            return PERR(RF_EFORMAT, "field 'condition.values': expected a non-empty array");
        p->parent = pi;
        p->n_cond = cJSON_GetArraySize(vals);
        p->cond = calloc((size_t)p->n_cond, sizeof(double));
        if (!p->cond) return rf_err_set(e, RF_ENOMEM, "out of memory");
        int k = 0;
        cJSON_ArrayForEach(it, vals) {
            double x;
            char field[64];
            snprintf(field, sizeof field, "condition.values[%d]", k);
            /* the value must be valid for the parent */
            int rc = parse_value(pp, it, &x, field, e);
            if (rc) return rf_err_prefix(e, rc, "%s: parameter '%s'", what, p->name);
            p->cond[k++] = x;
        }
    }

    const cJSON *def = cJSON_GetObjectItemCaseSensitive(pj, "default");
    if (def) {
        int rc = parse_value(p, def, &p->def, "default", e);
        if (rc) return rf_err_prefix(e, rc, "%s: parameter '%s'", what, p->name);
        p->has_default = 1;
    }
    return RF_OK;
}

rf_space *rf_space_from_json(const cJSON *j, const char *what, rf_err *e) {
    if (!what) what = "search space";
    if (!cJSON_IsObject(j)) {
        rf_err_set(e, RF_EFORMAT, "%s: expected a JSON object {\"parameters\": [...]}", what);
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        if (strcmp(it->string, "name") && strcmp(it->string, "parameters")) {
            rf_err_set(e, RF_EFORMAT, "%s: unknown top-level field '%.60s' (known: name, parameters)", what, it->string);
            return NULL;
        }
    }
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "parameters");
    if (!cJSON_IsArray(ps) || cJSON_GetArraySize(ps) < 1) {
        rf_err_set(e, RF_EFORMAT, "%s: field 'parameters': missing or not a non-empty array", what);
        return NULL;
    }
    int n = cJSON_GetArraySize(ps);
    if (n > RF_SPACE_MAX_PARAMS) {
        rf_err_set(e, RF_EFORMAT, "%s: field 'parameters': %d parameters, at most %d", what, n, RF_SPACE_MAX_PARAMS);
        return NULL;
    }
    rf_space *sp = rf_zalloc(sizeof *sp, e);
    if (!sp) return NULL;
    sp->p = rf_zalloc(sizeof(rf_param) * (size_t)n, e);
    if (!sp->p) {
        free(sp);
        return NULL;
    }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (nm) {
        if (!cJSON_IsString(nm) || strlen(nm->valuestring) >= RF_PARAM_NAME_MAX) {
            rf_err_set(e, RF_EFORMAT, "%s: field 'name': expected a string of at most %d characters", what, RF_PARAM_NAME_MAX - 1);
            rf_space_free(sp);
            return NULL;
        }
        snprintf(sp->name, sizeof sp->name, "%s", nm->valuestring);
    }
    int k = 0;
    cJSON_ArrayForEach(it, ps) {
        sp->n = k + 1;
        if (parse_param(it, k, sp, what, e) != RF_OK) {
            rf_space_free(sp);
            return NULL;
        }
        k++;
    }
    return sp;
}

rf_space *rf_space_parse(const char *text, const char *what, rf_err *e) {
    if (!what) what = "search space";
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text ? (long)(at - text) : -1;
        int line = 1;
        for (long i = 0; i < off; i++) line += text[i] == '\n';
        rf_err_set(e, RF_EFORMAT, "%s: not valid JSON (near line %d, byte %ld)", what, line, off);
        return NULL;
    }
    rf_space *sp = rf_space_from_json(j, what, e);
    cJSON_Delete(j);
    return sp;
}

rf_space *rf_space_load(const char *path, rf_err *e) {
    unsigned char *buf = NULL;
    size_t len = 0;
    if (rf_read_file(path, &buf, &len, e) != RF_OK) return NULL;
    if (strlen((const char *)buf) != len) {
        free(buf);
        rf_err_set(e, RF_EFORMAT, "search space %s: contains a NUL byte: not a JSON text file", path);
        return NULL;
    }
    char what[1100];
    snprintf(what, sizeof what, "search space %s", path);
    rf_space *sp = rf_space_parse((const char *)buf, what, e);
    free(buf);
    return sp;
}

/* ---------------------------------------------------------------------------------------
 * canonical JSON
 * --------------------------------------------------------------------------------------- */

static cJSON *choice_json(const rf_param *p, int k) {
    return p->choice_is_num[k] ? cJSON_CreateNumber(p->choice_num[k]) : cJSON_CreateString(p->choice_label[k]);
}

/* A value in internal representation as JSON. */
static cJSON *value_json(const rf_param *p, double v) {
    if (p->kind == RF_PARAM_CAT) return choice_json(p, (int)v);
    return cJSON_CreateNumber(v);
}

static cJSON *param_json(const rf_space *sp, const rf_param *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "type", rf_param_kind_name(p->kind));
    if (p->kind == RF_PARAM_CAT) {
        cJSON *a = cJSON_AddArrayToObject(o, "choices");
        for (int k = 0; k < p->n_choices; k++) cJSON_AddItemToArray(a, choice_json(p, k));
    } else {
        cJSON_AddNumberToObject(o, "low", p->low);
        cJSON_AddNumberToObject(o, "high", p->high);
        cJSON_AddBoolToObject(o, "log", p->log);
    }
    if (p->parent >= 0) {
        const rf_param *pp = &sp->p[p->parent];
        cJSON *c = cJSON_AddObjectToObject(o, "condition");
        cJSON_AddStringToObject(c, "parent", pp->name);
        cJSON *a = cJSON_AddArrayToObject(c, "values");
        for (int k = 0; k < p->n_cond; k++) cJSON_AddItemToArray(a, value_json(pp, p->cond[k]));
    }
    if (p->has_default) cJSON_AddItemToObject(o, "default", value_json(p, p->def));
    return o;
}

cJSON *rf_space_to_json(const rf_space *sp) {
    cJSON *o = cJSON_CreateObject();
    if (sp->name[0]) cJSON_AddStringToObject(o, "name", sp->name);
    cJSON *a = cJSON_AddArrayToObject(o, "parameters");
    for (int i = 0; i < sp->n; i++) cJSON_AddItemToArray(a, param_json(sp, &sp->p[i]));
    return o;
}

char *rf_space_to_string(const rf_space *sp) {
    cJSON *j = rf_space_to_json(sp);
    char *s = rf__json_print_exact(j);
    cJSON_Delete(j);
    return s;
}

int rf_space_compare(const rf_space *a, const rf_space *b, rf_err *e) {
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++) {
        cJSON *x = param_json(a, &a->p[i]), *y = param_json(b, &b->p[i]);
        char *sx = rf__json_print_exact(x), *sy = rf__json_print_exact(y);
        int same = sx && sy && strcmp(sx, sy) == 0;
        int rc = RF_OK;
        if (!same)
            rc = rf_err_set(e, RF_EARG, "parameter %d differs: '%s' is %.300s here but %.300s in the other", i,
                            a->p[i].name, sx ? sx : "?", sy ? sy : "?");
        free(sx);
        free(sy);
        cJSON_Delete(x);
        cJSON_Delete(y);
        if (rc) return rc;
    }
    if (a->n != b->n)
        return rf_err_set(e, RF_EARG, "the spaces have %d and %d parameters (first extra: '%s')", a->n, b->n,
                          a->n > b->n ? a->p[n].name : b->p[n].name);
    return RF_OK;
}

rf_space *rf_space_clone(const rf_space *sp, rf_err *e) {
    cJSON *j = rf_space_to_json(sp);
    rf_space *c = rf_space_from_json(j, "search space (copy)", e);
    cJSON_Delete(j);
    return c;
}

rf_space *rf_space_concat(const rf_space *a, const rf_space *b, const char *name, rf_err *e) {
    cJSON *ja = rf_space_to_json(a), *jb = rf_space_to_json(b);
    cJSON *pa = cJSON_GetObjectItemCaseSensitive(ja, "parameters");
    cJSON *pb = cJSON_DetachItemFromObjectCaseSensitive(jb, "parameters");
    cJSON *it = pb ? pb->child : NULL;
    while (it) {
        cJSON *next = it->next;
        cJSON_AddItemToArray(pa, cJSON_DetachItemViaPointer(pb, it));
        it = next;
    }
    cJSON_Delete(pb);
    cJSON_DeleteItemFromObjectCaseSensitive(ja, "name");
    if (name) cJSON_AddStringToObject(ja, "name", name);
    rf_space *c = rf_space_from_json(ja, "concatenated search space", e);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return c;
}

/* ---------------------------------------------------------------------------------------
 * built-in spaces
 * --------------------------------------------------------------------------------------- */

static const char TRAINING_SPACE[] =
    "{\"name\": \"training\", \"parameters\": ["
    "{\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-4, \"high\": 1e-2, \"log\": true, \"default\": 1e-3},"
    "{\"name\": \"batch\", \"type\": \"categorical\", \"choices\": [64, 128, 256, 512], \"default\": 256},"
    "{\"name\": \"weight-decay\", \"type\": \"float\", \"low\": 1e-6, \"high\": 1e-2, \"log\": true, \"default\": 1e-6},"
    "{\"name\": \"schedule\", \"type\": \"categorical\", \"choices\": [\"constant\", \"cosine\"], \"default\": \"cosine\"},"
    "{\"name\": \"warmup\", \"type\": \"float\", \"low\": 0, \"high\": 0.2, \"default\": 0.05},"
    "{\"name\": \"epochs\", \"type\": \"int\", \"low\": 5, \"high\": 100, \"default\": 50},"
    "{\"name\": \"clip\", \"type\": \"float\", \"low\": 0.5, \"high\": 10, \"default\": 5},"
    "{\"name\": \"ce-weight\", \"type\": \"float\", \"low\": 0.01, \"high\": 100, \"log\": true, \"default\": 1}"
    "]}";

static const char ARCH_SPACE[] =
    "{\"name\": \"architecture\", \"parameters\": ["
    "{\"name\": \"flow\", \"type\": \"categorical\", \"choices\": [\"realnvp\", \"glow\", \"nsf\", \"maf\"], \"default\": \"nsf\"},"
    "{\"name\": \"blocks\", \"type\": \"int\", \"low\": 2, \"high\": 12, \"default\": 5},"
    "{\"name\": \"hidden\", \"type\": \"categorical\", \"choices\": [32, 64, 128, 256], \"default\": 64},"
    "{\"name\": \"hidden-layers\", \"type\": \"int\", \"low\": 1, \"high\": 3, \"default\": 2},"
    "{\"name\": \"act\", \"type\": \"categorical\", \"choices\": [\"relu\", \"gelu\", \"tanh\"], \"default\": \"relu\"},"
    "{\"name\": \"bins\", \"type\": \"int\", \"low\": 4, \"high\": 16, \"default\": 8,"
    " \"condition\": {\"parent\": \"flow\", \"values\": [\"nsf\"]}},"
    "{\"name\": \"permutation\", \"type\": \"categorical\", \"choices\": [\"reverse\", \"lu\", \"random\"], \"default\": \"lu\"},"
    "{\"name\": \"actnorm\", \"type\": \"categorical\", \"choices\": [\"on\", \"off\"], \"default\": \"on\"}"
    "]}";

rf_space *rf_space_default_training(rf_err *e) { return rf_space_parse(TRAINING_SPACE, "built-in training space", e); }
rf_space *rf_space_default_architecture(rf_err *e) { return rf_space_parse(ARCH_SPACE, "built-in architecture space", e); }

/* ---------------------------------------------------------------------------------------
 * configurations
 * --------------------------------------------------------------------------------------- */

int rf_config_init(rf_config *c, const rf_space *sp, rf_err *e) {
    memset(c, 0, sizeof *c);
    int n = sp->n > 0 ? sp->n : 1;
    c->v = malloc(sizeof(double) * (size_t)n);
    c->active = calloc((size_t)n, 1);
    if (!c->v || !c->active) {
        rf_config_free(c);
        return rf_err_set(e, RF_ENOMEM, "out of memory (configuration of %d parameters)", sp->n);
    }
    c->n = sp->n;
    for (int i = 0; i < n; i++) c->v[i] = NAN;
    return RF_OK;
}

void rf_config_free(rf_config *c) {
    if (!c) return;
    free(c->v);
    free(c->active);
    c->v = NULL;
    c->active = NULL;
    c->n = 0;
}

int rf_config_copy(rf_config *dst, const rf_config *src, rf_err *e) {
    if (dst->n != src->n || !dst->v) {
        rf_config_free(dst);
        int n = src->n > 0 ? src->n : 1;
        dst->v = malloc(sizeof(double) * (size_t)n);
        dst->active = calloc((size_t)n, 1);
        if (!dst->v || !dst->active) {
            rf_config_free(dst);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        dst->n = src->n;
    }
    if (src->n > 0) {
        memcpy(dst->v, src->v, sizeof(double) * (size_t)src->n);
        memcpy(dst->active, src->active, (size_t)src->n);
    }
    return RF_OK;
}

double rf__param_default(const rf_param *p) {
    if (p->has_default) return p->def;
    if (p->kind == RF_PARAM_CAT) return 0;
    double v = p->log ? sqrt(p->low) * sqrt(p->high) : 0.5 * (p->low + p->high);
    if (p->kind == RF_PARAM_INT) v = floor(v + 0.5);
    if (v < p->low) v = p->low;
    if (v > p->high) v = p->high;
    return v;
}

static int cond_holds(const rf_param *p, double pv) {
    for (int k = 0; k < p->n_cond; k++)
        if (p->cond[k] == pv) return 1;
    return 0;
}

void rf__config_update_active(const rf_space *sp, rf_config *c, int fill) {
    for (int i = 0; i < sp->n; i++) {
        const rf_param *p = &sp->p[i];
        int a = 1;
        if (p->parent >= 0) a = c->active[p->parent] && cond_holds(p, c->v[p->parent]);
        c->active[i] = (unsigned char)a;
        if (!a) c->v[i] = NAN;
        else if (fill && isnan(c->v[i])) c->v[i] = rf__param_default(p);
    }
}

void rf_config_update_active(const rf_space *sp, rf_config *c) { rf__config_update_active(sp, c, 1); }

int rf_config_default(const rf_space *sp, rf_config *c, rf_err *e) {
    int rc = rf_config_init(c, sp, e);
    if (rc) return rc;
    for (int i = 0; i < sp->n; i++) c->v[i] = rf__param_default(&sp->p[i]);
    rf__config_update_active(sp, c, 1);
    return RF_OK;
}

int rf_config_check(const rf_space *sp, const rf_config *c, rf_err *e) {
    if (c->n != sp->n)
        return rf_err_set(e, RF_EARG, "configuration has %d values for a space of %d parameters", c->n, sp->n);
    for (int i = 0; i < sp->n; i++) {
        const rf_param *p = &sp->p[i];
        int a = p->parent < 0 || (c->active[p->parent] && cond_holds(p, c->v[p->parent]));
        if (a != c->active[i])
            return rf_err_set(e, RF_EARG, "configuration: parameter '%s': marked %s but its condition on '%s' says %s",
                              p->name, c->active[i] ? "active" : "inactive", sp->p[p->parent].name,
                              a ? "active" : "inactive");
        if (!a) continue;
        double v = c->v[i];
        if (p->kind == RF_PARAM_CAT) {
            if (!(v >= 0 && v < p->n_choices && v == floor(v)))
                return rf_err_set(e, RF_EARG, "configuration: parameter '%s': choice index %g is not in 0..%d", p->name, v,
                                  p->n_choices - 1);
        } else if (!(v >= p->low && v <= p->high) || (p->kind == RF_PARAM_INT && v != floor(v))) {
            return rf_err_set(e, RF_EARG, "configuration: parameter '%s': value %.17g is not %s in [%g, %g]", p->name, v,
                              p->kind == RF_PARAM_INT ? "an integer" : "a number", p->low, p->high);
        }
    }
    return RF_OK;
}

int rf_config_equal(const rf_config *a, const rf_config *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        if (a->active[i] != b->active[i]) return 0;
        if (a->active[i] && a->v[i] != b->v[i]) return 0;
    }
    return 1;
}

cJSON *rf_config_to_json(const rf_space *sp, const rf_config *c) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < sp->n && i < c->n; i++)
        if (c->active[i]) cJSON_AddItemToObject(o, sp->p[i].name, value_json(&sp->p[i], c->v[i]));
    return o;
}

char *rf_config_to_string(const rf_space *sp, const rf_config *c) {
    cJSON *j = rf_config_to_json(sp, c);
    char *s = rf__json_print_exact(j);
    cJSON_Delete(j);
    return s;
}

int rf_config_from_json(const rf_space *sp, const cJSON *j, rf_config *c, rf_err *e) {
    int rc = rf_config_init(c, sp, e);
    if (rc) return rc;
    if (!cJSON_IsObject(j)) {
        rf_config_free(c);
        return rf_err_set(e, RF_EFORMAT, "configuration: expected a JSON object {\"name\": value, ...}");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        int i = rf_space_find(sp, it->string);
        if (i < 0) {
            rf_config_free(c);
            return rf_err_set(e, RF_EFORMAT, "configuration: '%.60s' is not a parameter of the space", it->string);
        }
        rc = parse_value(&sp->p[i], it, &c->v[i], "value", e);
        if (rc) {
            rf_err_prefix(e, rc, "configuration: parameter '%s'", sp->p[i].name);
            rf_config_free(c);
            return rc;
        }
    }
    double *given = malloc(sizeof(double) * (size_t)(sp->n > 0 ? sp->n : 1));
    if (!given) {
        rf_config_free(c);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    memcpy(given, c->v, sizeof(double) * (size_t)sp->n);
    rf__config_update_active(sp, c, 0);
    for (int i = 0; i < sp->n && !rc; i++) {
        const rf_param *p = &sp->p[i];
        if (c->active[i] && isnan(c->v[i]))
            rc = rf_err_set(e, RF_EFORMAT, "configuration: parameter '%s' is active but has no value", p->name);
        else if (!c->active[i] && !isnan(given[i]))
            rc = rf_err_set(e, RF_EFORMAT, "configuration: parameter '%s' has a value but is inactive (its condition on '%s' fails)",
                            p->name, sp->p[p->parent].name);
    }
    free(given);
    if (rc) rf_config_free(c);
    return rc;
}

int rf_config_parse(const rf_space *sp, const char *text, rf_config *c, rf_err *e) {
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        memset(c, 0, sizeof *c);
        return rf_err_set(e, RF_EFORMAT, "configuration: not valid JSON: %.200s", text);
    }
    int rc = rf_config_from_json(sp, j, c, e);
    cJSON_Delete(j);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * unit-cube encoding
 * --------------------------------------------------------------------------------------- */

void rf_space_encode(const rf_space *sp, const rf_config *c, double *u) {
    for (int i = 0; i < sp->n; i++) {
        const rf_param *p = &sp->p[i];
        if (!c->active[i] || isnan(c->v[i])) {
            u[i] = NAN;
        } else if (p->kind == RF_PARAM_CAT) {
            u[i] = c->v[i];
        } else {
            double lo, hi;
            rf__param_tbounds(p, &lo, &hi);
            double x = (rf__param_to_t(p, c->v[i]) - lo) / (hi - lo);
            u[i] = x < 0 ? 0 : x > 1 ? 1 : x;
        }
    }
}

void rf_space_decode(const rf_space *sp, const double *u, rf_config *c) {
    for (int i = 0; i < sp->n; i++) {
        const rf_param *p = &sp->p[i];
        double x = u[i];
        if (isnan(x)) {
            c->v[i] = NAN;
            continue;
        }
        if (p->kind == RF_PARAM_CAT) {
            double k = floor(x + 0.5);
            c->v[i] = k < 0 ? 0 : k > p->n_choices - 1 ? p->n_choices - 1 : k;
        } else {
            double lo, hi;
            rf__param_tbounds(p, &lo, &hi);
            x = x < 0 ? 0 : x > 1 ? 1 : x;
            c->v[i] = rf__param_from_t(p, lo + x * (hi - lo));
        }
    }
    rf__config_update_active(sp, c, 1);
}

/* ---------------------------------------------------------------------------------------
 * access by name
 * --------------------------------------------------------------------------------------- */

static int lookup(const rf_space *sp, const rf_config *c, const char *name, int *idx, rf_err *e) {
    int i = rf_space_find(sp, name);
    if (i < 0) return rf_err_set(e, RF_EARG, "configuration: no parameter '%s' in the space", name);
    if (i >= c->n || !c->active[i])
        return rf_err_set(e, RF_EARG, "configuration: parameter '%s' is inactive", name);
    *idx = i;
    return RF_OK;
}

int rf_config_get_number(const rf_space *sp, const rf_config *c, const char *name, double *out, rf_err *e) {
    int i, rc = lookup(sp, c, name, &i, e);
    if (rc) return rc;
    const rf_param *p = &sp->p[i];
    if (p->kind != RF_PARAM_CAT) {
        *out = c->v[i];
        return RF_OK;
    }
    int k = (int)c->v[i];
    if (!p->choice_is_num[k])
        return rf_err_set(e, RF_EARG, "configuration: parameter '%s' is \"%s\", not a number", name, p->choice_label[k]);
    *out = p->choice_num[k];
    return RF_OK;
}

int rf_config_get_choice(const rf_space *sp, const rf_config *c, const char *name, const char **out, rf_err *e) {
    int i, rc = lookup(sp, c, name, &i, e);
    if (rc) return rc;
    const rf_param *p = &sp->p[i];
    if (p->kind != RF_PARAM_CAT)
        return rf_err_set(e, RF_EARG, "configuration: parameter '%s' is a %s, not categorical", name, rf_param_kind_name(p->kind));
    *out = p->choice_label[(int)c->v[i]];
    return RF_OK;
}

int rf_config_set(const rf_space *sp, rf_config *c, const char *name, double number, const char *label, rf_err *e) {
    int i = rf_space_find(sp, name);
    if (i < 0) return rf_err_set(e, RF_EARG, "configuration: no parameter '%s' in the space", name);
    const rf_param *p = &sp->p[i];
    cJSON *v = label ? cJSON_CreateString(label) : cJSON_CreateNumber(number);
    double x;
    int rc = parse_value(p, v, &x, "value", e);
    cJSON_Delete(v);
    if (rc) return rf_err_prefix(e, rc, "configuration: parameter '%s'", name);
    c->v[i] = x;
    rf__config_update_active(sp, c, 1);
    return RF_OK;
}

/* ---------------------------------------------------------------------------------------
 * applying a configuration to a flow spec and a training configuration
 * --------------------------------------------------------------------------------------- */

static void canon_name(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; s[k] && k + 1 < n; k++) out[k] = s[k] == '_' ? '-' : (char)tolower((unsigned char)s[k]);
    out[k] = '\0';
    static const char *alias[][2] = {{"lambda", "ce-weight"},          {"flow-type", "flow"},
                                     {"conditioner-depth", "hidden-layers"}, {"activation", "act"},
                                     {"warmup-frac", "warmup"},        {"n-hidden", "hidden-layers"}};
    for (size_t a = 0; a < sizeof alias / sizeof *alias; a++)
        if (strcmp(out, alias[a][0]) == 0) snprintf(out, n, "%s", alias[a][1]);
}

/* The value of parameter i as a number (numeric category included), or RF_EARG. */
static int num_of(const rf_space *sp, const rf_config *c, int i, double *out, rf_err *e) {
    return rf_config_get_number(sp, c, sp->p[i].name, out, e);
}

static int int_of(const rf_space *sp, const rf_config *c, int i, int lo, int hi, int *out, rf_err *e) {
    double v;
    int rc = num_of(sp, c, i, &v, e);
    if (rc) return rc;
    if (v != floor(v) || v < lo || v > hi)
        return rf_err_set(e, RF_EARG, "configuration: parameter '%s' = %g cannot be used: expected an integer in [%d, %d]",
                          sp->p[i].name, v, lo, hi);
    *out = (int)v;
    return RF_OK;
}

static int flt_of(const rf_space *sp, const rf_config *c, int i, double lo, double hi, float *out, rf_err *e) {
    double v;
    int rc = num_of(sp, c, i, &v, e);
    if (rc) return rc;
    if (!(v >= lo && v <= hi))
        return rf_err_set(e, RF_EARG, "configuration: parameter '%s' = %g cannot be used: expected a number in [%g, %g]",
                          sp->p[i].name, v, lo, hi);
    *out = (float)v;
    return RF_OK;
}

/* A textual value: the choice label of a categorical, else the number printed. */
static const char *str_of(const rf_space *sp, const rf_config *c, int i, char *buf, size_t n) {
    const rf_param *p = &sp->p[i];
    if (p->kind == RF_PARAM_CAT) return p->choice_label[(int)c->v[i]];
    fmt_num(c->v[i], buf, n);
    return buf;
}

static int onoff(const char *s, int *out) {
    if (!strcmp(s, "on") || !strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes")) *out = 1;
    else if (!strcmp(s, "off") || !strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no")) *out = 0;
    else return RF_EARG;
    return RF_OK;
}

int rf_space_apply(const rf_space *sp, const rf_config *c, rf_flow_spec *spec, rf_train_cfg *tc,
                   char *unapplied, size_t unapplied_len, rf_err *e) {
    int rc = rf_config_check(sp, c, e);
    if (rc) return rc;
    if (unapplied && unapplied_len) unapplied[0] = '\0';
    size_t uoff = 0;
    for (int i = 0; i < sp->n && !rc; i++) {
        if (!c->active[i]) continue;
        char nm[RF_PARAM_NAME_MAX], buf[64];
        canon_name(sp->p[i].name, nm, sizeof nm);
        const char *s = str_of(sp, c, i, buf, sizeof buf);
        int done = 1;
        if (tc && !strcmp(nm, "lr")) rc = flt_of(sp, c, i, 1e-12, 10, &tc->lr, e);
        else if (tc && !strcmp(nm, "batch")) rc = int_of(sp, c, i, 1, 1 << 20, &tc->batch, e);
        else if (tc && !strcmp(nm, "weight-decay")) rc = flt_of(sp, c, i, 0, 10, &tc->weight_decay, e);
        else if (tc && !strcmp(nm, "warmup")) rc = flt_of(sp, c, i, 0, 1, &tc->warmup_frac, e);
        else if (tc && !strcmp(nm, "epochs")) rc = int_of(sp, c, i, 1, 1000000, &tc->epochs, e);
        else if (tc && !strcmp(nm, "clip")) rc = flt_of(sp, c, i, 0, 1e9, &tc->clip, e);
        else if (tc && !strcmp(nm, "ce-weight")) rc = flt_of(sp, c, i, 0, 1e6, &tc->ce_weight, e);
        else if (tc && !strcmp(nm, "patience")) rc = int_of(sp, c, i, 0, 1000000, &tc->patience, e);
        else if (tc && !strcmp(nm, "schedule")) {
            if (!strcmp(s, "cosine")) tc->cosine = 1;
            else if (!strcmp(s, "constant")) tc->cosine = 0;
            else rc = rf_err_set(e, RF_EARG, "configuration: parameter 'schedule' = \"%s\": expected constant or cosine", s);
        } else if (spec && !strcmp(nm, "flow")) {
            rf_flow_type t;
            if (rf_flow_type_parse(s, &t) != RF_OK)
                rc = rf_err_set(e, RF_EARG, "configuration: parameter '%s' = \"%s\" is not a flow type (realnvp, glow, maf, nsf, nsf-ar, tsflow)",
                                sp->p[i].name, s);
            else spec->type = t;
        } else if (spec && !strcmp(nm, "blocks")) rc = int_of(sp, c, i, 1, 1000, &spec->blocks, e);
        else if (spec && !strcmp(nm, "hidden")) rc = int_of(sp, c, i, 1, 65536, &spec->hidden, e);
        else if (spec && !strcmp(nm, "hidden-layers")) rc = int_of(sp, c, i, 1, 64, &spec->n_hidden, e);
        else if (spec && !strcmp(nm, "bins")) rc = int_of(sp, c, i, 2, 64, &spec->bins, e);
        else if (spec && !strcmp(nm, "bound")) rc = flt_of(sp, c, i, 1e-3, 1e4, &spec->bound, e);
        else if (spec && !strcmp(nm, "clamp")) rc = flt_of(sp, c, i, 0, 99, &spec->clamp, e);
        else if (spec && !strcmp(nm, "scales")) rc = int_of(sp, c, i, 1, 16, &spec->scales, e);
        else if (spec && !strcmp(nm, "kernel")) rc = int_of(sp, c, i, 1, 63, &spec->kernel, e);
        else if (spec && !strcmp(nm, "dilation")) rc = int_of(sp, c, i, 1, 4096, &spec->dilation, e);
        else if (spec && !strcmp(nm, "act")) {
            rf_act a;
            if (rf_act_parse(s, &a) != RF_OK)
                rc = rf_err_set(e, RF_EARG, "configuration: parameter '%s' = \"%s\" is not an activation (relu, gelu, tanh)", sp->p[i].name, s);
            else spec->act = a;
        } else if (spec && !strcmp(nm, "residual")) {
            if (onoff(s, &spec->residual) != RF_OK)
                rc = rf_err_set(e, RF_EARG, "configuration: parameter '%s' = \"%s\": expected on or off", sp->p[i].name, s);
        } else if (spec && !strcmp(nm, "permutation")) {
            if (rf_perm_kind_parse(s, &spec->perm) != RF_OK)
                rc = rf_err_set(e, RF_EARG, "configuration: parameter '%s' = \"%s\": expected lu, reverse, random, none or default",
                                sp->p[i].name, s);
        } else if (spec && !strcmp(nm, "actnorm")) {
            int on = 1;
            if (onoff(s, &on) != RF_OK)
                rc = rf_err_set(e, RF_EARG, "configuration: parameter '%s' = \"%s\": expected on or off", sp->p[i].name, s);
            spec->no_actnorm = !on;
        } else if (spec && !strcmp(nm, "coupling")) {
            if (!strcmp(s, "affine")) spec->spline = 0;
            else if (!strcmp(s, "spline")) spec->spline = 1;
            else rc = rf_err_set(e, RF_EARG, "configuration: parameter '%s' = \"%s\": expected affine or spline", sp->p[i].name, s);
        } else {
            done = 0;
        }
        if (!done && unapplied && unapplied_len) {
            int w = snprintf(unapplied + uoff, unapplied_len - uoff, "%s%s", uoff ? "," : "", sp->p[i].name);
            if (w > 0) uoff += (size_t)w;
            if (uoff >= unapplied_len) uoff = unapplied_len - 1;
        }
    }
    return rc;
}
