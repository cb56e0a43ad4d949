/* public API */
#include <stddef.h>
