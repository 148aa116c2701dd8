/* open + read(4096) + close of each PATH, COUNT times in turn, each timed with
 * CLOCK_MONOTONIC; prints one line per path: the nanoseconds of every try,
 * space-separated. Built by bench.control, so that a figure near the kernel's
 * own is not hidden under Python's call overhead (about 1 us per system call).
 *
 * usage: reader COUNT PATH...
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char buf[4096];
	long count;
	long long *times;

	if (argc < 3) {
		fprintf(stderr, "usage: %s COUNT PATH...\n", argv[0]);
		return 2;
	}
	count = strtol(argv[1], NULL, 10);
	times = calloc(count > 0 ? count : 1, sizeof(*times));
	if (times == NULL)
		return 1;
	for (int p = 2; p < argc; p++) {
		for (long i = 0; i < count; i++) {
			long long t0 = now_ns();
			int fd = open(argv[p], O_RDONLY);
			if (fd < 0 || read(fd, buf, sizeof(buf)) < 0) {
				perror(argv[p]);
				return 1;
			}
			close(fd);
			times[i] = now_ns() - t0;
		}
		for (long i = 0; i < count; i++)
			printf(i ? " %lld" : "%lld", times[i]);
		printf("\n");
	}
	return 0;
}
