#include "lcell.h"
