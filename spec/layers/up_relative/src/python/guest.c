#include "guest.h"
#include "../core/cell.h"
