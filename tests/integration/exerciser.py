#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""exerciser.py - a seeded, randomized file operation exerciser for kvfs (python3 stdlib only).

It runs a random mix of descriptor and path operations on a small pool of names in --dir and
checks every result against an in-memory model of the bytes each file must hold:

  open (O_RDONLY/O_WRONLY/O_RDWR with random O_CREAT, O_EXCL, O_TRUNC, O_APPEND), close,
  write at the descriptor's offset, pwrite, read, pread, lseek (SET, CUR, END), truncate by
  path (down and up), ftruncate, fallocate (mode 0 and KEEP_SIZE), fsync, rename over an
  existing name, unlink while open (the descriptors keep the old file), fstat and stat sizes,
  and a close-to-open check: the whole file read through a second, fresh descriptor.
  With --peer-dir (the same directory seen through another node's mount) it also reads whole
  files there and writes files there (open, pwrites, close) that are then truncated, reopened
  with O_TRUNC and written on this node. Cross-node consistency is close-to-open, so those
  happen only to files with no descriptor open on this node, and a path stat here is only
  checked once this node has opened the file since the other node's write.

The operation sequence is a function of --seed alone (the generator follows its own copy of the
model, never what the filesystem answered), so a run is replayed exactly with the same --seed,
and any subset of its operations with --only. Data is position-dependent: the byte a write puts
at file offset o is TABLE[(o + shift) % len(TABLE)] with a random shift per write, so a byte in
the wrong place shows, and a mismatch report says which earlier operation wrote the bytes seen
(or that they are zeros).

On the first mismatch it prints the seed, the operation's index, the first differing offset with
the expected and seen bytes, the last 30 operations, then (unless --shrink-seconds 0) shrinks
the run to a minimal list of operations that still fails the same way, prints that, and exits 1.

Usage:
  exerciser.py --dir MNT/pool/dir [--seed S] [--runs R | --seconds T] [--ops N] [--files N]
               [--max-size SIZE] [--page-size SIZE] [--peer-dir MNT2/pool/dir]
               [--disable KIND,...] [--no-otrunc] [--no-path-truncate] [--only I,J,...]
               [--shrink-seconds S] [--verbose]

Runs seeds S, S+1, ... (R of them, or until T seconds have passed) of N operations each, every
run in its own subdirectory of --dir (removed when it passes). Exit 0: all passed; 1: a check
failed; 2: bad usage. A long run by hand on a mounted kvfs with a 64 KiB page pool:
  kvfsctl pool create ex --page-size 64K --capacity 256M
  python3 tests/integration/exerciser.py --dir /mnt/kvfs/ex --seed $RANDOM --seconds 7200
"""
import argparse
import ctypes
import errno
import os
import random
import shutil
import sys
import time

KINDS = ("open", "close", "write", "pwrite", "read", "pread", "lseek", "truncate", "ftruncate",
         "fallocate", "fsync", "rename", "unlink", "fstat", "stat", "verify", "reopen",
         "peer_verify", "peer_write")
WEIGHTS = {"open": 10, "close": 6, "write": 12, "pwrite": 10, "read": 7, "pread": 7, "lseek": 4,
           "truncate": 6, "ftruncate": 5, "fallocate": 4, "fsync": 1, "rename": 3, "unlink": 2,
           "fstat": 3, "stat": 3, "verify": 6, "reopen": 3, "peer_verify": 4, "peer_write": 4}
MAX_FDS = 6
FALLOC_FL_KEEP_SIZE = 1

# The data table: a fixed pseudo-random byte string of prime length with no zero bytes, so that
# written data never looks like a hole and a write's bytes are recognisable by their offset.
TABLE_LEN = 1000003
_trng = random.Random(0x6B766673)
TABLE = bytes(_trng.randrange(1, 256) for _ in range(TABLE_LEN))
TABLE2 = TABLE * 2


def pattern(shift, off, n):
    """The n bytes a write with this shift puts at file offset off (n <= TABLE_LEN)."""
    s = (off + shift) % TABLE_LEN
    return TABLE2[s:s + n]


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper().rstrip("B").rstrip("I")
    if s and s[-1] in mult:
        return int(s[:-1]) * mult[s[-1]]
    return int(s)


def ename(e):
    return errno.errorcode.get(e, str(e)) if isinstance(e, int) else str(e)


class Failure(Exception):
    """A check failed: what, plus optional byte-level detail lines."""

    def __init__(self, what, detail=()):
        super().__init__(what)
        self.what = what
        self.detail = list(detail)


class Skip(Exception):
    """The operation does not apply to the current state (only when replaying a subset)."""


# ------------------------------------------------------------------------------------------------
# The model


class Inode:
    def __init__(self, ident):
        self.ident = ident
        self.data = bytearray()
        self.peer_dirty = False  # written on the peer since this node last opened it


class Fd:
    def __init__(self, slot, inode, name, acc, append):
        self.slot = slot
        self.inode = inode
        self.name = name  # the name it was opened by (for the log; it may have moved)
        self.readable = acc in ("r", "rw")
        self.writable = acc in ("w", "rw")
        self.append = append
        self.pos = 0


class Model:
    """Expected state: names -> inodes, open slots -> descriptors."""

    def __init__(self):
        self.names = {}
        self.fds = {}
        self.next_ident = 0

    def new_inode(self):
        self.next_ident += 1
        return Inode(self.next_ident)

    def open_fds(self, inode, writable=None):
        return [f for f in self.fds.values() if f.inode is inode and
                (writable is None or f.writable == writable)]

    def resize(self, inode, size):
        d = inode.data
        if size < len(d):
            del d[size:]
        else:
            d.extend(bytes(size - len(d)))

    def put(self, inode, off, data):
        d = inode.data
        if off > len(d):
            d.extend(bytes(off - len(d)))
        d[off:off + len(data)] = data


# ------------------------------------------------------------------------------------------------
# Generation: a function of the seed and the model only


class Gen:
    def __init__(self, seed, args):
        self.rng = random.Random(seed)
        self.args = args
        self.model = Model()
        self.names = ["f%d" % i for i in range(args.files)]
        self.page = args.page_size
        kinds = [k for k in KINDS if k not in args.disable]
        if not args.peer_dir:
            kinds = [k for k in kinds if not k.startswith("peer_")]
        self.kinds = kinds
        self.weights = [WEIGHTS[k] for k in kinds]

    def offset(self, cur_size):
        """An offset biased to page boundaries, small values and the current end."""
        r, P, M = self.rng, self.page, self.args.max_size
        c = r.randrange(10)
        if c < 4:
            return max(0, r.randrange(0, M // P + 1) * P + r.randint(-3, 3))
        if c < 5:
            return r.randrange(0, 64)
        if c < 7:
            return max(0, cur_size + r.randint(-5, 5))
        return r.randrange(0, M + 1)

    def length(self):
        r, P = self.rng, self.page
        c = r.randrange(10)
        if c < 4:
            return r.randint(1, 64)
        if c < 6:
            return max(1, P + r.randint(-3, 3))
        if c < 9:
            return r.randint(1, 2 * P + 7)
        return r.randint(1, min(self.args.max_size // 2, TABLE_LEN))

    def size(self, cur):
        r, P = self.rng, self.page
        c = r.randrange(10)
        if c < 2:
            return r.randrange(0, 32)
        if c < 5:
            return max(0, r.randrange(0, self.args.max_size // P + 1) * P + r.randint(-3, 3))
        if c < 7:  # down or up a little from the current size (the tail of the last page)
            return max(0, cur + r.randint(-P // 2, P // 2))
        return r.randrange(0, self.args.max_size + 1)

    def shift(self):
        return self.rng.randrange(TABLE_LEN)

    def pick_fd(self, need):
        fds = [f for f in self.model.fds.values() if need(f)]
        return self.rng.choice(fds) if fds else None

    def next(self, index):
        """The next operation (a dict) for step index; applies it to the generator's model."""
        # keep few descriptors open: files that are closed on every node take other paths
        # in the daemon (a truncate or a reopen of a closed file)
        nf = len(self.model.fds)
        weights = [w * (1 + nf) if k == "close" else w for k, w in zip(self.kinds, self.weights)]
        for _ in range(100):
            kind = self.rng.choices(self.kinds, weights)[0]
            op = self.make(kind, index)
            if op is not None:
                op["i"] = index
                try:
                    model_apply(self.model, op, self.args)
                except Skip:
                    raise AssertionError("generator made an inapplicable op %r" % op)
                return op
        raise AssertionError("no operation applies")

    def make(self, kind, index):
        r, m = self.rng, self.model
        nf = len(m.fds)
        existing = sorted(m.names)
        if kind == "open" or (kind == "reopen" and nf == 0):
            if nf >= MAX_FDS:
                return None
            name = r.choice(self.names)
            acc = r.choice(["r", "w", "rw", "rw"])
            writable = acc != "r"
            op = {"k": "open", "name": name, "acc": acc, "slot": index,
                  "creat": r.random() < 0.7, "excl": r.random() < 0.1,
                  "trunc": writable and "open_trunc" not in self.args.disable and
                  r.random() < 0.3,
                  "append": writable and r.random() < 0.25}
            return op
        if kind == "reopen":
            f = r.choice(list(m.fds.values()))
            return {"k": "reopen", "slot": f.slot, "new": index}
        if kind == "close":
            f = self.pick_fd(lambda f: True)
            return f and {"k": "close", "slot": f.slot}
        if kind in ("write", "pwrite"):
            f = self.pick_fd(lambda f: f.writable)
            if not f:
                return None
            op = {"k": kind, "slot": f.slot, "n": self.length(), "shift": self.shift()}
            if kind == "pwrite":
                op["off"] = self.offset(len(f.inode.data))
            return op
        if kind in ("read", "pread"):
            f = self.pick_fd(lambda f: f.readable)
            if not f:
                return None
            op = {"k": kind, "slot": f.slot, "n": r.choice([r.randint(1, 64), self.length()])}
            if kind == "pread":
                op["off"] = self.offset(len(f.inode.data))
            return op
        if kind == "lseek":
            f = self.pick_fd(lambda f: True)
            if not f:
                return None
            whence = r.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
            if whence == os.SEEK_SET:
                off = self.offset(len(f.inode.data))
            else:
                base = f.pos if whence == os.SEEK_CUR else len(f.inode.data)
                off = r.randint(-min(base, self.page + 3), self.page + 3)
            return {"k": "lseek", "slot": f.slot, "whence": whence, "off": off}
        if kind == "truncate":
            if not existing:
                return None
            closed = [n for n in existing if not m.open_fds(m.names[n])]
            name = r.choice(closed if closed and r.random() < 0.6 else existing)
            return {"k": "truncate", "name": name, "size": self.size(len(m.names[name].data))}
        if kind == "ftruncate":
            f = self.pick_fd(lambda f: f.writable)
            return f and {"k": "ftruncate", "slot": f.slot, "size": self.size(len(f.inode.data))}
        if kind == "fallocate":
            f = self.pick_fd(lambda f: f.writable)
            if not f:
                return None
            mode = 0 if r.random() < 0.6 else FALLOC_FL_KEEP_SIZE
            return {"k": "fallocate", "slot": f.slot, "mode": mode,
                    "off": self.offset(len(f.inode.data)), "n": self.length()}
        if kind in ("fsync", "fstat"):
            f = self.pick_fd(lambda f: True)
            return f and {"k": kind, "slot": f.slot}
        if kind == "rename":
            if not existing:
                return None
            src = r.choice(existing)
            others = [n for n in self.names if n != src]
            over = [n for n in others if n in m.names]
            dst = r.choice(over) if over and r.random() < 0.7 else r.choice(others)
            return {"k": "rename", "src": src, "dst": dst}
        if kind in ("unlink", "stat", "verify", "peer_verify"):
            if not existing:
                return None
            name = r.choice(existing)
            if kind == "unlink" and not m.open_fds(m.names[name]) and r.random() < 0.6:
                return None  # prefer unlinking open files
            if kind == "peer_verify" and m.open_fds(m.names[name], writable=True):
                return None
            return {"k": kind, "name": name}
        if kind == "peer_write":
            name = r.choice(self.names)
            if name in m.names and m.open_fds(m.names[name]):
                return None
            chunks = []
            for _ in range(r.randint(1, 3)):
                cur = len(m.names[name].data) if name in m.names else 0
                chunks.append((self.offset(cur), self.length(), self.shift()))
            return {"k": "peer_write", "name": name, "chunks": chunks,
                    "trunc": "open_trunc" not in self.args.disable and r.random() < 0.3}
        raise AssertionError(kind)


# ------------------------------------------------------------------------------------------------
# Applying an operation to a model: returns what the filesystem must answer


def model_apply(m, op, args):
    """Update m for op; return the expectation. Raises Skip if op does not apply."""
    k = op["k"]

    def fd(slot, need=None):
        f = m.fds.get(slot)
        if f is None or (need == "w" and not f.writable) or (need == "r" and not f.readable):
            raise Skip()
        return f

    def named(name):
        if name not in m.names:
            raise Skip()
        return m.names[name]

    if k == "open":
        if len(m.fds) >= MAX_FDS or op["slot"] in m.fds:
            raise Skip()
        ino = m.names.get(op["name"])
        if ino is None and not op["creat"]:
            return {"errno": errno.ENOENT}
        if ino is not None and op["creat"] and op["excl"]:
            return {"errno": errno.EEXIST}
        if ino is None:
            ino = m.new_inode()
            m.names[op["name"]] = ino
        ino.peer_dirty = False
        if op["trunc"]:
            m.resize(ino, 0)
        m.fds[op["slot"]] = Fd(op["slot"], ino, op["name"], op["acc"], op["append"])
        return {}
    if k == "reopen":
        f = fd(op["slot"])
        del m.fds[op["slot"]]
        ino = m.names.get(f.name)
        if ino is None:
            return {"errno": errno.ENOENT}
        acc = "rw" if f.readable and f.writable else ("r" if f.readable else "w")
        ino.peer_dirty = False
        m.fds[op["new"]] = Fd(op["new"], ino, f.name, acc, f.append)
        return {}
    if k == "close":
        fd(op["slot"])
        del m.fds[op["slot"]]
        return {}
    if k in ("write", "pwrite"):
        f = fd(op["slot"], "w")
        if f.append:
            off = len(f.inode.data)  # Linux: pwrite on an O_APPEND descriptor appends too
        else:
            off = f.pos if k == "write" else op["off"]
        data = pattern(op["shift"], off, op["n"])
        m.put(f.inode, off, data)
        if k == "write":
            f.pos = off + op["n"]
        return {"off": off, "data": data}
    if k in ("read", "pread"):
        f = fd(op["slot"], "r")
        off = f.pos if k == "read" else op["off"]
        data = bytes(f.inode.data[off:off + op["n"]])
        if k == "read":
            f.pos = off + len(data)
        return {"off": off, "data": data}
    if k == "lseek":
        f = fd(op["slot"])
        base = {os.SEEK_SET: 0, os.SEEK_CUR: f.pos, os.SEEK_END: len(f.inode.data)}[op["whence"]]
        if base + op["off"] < 0:
            raise Skip()
        f.pos = base + op["off"]
        return {"pos": f.pos}
    if k == "truncate":
        m.resize(named(op["name"]), op["size"])
        return {}
    if k == "ftruncate":
        m.resize(fd(op["slot"], "w").inode, op["size"])
        return {}
    if k == "fallocate":
        f = fd(op["slot"], "w")
        if op["mode"] == 0 and op["off"] + op["n"] > len(f.inode.data):
            m.resize(f.inode, op["off"] + op["n"])
        return {}
    if k == "fsync":
        fd(op["slot"])
        return {}
    if k == "fstat":
        return {"size": len(fd(op["slot"]).inode.data)}
    if k == "rename":
        ino = named(op["src"])
        if op["src"] == op["dst"]:
            raise Skip()
        del m.names[op["src"]]
        m.names[op["dst"]] = ino
        return {}
    if k == "unlink":
        named(op["name"])
        del m.names[op["name"]]
        return {}
    if k == "stat":
        ino = named(op["name"])
        return {"size": None if ino.peer_dirty else len(ino.data)}
    if k == "verify":
        ino = named(op["name"])
        ino.peer_dirty = False
        return {"data": bytes(ino.data)}
    if k == "peer_verify":
        ino = named(op["name"])
        if m.open_fds(ino, writable=True):
            raise Skip()
        return {"data": bytes(ino.data)}
    if k == "peer_write":
        ino = m.names.get(op["name"])
        if ino is not None and m.open_fds(ino):
            raise Skip()
        if ino is None:
            ino = m.new_inode()
            m.names[op["name"]] = ino
        if op["trunc"]:
            m.resize(ino, 0)
        for off, n, shift in op["chunks"]:
            m.put(ino, off, pattern(shift, off, n))
        ino.peer_dirty = True
        return {}
    raise AssertionError(k)


# ------------------------------------------------------------------------------------------------
# Describing operations

ACC = {"r": "O_RDONLY", "w": "O_WRONLY", "rw": "O_RDWR"}
WHENCE = {os.SEEK_SET: "SEEK_SET", os.SEEK_CUR: "SEEK_CUR", os.SEEK_END: "SEEK_END"}


def describe(op, fdnames=None):
    k = op["k"]
    at = ""
    if "slot" in op and fdnames is not None and op["slot"] in fdnames:
        at = " (%s)" % fdnames[op["slot"]]
    fdn = "fd#%d%s" % (op.get("slot", -1), at)
    if k == "open":
        fl = [ACC[op["acc"]]] + [n for n, f in (("O_CREAT", "creat"), ("O_EXCL", "excl"),
                                              ("O_TRUNC", "trunc"), ("O_APPEND", "append"))
                                 if op[f]]
        return "open %s %s -> fd#%d" % (op["name"], "|".join(fl), op["slot"])
    if k == "reopen":
        return "close %s, open the same name again -> fd#%d" % (fdn, op["new"])
    if k in ("close", "fsync", "fstat"):
        return "%s %s" % (k, fdn)
    if k == "write":
        return "write %s %d bytes (shift %d)" % (fdn, op["n"], op["shift"])
    if k == "pwrite":
        return "pwrite %s %d bytes at %d (shift %d)" % (fdn, op["n"], op["off"], op["shift"])
    if k == "read":
        return "read %s %d bytes" % (fdn, op["n"])
    if k == "pread":
        return "pread %s %d bytes at %d" % (fdn, op["n"], op["off"])
    if k == "lseek":
        return "lseek %s %d %s" % (fdn, op["off"], WHENCE[op["whence"]])
    if k == "truncate":
        return "truncate %s (by path) to %d" % (op["name"], op["size"])
    if k == "ftruncate":
        return "ftruncate %s to %d" % (fdn, op["size"])
    if k == "fallocate":
        return "fallocate %s mode %s off %d len %d" % (
            fdn, "KEEP_SIZE" if op["mode"] else "0", op["off"], op["n"])
    if k == "rename":
        return "rename %s over %s" % (op["src"], op["dst"])
    if k in ("unlink", "stat"):
        return "%s %s" % (k, op["name"])
    if k == "verify":
        return "verify %s (open O_RDONLY, fstat, read it all, close)" % op["name"]
    if k == "peer_verify":
        return "peer: verify %s (open O_RDONLY, fstat, read it all, close)" % op["name"]
    if k == "peer_write":
        return "peer: open %s O_RDWR|O_CREAT%s, %s, close" % (
            op["name"], "|O_TRUNC" if op["trunc"] else "",
            ", ".join("pwrite %d bytes at %d (shift %d)" % (c[1], c[0], c[2])
                      for c in op["chunks"]))
    return repr(op)


# ------------------------------------------------------------------------------------------------
# Running operations against the filesystem


class Fallocate:
    def __init__(self):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.f = libc.fallocate
            self.f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
            self.f.restype = ctypes.c_int
        except (OSError, AttributeError):
            self.f = None

    def __call__(self, fd, mode, off, n):
        if self.f is None:
            if mode:
                raise OSError(errno.EOPNOTSUPP, "no fallocate in libc")
            os.posix_fallocate(fd, off, n)
            return
        if self.f(fd, mode, off, n) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))


