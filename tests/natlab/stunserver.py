#!/usr/bin/env python3
"""stunserver - the natlab's STUN responder and client codec (python3, stdlib only).

Owns the STUN wire format the lab needs, both ends:
  - a server (run as a program inside a lab namespace): RFC 5389 Binding
    plus RFC 5780's CHANGE-REQUEST.  It listens on the four combinations of
    two addresses and two ports (primary/alternate IP x port/alt port) and
    answers every Binding request from the socket the CHANGE-REQUEST flags
    select: change-IP answers from the other address, change-port from the
    other port.  Answers carry MAPPED-ADDRESS, XOR-MAPPED-ADDRESS (when the
    request has the RFC 5389 magic cookie), RESPONSE-ORIGIN, OTHER-ADDRESS
    (and CHANGED-ADDRESS, its RFC 3489 name) and SOFTWARE.  miniupnpd's
    ext_perform_stun test and the lab's own probes both use it.
  - a client codec: binding_request() builds a request, parse_response()
    reads an answer.

Strict codec, lenient protocol: a datagram that is not a well-formed Binding
request (length field, attribute lengths, no trailing bytes) is counted and
dropped without an answer; unknown attributes are ignored.  No
authentication, no FINGERPRINT, no TCP: this is a lab tool, never exposed.

Server usage (prints "stunserver: ready ..." once every socket is bound,
one line per answer unless --quiet, exits 0 on SIGTERM/SIGINT):
  stunserver.py --primary 198.18.1.2 --alternate 198.18.2.2 \
                [--port 3478] [--alt-port 3479] [--quiet]
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys

MAGIC = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101

ATTR_MAPPED_ADDRESS = 0x0001
ATTR_CHANGE_REQUEST = 0x0003
ATTR_CHANGED_ADDRESS = 0x0005
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_SOFTWARE = 0x8022
ATTR_RESPONSE_ORIGIN = 0x802B
ATTR_OTHER_ADDRESS = 0x802C

CHANGE_IP = 0x04
CHANGE_PORT = 0x02

SOFTWARE = b"roost-natlab"


# ---- codec ----

def _attr(atype, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", atype, len(value)) + value + b"\0" * pad


def _addr_value(ip, port):
    return struct.pack("!BBH", 0, 1, port) + socket.inet_aton(ip)


def _xor_addr_value(ip, port):
    raw = struct.unpack("!I", socket.inet_aton(ip))[0] ^ MAGIC
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC >> 16), raw)


def parse_message(data):
    """(msg_type, cookie, txid, [(attr_type, value)]) of a well-formed STUN
    message, or None (wrong length, bad attribute lengths, trailing bytes,
    top bits set)."""
    if len(data) < 20 or len(data) % 4 != 0:
        return None
    mtype, mlen, cookie = struct.unpack("!HHI", data[:8])
    if mtype & 0xC000 or mlen != len(data) - 20:
        return None
    txid = data[8:20]
    attrs = []
    off = 20
    while off < len(data):
        if off + 4 > len(data):
            return None
        atype, alen = struct.unpack("!HH", data[off:off + 4])
        end = off + 4 + alen
        padded = end + (4 - alen % 4) % 4
        if padded > len(data):
            return None
        attrs.append((atype, data[off + 4:end]))
        off = padded
    return mtype, cookie, txid, attrs


def _read_addr(value, xor):
    if len(value) != 8 or value[1] != 1:
        return None
    port = struct.unpack("!H", value[2:4])[0]
    raw = struct.unpack("!I", value[4:8])[0]
    if xor:
        port ^= MAGIC >> 16
        raw ^= MAGIC
    return socket.inet_ntoa(struct.pack("!I", raw)), port


def binding_request(txid, change_ip=False, change_port=False):
    """A Binding request with the RFC 5389 cookie and transaction id txid
    (12 bytes); a CHANGE-REQUEST attribute when either flag is set."""
    assert len(txid) == 12
    body = b""
    flags = (CHANGE_IP if change_ip else 0) | (CHANGE_PORT if change_port else 0)
    if flags:
        body = _attr(ATTR_CHANGE_REQUEST, struct.pack("!I", flags))
    return struct.pack("!HHI", BINDING_REQUEST, len(body), MAGIC) + txid + body


def parse_response(data, txid=None):
    """A Binding success answer as a dict {"mapped": (ip, port),
    "origin": (ip, port) or None, "other": (ip, port) or None}, or None when
    data is not one (or not for txid, when given)."""
    m = parse_message(data)
    if m is None:
        return None
    mtype, cookie, tid, attrs = m
    if mtype != BINDING_SUCCESS or (txid is not None and tid != txid):
        return None
    out = {"mapped": None, "origin": None, "other": None}
    plain = None
    for atype, value in attrs:
        if atype == ATTR_XOR_MAPPED_ADDRESS and cookie == MAGIC:
            out["mapped"] = _read_addr(value, True)
        elif atype == ATTR_MAPPED_ADDRESS:
            plain = _read_addr(value, False)
        elif atype == ATTR_RESPONSE_ORIGIN:
            out["origin"] = _read_addr(value, False)
        elif atype in (ATTR_OTHER_ADDRESS, ATTR_CHANGED_ADDRESS) and out["other"] is None:
            out["other"] = _read_addr(value, False)
    if out["mapped"] is None:
        out["mapped"] = plain
    return out if out["mapped"] else None


# ---- server ----

class Server:
    """Four UDP sockets: (ip, port) for ip in (primary, alternate), port in
    (port, alt_port).  handle() answers one datagram."""

    def __init__(self, primary, alternate, port, alt_port):
        self.ips = (primary, alternate)
        self.ports = (port, alt_port)
        self.socks = {}
        self.answered = 0
        self.dropped = 0
        for ip in self.ips:
            for p in self.ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((ip, p))
                self.socks[(ip, p)] = s

    def close(self):
        for s in self.socks.values():
            s.close()

    def answer(self, data, src, local):
        """(reply bytes, (ip, port) to send it from), or None to drop."""
        m = parse_message(data)
        if m is None or m[0] != BINDING_REQUEST:
            return None
        _, cookie, txid, attrs = m
        flags = 0
        for atype, value in attrs:
            if atype == ATTR_CHANGE_REQUEST:
                if len(value) != 4:
                    return None
                flags = struct.unpack("!I", value)[0]
        ip, port = local
        other_ip = self.ips[1] if ip == self.ips[0] else self.ips[0]
        other_port = self.ports[1] if port == self.ports[0] else self.ports[0]
        origin = (other_ip if flags & CHANGE_IP else ip,
                  other_port if flags & CHANGE_PORT else port)
        body = _attr(ATTR_MAPPED_ADDRESS, _addr_value(*src))
        if cookie == MAGIC:
            body += _attr(ATTR_XOR_MAPPED_ADDRESS, _xor_addr_value(*src))
        body += _attr(ATTR_RESPONSE_ORIGIN, _addr_value(*origin))
        body += _attr(ATTR_OTHER_ADDRESS, _addr_value(other_ip, other_port))
        body += _attr(ATTR_CHANGED_ADDRESS, _addr_value(other_ip, other_port))
        body += _attr(ATTR_SOFTWARE, SOFTWARE)
        reply = struct.pack("!HHI", BINDING_SUCCESS, len(body), cookie) + txid + body
        return reply, origin, flags

    def handle(self, local, quiet):
        s = self.socks[local]
        try:
            data, src = s.recvfrom(2048)
        except OSError:
            return
        r = self.answer(data, src, local)
        if r is None:
            self.dropped += 1
            if not quiet:
                print("stunserver: dropped %d bytes from %s:%d" % (len(data), src[0], src[1]),
                      flush=True)
            return
        reply, origin, flags = r
        try:
            self.socks[origin].sendto(reply, src)
        except OSError as e:
            print("stunserver: send to %s:%d failed: %s" % (src[0], src[1], e), flush=True)
            return
        self.answered += 1
        if not quiet:
            print("stunserver: %s:%d -> %s:%d change=%s answered from %s:%d"
                  % (src[0], src[1], local[0], local[1],
                     ("ip" if flags & CHANGE_IP else "") + ("port" if flags & CHANGE_PORT else "")
                     or "-", origin[0], origin[1]), flush=True)


class _Stop(Exception):
    pass


def main(argv=None):
    p = argparse.ArgumentParser(
        description="natlab STUN responder (RFC 5389 + RFC 5780 CHANGE-REQUEST)")
    p.add_argument("--primary", required=True)
    p.add_argument("--alternate", required=True)
    p.add_argument("--port", type=int, default=3478)
    p.add_argument("--alt-port", type=int, default=3479)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)

    def stop(signum, frame):
        raise _Stop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)

    srv = Server(a.primary, a.alternate, a.port, a.alt_port)
    print("stunserver: ready on %s and %s, ports %d and %d (pid %d)"
          % (a.primary, a.alternate, a.port, a.alt_port, os.getpid()), flush=True)
    by_fd = {s.fileno(): k for k, s in srv.socks.items()}
    try:
        while True:
            ready, _, _ = select.select(list(by_fd), [], [], 1.0)
            for fd in ready:
                srv.handle(by_fd[fd], a.quiet)
    except _Stop:
        pass
    finally:
        srv.close()
    print("stunserver: stopping: %d answered, %d dropped" % (srv.answered, srv.dropped), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
