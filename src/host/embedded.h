/* The pure-Lua modules compiled into the host (see cmake/embed.cmake). */
#ifndef ISOLATE_EMBEDDED_H
#define ISOLATE_EMBEDDED_H
#include <stddef.h>

typedef struct iso_embedded_module {
    const char *name;  /* "isolate", "isolate.error" */
    const char *chunk; /* "@lua/isolate/init.lua" */
    const char *source;
    size_t len;
} iso_embedded_module;

extern const iso_embedded_module iso_embedded_modules[];
#endif
