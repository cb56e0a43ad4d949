#include "confine.h"
#include "netguard.skel.h" /* generated in the build tree */
