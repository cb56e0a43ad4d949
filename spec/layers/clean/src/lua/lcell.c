#include "isolate.h"
#include "cell.h"
