#ifndef ISO_WIRE_H
#define ISO_WIRE_H
/* placeholder: being written */
#endif
