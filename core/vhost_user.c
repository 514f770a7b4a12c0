/* SPDX-License-Identifier: MIT */
#include "vhost_user.h"

#include <stdio.h>

int vhost_user_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "smvmm: vhost-user: not implemented yet\n");
	return 1;
}
