/*
 * test_cli_args.c - the roost CLI's own logic, without a daemon: argument
 * parsing (options before and after the command, "--", --opt=VALUE, every
 * usage error), --timeout values, duration and column formatting, and the
 * client side of the control protocol fed canned replies through a
 * socketpair (progress lines, other ids, errors, a connection closed early
 * or mid-line, lines that are not JSON or too long, no reply at all), and
 * the argument errors of the messaging commands (invite, friend, send,
 * outbox, inbox, fetch, host, mailbox) through the whole main().
 *
 * It links roost_cli, the CLI without its main: node_cli.h declares what is
 * tested, and node_cli_main runs the whole program.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node_cli.h"

/* after node_cli.h: cmocka defines a fail() macro */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof(a)[0]) - 1)

static void test_options_anywhere(void **state) {
  (void)state;
  char *argv[] = {"roost", "--json", "lookup", "--data-dir", "/x", "abc", "--timeout=2.5", NULL};
  node_cli_opts o;
  char err[256] = "";
  assert_int_equal(node_cli_parse_args(ARGC(argv), argv, &o, err, sizeof err), 0);
  assert_true(o.json);
  assert_false(o.wait);
  assert_string_equal(o.cmd, "lookup");
  assert_int_equal(o.npos, 1);
  assert_string_equal(o.pos[0], "abc");
  assert_string_equal(o.data_dir, "/x");
  assert_null(o.socket);
  assert_int_equal(o.timeout_ms, 2500);

  char *argv2[] = {"roost", "status", "--wait", "--socket=/run/r.sock", NULL};
  assert_int_equal(node_cli_parse_args(ARGC(argv2), argv2, &o, err, sizeof err), 0);
  assert_true(o.wait);
  assert_false(o.json);
  assert_string_equal(o.socket, "/run/r.sock");
  assert_int_equal(o.timeout_ms, -1);
  assert_int_equal(o.npos, 0);

  char *argv3[] = {"roost", NULL};
  assert_int_equal(node_cli_parse_args(ARGC(argv3), argv3, &o, err, sizeof err), 0);
  assert_null(o.cmd);

  char *argv4[] = {"roost", "peers", "-h", NULL};
  assert_int_equal(node_cli_parse_args(ARGC(argv4), argv4, &o, err, sizeof err), 0);
  assert_true(o.help);
}

static void test_double_dash(void **state) {
  (void)state;
  char *argv[] = {"roost", "lookup", "--", "--json", "-", NULL};
  node_cli_opts o;
  char err[256];
  assert_int_equal(node_cli_parse_args(ARGC(argv), argv, &o, err, sizeof err), 0);
  assert_false(o.json);
  assert_int_equal(o.npos, 2);
  assert_string_equal(o.pos[0], "--json");
  assert_string_equal(o.pos[1], "-");
}

