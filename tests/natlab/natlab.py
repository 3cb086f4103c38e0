"""natlab - real NATs in Linux network namespaces, for roost's tests (python3, stdlib only).

Owns a lab: a set of network namespaces wired with veth pairs, nftables
rulesets that make routers behave as the four RFC 4787 NAT types, a STUN
responder, real miniupnpd IGDs, and every process started inside them.
docs/natlab.md describes the topology, the rulesets and the quirks.

    with natlab.Lab() as lab:
        stun = lab.add_stun_server()           # public host, two addresses
        pub = lab.add_public("pub")            # public host nobody contacted
        r1 = lab.add_router("r1", nat="port-restricted")
        h1 = lab.add_host("h1", r1)            # 10.N.0.2 behind r1
        igd = r1.start_igd(stun)               # miniupnpd on r1 (UPnP + NAT-PMP)
        p = h1.spawn(["roostd", ...], name="node1")
        ...
    # every process stopped, every namespace deleted

Invariants (the network rules of the lab):
  - every namespace is named "natlab-<pid>-<lab>-<node>" and recorded when
    created; teardown deletes exactly those, nothing else;
  - every veth is created from inside a lab namespace with its peer put
    directly into another lab namespace (ip -n A link add X type veth peer
    name Y netns B): the root namespace never holds a lab interface, so no
    lab packet can leave the lab;
  - addresses: the lab "internet" is 198.18.0.0/15 (benchmarking range,
    never routed), one /24 per public address or router WAN, all on one
    bridge in the "inet" namespace, which routes between the /24s (it holds
    198.18.K.1 of every segment K; the node holds .2); LANs are 10.N.0.0/24
    behind routers; a carrier router's LAN is 100.64.N.0/24; nothing is
    routed anywhere else;
  - only processes started through the lab are signalled, by their PID;
  - every wait is bounded; Lab.close() (context manager exit, and atexit)
    stops processes (TERM, then KILL), closes the lab's sockets and deletes
    the namespaces, also when a test fails.

Processes are started with "ip netns exec NS argv" (which execs argv: the
PID recorded is the program's) and PR_SET_PDEATHSIG, so a killed test does
not leave daemons behind.  Sockets for probes are created in-process: the
calling thread enters the namespace with setns(2) just for socket(2), so a
test can send and receive from any lab node without a helper process.
"""
import atexit
import contextlib
import ctypes
import ipaddress
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import stunserver  # noqa: E402

NAT_TYPES = ("full-cone", "address-restricted", "port-restricted", "symmetric")

INET_NET = ipaddress.ip_network("198.18.0.0/15")
CARRIER_NET = ipaddress.ip_network("100.64.0.0/10")

# tool -> Debian package (scripts/install-deps.sh installs them)
BASE_TOOLS = {"ip": "iproute2", "nft": "nftables", "conntrack": "conntrack"}
IGD_TOOLS = {"miniupnpd": "miniupnpd-nftables", "upnpc": "miniupnpc", "natpmpc": "natpmpc"}

SKIP_CODE = 77  # what the lab's CTest tests exit with when they cannot run

STUN_PORT = 3478
STUN_ALT_PORT = 3479
IGD_HTTP_PORT = 5000
NAT_TABLE = "natlab_nat"  # the swappable NAT-type table (family ip)
FILTER_TABLE = "filter"   # the base table miniupnpd shares (family inet)

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_lab_seq = 0
_sbin = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class LabError(Exception):
    """A lab operation failed; the message says which command and why."""


class LabUnavailable(LabError):
    """This machine cannot host the lab (not root, a tool missing, no
    network namespaces): tests skip rather than fail."""


def log(*a):
    print(*a, flush=True)


