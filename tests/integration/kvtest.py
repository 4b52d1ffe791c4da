#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""kvtest.py - syscall-level helpers for the kvfs integration tests (python3 stdlib only).

Shell cannot tell one errno from another, so tests run single system calls through here and
compare errno names. Subcommands:

  try OP ARG...          run one operation, print OK or the errno name (ENOENT, EFBIG, ...)
  gen PATH SIZE SEED     write SIZE deterministic bytes (O_CREAT|O_TRUNC), print their sha256
  sha PATH               print the sha256 of PATH (or the errno name, exit 1)
  readcheck PATH         print "OK <sha256> <size>" or the errno name of the failing step
  hold PATH READY        open PATH read-only, create READY, sleep until killed
  mkmany DIR N           create N empty files with HiCacheFile names, print seconds taken
  statmany DIR N         stat the N names (and N names that do not exist), print seconds
  rmmany DIR N           unlink the N names, print seconds taken
  fill DIR SIZE MAX      write files DIR/fill.I of SIZE bytes until one fails; print JSON
  ctl MNT JSON           one request on MNT/.kvfs/ctl; print the reply (or the errno name)
  statfs PATH            print statvfs(PATH) as JSON
  name N                 print the HiCacheFile-style name of file N (as mkmany uses)

Sizes accept K, M, G, T suffixes (powers of 1024).
"""
import errno
import hashlib
import json
import os
import random
import signal
import sys
import time


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = s.strip().upper().rstrip("B").rstrip("I")
    if s and s[-1] in mult:
        return int(s[:-1]) * mult[s[-1]]
    return int(s)


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno is not None else str(e)


def gen_bytes(size, seed):
    return random.Random(seed).randbytes(size)


def write_all(fd, data, off=None):
    mv = memoryview(data)
    done = 0
    while done < len(mv):
        if off is None:
            n = os.write(fd, mv[done:])
        else:
            n = os.pwrite(fd, mv[done:], off + done)
        if n <= 0:
            raise OSError(errno.EIO, "write returned %d" % n)
        done += n


def hc_name(i):
    return "%s_Qwen3-8B_0_1.bin" % hashlib.sha256(b"kvfs-%d" % i).hexdigest()


# ----------------------------------------------------------------------------------------------
# try OP ARG...


def op_pwrite(path, off, length):
    fd = os.open(path, os.O_WRONLY)
    try:
        data = bytes([0x5A]) * size_arg(length)
        n = os.pwrite(fd, data, size_arg(off))
        if n != len(data):
            return "SHORT:%d" % n
    finally:
        os.close(fd)
    return None


def op_write(path, data="x"):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def op_read(path):
    with open(path, "rb") as f:
        f.read()


OPS = {
    "lstat": lambda p: os.lstat(p),
    "stat": lambda p: os.stat(p),
    "create": lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)),
    "excl": lambda p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)),
    "open": lambda p: os.close(os.open(p, os.O_RDONLY)),
    "openw": lambda p: os.close(os.open(p, os.O_WRONLY)),
    "mkdir": lambda p: os.mkdir(p),
    "rmdir": lambda p: os.rmdir(p),
    "unlink": lambda p: os.unlink(p),
    "link": lambda a, b: os.link(a, b),
    "symlink": lambda a, b: os.symlink(a, b),
    "mkfifo": lambda p: os.mkfifo(p),
    "rename": lambda a, b: os.rename(a, b),
    "truncate": lambda p, n: os.truncate(p, size_arg(n)),
    "pwrite": op_pwrite,
    "write": op_write,
    "read": op_read,
    "setxattr": lambda p, n, v: os.setxattr(p, n, v.encode()),
    "getxattr": lambda p, n: os.getxattr(p, n),
    "removexattr": lambda p, n: os.removexattr(p, n),
    "chmod": lambda p, m: os.chmod(p, int(m, 8)),
}


def cmd_try(args):
    op, rest = args[0], args[1:]
    try:
        r = OPS[op](*rest)
    except OSError as e:
        print(ename(e))
        return 0
    print(r if isinstance(r, str) else "OK")
    return 0


# ----------------------------------------------------------------------------------------------


def cmd_gen(args):
    path, size, seed = args[0], size_arg(args[1]), int(args[2])
    data = gen_bytes(size, seed)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    print(hashlib.sha256(data).hexdigest())
    return 0


def read_sha(path):
    h = hashlib.sha256()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


def cmd_sha(args):
    try:
        print(read_sha(args[0])[0])
    except OSError as e:
        print(ename(e))
        return 1
    return 0


def cmd_readcheck(args):
    try:
        sha, n = read_sha(args[0])
    except OSError as e:
        print(ename(e))
        return 0
    print("OK %s %d" % (sha, n))
    return 0


def cmd_hold(args):
    fd = os.open(args[0], os.O_RDONLY)
    with open(args[1], "w") as f:
        f.write("%d\n" % fd)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        signal.pause()


def cmd_mkmany(args):
    d, n = args[0], int(args[1])
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    t = time.monotonic()
    for i in range(n):
        os.close(os.open(os.path.join(d, hc_name(i)), flags, 0o644))
    print("%.3f" % (time.monotonic() - t))
    return 0


def cmd_statmany(args):
    d, n = args[0], int(args[1])
    t = time.monotonic()
    bad = 0
    for i in range(n):
        try:
            st = os.stat(os.path.join(d, hc_name(i)))
            if st.st_size != 0:
                bad += 1
        except FileNotFoundError:
            bad += 1
    for i in range(n, 2 * n):
        try:
            os.stat(os.path.join(d, hc_name(i)))
            bad += 1
        except FileNotFoundError:
            pass
    print("%.3f %d" % (time.monotonic() - t, bad))
    return 0 if bad == 0 else 1


def cmd_rmmany(args):
    d, n = args[0], int(args[1])
    t = time.monotonic()
    for i in range(n):
        os.unlink(os.path.join(d, hc_name(i)))
    print("%.3f" % (time.monotonic() - t))
    return 0


def cmd_fill(args):
    """Write DIR/fill.I (I = 0, 1, ...) of SIZE bytes until an error or MAX files.

    Reports where the error surfaced (open, write, fsync or close) and the sha256 of every
    file that was written completely."""
    d, size, mx = args[0], size_arg(args[1]), int(args[2])
    out = {"written": [], "error": None}
    for i in range(mx):
        path = os.path.join(d, "fill.%d" % i)
        data = gen_bytes(size, 1000 + i)
        stepname = "open"
        fd = -1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            stepname = "write"
            write_all(fd, data)
            stepname = "fsync"
            os.fsync(fd)
            stepname = "close"
            cfd, fd = fd, -1
            os.close(cfd)
        except OSError as e:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
            out["error"] = {"index": i, "name": "fill.%d" % i, "step": stepname,
                            "errno": ename(e)}
            break
        out["written"].append({"name": "fill.%d" % i, "sha": hashlib.sha256(data).hexdigest()})
    print(json.dumps(out))
    return 0


def cmd_ctl(args):
    path = os.path.join(args[0], ".kvfs", "ctl")
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            os.write(fd, args[1].encode())
        except OSError as e:
            print(ename(e))
            return 0
        chunks = []
        off = 0
        while True:
            b = os.pread(fd, 65536, off)
            if not b:
                break
            chunks.append(b)
            off += len(b)
        print(b"".join(chunks).decode())
    finally:
        os.close(fd)
    return 0


def cmd_statfs(args):
    s = os.statvfs(args[0])
    print(json.dumps({"bsize": s.f_bsize, "frsize": s.f_frsize, "blocks": s.f_blocks,
                      "bfree": s.f_bfree, "bavail": s.f_bavail, "files": s.f_files,
                      "ffree": s.f_ffree, "namemax": s.f_namemax}))
    return 0


def cmd_name(args):
    print(hc_name(int(args[0])))
    return 0


CMDS = {
    "try": cmd_try, "gen": cmd_gen, "sha": cmd_sha, "readcheck": cmd_readcheck,
    "hold": cmd_hold, "mkmany": cmd_mkmany, "statmany": cmd_statmany, "rmmany": cmd_rmmany,
    "fill": cmd_fill, "ctl": cmd_ctl, "statfs": cmd_statfs, "name": cmd_name,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CMDS:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(CMDS[sys.argv[1]](sys.argv[2:]))
