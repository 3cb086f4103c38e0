/*
 * node_cli_fmt.c - roost's text for people: what a terminal may be shown of
 * the daemon's strings (control characters replaced), column counting and
 * padding for aligned tables, durations and local times, cutting long
 * texts, and invites drawn as QR codes.  Nothing here reads a reply or
 * talks to roostd; everything writes into caller buffers or a FILE.
 */
#include <qrencode.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "node_cli.h"

/* Replaces control characters in s (from the daemon) so they cannot drive
 * the terminal. */
void node_cli_sanitize(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      *s = '?';
}

/* Terminal columns of UTF-8 s, counting one per character. */
size_t node_cli_columns(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xc0) != 0x80;
  return n;
}

void node_cli_pad(FILE *f, const char *s, size_t width) {
  fputs(s, f);
  for (size_t n = node_cli_columns(s); n < width; n++)
    fputc(' ', f);
}

/* "42s", "3m 07s", "5h 02m", "2d 04h". */
void node_cli_duration(int64_t s, char *buf, size_t len) {
  if (s < 0)
    snprintf(buf, len, "-");
  else if (s < 60)
    snprintf(buf, len, "%llds", (long long)s);
  else if (s < 3600)
    snprintf(buf, len, "%lldm %02llds", (long long)(s / 60), (long long)(s % 60));
  else if (s < 86400)
    snprintf(buf, len, "%lldh %02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
  else
    snprintf(buf, len, "%lldd %02lldh", (long long)(s / 86400), (long long)(s / 3600 % 24));
}

/* "2025-01-02 13:04" in local time, or "-". */
void node_cli_time(int64_t unix_ms, char *buf, size_t len) {
  time_t t = (time_t)(unix_ms / 1000);
  struct tm tm;
  if (unix_ms <= 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M", &tm))
    snprintf(buf, len, "-");
}

static bool qr_dark(const QRcode *q, int x, int y) {
  return x >= 0 && y >= 0 && x < q->width && y < q->width && (q->data[y * q->width + x] & 1);
}

/* Prints text as a QR code with Unicode half blocks, two rows of modules
 * per line, light modules drawn (for a terminal with a dark background, as
 * qrencode -t UTF8 does) with a quiet zone of 2.  0 or -1. */
int node_cli_qr(FILE *out, const char *text) {
  QRcode *q = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_L);
  if (!q)
    return -1;
  const int m = 2;
  for (int y = -m; y < q->width + m; y += 2) {
    for (int x = -m; x < q->width + m; x++) {
      bool top = qr_dark(q, x, y), bot = qr_dark(q, x, y + 1);
      fputs(!top && !bot ? "\u2588" : !top ? "\u2580" : !bot ? "\u2584" : " ", out);
    }
    fputc('\n', out);
  }
  QRcode_free(q);
  return 0;
}

/* Prints the rows of a table: cells[(row)*cols + col], row 0 the header;
 * the last column is not padded. */
void node_cli_table(char (*cells)[160], int rows, int cols) {
  size_t width[8] = {0};
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      size_t n = node_cli_columns(cells[i * cols + j]);
      if (n > width[j])
        width[j] = n;
    }
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < cols; j++) {
      if (j == cols - 1)
        fputs(cells[i * cols + j], stdout);
      else
        node_cli_pad(stdout, cells[i * cols + j], width[j] + 2);
    }
    fputc('\n', stdout);
  }
}

/* Cuts s to at most n columns (UTF-8 aware), "..." marking a cut, with
 * newlines and tabs shown as spaces. */
void node_cli_shorten(char *s, size_t n) {
  for (char *p = s; *p; p++)
    if (*p == '\n' || *p == '\t' || *p == '\r')
      *p = ' ';
  node_cli_sanitize(s);
  if (node_cli_columns(s) <= n)
    return;
  size_t cols = 0;
  char *p = s;
  for (; *p; p++) {
    if (((unsigned char)*p & 0xc0) != 0x80 && ++cols > n - 1)
      break;
  }
  snprintf(p, 4, "\u2026");
}
