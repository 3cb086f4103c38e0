#!/usr/bin/env bash
# check-headers.sh - enforce the header-confinement rules of DESIGN.md section 1.
#
#   <uv.h>                    only in node/
#   <jansson.h>               only in node/ (node_json.h includes it; roostd's
#                             control socket and the roost CLI read requests
#                             and replies with jansson's accessors through it)
#   <msgpack.h>, msgpack/*    only in dht/dht_wire.c (the one codec file)
#   <sqlite3.h>               only in store/store_sqlite*.c
#   miniupnpc headers         only in nat/nat_upnp*.c
#   <natpmp.h>                only in nat/nat_pmp*.c
#   "dht_int.h", "dht_eng.h"  only in dht/ (dht_eng.h: the engine's files), tests/, bench/
#
# and, in the sans-I/O cores dht/, nat/, store/ (minus the adapter files
# above): no socket/clock/file/thread/env headers, no calls that touch the
# world (I/O, clocks, sockets, env, exit, libc or libsodium randomness), and no
# mutable globals (non-const file-scope variables or function-scope statics).
# <stdio.h> is allowed in cores for snprintf/vsnprintf, which are pure; the
# I/O calls are what is forbidden.
#
# Comments and string literals are stripped before matching, so prose and log
# strings never trip it.  Calls match on word boundaries and skip member calls
# (ops->rand(...), cb.log(...)) and names the file defines itself.
#
# Runs from the repo root, takes no arguments.  Prints one file:line line per
# violation and exits 1, or prints "header confinement: ok (N files checked)".
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---- the rules -------------------------------------------------------------

# System headers a core may not include (extended regex, whole header name).
CORE_BAD_HEADERS='sys/socket\.h|netinet/.*|arpa/inet\.h|netdb\.h|sys/un\.h|poll\.h|sys/poll\.h|sys/select\.h|sys/epoll\.h|time\.h|sys/time\.h|sys/timerfd\.h|pthread\.h|threads\.h|unistd\.h|fcntl\.h|sys/stat\.h|sys/mman\.h|dirent\.h|signal\.h|sys/random\.h'

# Functions a core may not call.  Grouped by the world they touch.
CORE_BAD_CALLS=(
  # stdio I/O (snprintf/vsnprintf/sscanf are pure and allowed)
  printf fprintf vprintf vfprintf dprintf vdprintf puts fputs putchar fputc putc
  fopen fdopen freopen fclose fread fwrite fflush fgets fgetc getc getchar gets
  scanf fscanf vscanf vfscanf perror setvbuf setbuf tmpfile tmpnam remove rename
  # files and descriptors
  open openat close read write pread pwrite lseek fsync unlink mkdir stat fstat mmap
  # clocks and sleeping
  time clock clock_gettime gettimeofday timespec_get nanosleep sleep usleep
  # environment, processes, exit
  getenv secure_getenv setenv putenv system fork execv execve execvp
  exit _exit _Exit quick_exit abort atexit signal raise
  # sockets
  socket bind connect listen accept send sendto sendmsg recv recvfrom recvmsg
  setsockopt getsockopt getaddrinfo freeaddrinfo
  # randomness: it comes in through the callbacks struct (determinism in sim)
  rand srand random srandom rand_r drand48 srand48 getrandom arc4random
)
# Call-name prefixes: threads and libsodium's global RNG.
CORE_BAD_CALL_PREFIXES='pthread_[A-Za-z0-9_]*|thrd_[A-Za-z0-9_]*|mtx_[A-Za-z0-9_]*|cnd_[A-Za-z0-9_]*|randombytes_[A-Za-z0-9_]*'

