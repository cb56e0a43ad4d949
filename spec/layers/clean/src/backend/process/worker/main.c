#include "../proc.h"
#include "guest.h"
