#include "confine.h"
