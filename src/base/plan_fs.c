/*
 * A plan's fs side: paths made absolute and normal, glob checks, and the
 * matchers its fs rules decide with (plan.c holds the plan).
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

/* ---- paths ------------------------------------------------------------- */

/* Append segment [s, s+n) to out (length *len), handling . and .. */
static int push_segment(char *out, size_t size, size_t *len, const char *s,
                        size_t n)
{
    if (n == 0 || (n == 1 && s[0] == '.'))
        return 0;
    if (n == 2 && s[0] == '.' && s[1] == '.') {
        while (*len > 0 && out[*len - 1] != '/')
            (*len)--;
        if (*len > 0)
            (*len)--; /* the slash; at the root this stays empty */
        return 0;
    }
    if (*len + 1 + n + 1 > size)
        return -1;
    out[(*len)++] = '/';
    memcpy(out + *len, s, n);
    *len += n;
    return 0;
}

int iso_path_normalize(const char *in, char *out, size_t size, iso_error *err)
{
    if (!in || in[0] != '/')
        return iso_error_set(err, ISO_POLICY, "path must be absolute");
    size_t len = 0;
    for (const char *p = in; *p;) {
        size_t n = strcspn(p, "/");
        if (push_segment(out, size, &len, p, n))
            return iso_error_set(err, ISO_POLICY, "path is too long");
        p += n + (p[n] == '/');
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    return 0;
}

/* ---- globs ------------------------------------------------------------- */

bool iso_glob_has_wildcard(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '*' || s[i] == '?')
            return true;
    return false;
}

static int check_segment(const char *s, size_t n, bool *wild, iso_error *err)
{
    if (strcspn(s, "[]{}\\") < n)
        return iso_error_set(err, ISO_POLICY,
                             "'[', ']', '{', '}' and '\\' are not glob syntax "
                             "here: use * (one segment) or ** (any depth)");
    if (memmem(s, n, "**", 2) && n != 2)
        return iso_error_set(err, ISO_POLICY,
                             "** must be a whole path segment, as in /a/**/b");
    if (*wild && n == 2 && s[0] == '.' && s[1] == '.')
        return iso_error_set(err, ISO_POLICY,
                             "'..' cannot follow a wildcard segment");
    *wild = *wild || iso_glob_has_wildcard(s, n);
    return 0;
}

int iso_glob_check(const char *glob, iso_error *err)
{
    if (!glob || glob[0] != '/')
        return iso_error_set(err, ISO_POLICY,
                             "a path rule must be an absolute path or glob");
    if (strlen(glob) >= ISO_PATH_MAX)
        return iso_error_set(err, ISO_POLICY, "path rule is too long");
    bool wild = false;
    for (const char *p = glob; *p;) {
        size_t n = strcspn(p, "/");
        if (n && check_segment(p, n, &wild, err))
            return -1;
        p += n + (p[n] == '/');
    }
    return 0;
}

/* Does pattern segment list match path segment list? `**` spans zero or
 * more segments. Segments are NUL-free views separated by '/'. */
bool iso_glob_match(const char *pat, const char *path)
{
    while (*pat == '/')
        pat++;
    while (*path == '/')
        path++;
    if (!*pat)
        return !*path;
    size_t pn = strcspn(pat, "/");
    if (pn == 2 && pat[0] == '*' && pat[1] == '*') {
        for (const char *p = path;; p += strcspn(p, "/")) {
            if (iso_glob_match(pat + 2, p))
                return true;
            if (!*p)
                return false;
            p++;
        }
    }
    if (!*path)
        return false;
    size_t sn = strcspn(path, "/");
    char ps[ISO_PATH_MAX], ss[ISO_PATH_MAX];
    snprintf(ps, sizeof ps, "%.*s", (int)pn, pat);
    snprintf(ss, sizeof ss, "%.*s", (int)sn, path);
    return fnmatch(ps, ss, 0) == 0 && iso_glob_match(pat + pn, path + sn);
}

static bool beneath(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    if (n == 1) /* "/" */
        return true;
    return strncmp(dir, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool iso_fs_rule_match(const fs_rule *r, const char *path)
{
    return r->literal ? beneath(r->glob, path) : iso_glob_match(r->glob, path);
}

/* Is path (segments after the ones matched so far) a proper ancestor of
 * some path pat matches? `**` matches any depth, so anything leads on. */
static bool leads_into(const char *pat, const char *path)
{
    while (*pat == '/')
        pat++;
    while (*path == '/')
        path++;
    if (!*path)
        return *pat != '\0'; /* more to come beneath path */
    size_t pn = strcspn(pat, "/"), sn = strcspn(path, "/");
    if (pn == 0)
        return false;
    if (pn == 2 && pat[0] == '*' && pat[1] == '*')
        return true;
    char ps[ISO_PATH_MAX], ss[ISO_PATH_MAX];
    snprintf(ps, sizeof ps, "%.*s", (int)pn, pat);
    snprintf(ss, sizeof ss, "%.*s", (int)sn, path);
    return fnmatch(ps, ss, 0) == 0 && leads_into(pat + pn, path + sn);
}

bool iso_fs_rule_leads_to(const fs_rule *r, const char *path)
{
    if (r->literal)
        return strcmp(r->glob, path) != 0 && beneath(path, r->glob);
    return leads_into(r->glob, path);
}