FALLOCATE = Fallocate()


def wait_dir(path, timeout=10):
    """Wait until a directory made on this node shows on the peer (its metadata replica)."""
    deadline = time.monotonic() + timeout
    while not os.path.isdir(path):
        if time.monotonic() > deadline:
            raise Failure("directory %s did not appear within %d s" % (path, timeout))
        time.sleep(0.02)


def hexs(b):
    return " ".join("%02x" % x for x in b)


class Runner:
    """One run: a fresh model and a fresh subdirectory (and its view on the peer)."""

    def __init__(self, args, sub):
        self.args = args
        self.model = Model()
        self.dir = os.path.join(args.dir, sub)
        self.peer = os.path.join(args.peer_dir, sub) if args.peer_dir else None
        self.real = {}  # slot -> OS descriptor
        self.fdnames = {}  # slot -> name at open, for the log
        self.history = {}  # index -> (op, [(offset, length, shift)]): the writes of this run
        os.makedirs(self.dir)
        if self.peer:
            wait_dir(self.peer)

    def path(self, name):
        return os.path.join(self.dir, name)

    def desc(self, op):
        """describe(op), with the offset a write went to."""
        d = describe(op, self.fdnames)
        if op["k"] == "write" and op["i"] in self.history:
            d += " at %d" % self.history[op["i"]][1][0][0]
        return d

    def attribute(self, off, seen):
        """Where the bytes seen at off came from: zeros, or the latest write with that data
        (for the longest leading run of them that one source explains)."""
        if not seen:
            return "nothing (end of file)"

        def run(a, b):
            return next((i for i in range(len(a)) if a[i] != b[i]), len(a))

        best, who = run(seen, bytes(len(seen))), "zeros"
        for i in sorted(self.history, reverse=True):
            op, spans = self.history[i]
            for o, n, sh in spans:
                if not o <= off < o + n:
                    continue
                n = run(seen, pattern(sh, off, len(seen)))
                if n > best and n >= min(4, len(seen)):  # one byte may match by chance
                    best, who = n, "the data of op %d (%s)" % (i, self.desc(op))
        if best == 0:
            return self.misplaced(off, seen)
        return who if best == len(seen) else "first %d bytes: %s" % (best, who)

    def misplaced(self, off, seen):
        """Bytes that no write put at off: find them in the data table, then the write (of
        this run) that put them at another offset, if any."""
        q = TABLE2.find(seen[:16]) if len(seen) >= 8 else -1
        if q < 0:
            return "no data ever written by the exerciser: garbage"
        q %= TABLE_LEN
        for i in sorted(self.history, reverse=True):
            op, spans = self.history[i]
            for o, n, sh in spans:
                at = (q - sh) % TABLE_LEN
                if o <= at < o + n:
                    return "data that op %d wrote at offset %d (%s): a misplaced page?" % (
                        i, at, self.desc(op))
        return "written data, but by no write of this run: a page of an older file?"

    def compare(self, what, off0, want, got):
        if want == got:
            return
        n = min(len(want), len(got))
        d = next((i for i in range(n) if want[i] != got[i]), n)
        lo = d
        w, g = want[lo:lo + 16], got[lo:lo + 16]
        detail = [
            "expected %d bytes, read %d; first difference at file offset %d (byte %d of the "
            "read)" % (len(want), len(got), off0 + d, d),
            "  expected @%d: %s   (%s)" % (off0 + lo, hexs(w),
                                         self.attribute(off0 + lo, w)),
            "  seen     @%d: %s   (%s)" % (off0 + lo, hexs(g),
                                         self.attribute(off0 + lo, g)),
        ]
        if len(got) > len(want):
            detail.append("  %d bytes read beyond the expected end of file" % (len(got) - len(want)))
        raise Failure("%s: content differs from the model" % what, detail)

    def read_fd(self, fd, off, n, positional):
        out = bytearray()
        while len(out) < n:
            b = os.pread(fd, n - len(out), off + len(out)) if positional else \
                os.read(fd, n - len(out))
            if not b:
                break
            out += b
        return bytes(out)

    def whole(self, path, want, what):
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            got = self.read_fd(fd, 0, max(len(want), size) + 1, True)
        finally:
            os.close(fd)
        if size != len(want):
            d = ["fstat size %d, expected %d; %d bytes read" % (size, len(want), len(got))]
            try:
                self.compare(what, 0, want, got)
            except Failure as f:
                d += f.detail
            raise Failure("%s: size differs from the model" % what, d)
        self.compare(what, 0, want, got)

    def step(self, op):
        """Run op; raise Failure on a mismatch, Skip if it does not apply."""
        exp = model_apply(self.model, op, self.args)
        k = op["k"]
        if k in ("write", "pwrite"):
            self.history[op["i"]] = (op, [(exp["off"], op["n"], op["shift"])])
        elif k == "peer_write":
            self.history[op["i"]] = (op, list(op["chunks"]))
        if "errno" in exp:
            if k == "reopen":
                os.close(self.real.pop(op["slot"]))
            try:
                if k == "reopen":
                    fd = os.open(self.path(self.fdnames[op["slot"]]), os.O_RDONLY)
                else:
                    fd = self.sys_open(op)
            except OSError as e:
                if e.errno == exp["errno"]:
                    return
                raise Failure("%s: failed with %s, expected %s" % (
                    describe(op), ename(e.errno), ename(exp["errno"])))
            os.close(fd)
            raise Failure("%s: succeeded, expected %s" % (describe(op), ename(exp["errno"])))
        try:
            self.do(op, exp)
        except OSError as e:
            raise Failure("%s: failed with %s (%s)" % (describe(op, self.fdnames),
                                                       ename(e.errno), e.strerror))

    def sys_open(self, op):
        fl = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[op["acc"]]
        fl |= (os.O_CREAT if op["creat"] else 0) | (os.O_EXCL if op["excl"] else 0) | \
            (os.O_TRUNC if op["trunc"] else 0) | (os.O_APPEND if op["append"] else 0)
        return os.open(self.path(op["name"]), fl, 0o644)

    def do(self, op, exp):
        k, m = op["k"], self.model
        fd = self.real.get(op.get("slot"))
        desc = describe(op, self.fdnames)
        if k == "open":
            self.real[op["slot"]] = self.sys_open(op)
            self.fdnames[op["slot"]] = op["name"]
        elif k == "reopen":
            f = m.fds[op["new"]]
            os.close(self.real.pop(op["slot"]))
            fl = os.O_RDWR if f.readable and f.writable else \
                (os.O_RDONLY if f.readable else os.O_WRONLY)
            self.real[op["new"]] = os.open(self.path(f.name), fl | (os.O_APPEND if f.append else 0))
            self.fdnames[op["new"]] = f.name
        elif k == "close":
            os.close(self.real.pop(op["slot"]))
        elif k in ("write", "pwrite"):
            data = exp["data"]
            n = os.write(fd, data) if k == "write" else os.pwrite(fd, data, op["off"])
            if n != len(data):
                raise Failure("%s: wrote %d of %d bytes" % (desc, n, len(data)))
        elif k in ("read", "pread"):
            got = self.read_fd(fd, exp["off"], op["n"], k == "pread")
            self.compare("%s at offset %d" % (desc, exp["off"]), exp["off"], exp["data"], got)
        elif k == "lseek":
            pos = os.lseek(fd, op["off"], op["whence"])
            if pos != exp["pos"]:
                raise Failure("%s: returned %d, expected %d (so the size is wrong)" % (
                    desc, pos, exp["pos"]))
        elif k == "truncate":
            os.truncate(self.path(op["name"]), op["size"])
        elif k == "ftruncate":
            os.ftruncate(fd, op["size"])
        elif k == "fallocate":
            FALLOCATE(fd, op["mode"], op["off"], op["n"])
        elif k == "fsync":
            os.fsync(fd)
        elif k == "fstat":
            size = os.fstat(fd).st_size
            if size != exp["size"]:
                raise Failure("%s: size %d, expected %d" % (desc, size, exp["size"]))
        elif k == "rename":
            os.rename(self.path(op["src"]), self.path(op["dst"]))
        elif k == "unlink":
            os.unlink(self.path(op["name"]))
        elif k == "stat":
            size = os.stat(self.path(op["name"])).st_size
            if exp["size"] is not None and size != exp["size"]:
                raise Failure("%s: size %d, expected %d" % (desc, size, exp["size"]))
        elif k == "verify":
            self.whole(self.path(op["name"]), exp["data"], desc)
        elif k == "peer_verify":
            self.whole(os.path.join(self.peer, op["name"]), exp["data"], desc)
        elif k == "peer_write":
            pfd = os.open(os.path.join(self.peer, op["name"]),
                          os.O_RDWR | os.O_CREAT | (os.O_TRUNC if op["trunc"] else 0), 0o644)
            try:
                for off, n, shift in op["chunks"]:
                    if os.pwrite(pfd, pattern(shift, off, n), off) != n:
                        raise Failure("%s: short pwrite" % desc)
            finally:
                os.close(pfd)
        else:
            raise AssertionError(k)

    def finish(self, remove):
        for fd in self.real.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.real.clear()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Runs, reports, shrinking


