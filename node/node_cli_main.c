/*
 * node_cli_main.c - the roost executable's main (the program is in
 * node_cli.c, so that the unit test can run it as a function).
 */
#include "node_cli.h"

int main(int argc, char **argv) {
  return node_cli_main(argc, argv);
}
