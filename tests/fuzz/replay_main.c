/*
 * replay_main.c - runs a libFuzzer target over files without libFuzzer, so
 * CTest can replay the committed corpus in the normal gcc build (and under
 * the sanitizers).  Arguments are files or directories (not recursive).
 * Prints how many inputs ran; exits non-zero if none could be read.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return -1;
  }
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
  int ran = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: not found\n", argv[i]);
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      ran += run_file(argv[i]) == 0;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d)
      return 2;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      if (de->d_name[0] == '.')
        continue;
      char **nn = realloc(names, (n + 1) * sizeof *names);
      if (!nn)
        return 2;
      names = nn;
      size_t l = strlen(argv[i]) + strlen(de->d_name) + 2;
      names[n] = malloc(l);
      if (!names[n])
        return 2;
      snprintf(names[n], l, "%s/%s", argv[i], de->d_name);
      n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp); /* same order every run */
    for (size_t j = 0; j < n; j++) {
      ran += run_file(names[j]) == 0;
      free(names[j]);
    }
    free(names);
  }
  printf("replayed %d inputs\n", ran);
  return ran > 0 ? 0 : 1;
}
