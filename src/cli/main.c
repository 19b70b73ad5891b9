#include "qkit/base.h"
#include <stdio.h>
int main(void) { puts("qkit"); return 0; }
