/* Exits with the status given as "status=N" on the command line (default 3). */
#include "rt.h"

int main(const struct hvm_start_info *si)
{
	return (int)cmdline_uint(si, "status", 3);
}
