#include "cell.h"
