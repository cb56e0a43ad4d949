/*
 * What the plan's files share (plan.c, plan_fs.c, plan_net.c): the rules
 * of a plan and the matchers plan.c decides with. Private to src/base.
 */
#ifndef ISO_PLAN_INTERNAL_H
#define ISO_PLAN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "isolate.h"

typedef struct fs_rule {
    iso_fs_access access;
    char *glob;   /* normalised */
    bool literal; /* no wildcard: matches the path and what is beneath */
    char *text;
} fs_rule;

typedef struct net_rule {
    iso_net_action action;
    char *path;     /* a unix: rule's normalised path; NULL for IP rules */
    bool localhost; /* 127.0.0.0/8 and ::1 */
    iso_addr addr;
    int prefix; /* bits */
    uint16_t port_lo, port_hi;
    char *spec;
    char *text;
} net_rule;

struct iso_plan {
    _Atomic int refs;
    fs_rule *fs;
    size_t n_fs, cap_fs;
    net_rule *net;
    size_t n_net, cap_net;
};

/* plan_fs.c: does s[0..n) hold a glob wildcard; does glob pat match
 * path (`**` spans any depth); does r match path, and does path lead on
 * to something r matches (a proper ancestor of it)? */
bool iso_glob_has_wildcard(const char *s, size_t n);
bool iso_glob_match(const char *pat, const char *path);
bool iso_fs_rule_match(const fs_rule *r, const char *path);
bool iso_fs_rule_leads_to(const fs_rule *r, const char *path);

/* plan_net.c: spec ("host:port", "cidr:lo-hi", "unix:/path") into r: 0,
 * or -1 with err; does r match address a and port? */
int iso_net_rule_parse(const char *spec, net_rule *r, iso_error *err);
bool iso_net_rule_match(const net_rule *r, const iso_addr *a, uint16_t port);

#endif
