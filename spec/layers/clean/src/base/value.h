#include "isolate.h"
