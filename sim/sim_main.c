/*
 * sim_main.c - the roost-sim command line:
 *
 *   roost-sim --nodes N --seed S --out DIR [--rtt-file FILE] [--scenario FILE]
 *             [--key VALUE]...
 *
 * Precedence: defaults < scenario file < flags.  Runs the simulation, writes
 * the output folder, prints a short summary and, last, "trace hash: <hex>".
 * Exit status: 0 done, 1 the run failed, 2 usage or scenario error.
 *
 * Invariant: a run depends on nothing here but the sim_config built from the
 * file and the flags (and the seed it carries), so the same configuration
 * gives the same trace hash whichever way it was written.  Usage and
 * configuration errors stop it before the run starts (the RTT file is loaded
 * here once only to check it), with exit 2 and one line saying where.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static int flag_name(const char *a, char *name, size_t len, const char **eq) {
  if (strncmp(a, "--", 2) != 0)
    return -1;
  *eq = strchr(a, '=');
  size_t n = *eq ? (size_t)(*eq - a - 2) : strlen(a + 2);
  if (n == 0 || n >= len)
    return -1;
  memcpy(name, a + 2, n);
  name[n] = 0;
  return 0;
}

int main(int argc, char **argv) {
  sim_config c;
  char err[1024], name[64];
  sim_config_default(&c);
  /* pass 1: --help, --version, --scenario, --seed (the scenario may not
   * override a seed given on the command line: flags are applied after) */
  for (int i = 1; i < argc; i++) {
    const char *eq = NULL;
    if (flag_name(argv[i], name, sizeof name, &eq) != 0) {
      fprintf(stderr, "roost-sim: unexpected argument '%s' (roost-sim --help)\n", argv[i]);
      return 2;
    }
    if (!strcmp(name, "help")) {
      sim_config_help(stdout);
      return 0;
    }
    if (!strcmp(name, "version")) {
      printf("roost-sim %s\n", SIM_VERSION);
      return 0;
    }
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v) {
      fprintf(stderr, "roost-sim: --%s needs a value\n", name);
      return 2;
    }
    if (!strcmp(name, "scenario") && sim_scenario_load(&c, v, err, sizeof err) != 0) {
      fprintf(stderr, "roost-sim: %s\n", err);
      return 2;
    }
  }
  /* pass 2: flags override the scenario */
  for (int i = 1; i < argc; i++) {
    const char *eq = NULL;
    flag_name(argv[i], name, sizeof name, &eq);
    const char *v = eq ? eq + 1 : argv[++i];
    if (!strcmp(name, "scenario"))
      continue;
    char where[80];
    snprintf(where, sizeof where, "--%s", name);
    if (sim_config_set(&c, name, v, where, err, sizeof err) != 0) {
      fprintf(stderr, "roost-sim: %s\n", err);
      return 2;
    }
  }
  if (sim_config_check(&c, err, sizeof err) != 0) {
    fprintf(stderr, "roost-sim: %s\n", err);
    return 2;
  }
  if (c.rtt_file[0]) {
    /* check the file before the run: a bad table is bad input (exit 2) */
    sim_rtt *t;
    if (sim_rtt_load(&t, c.rtt_file, err, sizeof err) != 0) {
      fprintf(stderr, "roost-sim: %s\n", err);
      return 2;
    }
    sim_rtt_free(t);
  }
  /* deterministic libsodium: before sodium_init, as DESIGN.md asks */
  if (sim_sodium_deterministic(c.seed) != 0 || sodium_init() < 0) {
    fprintf(stderr, "roost-sim: cannot initialise libsodium\n");
    return 1;
  }
  if (!c.quiet)
    fprintf(stderr, "roost-sim: %d nodes, seed %llu, crypto %s%s\n", c.nodes,
            (unsigned long long)c.seed, c.crypto ? "on" : "OFF",
            c.crypto ? "" : " (datagrams neither encrypted nor authenticated)");
  sim_result res;
  if (sim_run(&c, &res, err, sizeof err) != 0) {
    fprintf(stderr, "roost-sim: %s\n", err);
    sim_result_free(&res);
    return 1;
  }
  if (sim_out_write(&c, &res, err, sizeof err) != 0) {
    fprintf(stderr, "roost-sim: %s\n", err);
    sim_result_free(&res);
    return 1;
  }
  size_t lookups = 0, lok = 0;
  for (size_t i = 0; i < res.nops; i++)
    if (res.ops[i].kind == SIM_OP_LOOKUP && res.ops[i].end_ms >= 0) {
      lookups++;
      lok += res.ops[i].ok;
    }
  char hex[65];
  sodium_bin2hex(hex, sizeof hex, res.trace_hash, sizeof res.trace_hash);
  if (!c.quiet) {
    printf("events: %llu in %.1f s (%.0f events/s); datagrams %llu, lost %llu\n",
           (unsigned long long)res.events, res.wall_s,
           res.wall_s > 0 ? (double)res.events / res.wall_s : 0.0, (unsigned long long)res.packets,
           (unsigned long long)res.lost);
    printf("lookups: %zu completed, %zu found the true %d closest (%.2f%%)\n", lookups, lok, c.k,
           lookups ? 100.0 * (double)lok / (double)lookups : 0.0);
    if (res.nat.hosts[SIM_NAT_PUBLIC] < res.nhosts) {
      printf("nat: %d of %d hosts behind boxes (", res.nhosts - res.nat.hosts[SIM_NAT_PUBLIC],
             res.nhosts);
      for (int k = SIM_NAT_PUBLIC + 1; k < SIM_NAT_TYPES; k++)
        printf("%s%s %d", k > 1 ? ", " : "", sim_nat_type_name(k), res.nat.hosts[k]);
      printf("); %llu datagrams filtered\n", (unsigned long long)res.nat.filtered);
    }
    if (c.nat_svc) {
      const sim_natsvc_stats *t = &res.natsvc;
      int up = 0, srv = 0;
      for (int i = 0; i < t->nhosts; i++) {
        up += t->hosts[i].up;
        srv += t->hosts[i].up && t->hosts[i].server;
      }
      printf("nat service: %d of %d hosts up are servers; dial-backs %llu (ok %llu, failed %llu); "
             "%llu of %llu table entries unreachable; %zu bytes a service\n",
             srv, up, (unsigned long long)t->dials, (unsigned long long)t->dials_ok,
             (unsigned long long)t->dials_failed, (unsigned long long)t->entries_unreachable,
             (unsigned long long)t->entries, t->svc_bytes);
      printf("port mapping: %llu mappings asked, %llu granted, %llu verified, %llu refuted; "
             "%zu bytes a policy (hosts behind a box)\n",
             (unsigned long long)t->maps_asked, (unsigned long long)t->maps_granted,
             (unsigned long long)t->maps_verified, (unsigned long long)t->maps_refuted,
             t->pm_bytes);
      printf("vouching: %llu strangers checked, %llu stored, %llu not, %llu left to the verify "
             "PING; %llu CHECKs (%llu from a main socket)\n",
             (unsigned long long)t->vouch_asked, (unsigned long long)t->vouch_ok,
             (unsigned long long)t->vouch_failed, (unsigned long long)t->vouch_fallback,
             (unsigned long long)t->checks, (unsigned long long)t->checks_main);
    }
    printf("peak memory: %zu KiB (%.1f KiB per node); results in %s\n", res.peak_rss_kb,
           (double)res.peak_rss_kb / res.nhosts, c.out_dir);
  }
  printf("trace hash: %s\n", hex);
  sim_result_free(&res);
  return 0;
}