def gen_ops(seed, args, count):
    g = Gen(seed, args)
    for i in range(count):
        yield g.next(i)


def run_ops(args, sub, ops, verbose=False):
    """Run ops in a fresh subdirectory; returns (None, n) or (failure, failing op, runner, log)."""
    try:
        r = Runner(args, sub)
    except Failure as f:
        sys.exit("FAIL: %s" % f.what)
    log = []
    try:
        for op in ops:
            try:
                r.step(op)
            except Skip:
                continue
            except Failure as f:
                log.append(op)
                return f, op, r, log
            log.append(op)
            if verbose:
                print("  %6d %s" % (op["i"], r.desc(op)))
        return None, None, r, log
    except BaseException:
        r.finish(False)
        raise


def signature(f, op):
    return (op["k"], f.what.split(":")[-1].strip())


def shrink(args, seed, ops, sig, budget):
    """Greedy chunk removal: the shortest list of ops found that still fails with sig."""
    deadline = time.monotonic() + budget
    trial = [0]

    def fails(cand):
        trial[0] += 1
        f, op, r, _ = run_ops(args, "s%d.shrink%d" % (seed, trial[0]), cand)
        r.finish(True)
        return f is not None and signature(f, op) == sig and op is cand[-1]

    cur = list(ops)
    chunk = max(1, len(cur) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        changed = False
        while i < len(cur) - 1 and time.monotonic() < deadline:
            cand = cur[:i] + cur[i + chunk:] if i + chunk < len(cur) else None
            if cand and fails(cand):
                cur = cand
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return cur, time.monotonic() < deadline, trial[0]


def report(args, seed, f, op, runner, log):
    w = sys.stdout.write
    w("\nFAIL: seed %d, op %d: %s\n" % (seed, op["i"], f.what))
    for line in f.detail:
        w("    %s\n" % line)
    w("  last %d operations of the run (index, operation):\n" % min(30, len(log)))
    for o in log[-30:]:
        w("    %6d %s%s\n" % (o["i"], runner.desc(o),
                              "   <== FAILED" if o is op else ""))


def cmdline(args, seed, only=None):
    parts = ["exerciser.py", "--dir", args.dir, "--seed", str(seed), "--ops", str(args.ops),
             "--files", str(args.files), "--max-size", str(args.max_size),
             "--page-size", str(args.page_size)]
    if args.peer_dir:
        parts += ["--peer-dir", args.peer_dir]
    if args.disable:
        parts += ["--disable", ",".join(sorted(args.disable))]
    if only:
        parts += ["--only", ",".join(str(i) for i in only)]
    return " ".join(parts)


def one_seed(args, seed):
    """Run one seed; returns True if it passed."""
    if args.only:
        want = set(args.only)
        ops = [o for o in gen_ops(seed, args, max(want) + 1) if o["i"] in want]
    else:
        ops = gen_ops(seed, args, args.ops)
    sub = "s%d" % seed
    shutil.rmtree(os.path.join(args.dir, sub), ignore_errors=True)
    f, op, runner, log = run_ops(args, sub, ops, args.verbose)
    if f is None:
        runner.finish(True)
        return True
    report(args, seed, f, op, runner, log)
    runner.finish(False)
    print("  files of the failing run are kept in %s" % runner.dir)
    print("  replay: %s" % cmdline(args, seed))
    if args.shrink_seconds > 0 and not args.only:
        every = list(gen_ops(seed, args, op["i"] + 1))
        t0 = time.monotonic()
        small, done, trials = shrink(args, seed, every, signature(f, op), args.shrink_seconds)
        sf, sop, sr, slog = run_ops(args, "s%d.min" % seed, small)
        if sf is not None:
            print("\nminimal reproduction (%s after %d trials in %.1f s): %d operations" % (
                "found" if done else "shrinking stopped at the time limit", trials,
                time.monotonic() - t0, len(slog)))
            for o in slog:
                print("    %6d %s" % (o["i"], sr.desc(o)))
            print("  FAIL: %s" % sf.what)
            for line in sf.detail:
                print("      %s" % line)
            print("  replay: %s" % cmdline(args, seed, [o["i"] for o in small]))
        else:
            print("\n(the shrunk sequence no longer fails on its own: a timing effect?)")
        sr.finish(True)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="directory in a kvfs pool to work in")
    ap.add_argument("--peer-dir", help="the same directory through another node's mount")
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    ap.add_argument("--runs", type=int, default=1, help="seeds to run (default 1)")
    ap.add_argument("--seconds", type=float, default=0,
                    help="run seeds seed, seed+1, ... until this many seconds have passed")
    ap.add_argument("--ops", type=int, default=1000, help="operations per seed (default 1000)")
    ap.add_argument("--files", type=int, default=4, help="names in the pool (default 4)")
    ap.add_argument("--max-size", type=size_arg, default=None,
                    help="largest offset/size chosen (default 8 pages)")
    ap.add_argument("--page-size", type=size_arg, default=None,
                    help="page size to bias offsets to (default: user.kvfs.page_size of --dir)")
    ap.add_argument("--disable", default="",
                    help="operation kinds never generated (%s, open_trunc)" % ", ".join(KINDS))
    ap.add_argument("--no-otrunc", action="store_true", help="= --disable open_trunc")
    ap.add_argument("--no-path-truncate", action="store_true", help="= --disable truncate")
    ap.add_argument("--only", default="", help="replay only these op indices of --seed")
    ap.add_argument("--shrink-seconds", type=float, default=60,
                    help="time allowed to shrink a failing run (0: do not shrink)")
    ap.add_argument("--keep-going", action="store_true", help="run the other seeds after a failure")
    ap.add_argument("--verbose", action="store_true", help="print every operation")
    args = ap.parse_args()

    args.disable = set(x for x in args.disable.split(",") if x)
    if args.no_otrunc:
        args.disable.add("open_trunc")
    if args.no_path_truncate:
        args.disable.add("truncate")
    bad = args.disable - set(KINDS) - {"open_trunc"}
    if bad:
        ap.error("unknown kinds in --disable: %s" % ", ".join(sorted(bad)))
    args.only = [int(x) for x in args.only.split(",") if x]
    if args.only and args.seed is None:
        ap.error("--only needs --seed")
    os.makedirs(args.dir, exist_ok=True)
    if args.peer_dir:
        try:
            wait_dir(args.peer_dir)
        except Failure as f:
            ap.error("--peer-dir: %s" % f.what)
    if args.page_size is None:
        try:
            args.page_size = int(os.getxattr(args.dir, "user.kvfs.page_size"))
        except (OSError, ValueError):
            args.page_size = 65536
    if args.max_size is None:
        args.max_size = 8 * args.page_size
    if args.files < 2:
        ap.error("--files must be at least 2")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)

    print("exerciser: dir %s%s, seed %d, %s of %d ops, %d names, page size %d, max size %d%s" % (
        args.dir, ", peer " + args.peer_dir if args.peer_dir else "", args.seed,
        "%g s" % args.seconds if args.seconds else "%d run(s)" % args.runs, args.ops,
        args.files, args.page_size, args.max_size,
        ", disabled: " + ",".join(sorted(args.disable)) if args.disable else ""))
    sys.stdout.flush()
    t0 = time.monotonic()
    seed, runs, failed = args.seed, 0, []
    while True:
        if args.seconds:
            if runs and time.monotonic() - t0 >= args.seconds:
                break
        elif runs >= args.runs:
            break
        t1 = time.monotonic()
        ok = one_seed(args, seed)
        runs += 1
        print("seed %d: %s (%d ops, %.1f s)" % (seed, "ok" if ok else "FAILED",
                                                len(args.only) or args.ops, time.monotonic() - t1))
        sys.stdout.flush()
        if not ok:
            failed.append(seed)
            if not args.keep_going:
                break
        seed += 1
        if args.only:
            break
    print("exerciser: %d run(s), %d failed%s, %.1f s" % (
        runs, len(failed), (": seeds " + " ".join(map(str, failed))) if failed else "",
        time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
