#ifndef ISO_CONFINE_H
#define ISO_CONFINE_H
/* placeholder: being written */
#endif
