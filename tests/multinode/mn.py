#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mn.py - workloads and checks for the kvfs multinode tests, run on one node at a time.

Content is deterministic: block b of a file written with SEED is sha256(SEED:b) repeated, so a
reader on another node checks every byte without the writer's data (see pattern()).

Commands (each prints one line of JSON or plain words; exit 0 on success, 1 on a check that
failed, 2 on bad usage):
  write PATH SIZE SEED            write PATH (O_CREAT|O_TRUNC), close; prints its sha256
  check PATH SIZE SEED            open, fstat size must be SIZE, read it all, content must match
  pwrite PATH OFF LEN SEED        write [OFF, OFF+LEN) of the SEED pattern into an existing file
  sha PATH                        sha256 of the whole file
  publish DIR COUNT SIZE SEED     SGLang HiCacheFile: write NAME.tmp.PID.TID.UUID, rename over
                                  NAME; prints {"names": [...]}
  verify DIR COUNT SIZE SEED      the reader side: os.stat, open, ONE readinto of SIZE bytes,
                                  content must match
  readtimed PATH                  read PATH in 1 MiB preads; prints "OK <sha> <secs>" or
                                  "<ERRNO> <secs>" (open or read error)
  load DIR TAG COUNT SIZE ACKS    write COUNT files DIR/TAG.I of SIZE (seed TAG.I); after each
                                  close() that returns 0 append "NAME SIZE" to ACKS (a local
                                  file, fsync'ed); errors are counted, not fatal
  c2o MNT,MNT,.. REL ROUNDS MODE  close-to-open rounds over the mounts (MODE rewrite: REL is
                                  rewritten with O_TRUNC, growing; append: grown at its end);
                                  the writer rotates, the others check right after close()
  hostile HOST PORT NODE TOKEN    abuse a node's data port (see hostile()); TOKEN or -
"""
import errno
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import uuid

BLK = 4096


def pattern(seed, off, n):
    """Bytes [off, off+n) of the SEED pattern."""
    out = bytearray()
    b = off // BLK
    skip = off - b * BLK
    while len(out) < n + skip:
        d = hashlib.sha256(("%s:%d" % (seed, b)).encode()).digest()
        out += d * (BLK // len(d))
        b += 1
    return bytes(out[skip:skip + n])


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)


def write_file(path, size, seed, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    h = hashlib.sha256()
    try:
        off = 0
        while off < size:
            n = min(1 << 20, size - off)
            buf = pattern(seed, off, n)
            w = os.pwrite(fd, buf, off)
            if w != n:
                raise OSError(errno.EIO, "short write %d of %d" % (w, n))
            h.update(buf)
            off += n
    finally:
        os.close(fd)
    return h.hexdigest()


def check_file(path, size, seed):
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if st.st_size != size:
            return "size %d, expected %d" % (st.st_size, size)
        off = 0
        while off < size:
            n = min(1 << 20, size - off)
            got = os.pread(fd, n, off)
            want = pattern(seed, off, n)
            if got != want:
                if len(got) != n:
                    return "short read at %d: %d of %d bytes" % (off, len(got), n)
                i = next(i for i in range(n) if got[i] != want[i])
                return "content differs at byte %d (%s zeros)" % (
                    off + i, "is" if got[i] == 0 else "not")
            off += n
        if os.pread(fd, 1, size):
            return "data past the size %d" % size
    finally:
        os.close(fd)
    return None


def cmd_write(a):
    print(write_file(a[0], int(a[1]), a[2]))


def cmd_check(a):
    err = check_file(a[0], int(a[1]), a[2])
    if err:
        print("%s: %s" % (a[0], err))
        sys.exit(1)
    print("OK")


def cmd_pwrite(a):
    path, off, n, seed = a[0], int(a[1]), int(a[2]), a[3]
    fd = os.open(path, os.O_WRONLY)
    try:
        if os.pwrite(fd, pattern(seed, off, n), off) != n:
            sys.exit("short write")
    finally:
        os.close(fd)
    print("OK")


def cmd_sha(a):
    h = hashlib.sha256()
    with open(a[0], "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    print(h.hexdigest())


def hc_name(i, seed):
    return "%s_Qwen3-8B_0_1.bin" % hashlib.sha256(("%s/%d" % (seed, i)).encode()).hexdigest()


def cmd_publish(a):
    d, count, size, seed = a[0], int(a[1]), int(a[2]), a[3]
    os.makedirs(d, exist_ok=True)
    names = []
    for i in range(count):
        name = hc_name(i, seed)
        tmp = os.path.join(d, "%s.tmp.%d.%d.%s" % (name, os.getpid(), threading.get_ident(),
                                                   uuid.uuid4().hex))
        write_file(tmp, size, "%s/%d" % (seed, i), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.rename(tmp, os.path.join(d, name))
        names.append(name)
    print(json.dumps({"published": len(names)}))


def cmd_verify(a):
    d, count, size, seed = a[0], int(a[1]), int(a[2]), a[3]
    bad = []
    for i in range(count):
        path = os.path.join(d, hc_name(i, seed))
        try:
            st = os.stat(path)
            if st.st_size != size:
                bad.append("%s: stat size %d" % (path, st.st_size))
                continue
            buf = bytearray(size)
            with open(path, "rb", buffering=0) as f:
                n = f.readinto(buf)  # HiCacheFile reads the page in one call
            if n != size:
                bad.append("%s: readinto returned %d of %d" % (path, n, size))
            elif bytes(buf) != pattern("%s/%d" % (seed, i), 0, size):
                bad.append("%s: content differs" % path)
        except OSError as e:
            bad.append("%s: %s" % (path, ename(e)))
    left = [n for n in os.listdir(d) if ".tmp." in n]
    if left:
        bad.append("temporary names left: %s" % left[:3])
    print(json.dumps({"verified": count - len(bad), "errors": bad[:5]}))
    sys.exit(1 if bad else 0)


def cmd_readtimed(a):
    path = a[0]
    t0 = time.monotonic()
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            off = 0
            while True:
                b = os.pread(fd, 1 << 20, off)
                if not b:
                    break
                h.update(b)
                off += len(b)
        finally:
            os.close(fd)
        print("OK %s %.3f" % (h.hexdigest(), time.monotonic() - t0))
    except OSError as e:
        print("%s %.3f" % (ename(e), time.monotonic() - t0))


def cmd_c2o(a):
    """Close-to-open with no gap: one process writes through one node's mount, and the moment
    close() returns opens the file through the other nodes' mounts (which have read the
    previous version just before)."""
    mnts, rel, rounds, mode = a[0].split(","), a[1], int(a[2]), a[3]
    paths = [os.path.join(m, rel) for m in mnts]
    bad = []
    size = 0
    if mode == "append":
        write_file(paths[0], 0, "grow")
    for i in range(1, rounds + 1):
        w = (i - 1) % len(paths) if mode == "rewrite" else i % len(paths)
        if mode == "rewrite":
            size, seed = i * 300007 + i % 5, "rewrite%d" % i
            write_file(paths[w], size, seed)
        else:
            n, seed = i * 65536 + 4097, "grow"
            fd = os.open(paths[w], os.O_WRONLY)
            try:
                if os.pwrite(fd, pattern(seed, size, n), size) != n:
                    raise OSError(errno.EIO, "short write")
            finally:
                os.close(fd)
            size += n
        for r in range(len(paths)):
            if r == w:
                continue
            err = check_file(paths[r], size, seed)
            if err:
                bad.append("round %d: written on node %d, read on node %d: %s" %
                           (i, w + 1, r + 1, err))
    for b in bad:
        print(b)
    print(json.dumps({"mode": mode, "rounds": rounds, "final_size": size, "failures": len(bad)}))
    sys.exit(1 if bad else 0)


def cmd_load(a):
    d, tag, count, size, acks = a[0], a[1], int(a[2]), int(a[3]), a[4]  # DIR must exist
    ok = 0
    errs = {}
    last = ""
    with open(acks, "a") as log:
        for i in range(count):
            name = "%s.%d" % (tag, i)
            try:
                write_file(os.path.join(d, name), size, name)
            except OSError as e:
                errs[ename(e)] = errs.get(ename(e), 0) + 1
                last = "%s: %s" % (name, ename(e))
                continue
            log.write("%s %d\n" % (name, size))
            log.flush()
            os.fsync(log.fileno())
            ok += 1
    print(json.dumps({"acked": ok, "errors": errs, "last_error": last}))


# ---- hostile client -----------------------------------------------------------------------
# Frames of rdma/tcp/wire.h, little-endian: hello 152 B, welcome 32 B, request 32 B, reply 24 B.
WIRE_MAGIC = 0x5346564B
REQ_MAGIC = 0x514B
REP_MAGIC = 0x504B
HELLO = struct.Struct("<IHHIIII128s")
WELCOME = struct.Struct("<IHHiIIIQ")
REQ = struct.Struct("<HBBIQQII")
REP = struct.Struct("<HBBiQII")


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            return buf
        buf += b
    return buf


def closed_by_peer(s, secs):
    """True when the server closes (EOF or reset) within secs; any bytes it sends are read."""
    s.settimeout(secs)
    deadline = time.monotonic() + secs
    try:
        while time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def hostile(host, port, node, token):
    """Each case must be refused; the caller then checks that the node keeps serving.
    TOKEN is the cluster's token ("-" for none): cases past the hello use it, as a peer that
    got in and misbehaves would. Nothing here writes inside the part of the arena in use."""
    res = []
    tok = b"" if token == "-" else token.encode()

    def conn():
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def hello(s, peer=node, magic=WIRE_MAGIC, version=1, token_len=None, t=None):
        t = tok if t is None else t
        s.sendall(HELLO.pack(magic, version, len(t) if token_len is None else token_len,
                             999, 1, peer, 0, t))

    def welcome(s):
        b = recv_exact(s, WELCOME.size)
        if len(b) < WELCOME.size:
            return None
        return WELCOME.unpack(b)

    def req(s, op, off, n, inc=0, rid=1, magic=REQ_MAGIC, flags=0, reserved=0):
        s.sendall(REQ.pack(magic, op, flags, inc, rid, off, n, reserved))

    def rep(s):
        b = recv_exact(s, REP.size)
        if len(b) < REP.size:
            return None
        return REP.unpack(b)

    def expect(name, ok, detail=""):
        res.append({"case": name, "ok": bool(ok), "detail": detail})

    def must_close(name, s, secs=15):
        c = closed_by_peer(s, secs)
        expect(name, c, "" if c else "connection still open after %d s" % secs)
        s.close()

    # 1. garbage instead of a hello
    s = conn()
    s.sendall(os.urandom(4096))
    must_close("garbage hello", s)
    # 2. a short hello, then close from our side; then a short hello left stalled
    s = conn()
    s.sendall(HELLO.pack(WIRE_MAGIC, 1, 0, 999, 1, node, 0, b"")[:20])
    s.close()
    s = conn()
    s.sendall(HELLO.pack(WIRE_MAGIC, 1, 0, 999, 1, node, 0, b"")[:40])
    must_close("stalled short hello", s, 60)
    # 3. bad magic, bad version, oversized token length
    for name, kw in (("bad magic", {"magic": 0xDEADBEEF}), ("bad version", {"version": 77}),
                     ("token_len 4000", {"token_len": 4000})):
        s = conn()
        hello(s, **kw)
        w = welcome(s)
        if w is not None and w[3] == 0:
            expect(name, False, "welcome status 0: accepted")
            s.close()
        else:
            must_close(name, s)
    # 4. without the token, and with a wrong one (when the cluster has one)
    if tok:
        for name, t in (("no token", b""), ("wrong token", b"x" * len(tok)),
                        ("token prefix", tok[:-1])):
            s = conn()
            hello(s, t=t)
            w = welcome(s)
            if w is not None and w[3] == 0:
                expect(name, False, "welcome status 0: accepted")
                s.close()
            else:
                expect(name, True, "welcome status %s" % (w[3] if w else "none"))
                must_close(name + ": closed", s)
    # 5. the wrong node
    s = conn()
    hello(s, peer=node + 1000)
    w = welcome(s)
    expect("wrong peer node", w is None or w[3] != 0,
           "welcome %s" % (w,))
    s.close()
    # 6. a good hello, then requests the server must refuse while keeping the connection
    s = conn()
    hello(s)
    w = welcome(s)
    if w is None or w[3] != 0:
        expect("good hello", False, "welcome %s" % (w,))
        return res
    arena = w[7]
    expect("good hello", True, "arena %d" % arena)
    inc = w[5]
    cases = [("read past the arena", 0, arena, 4096, 0),
             ("read straddling the end", 0, arena - 4096, 8192, 0),
             ("read at 2^64-4096 (overflow)", 0, (1 << 64) - 4096, 8192, 0),
             ("read with a stale incarnation", 0, 0, 4096, inc + 7)]
    rid = 10
    for name, op, off, n, rinc in cases:
        rid += 1
        req(s, op, off, n, inc=rinc, rid=rid)
        p = rep(s)
        if p is None:
            expect(name, False, "connection closed, expected an error reply")
            s = conn()
            hello(s)
            welcome(s)
            continue
        good = p[0] == REP_MAGIC and p[3] < 0 and p[4] == rid and p[5] == 0
        expect(name, good, "reply status %d len %d" % (p[3], p[5]))
    # WRITE past the arena: the payload follows, the reply must be an error
    rid += 1
    req(s, 1, arena + 4096, 4096, rid=rid)
    s.sendall(b"\xee" * 4096)
    p = rep(s)
    expect("write past the arena", p is not None and p[3] < 0,
           "reply %s" % (p,))
    # the connection still serves a valid read
    rid += 1
    req(s, 0, 0, 4096, rid=rid)
    p = rep(s)
    ok = p is not None and p[3] == 0 and p[5] == 4096 and len(recv_exact(s, 4096)) == 4096
    expect("valid read after refused ones", ok, "reply %s" % (p,))
    s.close()
    # 7. malformed requests close the connection
    for name, kw in (("len 0", {"n": 0}), ("len above the maximum", {"n": (64 << 20) + 1}),
                     ("unknown op", {"op": 9}), ("bad request magic", {"magic": 0x1234}),
                     ("reserved bits", {"reserved": 1}), ("flags", {"flags": 4})):
        s = conn()
        hello(s)
        welcome(s)
        a = {"op": 0, "off": 0, "n": 4096}
        a.update(kw)
        req(s, a.pop("op"), a.pop("off"), a.pop("n"), **a)
        must_close(name, s)
    s = conn()
    hello(s)
    welcome(s)
    s.sendall(REQ.pack(REQ_MAGIC, 0, 0, 0, 1, 0, 4096, 0)[:12])
    must_close("request cut short and stalled", s, 60)
    # 8. a WRITE whose payload never comes (at the arena's end: its first bytes may land there
    # before the stall is seen, and this peer may write there), and many idle connections
    s = conn()
    hello(s)
    welcome(s)
    req(s, 1, arena - 65536, 65536, rid=5)
    s.sendall(b"\0" * 100)
    idle = []
    for _ in range(64):
        try:
            idle.append(conn())
        except OSError as e:
            expect("64 idle connections", False, ename(e))
            break
    must_close("write payload stalled", s, 60)
    for c in idle:
        c.close()
    return res


def cmd_hostile(a):
    res = hostile(a[0], int(a[1]), int(a[2]), a[3])
    for r in res:
        print("%-4s %-34s %s" % ("ok" if r["ok"] else "FAIL", r["case"], r["detail"]))
    sys.exit(0 if all(r["ok"] for r in res) else 1)


CMDS = {"write": (cmd_write, 3), "check": (cmd_check, 3), "pwrite": (cmd_pwrite, 4),
        "sha": (cmd_sha, 1), "publish": (cmd_publish, 4), "verify": (cmd_verify, 4),
        "readtimed": (cmd_readtimed, 1), "load": (cmd_load, 5), "c2o": (cmd_c2o, 4),
        "hostile": (cmd_hostile, 4)}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CMDS or len(sys.argv) - 2 != CMDS[sys.argv[1]][1]:
        sys.stderr.write(__doc__)
        sys.exit(2)
    try:
        CMDS[sys.argv[1]][0](sys.argv[2:])
    except OSError as e:
        print("%s: %s" % (ename(e), e))
        sys.exit(1)
