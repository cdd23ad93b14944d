#include <stdio.h>

#include "log.h"

int
main(void)
{
	log_init("uplinkd", 1, 0);
	log_warnx("not built yet");
	return 1;
}
