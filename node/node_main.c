/*
 * node_main.c - roostd's entry point: configuration from defaults, the
 * config file and flags; usage errors exit 2; then the daemon runs.
 */
#include <sodium.h>
#include <stdio.h>

#include "node.h"

int main(int argc, char **argv) {
  node_config cfg;
  char err[1024];
  node_config_default(&cfg);
  int rv = node_config_from_args(&cfg, argc, argv, err, sizeof err);
  if (rv == 1)
    return 0;
  if (rv < 0) {
    fprintf(stderr, "roostd: %s\n", err);
    return 2;
  }
  if (sodium_init() < 0) {
    fprintf(stderr, "roostd: libsodium failed to initialise\n");
    return 1;
  }
  node_log_init(cfg.log_level);
  return node_daemon_run(&cfg, argc, argv);
}
