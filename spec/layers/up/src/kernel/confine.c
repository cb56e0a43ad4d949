#include <stdio.h>

#include "cell.h"