is_core() { # path relative to repo root
  case "$1" in
  nat/nat_upnp*.c | nat/nat_pmp*.c | store/store_sqlite*.c) return 1 ;;
  dht/* | nat/* | store/*) return 0 ;;
  *) return 1 ;;
  esac
}

# Prints a reason if FILE may not include HEADER, nothing if it may.
header_violation() {
  local f=$1 h=$2
  case "$h" in
  uv.h | uv/*)
    [[ $f == node/* ]] || echo "<$h> outside node/"
    ;;
  jansson.h | jansson_config.h)
    [[ $f == node/* ]] || echo "<$h> outside node/"
    ;;
  msgpack.h | msgpack.hpp | msgpack/*)
    [[ $f == dht/dht_wire.c ]] || echo "<$h> outside dht/dht_wire.c"
    ;;
  sqlite3.h | sqlite3ext.h)
    [[ $f == store/store_sqlite*.c ]] || echo "<$h> outside store/store_sqlite*.c"
    ;;
  miniupnpc/* | miniupnpc.h | miniupnpc_declspec.h | miniupnpctypes.h | upnpcommands.h | \
    upnperrors.h | upnpdev.h | upnpreplyparse.h | igd_desc_parse.h | miniwget.h | \
    portlistingparse.h)
    [[ $f == nat/nat_upnp*.c ]] || echo "<$h> (miniupnpc) outside nat/nat_upnp*.c"
    ;;
  dht_int.h | dht_eng.h)
    # dht/'s internals: other folders use dht.h; tests, benchmarks and fuzz
    # targets reach them on purpose (the roost_dht_testing CMake target)
    case "$f" in
    dht/* | tests/* | bench/*) ;;
    *) echo "\"$h\" (dht/ internals) outside dht/, tests/ and bench/" ;;
    esac
    if [[ $h == dht_eng.h && $f == dht/* ]]; then
      case "$f" in
      dht/dht_engine.c | dht/dht_lookup.c | dht/dht_svc.c | dht/dht_paths.c | dht/dht_relay.c | dht/dht_eng.h) ;;
      *) echo "\"dht_eng.h\" (the engine's state) outside the engine's own files" ;;
      esac
    fi
    ;;
  natpmp.h | natpmp_declspec.h)
    [[ $f == nat/nat_pmp*.c ]] || echo "<$h> outside nat/nat_pmp*.c"
    ;;
  *)
    if is_core "$f" && [[ $h =~ ^($CORE_BAD_HEADERS)$ ]]; then
      echo "<$h> in a sans-I/O core"
    fi
    ;;
  esac
}

# ---- source preparation ----------------------------------------------------

# strip MODE FILE: print FILE with comments removed (block comments keep their
# newlines, so line numbers hold).  MODE "code" also empties string and char
# literals; MODE "incl" keeps them (quoted #include names).
strip() {
  STRIP_MODE=$1 perl -0777 -pe '
    my $code = $ENV{STRIP_MODE} eq "code";
    s{(/\*.*?\*/)|(//[^\n]*)|("(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27)}{
      defined $1 ? " " . ("\n" x ($1 =~ tr/\n//))
      : defined $2 ? ""
      : $code ? "\"\"" : $3
    }gse;
  ' "$2"
}

# globals FILE (already stripped, "code" mode): print "LINE<TAB>declaration"
# for every mutable global: a non-const file-scope variable, or a static
# variable inside a function.  A heuristic, not a C parser: a declaration is
# immutable when "const" qualifies the object itself (no "*" after the last
# "const"), which accepts "static const char *const names[]" and rejects
# "static const char *names[]" (the pointer array is writable).
globals() {
  perl -e '
    local $/; my $src = <STDIN>;
    # blank preprocessor lines (and their continuations), keep newlines
    $src =~ s{^[ \t]*#(?:[^\n]*\\\n)*[^\n]*}{ " " . ("\n" x (($& =~ tr/\n//))) }gme;
    sub mutable {
      my ($d) = @_;
      $d =~ s/__attribute__\s*\(\(.*?\)\)//gs;
      $d =~ s/\{[^{}]*\}//gs while $d =~ /\{[^{}]*\}/;   # bodies, initializers
      $d =~ s/=.*//s;                                      # initializer
      $d =~ s/\s+/ /g; $d =~ s/^ | $//g;
      return 0 if $d eq "";
      return 0 if $d =~ /\b(typedef|extern|_Static_assert|static_assert)\b/;
      return 0 if $d =~ /^(struct|union|enum)( \w+)? ?$/;  # tag only
      # function declarator (prototype), unless a pointer declarator "(*x"
      return 0 if $d =~ /\(/ && $d !~ /\(\s*\*/;
      my $lc = -1;
      $lc = pos($d) while $d =~ /\bconst\b/g;
      return 1 if $lc < 0;
      my $ls = rindex($d, "*");
      return $ls > $lc ? 1 : 0;
    }
    sub check_static {  # one line of a function body
      my ($l, $n) = @_;
      return unless $l =~ /^\s*static\b([^;=]*)/ && $l !~ /\bstatic_assert\b/;
      print "$n\tfunction-scope static: ", ($l =~ s/^\s+|\s+$//gr), "\n" if mutable("static$1");
    }
    # One pass, character by character: file-scope statements are collected
    # in $stmt up to their ";"; function bodies are skipped except for their
    # lines that start with "static"; extern "C" braces are transparent.
    my ($depth, $line, $stmt, $start, $fnbody) = (0, 1, "", 1, 0);
    my ($fnline, $fnline_whole) = ("", 0);
    for my $c (split //, $src) {
      if ($fnbody) {
        if ($c eq "\n") {
          check_static($fnline, $line) if $fnline_whole;
          ($fnline, $fnline_whole) = ("", 1);
          $line++;
          next;
        }
        $fnline .= $c;
        $depth++ if $c eq "{";
        if ($c eq "}" && --$depth == 0) { $fnbody = 0; $stmt = ""; }
        next;
      }
      $start = $line if $stmt !~ /\S/ && $c =~ /\S/;
      $line++ if $c eq "\n";
      if ($c eq "{") {
        if ($depth == 0 && $stmt =~ /\)\s*$/ && $stmt !~ /=/) {  # function body
          ($fnbody, $depth, $fnline, $fnline_whole) = (1, 1, "", 0);
          next;
        }
        if ($depth == 0 && $stmt =~ /^\s*extern\s*""\s*$/) { $stmt = ""; next; }
        $depth++;
      } elsif ($c eq "}") {
        if ($depth == 0) { $stmt = ""; next; }  # the "}" of extern "C"
        $depth--;
      } elsif ($c eq ";" && $depth == 0) {
        if (mutable($stmt)) {
          (my $s = $stmt) =~ s/\s+/ /g;
          $s =~ s/^ | $//g;
          print "$start\tmutable global: ", substr($s, 0, 100), "\n";
        }
        $stmt = "";
        next;
      }
      $stmt .= $c;
    }
  '
}

# ---- the check -------------------------------------------------------------

mapfile -t FILES < <(find . \( -path ./.git -o -path './build*' -o -path ./out \) -prune -o \
  -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | LC_ALL=C sort)

call_names=$(
  IFS='|'
  echo "${CORE_BAD_CALLS[*]}"
)
# a call: not preceded by an identifier char, "." or "->" (member calls are the
# injected ops), then optional space, then "("
CALL_RE="(^|[^A-Za-z0-9_.>])(${call_names}|${CORE_BAD_CALL_PREFIXES})[[:space:]]*\\("

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nviol=0
report() { # file line message
  echo "$1:$2: $3" >>"$tmp/report"
  nviol=$((nviol + 1))
}

for f in "${FILES[@]}"; do
  strip incl "$f" >"$tmp/incl"
  strip code "$f" >"$tmp/code"

  # includes, everywhere
  while IFS=: read -r ln text; do
    h=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]*)[>"].*/\1/' <<<"$text")
    why=$(header_violation "$f" "$h")
    [[ -z $why ]] || report "$f" "$ln" "$why"
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^>"]*[>"]' "$tmp/incl" || true)

  is_core "$f" || continue

  # calls that touch the world; a name the file defines itself (a static
  # helper called "remove", say) is its own function, not libc's
  own=$(perl -ne 'print "$1\n" if /^(?!return\b)(?:[A-Za-z_]\w*[\s*]+)+([A-Za-z_]\w*)\s*\(/ && !/\)\s*;\s*$/' \
    "$tmp/code" | sort -u)
  while IFS=: read -r ln text; do
    while read -r name; do
      [[ -n $name ]] || continue
      grep -qxF -- "$name" <<<"$own" && continue
      src=$(sed -n "${ln}{s/^[[:space:]]*//;p;q}" "$f")
      report "$f" "$ln" "call of $name() in a sans-I/O core: $src"
    done < <(grep -oE "$CALL_RE" <<<"$text" | sed -E 's/^[^A-Za-z_]?//; s/[[:space:]]*\($//')
  done < <(grep -nE "$CALL_RE" "$tmp/code" || true)

  # mutable globals
  while IFS=$'\t' read -r ln what; do
    report "$f" "$ln" "$what (cores keep state in their context structs)"
  done < <(globals <"$tmp/code")
done

if ((nviol > 0)); then
  LC_ALL=C sort -t: -k1,1 -k2,2n "$tmp/report"
  echo "header confinement: $nviol violation(s) in ${#FILES[@]} files (see DESIGN.md section 1)" >&2
  exit 1
fi
echo "header confinement: ok (${#FILES[@]} files checked)"
