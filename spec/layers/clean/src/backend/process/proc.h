#include "../../python/guest.h"
