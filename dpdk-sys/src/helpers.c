#include "../wrapper.h"

int ferrovs_rte_errno(void) { return rte_errno; }