def which(tool):
    """Path of tool on PATH or in the sbin directories (root's PATH may
    lack them under CTest), or None."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_sbin)
    return shutil.which(tool, path=path)


def unavailable_reason(igd=False):
    """Why this machine cannot host the lab, or None if it can: not root,
    or a tool missing (with the Debian package that has it)."""
    if os.geteuid() != 0:
        return "natlab needs root (network namespaces, nftables); run ctest -L natlab as root"
    if not sys.platform.startswith("linux"):
        return "natlab needs Linux network namespaces"
    tools = dict(BASE_TOOLS)
    if igd:
        tools.update(IGD_TOOLS)
    missing = ["%s (package %s)" % (t, p) for t, p in sorted(tools.items()) if not which(t)]
    if missing:
        return ("natlab needs %s; scripts/install-deps.sh installs what is missing"
                % ", ".join(missing))
    return None


def _pdeathsig():
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # best effort: Lab.close() is the real cleanup
        pass


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


@contextlib.contextmanager
def _entered(netns):
    """The calling thread inside netns for the duration of the block (only
    sockets created inside stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        tgt = os.open("/run/netns/%s" % netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(tgt)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(tgt)
    finally:
        os.close(own)


class Result:
    """A finished command: argv, rc, out, err (text)."""

    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    def __repr__(self):
        return "%s -> rc=%s out=%r err=%r" % (" ".join(self.argv), self.rc,
                                               self.out[-600:], self.err[-600:])


class Proc:
    """A process the lab started in a namespace.  stdout and stderr go to
    files in the lab's run directory (out_path, err_path)."""

    def __init__(self, ns, name, argv, popen, out_path, err_path):
        self.ns, self.name, self.argv = ns, name, argv
        self.popen = popen
        self.pid = popen.pid
        self.out_path, self.err_path = out_path, err_path

    def alive(self):
        return self.popen.poll() is None

    @property
    def rc(self):
        return self.popen.poll()

    def out(self):
        return _read(self.out_path)

    def err(self):
        return _read(self.err_path)

    def output(self):
        """stdout then stderr, as text."""
        return self.out() + self.err()

    def wait(self, timeout):
        """Exit code; LabError if it does not exit within timeout s."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError("%s (pid %d) did not exit within %.1f s"
                           % (self.name, self.pid, timeout))

    def wait_for(self, pattern, timeout, stream="both"):
        """The first match of regex pattern in the process's output
        ("out", "err" or "both"), polling every 20 ms for at most timeout
        s; LabError if it does not appear or the process exits first."""
        rx = re.compile(pattern)
        t_end = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 2):
            text = {"out": self.out, "err": self.err}.get(stream, self.output)()
            m = rx.search(text)
            if m:
                return m
            if not self.alive():
                text = {"out": self.out, "err": self.err}.get(stream, self.output)()
                m = rx.search(text)
                if m:
                    return m
                raise LabError("%s (pid %d) exited with %s before printing /%s/; output:\n%s"
                               % (self.name, self.pid, self.rc, pattern, _tail(self.output())))
            if time.monotonic() >= t_end:
                break
            time.sleep(0.02)
        raise LabError("%s (pid %d) did not print /%s/ within %.1f s; output:\n%s"
                       % (self.name, self.pid, pattern, timeout, _tail(self.output())))

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=3.0):
        """SIGTERM, then SIGKILL after timeout s: the exit code (negative
        for a signal)."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                return self.popen.wait(timeout=5.0)
        return self.popen.returncode


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text, lines=30):
    return "\n".join("  " + l for l in text.splitlines()[-lines:])


class Node:
    """One namespace of the lab.  name is the short name ("r1"), netns the
    real one ("natlab-1234-1-r1")."""

    kind = "node"

    def __init__(self, lab, name):
        self.lab = lab
        self.name = name
        self.netns = lab.prefix + name

    def __repr__(self):
        return "<%s %s>" % (self.kind, self.name)

    def run(self, argv, timeout=10.0, check=True, input=None):
        """Runs argv inside this namespace to completion: a Result."""
        return self.lab.run(self, argv, timeout=timeout, check=check, input=input)

    def spawn(self, argv, name=None, env=None, cwd=None):
        """Starts argv inside this namespace: a Proc (see Lab.spawn)."""
        return self.lab.spawn(self, argv, name=name, env=env, cwd=cwd)

    def ip(self, *cmds):
        """Runs ip commands ("addr add ...") inside this namespace in one
        ip -batch."""
        self.lab.ip_batch(self, cmds)

    def sysctl(self, **kv):
        self.lab.sysctl(self, kv)

    def snmp(self):
        """This namespace's /proc/net/snmp counters as {"Icmp.OutDestUnreachs":
        n, "Udp.InDatagrams": n, ...}."""
        text = self.run(["cat", "/proc/net/snmp"]).out.splitlines()
        out = {}
        for head, vals in zip(text[0::2], text[1::2]):
            proto, names = head.split(":", 1)
            _, nums = vals.split(":", 1)
            for k, v in zip(names.split(), nums.split()):
                out["%s.%s" % (proto, k)] = int(v)
        return out

    def udp_socket(self, bind=("0.0.0.0", 0)):
        """A UDP socket living in this namespace, bound to bind, non
        blocking.  The lab closes it on teardown."""
        return self.lab.socket(self, socket.SOCK_DGRAM, bind)

    def tcp_socket(self, bind=None):
        return self.lab.socket(self, socket.SOCK_STREAM, bind)


class Inet(Node):
    kind = "inet"


class Public(Node):
    """A host on the lab internet: addrs[0] is its main address, one /24 each."""
    kind = "public"

    def __init__(self, lab, name):
        super().__init__(lab, name)
        self.addrs = []

    @property
    def addr(self):
        return self.addrs[0]


class Host(Node):
    """A host on a router's LAN: addr, gateway, router."""
    kind = "host"

    def __init__(self, lab, name, router):
        super().__init__(lab, name)
        self.router = router
        self.addr = None
        self.gateway = router.lan_addr


class Router(Node):
    """A NAT router: wan0 (wan_addr, on the lab internet or, behind a
    carrier, on the carrier's LAN) and lan0 (a bridge, lan_addr/lan_net)."""
    kind = "router"

    def __init__(self, lab, name, lan_net, upstream):
        super().__init__(lab, name)
        self.lan_net = lan_net
        self.lan_addr = str(lan_net.network_address + 1)
        self.upstream = upstream  # None (on the lab internet) or a carrier Router
        self.wan_addr = None
        self.nat = None
        self.hosts = []
        self.igd = None
        self._next_host = 2

    def set_nat(self, nat, udp_timeout=120):
        """Makes this router a NAT of type nat (one of NAT_TYPES): replaces
        the NAT table and flushes conntrack (old flows would keep the old
        behaviour).  udp_timeout: seconds a full-cone/restricted mapping
        lives after the last outbound datagram."""
        if nat not in NAT_TYPES:
            raise LabError("unknown NAT type %r (one of %s)" % (nat, ", ".join(NAT_TYPES)))
        script = ""
        if self.nat is not None:
            script += "delete table ip %s\n" % NAT_TABLE
        script += nat_ruleset(nat, "wan0", self.wan_addr, udp_timeout)
        self.run(["nft", "-f", "-"], input=script)
        self.run(["conntrack", "-F"], check=False)
        self.nat = nat

    def flush_conntrack(self):
        self.run(["conntrack", "-F"], check=False)

    def ruleset(self):
        return self.run(["nft", "list", "ruleset"]).out

    def flush_igd_chains(self):
        """Empties miniupnpd's three chains: miniupnpd leaves its rules
        behind when it stops (Debian's unit flushes them in ExecStopPost),
        and a new instance with an empty lease file would keep forwarding
        the old ports."""
        self.run(["nft", "-f", "-"], input="".join(
            "flush chain inet %s %s\n" % (FILTER_TABLE, c)
            for c in ("miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd")))

    def start_igd(self, stun, upnp=True, natpmp=True, wait=True, timeout=20.0):
        """Starts miniupnpd on this router (see Igd): returns the Igd."""
        if self.igd is not None and self.igd.proc.alive():
            raise LabError("%s already runs miniupnpd (pid %d)" % (self.name, self.igd.proc.pid))
        self.igd = Igd(self, stun, upnp=upnp, natpmp=natpmp)
        self.igd.start(wait=wait, timeout=timeout)
        return self.igd


class StunServer:
    """The STUN responder on a public host with two addresses: primary and
    alternate (each in its own /24), ports port and alt_port."""

    def __init__(self, host, proc, port, alt_port):
        self.host = host
        self.proc = proc
        self.primary = host.addrs[0]
        self.alternate = host.addrs[1]
        self.port = port
        self.alt_port = alt_port

    @property
    def addr(self):
        return (self.primary, self.port)


def base_ruleset(lan_if="lan0", wan_if="wan0"):
    """A router's base table "inet filter", the one miniupnpd's nftables
    backend shares (its chains miniupnpd, prerouting_miniupnpd,
    postrouting_miniupnpd are jumped to from here):
      - input: established/related, loopback and LAN accepted; from the WAN,
        answers of a STUN server (set stun_servers, ports stun_ports) to a
        socket of the router itself (miniupnpd's ext_perform_stun test sends
        CHANGE-REQUESTs and must hear the answers from the other address and
        port); everything else new on the WAN is dropped silently (real CPE
        sends no ICMP port unreachable);
      - forward: policy drop; established/related, LAN->WAN, miniupnpd's
        chain and DNATed flows (the NAT type's or miniupnpd's) accepted."""
    return """table inet %(t)s {
  set stun_servers { type ipv4_addr; }
  set stun_ports { type inet_service; }
  chain input {
    type filter hook input priority filter; policy accept;
    ct state established,related accept
    iifname "lo" accept
    iifname "%(lan)s" accept
    iifname "%(wan)s" meta l4proto udp ip saddr @stun_servers udp sport @stun_ports socket transparent 0 accept
    iifname "%(wan)s" drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "%(lan)s" oifname "%(wan)s" accept
    jump miniupnpd
    ct status dnat accept
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
""" % {"t": FILTER_TABLE, "lan": lan_if, "wan": wan_if}


def nat_ruleset(nat, wan_if, wan_addr, udp_timeout=120):
    """The NAT-type table "ip natlab_nat" (RFC 4787 terms):
      - port-restricted: plain masquerade (endpoint-independent mapping:
        Linux keeps the source port when it can; address-and-port-dependent
        filtering: only conntrack lets answers in);
      - symmetric: masquerade fully-random (endpoint-dependent mapping: a
        new random external port per destination);
      - full-cone: masquerade, plus a filter chain after SNAT (postrouting
        priority 200) that records each outbound UDP flow's external port
        -> internal address . port in the dynamic map fcmap, plus a
        prerouting DNAT of new inbound UDP to a recorded port
        (endpoint-independent filtering);
      - address-restricted: as full-cone, plus the dynamic set contacted of
        remote address . external port; the DNAT fires only when the
        sender's address was contacted from that port.
    Only UDP gets the cone behaviours; TCP is plain masquerade in all four."""
    t = {"t": NAT_TABLE, "wan": wan_if, "addr": wan_addr, "to": int(udp_timeout)}
    if nat == "port-restricted":
        return """table ip %(t)s {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "%(wan)s" masquerade
  }
}
""" % t
    if nat == "symmetric":
        return """table ip %(t)s {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "%(wan)s" masquerade fully-random
  }
}
""" % t
    if nat in ("full-cone", "address-restricted"):
        restricted = nat == "address-restricted"
        t["set"] = ("  set contacted { type ipv4_addr . inet_service; flags dynamic,timeout; "
                    "timeout %(to)ds; }\n" % t) if restricted else ""
        t["rec"] = (" update @contacted { ip daddr . udp sport timeout %(to)ds }" % t
                    if restricted else "")
        t["cond"] = " ip saddr . udp dport @contacted" if restricted else ""
        return """table ip %(t)s {
  map fcmap { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout %(to)ds; }
%(set)s  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "%(wan)s" masquerade
  }
  chain record {
    type filter hook postrouting priority 200; policy accept;
    oifname "%(wan)s" meta l4proto udp ct direction original ct status snat update @fcmap { udp sport timeout %(to)ds : ct original ip saddr . ct original proto-src }%(rec)s
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "%(wan)s" ip daddr %(addr)s meta l4proto udp ct state new%(cond)s dnat ip to udp dport map @fcmap
  }
}
""" % t
    raise LabError("unknown NAT type %r" % nat)


class Igd:
    """A real miniupnpd (UPnP IGD + NAT-PMP/PCP) on a router, configured as
    docs/natlab.md says: ext_ifname=wan0, listening_ip=lan0, secure mode,
    the base table's chain names, a lease file in the run directory (deleted
    before each start: miniupnpd restores every mapping it finds there),
    allow the LAN, deny the rest, ext_perform_stun with the lab's STUN
    server (miniupnpd >= 2.2 refuses to forward when its WAN address is
    private or reserved, and 198.18/15 is reserved: STUN is what lets it
    decide forwarding works).  Runs in the foreground (-d) with a pid file
    (-P).  upnp/natpmp False turn a protocol off (both off: the router has
    no IGD and start() does nothing)."""

    def __init__(self, router, stun, upnp=True, natpmp=True, http_port=IGD_HTTP_PORT):
        self.router = router
        self.stun = stun
        self.upnp = upnp
        self.natpmp = natpmp
        self.http_port = http_port
        base = os.path.join(router.lab.run_dir, "%s-miniupnpd" % router.name)
        self.conf_path = base + ".conf"
        self.lease_path = base + ".leases"
        self.pid_path = base + ".pid"
        self.proc = None
        self.forwarding = None  # True/False once STUN decided, None before

    @property
    def url(self):
        """The UPnP description URL (miniupnpd serves /rootDesc.xml)."""
        return "http://%s:%d/rootDesc.xml" % (self.router.lan_addr, self.http_port)

    def config(self):
        r = self.router
        return "\n".join([
            "# natlab: miniupnpd on %s" % r.name,
            "ext_ifname=wan0",
            "listening_ip=lan0",
            "http_port=%d" % self.http_port,
            "enable_upnp=%s" % ("yes" if self.upnp else "no"),
            "enable_natpmp=%s" % ("yes" if self.natpmp else "no"),
            "secure_mode=yes",
            "system_uptime=no",
            "notify_interval=60",
            "clean_ruleset_interval=600",
            "uuid=%s" % uuid.uuid4(),
            "lease_file=%s" % self.lease_path,
            "ext_perform_stun=yes",
            "ext_stun_host=%s" % self.stun.primary,
            "ext_stun_port=%d" % self.stun.port,
            "upnp_table_name=%s" % FILTER_TABLE,
            "upnp_nat_table_name=%s" % FILTER_TABLE,
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            "allow 1024-65535 %s 1024-65535" % r.lan_net,
            "deny 0-65535 0.0.0.0/0 0-65535",
            ""])

    def start(self, wait=True, timeout=20.0):
        if not (self.upnp or self.natpmp):
            return None
        with open(self.conf_path, "w") as f:
            f.write(self.config())
        for p in (self.lease_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        self.forwarding = None
        self.router.flush_igd_chains()
        self.proc = self.router.spawn([which("miniupnpd"), "-f", self.conf_path, "-d",
                                       "-P", self.pid_path], name="%s-miniupnpd" % self.router.name)
        if wait:
            self.wait_ready(timeout)
        return self.proc

    def wait_ready(self, timeout=20.0):
        """Until miniupnpd has done its STUN test and listens (bounded):
        sets and returns self.forwarding (True when it decided port
        forwarding works)."""
        if self.proc is None:
            return None
        m = self.proc.wait_for(r"Port forwarding is now (enabled|disabled)|"
                               r"Port forwarding is impossible|Performing STUN failed", timeout)
        self.forwarding = m.group(1) == "enabled"
        if self.upnp:
            self.proc.wait_for(r"HTTP listening on port", timeout)
        if self.natpmp:
            self.proc.wait_for(r"Listening for NAT-PMP/PCP traffic", timeout)
        return self.forwarding

    def stop(self):
        """Stops miniupnpd and removes the rules it leaves behind: its exit
        code (None if it never ran)."""
        if self.proc is None:
            return None
        rc = self.proc.stop()
        self.router.flush_igd_chains()
        return rc

    def log(self):
        return self.proc.output() if self.proc else ""


class Lab:
    """The lab: namespaces, processes, sockets and a run directory.  Use it
    as a context manager (or call close()); close() also runs at exit.

    name: part of every namespace's name (natlab-<pid>-<seq><name>-<node>).
    keep: keep the run directory (config files, process output) after close.
    ipv6: leave IPv6 on (off by default: the lab is IPv4)."""

    def __init__(self, name="", keep=False, ipv6=False, run_dir=None):
        global _lab_seq
        reason = unavailable_reason()
        if reason:
            raise LabUnavailable(reason)
        _lab_seq += 1
        self.prefix = "natlab-%d-%d%s-" % (os.getpid(), _lab_seq, name)
        self.keep = keep
        self.ipv6 = ipv6
        self.run_dir = run_dir or tempfile.mkdtemp(prefix=self.prefix, dir="/tmp")
        os.makedirs(self.run_dir, exist_ok=True)
        self.namespaces = []  # every netns created (by its full name), in order
        self.procs = []
        self.socks = []
        self.nodes = {}
        self.routers = []
        self.publics = []
        self.stun_servers = []
        self.closed = False
        self._next_seg = 1
        self._next_lan = 1
        self._next_carrier = 1
        self._next_port = 0
        atexit.register(self._close_at_exit)
        try:
            self.inet = self._new_node(Inet(self, "inet"))
            self.inet.ip("link add br0 type bridge", "link set br0 up")
        except LabError as e:
            self.close(raise_errors=False)
            if "Operation not permitted" in str(e) or "Permission denied" in str(e):
                raise LabUnavailable("cannot create network namespaces here: %s" % e)
            raise
        except BaseException:
            self.close(raise_errors=False)
            raise

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        # a teardown error must not hide the exception that ended the block
        self.close(raise_errors=et is None)
        return False

    # ---- commands ----

    def run(self, node, argv, timeout=10.0, check=True, input=None):
        """Runs argv inside node's namespace (node None: in the caller's)
        to completion within timeout s: a Result; LabError on timeout, or on
        a non-zero exit when check."""
        full = list(argv) if node is None else ["ip", "netns", "exec", node.netns] + list(argv)
        full[0] = which(full[0]) or full[0]
        t0 = time.monotonic()
        try:
            r = subprocess.run(full, input=input.encode() if isinstance(input, str) else input,
                               stdin=None if input is not None else subprocess.DEVNULL,
                               capture_output=True, timeout=timeout, close_fds=True,
                               preexec_fn=_pdeathsig if threading.active_count() == 1 else None)
        except subprocess.TimeoutExpired:
            raise LabError("%s did not finish within %.1f s" % (" ".join(full), timeout))
        res = Result(full, r.returncode, r.stdout.decode(errors="replace"),
                     r.stderr.decode(errors="replace"), time.monotonic() - t0)
        if check and res.rc != 0:
            raise LabError("command failed: %r" % res)
        return res

    def ip_batch(self, node, cmds):
        cmds = [c for c in cmds if c]
        if cmds:
            self.run(None, ["ip", "-n", node.netns, "-batch", "-"], input="\n".join(cmds) + "\n")

    def sysctl(self, node, kv):
        """Sets sysctls {"net.ipv4.ip_forward": 1, ...} inside node's
        namespace (keys this kernel lacks are ignored)."""
        self.run(node, ["sysctl", "-q", "-e", "-w"] + ["%s=%s" % kv_ for kv_ in kv.items()])

    def spawn(self, node, argv, name=None, env=None, cwd=None):
        """Starts argv in node's namespace: a Proc whose stdout and stderr go
        to <run_dir>/<name>.out and .err (name: argv[0]'s base name by
        default, made unique).  The process gets PR_SET_PDEATHSIG (when the
        caller is single threaded) and is stopped by close()."""
        base = name or os.path.basename(argv[0])
        name = base
        n = 1
        while os.path.exists(os.path.join(self.run_dir, name + ".out")):
            n += 1
            name = "%s.%d" % (base, n)
        out_path = os.path.join(self.run_dir, name + ".out")
        err_path = os.path.join(self.run_dir, name + ".err")
        full = ["ip", "netns", "exec", node.netns] + list(argv)
        full[0] = which("ip")
        with open(out_path, "wb") as of, open(err_path, "wb") as ef:
            p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=of, stderr=ef,
                                 env=env, cwd=cwd, close_fds=True,
                                 preexec_fn=_pdeathsig if threading.active_count() == 1 else None)
        proc = Proc(node, name, list(argv), p, out_path, err_path)
        self.procs.append(proc)
        return proc

    def socket(self, node, stype=socket.SOCK_DGRAM, bind=None):
        """A socket of type stype in node's namespace (bound to bind when
        given), non blocking; closed by close()."""
        with _entered(node.netns):
            s = socket.socket(socket.AF_INET, stype)
        self.socks.append(s)
        try:
            s.setblocking(False)
            if bind is not None:
                s.bind(bind)
        except OSError:
            s.close()
            raise
        return s

    # ---- building the topology ----

    def _new_node(self, node):
        if node.name in self.nodes:
            raise LabError("a lab node is already named %r" % node.name)
        if not re.match(r"^[a-z][a-z0-9]{0,11}$", node.name):
            raise LabError("node names are 1-12 of [a-z0-9], starting with a letter: %r"
                           % node.name)
        self.run(None, ["ip", "netns", "add", node.netns])
        self.namespaces.append(node.netns)
        self.nodes[node.name] = node
        kv = {
            "net.ipv4.ip_forward": 1 if isinstance(node, (Inet, Router)) else 0,
            # br_netfilter (loaded by Docker and the like) would push bridged
            # frames through the routers' forward chains
            "net.bridge.bridge-nf-call-iptables": 0,
            "net.bridge.bridge-nf-call-ip6tables": 0,
            "net.bridge.bridge-nf-call-arptables": 0,
        }
        if isinstance(node, Inet):
            # the inet namespace routes between /24s on one bridge: no
            # redirects telling hosts to talk directly
            kv["net.ipv4.conf.all.send_redirects"] = 0
            kv["net.ipv4.conf.default.send_redirects"] = 0
        if not self.ipv6:
            kv["net.ipv6.conf.all.disable_ipv6"] = 1
            kv["net.ipv6.conf.default.disable_ipv6"] = 1
        self.sysctl(node, kv)
        node.ip("link set lo up")
        return node

    def _segment(self):
        """The next lab-internet /24 (198.18.1.0/24, 198.18.2.0/24, ...)."""
        k = self._next_seg
        if k > 510:
            raise LabError("out of 198.18.0.0/15 segments")
        self._next_seg += 1
        return ipaddress.ip_network("%s/24" % (INET_NET.network_address + 256 * k))

    def _port_name(self, prefix):
        self._next_port += 1
        return "%s%d" % (prefix, self._next_port)

    def _attach_inet(self, node, ifname, naddrs):
        """Wires node's ifname to the inet bridge with naddrs addresses, one
        /24 each: returns the addresses (the first one is the default
        route's source)."""
        segs = [self._segment() for _ in range(naddrs)]
        port = self._port_name("i")
        self.inet.ip("link add %s type veth peer name %s netns %s" % (port, ifname, node.netns),
                     "link set %s master br0" % port,
                     "link set %s up" % port,
                     *["addr add %s/24 dev br0" % (s.network_address + 1) for s in segs])
        addrs = [str(s.network_address + 2) for s in segs]
        node.ip(*["addr add %s/24 dev %s" % (a, ifname) for a in addrs],
                "link set %s up" % ifname,
                "route add default via %s dev %s" % (segs[0].network_address + 1, ifname))
        return addrs

    def _attach_lan(self, router, node, ifname):
        """Wires node's ifname to router's LAN bridge: returns its address."""
        if router._next_host > 254:
            raise LabError("%s's LAN is full" % router.name)
        addr = str(router.lan_net.network_address + router._next_host)
        router._next_host += 1
        port = self._port_name("h")
        router.ip("link add %s type veth peer name %s netns %s" % (port, ifname, node.netns),
                  "link set %s master lan0" % port,
                  "link set %s up" % port)
        node.ip("addr add %s/%d dev %s" % (addr, router.lan_net.prefixlen, ifname),
                "link set %s up" % ifname,
                "route add default via %s dev %s" % (router.lan_addr, ifname))
        return addr

    def add_public(self, name, naddrs=1):
        """A host on the lab internet (eth0) with naddrs addresses, each in
        its own 198.18.K.0/24."""
        node = self._new_node(Public(self, name))
        node.addrs = self._attach_inet(node, "eth0", naddrs)
        self.publics.append(node)
        return node

    def add_router(self, name, nat="port-restricted", upstream=None, carrier=False,
                   udp_timeout=120):
        """A NAT router of type nat.  Its WAN is on the lab internet, or on
        upstream's LAN (upstream: a carrier router: a double NAT).  Its LAN
        is the bridge lan0 with 10.N.0.1/24, or 100.64.N.1/24 when carrier
        (a carrier-grade NAT whose customers are routers)."""
        if carrier:
            n = self._next_carrier
            self._next_carrier += 1
            lan = ipaddress.ip_network("100.64.%d.0/24" % n)
        else:
            n = self._next_lan
            self._next_lan += 1
            lan = ipaddress.ip_network("10.%d.0.0/24" % n)
        if n > 254:
            raise LabError("out of LAN numbers")
        if upstream is not None and not isinstance(upstream, Router):
            raise LabError("upstream must be a Router")
        r = self._new_node(Router(self, name, lan, upstream))
        r.ip("link add lan0 type bridge",
             "link set lan0 up",
             "addr add %s/%d dev lan0" % (r.lan_addr, lan.prefixlen))
        if upstream is None:
            r.wan_addr = self._attach_inet(r, "wan0", 1)[0]
        else:
            r.wan_addr = self._attach_lan(upstream, r, "wan0")
            upstream.hosts.append(r)
        script = base_ruleset()
        elems = self._stun_elements()
        if elems:
            script += elems
        r.run(["nft", "-f", "-"], input=script)
        r.set_nat(nat, udp_timeout)
        self.routers.append(r)
        return r

    def add_host(self, name, router):
        """A host (eth0) on router's LAN, default route via the router."""
        h = self._new_node(Host(self, name, router))
        h.addr = self._attach_lan(router, h, "eth0")
        router.hosts.append(h)
        return h

    def _stun_elements(self):
        if not self.stun_servers:
            return ""
        ips = ", ".join(a for s in self.stun_servers for a in (s.primary, s.alternate))
        ports = ", ".join(sorted({str(p) for s in self.stun_servers for p in (s.port, s.alt_port)}))
        return ("add element inet %s stun_servers { %s }\nadd element inet %s stun_ports { %s }\n"
                % (FILTER_TABLE, ips, FILTER_TABLE, ports))

    def add_stun_server(self, name="stun", port=STUN_PORT, alt_port=STUN_ALT_PORT,
                        timeout=10.0):
        """A public host with two addresses running stunserver.py on both
        addresses and both ports; every router's input chain accepts its
        answers to the router's own sockets (miniupnpd's STUN test)."""
        host = self.add_public(name, naddrs=2)
        proc = host.spawn([sys.executable, "-u", os.path.join(HERE, "stunserver.py"),
                           "--primary", host.addrs[0], "--alternate", host.addrs[1],
                           "--port", str(port), "--alt-port", str(alt_port)], name=name)
        proc.wait_for(r"stunserver: ready", timeout)
        srv = StunServer(host, proc, port, alt_port)
        self.stun_servers.append(srv)
        elems = self._stun_elements()
        for r in self.routers:
            r.run(["nft", "-f", "-"], input=elems)
        return srv

    def describe(self):
        """The topology as text, one node a line."""
        lines = []
        for n in self.nodes.values():
            if isinstance(n, Public):
                lines.append("public %-8s %s" % (n.name, ", ".join(n.addrs)))
            elif isinstance(n, Router):
                up = "behind %s" % n.upstream.name if n.upstream else "on the lab internet"
                lines.append("router %-8s wan0 %s (%s), lan0 %s/%d, NAT %s"
                             % (n.name, n.wan_addr, up, n.lan_addr, n.lan_net.prefixlen, n.nat))
            elif isinstance(n, Host):
                lines.append("host   %-8s %s behind %s" % (n.name, n.addr, n.router.name))
            elif isinstance(n, Inet):
                lines.append("inet   %-8s bridge br0, routes between the 198.18.K.0/24s" % n.name)
        return "\n".join(lines)

    # ---- teardown ----

    def _close_at_exit(self):
        self.close(raise_errors=False)

    def close(self, raise_errors=True):
        """Stops every process (TERM, then KILL), closes every socket and
        deletes every namespace this lab created; idempotent.  What could
        not be undone raises LabError (raise_errors) or is logged."""
        if self.closed:
            return
        self.closed = True
        errors = []
        alive = [p for p in self.procs if p.alive()]
        for p in alive:
            p.signal(signal.SIGTERM)
        t_end = time.monotonic() + 3.0
        for p in alive:
            try:
                p.popen.wait(timeout=max(0.01, t_end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.signal(signal.SIGKILL)
                try:
                    p.popen.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    errors.append("%s (pid %d) survived SIGKILL" % (p.name, p.pid))
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()
        self.socks = []
        for ns in reversed(self.namespaces):
            try:
                r = subprocess.run([which("ip") or "ip", "netns", "del", ns], capture_output=True,
                                   timeout=10.0, stdin=subprocess.DEVNULL)
                if r.returncode != 0 and os.path.exists("/run/netns/%s" % ns):
                    errors.append("ip netns del %s: %s" % (ns, r.stderr.decode(errors="replace")))
            except subprocess.TimeoutExpired:
                errors.append("ip netns del %s timed out" % ns)
        self.namespaces = []
        if not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            log("natlab: kept %s" % self.run_dir)
        with contextlib.suppress(Exception):
            atexit.unregister(self._close_at_exit)
        if errors:
            if raise_errors:
                raise LabError("teardown: " + "; ".join(errors))
            log("natlab: teardown: " + "; ".join(errors))

    def leftover_namespaces(self):
        """Namespaces with this lab's prefix that still exist."""
        return [n for n in list_netns() if n.startswith(self.prefix)]


def stale_namespaces():
    """Lab namespaces (natlab-<pid>-...) whose creating process is gone: a
    lab killed with SIGKILL (no teardown ran).  Only `natlab.py
    --clean-stale` deletes them, never a test."""
    out = []
    for n in list_netns():
        m = re.match(r"^natlab-(\d+)-", n)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            out.append(n)
    return out


def stale_run_dirs():
    """Run directories (/tmp/natlab-<pid>-...) of labs whose process is gone."""
    out = []
    for n in sorted(os.listdir("/tmp")):
        m = re.match(r"^natlab-(\d+)-\d+.*-", n)
        if m and os.path.isdir(os.path.join("/tmp", n)) and \
                not os.path.exists("/proc/%s" % m.group(1)):
            out.append(os.path.join("/tmp", n))
    return out


def list_netns():
    """Names in `ip netns list` (first word of each line)."""
    r = subprocess.run([which("ip") or "ip", "netns", "list"], capture_output=True, timeout=10.0,
                       stdin=subprocess.DEVNULL)
    return [l.split()[0] for l in r.stdout.decode(errors="replace").splitlines() if l.strip()]


# ---- probing helpers (in-process sockets) ----

def recv_all(sock, timeout):
    """Every datagram arriving on sock within timeout s: [(data, addr)]."""
    got = []
    t_end = time.monotonic() + timeout
    while True:
        left = t_end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            break
        try:
            got.append(sock.recvfrom(4096))
        except BlockingIOError:
            continue
    return got


def drain(sock):
    """Discards what is queued on sock; returns how many datagrams."""
    n = 0
    for _ in range(10000):
        try:
            sock.recvfrom(4096)
            n += 1
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            n += 1
    return n


def reaches(src_sock, dst, dst_sock, payload=None, timeout=0.5, tries=3):
    """Sends payload from src_sock to dst up to tries times; the source
    address dst_sock saw it from, or None if nothing arrived within
    timeout s."""
    payload = payload or os.urandom(8).hex().encode()
    each = timeout / tries
    for _ in range(tries):
        src_sock.sendto(payload, dst)
        t_end = time.monotonic() + each
        for _ in range(1000):
            left = t_end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([dst_sock], [], [], left)
            if not r:
                break
            try:
                data, addr = dst_sock.recvfrom(4096)
            except BlockingIOError:
                continue
            if data == payload:
                return addr
    return None


def stun_query(sock, server, change_ip=False, change_port=False, timeout=0.5, tries=3):
    """A Binding request from sock to server ((ip, port)): (mapped (ip,
    port), the answer's source (ip, port)), or None if no answer arrived
    within timeout s."""
    txid = os.urandom(12)
    req = stunserver.binding_request(txid, change_ip, change_port)
    each = timeout / tries
    for _ in range(tries):
        sock.sendto(req, server)
        t_end = time.monotonic() + each
        for _ in range(1000):
            left = t_end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                break
            try:
                data, addr = sock.recvfrom(4096)
            except BlockingIOError:
                continue
            resp = stunserver.parse_response(data, txid)
            if resp:
                return resp["mapped"], addr
    return None


def _main(argv):
    import argparse
    p = argparse.ArgumentParser(description="natlab maintenance")
    p.add_argument("--clean-stale", action="store_true",
                   help="delete the namespaces and run directories of labs whose process "
                        "is gone (without it: list them)")
    a = p.parse_args(argv)
    for d in stale_run_dirs():
        if a.clean_stale:
            shutil.rmtree(d, ignore_errors=True)
            log("removed %s" % d)
        else:
            log("stale: %s" % d)
    stale = stale_namespaces()
    for n in stale:
        if a.clean_stale:
            r = subprocess.run([which("ip") or "ip", "netns", "del", n], capture_output=True,
                               timeout=10.0, stdin=subprocess.DEVNULL)
            log("deleted %s" % n if r.returncode == 0 else
                "ip netns del %s: %s" % (n, r.stderr.decode(errors="replace").strip()))
        else:
            log("stale: %s" % n)
    if not stale:
        log("no stale lab namespaces")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
