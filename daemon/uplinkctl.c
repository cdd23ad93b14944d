#include <stdio.h>

int
main(void)
{
	fprintf(stderr, "uplinkctl: not built yet\n");
	return 1;
}
