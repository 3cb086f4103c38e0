/*
 * node_files.c - the data directory: its creation, the identity key (created
 * once, mode 0600, never rewritten, refused when others can read it), the
 * lock that keeps a second roostd off the directory, and atomic writes
 * (temporary file + fsync + rename + fsync of the directory) for snapshots.
 *
 * identity.key layout: "roostk01" (8 bytes) || Ed25519 seed (32 bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node.h"

static const char key_magic[8] = {'r', 'o', 'o', 's', 't', 'k', '0', '1'};
#define KEY_FILE_LEN (8 + 32)

int node_dir_prepare(const char *dir, char *err, size_t errlen) {
  char path[PATH_MAX];
  if (!*dir || strlen(dir) >= sizeof path) {
    snprintf(err, errlen, "data directory: invalid path");
    return -1;
  }
  snprintf(path, sizeof path, "%s", dir);
  /* create parents as needed, each with 0700 */
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = 0;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
      return -1;
    }
    *p = '/';
  }
  if (mkdir(path, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create data directory %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "data directory %s is not a directory", path);
    return -1;
  }
  if (access(path, W_OK | X_OK) != 0) {
    snprintf(err, errlen, "data directory %s is not writable: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

int node_identity_load(const char *path, dht_identity *id, bool create, char *err, size_t errlen) {
  uint8_t buf[KEY_FILE_LEN];
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    memcpy(buf, key_magic, 8);
    memcpy(buf + 8, seed, 32);
    /* O_EXCL: created once; a racing creator loses and reads the winner's */
    int wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (wfd >= 0) {
      ssize_t n = write(wfd, buf, sizeof buf);
      int ok = n == (ssize_t)sizeof buf && fsync(wfd) == 0;
      close(wfd);
      sodium_memzero(buf, sizeof buf);
      if (!ok) {
        unlink(path);
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        sodium_memzero(seed, sizeof seed);
        return -1;
      }
      dht_identity_from_seed(id, seed);
      sodium_memzero(seed, sizeof seed);
      return 0;
    }
    sodium_memzero(seed, sizeof seed);
    if (errno != EEXIST) {
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
      return -1;
    }
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    if (errno == ENOENT)
      snprintf(err, errlen, "%s does not exist (run 'roost init' or start roostd once)", path);
    else
      snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    snprintf(err, errlen, "%s is not a regular file", path);
    return -1;
  }
  if (st.st_mode & 077) {
    close(fd);
    snprintf(err, errlen,
             "%s has mode %04o: the identity key must be readable by its owner only "
             "(fix with: chmod 600 %s)",
             path, (unsigned)(st.st_mode & 07777), path);
    return -1;
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    snprintf(err, errlen, "%s is owned by uid %u, not by us (uid %u)", path, (unsigned)st.st_uid,
             (unsigned)geteuid());
    return -1;
  }
  ssize_t n = read(fd, buf, sizeof buf);
  uint8_t extra;
  ssize_t more = n == (ssize_t)sizeof buf ? read(fd, &extra, 1) : 0;
  close(fd);
  if (n != (ssize_t)sizeof buf || more != 0 || memcmp(buf, key_magic, 8) != 0) {
    sodium_memzero(buf, sizeof buf);
    snprintf(err, errlen, "%s is not a roost identity key (wrong size or header)", path);
    return -1;
  }
  dht_identity_from_seed(id, buf + 8);
  sodium_memzero(buf, sizeof buf);
  return 0;
}

int node_lock_dir(const char *dir, int *fdp, char *err, size_t errlen) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/roostd.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "";
    ssize_t n = read(fd, pid, sizeof pid - 1);
    pid[n > 0 ? n : 0] = 0;
    pid[strcspn(pid, "\n")] = 0;
    close(fd);
    snprintf(err, errlen, "another roostd is already running on %s (pid %s); stop it first", dir,
             *pid ? pid : "unknown");
    return -1;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
    /* the lock is what matters; the PID is a courtesy */
  }
  *fdp = fd;
  return 0;
}

int node_write_atomic(const char *path, const void *buf, size_t len, unsigned mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return -errno;
  const uint8_t *p = buf;
  size_t left = len;
  while (left) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int e = errno ? errno : EIO;
      close(fd);
      unlink(tmp);
      return -e;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return -e;
  }
  close(fd);
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return -e;
  }
  /* make the rename itself durable */
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir)
    *slash = 0;
  else
    snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int node_read_file(const char *path, uint8_t **bufp, size_t *lenp, size_t max) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if ((size_t)st.st_size > max) {
    close(fd);
    return -EFBIG;
  }
  uint8_t *buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  *bufp = buf;
  *lenp = got;
  return 0;
}
