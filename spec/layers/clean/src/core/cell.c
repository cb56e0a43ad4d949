#include "thread.h"
#include "proc.h"
#include "../kernel/confine.h"