static void test_usage_errors(void **state) {
  (void)state;
  static const char *const cases[][4] = {
      {"--bogus", NULL},
      {"-x", NULL},
      {"status", "--data-dir", NULL},
      {"--data-dir=", "id", NULL},
      {"--socket", "", "id", NULL},
      {"--json=1", "id", NULL},
      {"--wait=yes", "status", NULL},
      {"--timeout", "0", "id", NULL},
      {"--timeout", "-1", "id", NULL},
      {"--timeout", "abc", "id", NULL},
      {"--timeout", "nan", "id", NULL},
      {"--timeout", "86401", "id", NULL},
      {"--timeout", "5s", "id", NULL},
      {"--timeout=", "id", NULL},
      {"--a-very-long-option-name-that-is-not-known-at-all", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *argv[6] = {"roost"};
    int argc = 1;
    for (int j = 0; j < 4 && cases[i][j]; j++)
      argv[argc++] = (char *)cases[i][j];
    node_cli_opts o;
    char err[256] = "";
    assert_int_equal(node_cli_parse_args(argc, argv, &o, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
  }
  /* more positional arguments than are kept */
  char *many[] = {"roost", "a", "1", "2", "3", "4", "5", "6", "7", "8", "9", NULL};
  node_cli_opts o;
  char err[256] = "";
  assert_int_equal(node_cli_parse_args(ARGC(many), many, &o, err, sizeof err), -1);
}

static void test_seconds(void **state) {
  (void)state;
  assert_int_equal(node_cli_parse_seconds("10"), 10000);
  assert_int_equal(node_cli_parse_seconds("0.5"), 500);
  assert_int_equal(node_cli_parse_seconds("0.0001"), 1);
  assert_int_equal(node_cli_parse_seconds("86400"), 86400000);
  assert_int_equal(node_cli_parse_seconds("86401"), -1);
  assert_int_equal(node_cli_parse_seconds(""), -1);
  assert_int_equal(node_cli_parse_seconds("0"), -1);
  assert_int_equal(node_cli_parse_seconds("inf"), -1);
  assert_int_equal(node_cli_parse_seconds("1x"), -1);
}

static void test_formatting(void **state) {
  (void)state;
  char b[32];
  node_cli_duration(0, b, sizeof b);
  assert_string_equal(b, "0s");
  node_cli_duration(59, b, sizeof b);
  assert_string_equal(b, "59s");
  node_cli_duration(187, b, sizeof b);
  assert_string_equal(b, "3m 07s");
  node_cli_duration(3 * 3600 + 120, b, sizeof b);
  assert_string_equal(b, "3h 02m");
  node_cli_duration(2 * 86400 + 4 * 3600, b, sizeof b);
  assert_string_equal(b, "2d 04h");
  node_cli_duration(-5, b, sizeof b);
  assert_string_equal(b, "-");
  assert_int_equal(node_cli_columns("abcdefghijkl\u2026"), 13);
  char s[] = "a\x1b[31mb\x7f";
  node_cli_sanitize(s);
  assert_string_equal(s, "a?[31mb?");
}

static int progress_seen;

static void count_progress(const node_cli *c, const json_t *prog) {
  (void)c;
  (void)prog;
  progress_seen++;
}

/* Feeds bytes to node_cli_call() through a socketpair (then closes the writer when
 * close_after) and returns what node_cli_call() returns. */
static int feed(const char *bytes, bool close_after, bool eof_ok, size_t line_max,
                int64_t wait_ms) {
  static node_cli c;
  memset(&c, 0, sizeof c);
  snprintf(c.sock, sizeof c.sock, "test.sock");
  c.line_max = line_max;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  size_t n = strlen(bytes);
  assert_int_equal(send(sv[1], bytes, n, MSG_NOSIGNAL), (ssize_t)n);
  if (close_after)
    close(sv[1]);
  node_cli_conn k = {.fd = sv[0], .cap = 64, .max = line_max};
  k.buf = malloc(k.cap);
  assert_non_null(k.buf);
  node_cli_reply r;
  progress_seen = 0;
  int rv = node_cli_call(&c, &k, node_cli_now_ms() + wait_ms, wait_ms, count_progress, eof_ok, &r);
  if (rv == EXIT_OK) {
    assert_true(json_is_object(r.root));
    node_cli_reply_free(&r);
  }
  node_cli_conn_close(&k);
  if (!close_after)
    close(sv[1]);
  return rv;
}

static void test_protocol(void **state) {
  (void)state;
  const size_t L = NODE_PROTO_LINE_MAX;
  assert_int_equal(feed("{\"id\":1,\"ok\":true,\"result\":{}}\n", false, false, L, 2000), EXIT_OK);
  assert_int_equal(feed("{\"id\":1,\"progress\":{\"state\":\"bootstrapping\",\"table_size\":3}}\n"
                        "{\"id\":1,\"progress\":{}}\n"
                        "{\"id\":1,\"ok\":true,\"result\":{\"state\":\"ready\"}}\n",
                        false, false, L, 2000),
                   EXIT_OK);
  assert_int_equal(progress_seen, 2);
  /* another request's reply is not ours */
  assert_int_equal(feed("{\"id\":2,\"ok\":false}\n{\"id\":\"x\",\"ok\":false}\n"
                        "{\"id\":1,\"ok\":true}\n",
                        false, false, L, 2000),
                   EXIT_OK);
  /* a reply without id (roostd could not read the request) is ours */
  assert_int_equal(feed("{\"id\":null,\"ok\":false,\"error\":{\"code\":\"bad_request\","
                        "\"message\":\"x\"}}\n",
                        false, false, L, 2000),
                   EXIT_FAILED);
  assert_int_equal(feed("{\"id\":1,\"ok\":false,\"error\":{\"code\":\"not_found\","
                        "\"message\":\"no record\"}}\n",
                        false, false, L, 2000),
                   EXIT_FAILED);
  assert_int_equal(feed("{\"id\":1,\"ok\":false}\n", false, false, L, 2000), EXIT_FAILED);
  assert_int_equal(feed("{\"id\":1,\"ok\":\"yes\"}\n", false, false, L, 2000), EXIT_FAILED);
  assert_int_equal(feed("not json\n", false, false, L, 2000), EXIT_FAILED);
  assert_int_equal(feed("[1,2]\n", false, false, L, 2000), EXIT_FAILED);
  assert_int_equal(feed("{\"id\":1,\"ok\":true,\"ok\":true}\n", false, false, L, 2000),
                   EXIT_FAILED);
  /* closed: before anything, or in the middle of a line */
  assert_int_equal(feed("", true, false, L, 2000), EXIT_FAILED);
  assert_int_equal(feed("", true, true, L, 2000), CALL_CLOSED);
  assert_int_equal(feed("{\"id\":1,\"ok\":tr", true, true, L, 2000), EXIT_FAILED);
  /* a progress line, then nothing */
  assert_int_equal(feed("{\"id\":1,\"progress\":{}}\n", true, false, L, 2000), EXIT_FAILED);
  /* longer than the limit, with or without its newline */
  assert_int_equal(feed("{\"id\":1,\"ok\":true,\"result\":{\"x\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}\n",
                        false, false, 64, 2000),
                   EXIT_FAILED);
  /* 19 bytes with the newline */
  assert_int_equal(feed("{\"id\":1,\"ok\":true}\n", false, false, 19, 2000), EXIT_OK);
  assert_int_equal(feed("{\"id\":1,\"ok\":true}\n", false, false, 18, 2000), EXIT_FAILED);
  /* silence until the deadline */
  int64_t t0 = node_cli_now_ms();
  assert_int_equal(feed("", false, false, L, 100), EXIT_FAILED);
  assert_true(node_cli_now_ms() - t0 >= 100);
  /* a reply that grows the buffer past its first size, one line among others */
  char big[4096];
  int off = snprintf(big, sizeof big,
                     "{\"id\":1,\"progress\":{}}\n{\"id\":1,\"ok\":true,"
                     "\"result\":{\"text\":\"");
  memset(big + off, 'm', 3000);
  snprintf(big + off + 3000, sizeof big - (size_t)off - 3000, "\"}}\n");
  assert_int_equal(feed(big, false, false, L, 2000), EXIT_OK);
}

/* Runs the whole CLI (main) on argv with a data directory where no roostd
 * runs: a usage error exits 2 before any connection, a valid command gets
 * as far as connecting (3: not running). */
static int run_cli(const char *const *args) {
  char *argv[16] = {"roost", "--data-dir", "/nonexistent/roost-test"};
  int argc = 3;
  for (int i = 0; args[i]; i++)
    argv[argc++] = (char *)args[i];
  argv[argc] = NULL;
  return node_cli_main(argc, argv);
}

static void test_messaging_usage(void **state) {
  (void)state;
  static char long_text[STORE_TEXT_MAX + 2];
  memset(long_text, 'x', STORE_TEXT_MAX + 1);
  static char max_text[STORE_TEXT_MAX + 1];
  memset(max_text, 'y', STORE_TEXT_MAX);
  static const char *const usage_cases[][6] = {
      {"invite", "--expires", "0", NULL},
      {"invite", "--expires", "366", NULL},
      {"invite", "--expires", "7d", NULL},
      {"invite", "--qr", "--no-qr", NULL},
      {"invite", "extra", NULL},
      {"invite", "--qr=1", NULL},
      {"friend", NULL},
      {"friend", "bogus", NULL},
      {"friend", "add", NULL},
      {"friend", "add", "not-an-invite", NULL},
      {"friend", "add", "roost-invite:abc", "more", NULL},
      {"friend", "add", "roost-invite:abc", "--name", NULL},
      {"friend", "add", "roost-invite:abc", "--name=", NULL},
      {"friend", "list", "x", NULL},
      {"friend", "list", "--name", "x", NULL},
      {"friend", "remove", NULL},
      {"friend", "requests", "1", NULL},
      {"friend", "accept", NULL},
      {"friend", "accept", "0", NULL},
      {"friend", "accept", "one", NULL},
      {"friend", "accept", "-1", NULL},
      {"send", NULL},
      {"send", "bob", "", NULL},
      {"send", "bob", "hi", "there", NULL},
      {"send", "bob", "hi", "--qr", NULL},
      {"outbox", "x", NULL},
      {"outbox", "--follow", NULL},
      {"inbox", "x", NULL},
      {"inbox", "--name", "x", NULL},
      {"status", "--unread", NULL},
      {"fetch", "x", NULL},
      {"host", NULL},
      {"host", "bogus", NULL},
      {"host", "add", "bob", NULL},
      {"host", "add", "--quota", "1M", NULL},
      {"host", "add", "bob", "--quota", "0", NULL},
      {"host", "add", "bob", "--quota", "10X", NULL},
      {"host", "add", "bob", "--quota", "-5", NULL},
      {"host", "add", "bob", "--quota", "1.5G", NULL},
      {"host", "list", "--quota", "1M", NULL},
      {"host", "remove", NULL},
      {"mailbox", NULL},
      {"mailbox", "a", "b", NULL},
  };
  for (size_t i = 0; i < sizeof usage_cases / sizeof usage_cases[0]; i++) {
    int rv = run_cli(usage_cases[i]);
    if (rv != EXIT_USAGE) {
      print_error("case %zu (%s %s) exited %d, want 2\n", i, usage_cases[i][0],
                  usage_cases[i][1] ? usage_cases[i][1] : "", rv);
      fail();
    }
  }
  /* the text limit, both sides of it */
  const char *too_long[] = {"send", "bob", long_text, NULL};
  assert_int_equal(run_cli(too_long), EXIT_USAGE);
  const char *at_max[] = {"send", "bob", max_text, NULL};
  assert_int_equal(run_cli(at_max), EXIT_NOT_RUNNING);
  /* valid ones get as far as roostd */
  static const char *const valid[][6] = {
      {"invite", "--expires", "365", "--no-qr", NULL},
      {"friend", "list", NULL},
      {"friend", "accept", "3", "--name", "bob", NULL},
      {"send", "bob", "hello", NULL},
      {"inbox", "--follow", "--unread", NULL},
      {"host", "add", "bob", "--quota", "10M", NULL},
      {"host", "list", NULL},
      {"mailbox", "bob", NULL},
      {"fetch", NULL},
  };
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
    assert_int_equal(run_cli(valid[i]), EXIT_NOT_RUNNING);
}

static void test_messaging_helpers(void **state) {
  (void)state;
  assert_int_equal(node_cli_parse_count("1", 1, 365), 1);
  assert_int_equal(node_cli_parse_count("365", 1, 365), 365);
  assert_int_equal(node_cli_parse_count("366", 1, 365), -1);
  assert_int_equal(node_cli_parse_count("0", 1, 365), -1);
  assert_int_equal(node_cli_parse_count("+3", 1, 365), -1);
  assert_int_equal(node_cli_parse_count("", 1, 365), -1);
  char s[64] = "line one\nline two is longer than the cut";
  node_cli_shorten(s, 12);
  assert_string_equal(s, "line one li\u2026");
  assert_int_equal(node_cli_columns(s), 12);
  char u[64] = "\u00e9\u00e9\u00e9\u00e9";
  node_cli_shorten(u, 3);
  assert_string_equal(u, "\u00e9\u00e9\u2026");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_anywhere), cmocka_unit_test(test_double_dash),
      cmocka_unit_test(test_usage_errors),     cmocka_unit_test(test_seconds),
      cmocka_unit_test(test_formatting),       cmocka_unit_test(test_protocol),
      cmocka_unit_test(test_messaging_usage),  cmocka_unit_test(test_messaging_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
