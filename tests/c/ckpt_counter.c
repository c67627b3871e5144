/* A counter: the smallest process to checkpoint (built -m64 and -m32). */
#include "ckpt_common.h"

int main(void)
{
	ready("program=%s", "counter");
	count_forever();
}
