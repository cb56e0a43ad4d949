#include "value.h"
#include <stdio.h>
