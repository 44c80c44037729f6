// SPDX-License-Identifier: MIT
/*
 * Runs fuzz_ops.c's LLVMFuzzerTestOneInput over files or directories of
 * inputs without libFuzzer, so any compiler (and valgrind) can replay the
 * seed corpus and crash reproducers as an ordinary test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	static uint8_t buf[1 << 20];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		return 1;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

int main(int argc, char **argv)
{
	int inputs = 0, err = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		struct dirent **names;
		int n;

		if (stat(argv[i], &st)) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			err |= run_file(argv[i]);
			inputs++;
			continue;
		}
		n = scandir(argv[i], &names, NULL, alphasort);
		for (int j = 0; j < n; j++) {
			char path[4096];

			if (names[j]->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", argv[i], names[j]->d_name);
				err |= run_file(path);
				inputs++;
			}
			free(names[j]);
		}
		free(names);
	}
	printf("RELIABILITY fuzz_corpus_replay inputs=%d\n", inputs);
	return err || !inputs;
}
