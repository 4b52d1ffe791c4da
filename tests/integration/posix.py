#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""posix.py - POSIX conformance checks for a kvfs mount (python3 stdlib only).

Usage: python3 posix.py MNT [CASE...]

Checks every operation of the user-visible contract (docs: DESIGN.md, "What a user sees in the
mount") for its success behaviour and its errors, as root and as the unprivileged user
65534:65534 (a forked child that drops its groups, gid and uid; the mount must use
allow_other, and the mount point must be reachable by that user). The expectations come from
POSIX.1-2017 and the Linux man pages (open(2), truncate(2), rename(2), rmdir(2), chmod(2),
chown(2), utimensat(2), link(2), symlink(2), mknod(2), stat(2), inode(7), xattr(7)); where
POSIX leaves a choice to the implementation, the Linux behaviour of a local file system is
expected and the check says so.

Every case runs in its own directory MNT/kv/posix/CASE, every check in a case runs even after
an earlier one failed, and every case runs even after an earlier case failed. Each failure is
printed as "FAIL [case] what: expected X, seen Y"; the summary lists them again. Exit status:
0 all passed, 1 some check failed, 2 usage or a broken test environment.
"""
import ctypes
import errno
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback

NOBODY = 65534
MiB = 1 << 20
OLD_NS = 1_000_000_000 * 10**9 + 123_456_789  # 2001-09-09, with nanoseconds
CASE_TIMEOUT = 90

# ----------------------------------------------------------------------------------------------
# Results


class Run:
    case = None  # name of the running case
    checks = 0  # checks made in it
    failures = []  # (case, message) over the whole run
    verbose = False


def fail(what):
    Run.failures.append((Run.case, what))
    print("    FAIL [%s] %s" % (Run.case, what), flush=True)


def note(what):
    if Run.verbose:
        print("    ok: %s" % what, flush=True)


def check(cond, what, seen=None):
    """cond must hold; on failure say what was seen."""
    Run.checks += 1
    if cond:
        note(what)
        return True
    fail(what if seen is None else "%s (seen %s)" % (what, seen))
    return False


def eq(want, seen, what):
    Run.checks += 1
    if want == seen:
        note(what)
        return True
    if isinstance(want, (bytes, bytearray)) and isinstance(seen, (bytes, bytearray)):
        fail("%s: %s" % (what, bytes_diff(want, seen)))
    elif isinstance(want, int) and isinstance(seen, int) and what.startswith("mode"):
        fail("%s: expected %s, seen %s" % (what, oct(want), oct(seen)))
    else:
        fail("%s: expected %r, seen %r" % (what, want, seen))
    return False


def bytes_diff(want, seen):
    if len(want) < 64 and len(seen) < 64:
        return "expected %r, seen %r" % (bytes(want), bytes(seen))
    n = min(len(want), len(seen))
    first = next((i for i in range(n) if want[i] != seen[i]), None) if want[:n] != seen[:n] \
        else None
    msg = "expected %d bytes, seen %d" % (len(want), len(seen))
    if first is not None:
        msg += "; first difference at offset %d: expected %r, seen %r" % (
            first, bytes(want[first:first + 16]), bytes(seen[first:first + 16]))
    elif len(want) != len(seen):
        msg += "; equal over the first %d bytes" % n
    return msg


def ename(e):
    return errno.errorcode.get(e, str(e))


def errno_of(fn, *args, **kw):
    """Run fn; return "OK" or the errno name of the OSError it raised."""
    try:
        fn(*args, **kw)
    except OSError as e:
        if e.errno is None:
            raise
        return ename(e.errno)
    return "OK"


def expect_errno(want, what, fn, *args, **kw):
    """fn must fail with one of the errno names in want ("EPERM" or "EPERM|EACCES")."""
    Run.checks += 1
    wants = want.split("|")
    nums = {getattr(errno, w) for w in wants}
    try:
        fn(*args, **kw)
    except OSError as e:
        if e.errno in nums:
            note("%s -> %s" % (what, ename(e.errno)))
            return True
        fail("%s: expected %s, seen %s (%s)" % (what, want, ename(e.errno), e.strerror))
        return False
    fail("%s: expected %s, seen success" % (what, want))
    return False


def expect_ok(what, fn, *args, **kw):
    """fn must succeed; returns its result, or None after reporting the error."""
    Run.checks += 1
    try:
        r = fn(*args, **kw)
    except OSError as e:
        fail("%s: expected success, seen %s (%s)" % (what, ename(e.errno), e.strerror))
        return None
    note(what)
    return r if r is not None else True


# ----------------------------------------------------------------------------------------------
# The unprivileged user


def as_nobody(fn, *args):
    """Run fn(*args) in a forked child with uid and gid 65534 and no supplementary groups.

    Returns fn's (picklable) result; an OSError in the child is raised again here with the same
    errno, so expect_errno() can check it. Descriptors open here are inherited by the child."""
    import pickle
    sys.stdout.flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            res = ("ok", fn(*args))
        except OSError as e:
            res = ("oserror", e.errno, e.strerror)
        except BaseException as e:  # a bug in the test: report it, never run on in the child
            res = ("exc", "%s: %s" % (type(e).__name__, e))
        try:
            with os.fdopen(wfd, "wb") as f:
                pickle.dump(res, f)
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    res = pickle.loads(data)
    if res[0] == "oserror":
        raise OSError(res[1], res[2])
    if res[0] == "exc":
        raise RuntimeError("in the child running as %d: %s" % (NOBODY, res[1]))
    return res[1]


# ----------------------------------------------------------------------------------------------
# System calls Python does not wrap (through the C library)

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
DT_DIR, DT_REG = 4, 8


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Dirent(ctypes.Structure):  # glibc's struct dirent on 64-bit Linux
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


libc.opendir.restype = ctypes.c_void_p
libc.opendir.argtypes = [ctypes.c_char_p]
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.closedir.argtypes = [ctypes.c_void_p]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.getxattr.restype = ctypes.c_ssize_t
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]


def _raise_errno():
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e))


def renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) < 0:
        _raise_errno()


def utimensat(path, atime, mtime):
    """atime, mtime: (sec, nsec) pairs; nsec may be UTIME_NOW or UTIME_OMIT."""
    ts = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), ts, 0) < 0:
        _raise_errno()


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) < 0:
        _raise_errno()


def getxattr_sized(path, name, size):
    """getxattr(2) with a buffer of exactly size bytes: the value, or its length if size is 0."""
    buf = ctypes.create_string_buffer(max(size, 1))
    r = libc.getxattr(os.fsencode(path), name.encode(), buf if size else None, size)
    if r < 0:
        _raise_errno()
    return buf.raw[:r] if size else r


def listxattr_sized(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    r = libc.listxattr(os.fsencode(path), buf if size else None, size)
    if r < 0:
        _raise_errno()
    return buf.raw[:r] if size else r


def raw_readdir(path):
    """Every entry readdir(3) returns, with d_type and d_ino: [(name bytes, d_type, d_ino)]."""
    d = libc.opendir(os.fsencode(path))
    if not d:
        _raise_errno()
    out = []
    try:
        while True:
            ctypes.set_errno(0)
            p = libc.readdir(d)
            if not p:
                if ctypes.get_errno():
                    _raise_errno()
                break
            out.append((p.contents.d_name, p.contents.d_type, p.contents.d_ino))
    finally:
        libc.closedir(d)
    return out


# ----------------------------------------------------------------------------------------------
# Small helpers

J = os.path.join


def data(n, seed):
    return random.Random(seed).randbytes(n)


def writef(path, content, mode=0o644, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, mode)
    try:
        mv = memoryview(content)
        while mv:
            mv = mv[os.write(fd, mv):]
    finally:
        os.close(fd)


def readf(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def read_fd(fd, off=0):
    """Everything from off to the end of file, with pread."""
    chunks = []
    while True:
        b = os.pread(fd, 4 * MiB, off)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        off += len(b)


def creat(path, mode=0o644):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))


def open_close(path, flags, mode=0o644):
    os.close(os.open(path, flags, mode))


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def owner_of(path):
    st = os.stat(path)
    return (st.st_uid, st.st_gid)


def age(path):
    """Set atime and mtime to OLD_NS, so that a later update is visible without sleeping."""
    os.utime(path, ns=(OLD_NS, OLD_NS))


def gap():
    """A pause longer than any clock granularity, between a snapshot and the operation."""
    time.sleep(0.02)


def times_changed(what, before, after, m=None, c=None, a=None):
    """Compare two stat results: True means the time must have advanced, False that it must be
    unchanged, None that it is not checked."""
    for flag, field, label in ((m, "st_mtime_ns", "mtime"), (c, "st_ctime_ns", "ctime"),
                               (a, "st_atime_ns", "atime")):
        if flag is None:
            continue
        b, s = getattr(before, field), getattr(after, field)
        if flag:
            check(s > b, "%s updates %s" % (what, label), "%s %d -> %d" % (label, b, s))
        else:
            check(s == b, "%s leaves %s unchanged" % (what, label), "%s %d -> %d" % (label, b, s))


def near_now(what, ns, t0, t1):
    """ns lies between t0 and t1 (wall clock around the operation), give or take 100 ms."""
    slack = 100_000_000
    check(t0 - slack <= ns <= t1 + slack, "%s is the time of the operation" % what,
          "%d, operation between %d and %d" % (ns, t0, t1))


# ----------------------------------------------------------------------------------------------
# Cases

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


class Ctx:
    mnt = None
    base = None  # MNT/kv/posix
    pool = None  # MNT/kv
    other_pool = None  # MNT/mamba


def case_dir(name, mode=0o755):
    d = J(Ctx.base, name)
    os.mkdir(d)
    os.chmod(d, mode)
    return d


@case
def open_creat_excl(d):
    """open(2): O_CREAT|O_EXCL on an existing name fails with EEXIST; O_CREAT alone opens it"""
    f = J(d, "f")
    writef(f, b"hello")
    sub = J(d, "sub")
    os.mkdir(sub)
    expect_errno("EEXIST", "O_CREAT|O_EXCL on an existing file", open_close, f,
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    expect_errno("EEXIST", "O_CREAT|O_EXCL on an existing directory", open_close, sub,
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    expect_ok("O_CREAT without O_EXCL on an existing file", open_close, f,
              os.O_WRONLY | os.O_CREAT, 0o600)
    eq(b"hello", readf(f), "content after O_CREAT of an existing file (no truncation)")
    eq(0o644, mode_of(f), "mode after O_CREAT of an existing file (the mode argument is unused)")
    n = J(d, "new")
    expect_ok("O_CREAT|O_EXCL of a new name", open_close, n,
              os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    eq(0o644, mode_of(n), "mode of a file created with 0666 under umask 022")
    eq((0, 0), owner_of(n), "owner of a file root created")
    eq(0, os.stat(n).st_size, "size of a new file")
    expect_errno("ENOENT", "open of a missing name without O_CREAT", open_close, J(d, "missing"),
                 os.O_RDONLY)
    expect_errno("ENOENT", "O_CREAT in a missing directory", open_close, J(d, "nodir", "x"),
                 os.O_WRONLY | os.O_CREAT)
    os.chmod(d, 0o777)
    expect_errno("EEXIST", "nobody: O_CREAT|O_EXCL on an existing file", as_nobody, open_close,
                 f, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    nb = J(d, "nb")
    if expect_ok("nobody: O_CREAT|O_EXCL of a new name in a 0777 directory", as_nobody,
                 open_close, nb, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640):
        eq((NOBODY, NOBODY), owner_of(nb), "owner of a file nobody created")
        eq(0o640, mode_of(nb), "mode of a file nobody created with 0640")


@case
def open_directory(d):
    """open(2): a directory opened for writing fails with EISDIR; O_DIRECTORY on a file ENOTDIR"""
    sub = J(d, "sub")
    os.mkdir(sub)
    f = J(d, "f")
    writef(f, b"x")
    for flags, label in ((os.O_WRONLY, "O_WRONLY"), (os.O_RDWR, "O_RDWR"),
                         (os.O_WRONLY | os.O_CREAT, "O_WRONLY|O_CREAT"),
                         (os.O_RDWR | os.O_TRUNC, "O_RDWR|O_TRUNC")):
        expect_errno("EISDIR", "open of a directory with %s" % label, open_close, sub, flags)
    expect_errno("EISDIR", "open of the pool directory with O_WRONLY", open_close, Ctx.pool,
                 os.O_WRONLY)
    expect_errno("EISDIR", "open of the mount root with O_RDWR", open_close, Ctx.mnt, os.O_RDWR)
    expect_ok("open of a directory with O_RDONLY", open_close, sub, os.O_RDONLY)
    expect_ok("open of a directory with O_RDONLY|O_DIRECTORY", open_close, sub,
              os.O_RDONLY | os.O_DIRECTORY)
    expect_errno("ENOTDIR", "open of a file with O_DIRECTORY", open_close, f,
                 os.O_RDONLY | os.O_DIRECTORY)
    expect_errno("EISDIR", "nobody: open of a directory with O_WRONLY", as_nobody, open_close,
                 sub, os.O_WRONLY)
    fd = os.open(f, os.O_RDONLY)
    try:
        expect_errno("EBADF", "write(2) through an O_RDONLY descriptor", os.write, fd, b"y")
    finally:
        os.close(fd)
    fd = os.open(f, os.O_WRONLY)
    try:
        expect_errno("EBADF", "read(2) through an O_WRONLY descriptor", os.read, fd, 1)
    finally:
        os.close(fd)


@case
def path_through_file(d):
    """A path whose non-final component is a regular file fails with ENOTDIR"""
    f = J(d, "f")
    writef(f, b"x")
    g = J(d, "g")
    writef(g, b"y")
    p = J(f, "x")
    expect_errno("ENOTDIR", "stat of file/x", os.stat, p)
    expect_errno("ENOTDIR", "open O_CREAT of file/x", open_close, p, os.O_WRONLY | os.O_CREAT)
    expect_errno("ENOTDIR", "mkdir of file/x", os.mkdir, p)
    expect_errno("ENOTDIR", "unlink of file/x", os.unlink, p)
    expect_errno("ENOTDIR", "rmdir of file/x", os.rmdir, p)
    expect_errno("ENOTDIR", "rename of file/x", os.rename, p, J(d, "z"))
    expect_errno("ENOTDIR", "rename to file/x", os.rename, g, p)
    expect_errno("ENOTDIR", "truncate of file/x", os.truncate, p, 0)
    expect_errno("ENOTDIR", "setxattr of file/x", os.setxattr, p, "user.a", b"1")
    expect_errno("ENOTDIR", "rmdir of a regular file", os.rmdir, f)
    expect_errno("ENOTDIR", "open of file/ (trailing slash)", open_close, f + "/", os.O_RDONLY)
    expect_errno("ENOTDIR", "nobody: stat of file/x", as_nobody, os.stat, p)
    eq(b"y", readf(g), "the file a failed rename left behind")


@case
def name_length(d):
    """Names of 255 bytes work; 256 bytes fail with ENAMETOOLONG (create, mkdir, rename, lookup)"""
    n255 = "a" * 255
    n256 = "b" * 256
    m255 = b"\xc3\xa9" * 127 + b"x"  # 127 two-byte characters and one: 255 bytes
    m256 = b"\xc3\xa9" * 128
    f = J(d, "f")
    writef(f, b"short")
    p255 = J(d, n255)
    if expect_ok("create of a 255-byte name", writef, p255, b"long"):
        eq(b"long", readf(p255), "read through the 255-byte name")
        check(n255 in os.listdir(d), "readdir lists the 255-byte name")
        expect_ok("unlink of the 255-byte name", os.unlink, p255)
    if expect_ok("mkdir of a 255-byte name", os.mkdir, p255):
        expect_ok("create inside the 255-byte directory", writef, J(p255, n255), b"in")
        expect_ok("unlink inside the 255-byte directory", os.unlink, J(p255, n255))
        expect_ok("rmdir of the 255-byte name", os.rmdir, p255)
    if expect_ok("rename to a 255-byte name", os.rename, f, p255):
        eq(b"short", readf(p255), "content after rename to the 255-byte name")
        expect_ok("rename from a 255-byte name", os.rename, p255, f)
    pm = os.path.join(os.fsencode(d), m255)
    if expect_ok("create of a 255-byte UTF-8 name", writef, pm, b"utf8"):
        eq(b"utf8", readf(pm), "read through the 255-byte UTF-8 name")
        os.unlink(pm)
    p256 = J(d, n256)
    expect_errno("ENAMETOOLONG", "create of a 256-byte name", open_close, p256,
                 os.O_WRONLY | os.O_CREAT)
    expect_errno("ENAMETOOLONG", "mkdir of a 256-byte name", os.mkdir, p256)
    expect_errno("ENAMETOOLONG", "rename to a 256-byte name", os.rename, f, p256)
    expect_errno("ENAMETOOLONG", "stat of a 256-byte name", os.stat, p256)
    expect_errno("ENAMETOOLONG", "unlink of a 256-byte name", os.unlink, p256)
    expect_errno("ENAMETOOLONG", "rmdir of a 256-byte name", os.rmdir, p256)
    expect_errno("ENAMETOOLONG", "create of a 256-byte UTF-8 name", open_close,
                 os.path.join(os.fsencode(d), m256), os.O_WRONLY | os.O_CREAT)
    os.chmod(d, 0o777)
    expect_errno("ENAMETOOLONG", "nobody: create of a 256-byte name", as_nobody, open_close,
                 p256, os.O_WRONLY | os.O_CREAT)
    expect_ok("nobody: create of a 255-byte name", as_nobody, writef, p255, b"nb")
    eq(sorted([n255, "f"]), sorted(os.listdir(d)), "directory after the failed calls")
    eq(b"short", readf(f), "file f after the failed rename")


@case
def name_bytes(d):
    """Names are any bytes but '/' and NUL: create, list, stat, rename and unlink them"""
    names = [b"sp ace", b"new\nline", b"tab\there", b"\x01\x7f\xfe\xff", b"-dash", b".hidden",
             b"...", b"\xe5\x90\x8d\xe5\x89\x8d.bin", b"q\"'\\*?[]",
             b"0123abcd_Qwen3-8B_0_1.bin.tmp.1.2.3e4f"]
    bd = os.fsencode(d)
    for i, n in enumerate(names):
        p = os.path.join(bd, n)
        if expect_ok("create %r" % n, writef, p, b"%d" % i):
            eq(b"%d" % i, readf(p), "content of %r" % n)
            check(stat.S_ISREG(os.stat(p).st_mode), "stat of %r is a regular file" % n)
    eq(sorted(names), sorted(os.listdir(bd)), "readdir of the odd names")
    expect_errno("ENOENT", "stat of a missing name that is not UTF-8", os.stat,
                 os.path.join(bd, b"\xfe\xfd-missing"))
    for n in names:
        p = os.path.join(bd, n)
        q = os.path.join(bd, n + b".r")
        if expect_ok("rename %r" % n, os.rename, p, q):
            expect_ok("unlink %r" % (n + b".r"), os.unlink, q)
    eq([], os.listdir(bd), "readdir after removing the odd names")


@case
def mkdir_rmdir(d):
    """mkdir(2) and rmdir(2): modes, owners, EEXIST, ENOENT, ENOTEMPTY, EINVAL, ENOTDIR"""
    a = J(d, "a")
    expect_ok("mkdir", os.mkdir, a, 0o777)
    eq(0o755, mode_of(a), "mode of mkdir 0777 under umask 022")
    eq((0, 0), owner_of(a), "owner of a directory root made")
    b = J(d, "b")
    os.mkdir(b, 0o700)
    eq(0o700, mode_of(b), "mode of mkdir 0700")
    s = J(d, "s")
    os.mkdir(s, 0o1777)
    eq(0o1755, mode_of(s), "mode of mkdir 01777 (the sticky bit is kept)")
    f = J(d, "f")
    writef(f, b"x")
    expect_errno("EEXIST", "mkdir of an existing directory", os.mkdir, a)
    expect_errno("EEXIST", "mkdir over an existing file", os.mkdir, f)
    expect_errno("ENOENT", "mkdir in a missing directory", os.mkdir, J(d, "missing", "x"))
    expect_ok("mkdir with a trailing slash", os.mkdir, J(d, "t") + "/")
    expect_ok("rmdir with a trailing slash", os.rmdir, J(d, "t") + "/")
    writef(J(a, "file"), b"x")
    expect_errno("ENOTEMPTY", "rmdir of a directory holding a file", os.rmdir, a)
    os.unlink(J(a, "file"))
    os.mkdir(J(a, "sub"))
    expect_errno("ENOTEMPTY", "rmdir of a directory holding a directory", os.rmdir, a)
    expect_errno("ENOTEMPTY", "rmdir of dir/.. (Linux)", os.rmdir, J(a, "sub", ".."))
    expect_errno("EINVAL", "rmdir of dir/.", os.rmdir, J(a, "sub", "."))
    os.rmdir(J(a, "sub"))
    expect_ok("rmdir of an empty directory", os.rmdir, a)
    expect_errno("ENOENT", "stat after rmdir", os.stat, a)
    expect_errno("ENOENT", "rmdir of a missing name", os.rmdir, J(d, "missing"))
    expect_errno("ENOTDIR", "rmdir of a regular file", os.rmdir, f)
    expect_errno("EISDIR", "unlink of a directory (Linux)", os.unlink, b)
    expect_errno("ENOENT", "unlink of a missing name", os.unlink, J(d, "missing"))
    expect_errno("ENOTEMPTY|EEXIST", "rmdir of a pool that holds files", os.rmdir, Ctx.pool)
    os.chmod(d, 0o777)
    nbd = J(d, "nbd")
    if expect_ok("nobody: mkdir in a 0777 directory", as_nobody, os.mkdir, nbd, 0o750):
        eq((NOBODY, NOBODY), owner_of(nbd), "owner of a directory nobody made")
        eq(0o750, mode_of(nbd), "mode of a directory nobody made with 0750")
        expect_ok("nobody: rmdir of its directory", as_nobody, os.rmdir, nbd)
    expect_errno("EACCES", "nobody: mkdir at the mount root (a pool)", as_nobody, os.mkdir,
                 J(Ctx.mnt, "nobodypool"))


@case
def rename_semantics(d):
    """rename(2): replace, same file, directories over directories, and every error it names"""
    f = J(d, "f")
    g = J(d, "g")
    writef(f, b"source")
    writef(g, b"target")
    ino = os.stat(f).st_ino
    expect_ok("rename of a file over a file", os.rename, f, g)
    eq(b"source", readf(g), "content of the target after rename over it")
    eq(ino, os.stat(g).st_ino, "inode number kept by rename")
    expect_errno("ENOENT", "stat of the old name after rename", os.stat, f)
    expect_ok("rename of a file to itself", os.rename, g, g)
    eq(b"source", readf(g), "content after rename to itself")
    expect_errno("ENOENT", "rename of a missing name", os.rename, f, J(d, "x"))
    expect_errno("ENOENT", "rename into a missing directory", os.rename, g, J(d, "no", "x"))

    da = J(d, "da")
    db = J(d, "db")
    os.mkdir(da)
    os.mkdir(db)
    writef(J(da, "inner"), b"in")
    expect_errno("ENOTDIR", "rename of a directory over a file", os.rename, da, g)
    expect_errno("EISDIR", "rename of a file over a directory", os.rename, g, db)
    expect_errno("EINVAL", "rename of a directory into itself", os.rename, da, J(da, "x"))
    os.makedirs(J(da, "s1", "s2"))
    expect_errno("EINVAL", "rename of a directory into its own subtree", os.rename, da,
                 J(da, "s1", "s2", "x"))
    expect_errno("ENOTEMPTY|EEXIST", "rename of a directory over a non-empty directory",
                 os.rename, db, da)
    expect_ok("rename of a directory over an empty directory", os.rename, da, db)
    eq(b"in", readf(J(db, "inner")), "content inside a renamed directory")
    expect_errno("ENOENT", "stat of the old directory name", os.stat, da)
    eq(["s1"], [n for n in os.listdir(db) if n != "inner"], "subtree moved with the directory")
    expect_ok("rename of a directory to a new name in another directory", os.rename,
              J(db, "s1"), J(d, "s1moved"))
    check(os.path.isdir(J(d, "s1moved", "s2")), "subdirectory follows its parent")
    eq(sorted(["g", "db", "s1moved"]), sorted(os.listdir(d)), "directory after the renames")

    # Another pool is another set of pages: rename does not cross it (mv copies instead).
    other = J(Ctx.other_pool, "posix-xdev")
    if not expect_errno("EXDEV", "rename of a file into another pool", os.rename, g, other):
        os.rename(other, g)
    eq(b"source", readf(g), "file kept after the refused rename into another pool")

    os.chmod(d, 0o777)
    nf = J(d, "nf")
    as_nobody(writef, nf, b"nb")
    expect_ok("nobody: rename of its file", as_nobody, os.rename, nf, J(d, "nf2"))
    expect_ok("nobody: rename of its file over root's file in a 0777 directory", as_nobody,
              os.rename, J(d, "nf2"), g)
    eq(b"nb", readf(g), "content after nobody's rename over")


@case
def rename_flags(d):
    """renameat2(2): RENAME_NOREPLACE and RENAME_EXCHANGE"""
    if not hasattr(libc, "renameat2"):
        print("    note: the C library has no renameat2; case skipped", flush=True)
        return
    a = J(d, "a")
    b = J(d, "b")
    writef(a, b"A")
    writef(b, b"B")
    expect_errno("EEXIST", "RENAME_NOREPLACE over an existing name", renameat2, a, b,
                 RENAME_NOREPLACE)
    eq((b"A", b"B"), (readf(a), readf(b)), "both files after the refused RENAME_NOREPLACE")
    expect_ok("RENAME_NOREPLACE to a new name", renameat2, a, J(d, "c"), RENAME_NOREPLACE)
    os.rename(J(d, "c"), a)
    expect_ok("RENAME_EXCHANGE of two files", renameat2, a, b, RENAME_EXCHANGE)
    eq((b"B", b"A"), (readf(a), readf(b)), "contents after RENAME_EXCHANGE")
    sub = J(d, "sub")
    os.mkdir(sub)
    expect_ok("RENAME_EXCHANGE of a file and a directory", renameat2, a, sub, RENAME_EXCHANGE)
    check(os.path.isdir(a) and os.path.isfile(sub), "types swapped by RENAME_EXCHANGE")
    expect_errno("ENOENT", "RENAME_EXCHANGE with a missing name", renameat2, b, J(d, "none"),
                 RENAME_EXCHANGE)
    expect_errno("EINVAL", "RENAME_NOREPLACE|RENAME_EXCHANGE", renameat2, b, sub,
                 RENAME_NOREPLACE | RENAME_EXCHANGE)


@case
def permissions(d):
    """default_permissions: EACCES for nobody on root's files and directories; owner, group,
    other classes; sticky directories (EPERM); root's DAC override"""
    f644 = J(d, "f644")
    writef(f644, b"data", 0o644)
    f666 = J(d, "f666")
    writef(f666, b"data", 0o666)
    os.chmod(f666, 0o666)
    f600 = J(d, "f600")
    writef(f600, b"secret", 0o600)
    empty = J(d, "emptydir")
    os.mkdir(empty)
    d700 = J(d, "d700")
    os.mkdir(d700, 0o700)
    writef(J(d700, "x"), b"x")
    d711 = J(d, "d711")
    os.mkdir(d711)
    os.chmod(d711, 0o711)
    writef(J(d711, "y"), b"y")
    d766 = J(d, "d766")
    os.mkdir(d766)
    os.chmod(d766, 0o766)

    expect_errno("EACCES", "nobody: open O_WRONLY of root's 0644 file", as_nobody, open_close,
                 f644, os.O_WRONLY)
    expect_errno("EACCES", "nobody: open O_RDWR of root's 0644 file", as_nobody, open_close,
                 f644, os.O_RDWR)
    expect_errno("EACCES", "nobody: truncate of root's 0644 file", as_nobody, os.truncate,
                 f644, 0)
    eq(b"data", expect_ok("nobody: read of root's 0644 file", as_nobody, readf, f644),
       "what nobody reads from root's 0644 file")
    expect_errno("EACCES", "nobody: open O_RDONLY of root's 0600 file", as_nobody, open_close,
                 f600, os.O_RDONLY)
    expect_errno("EACCES", "nobody: create in root's 0755 directory", as_nobody, open_close,
                 J(d, "new"), os.O_WRONLY | os.O_CREAT)
    expect_errno("EACCES", "nobody: mkdir in root's 0755 directory", as_nobody, os.mkdir,
                 J(d, "newdir"))
    expect_errno("EACCES", "nobody: unlink in root's 0755 directory", as_nobody, os.unlink,
                 f666)
    expect_errno("EACCES", "nobody: rmdir in root's 0755 directory", as_nobody, os.rmdir, empty)
    expect_errno("EACCES", "nobody: rename in root's 0755 directory", as_nobody, os.rename,
                 f666, J(d, "moved"))
    expect_ok("nobody: write of root's 0666 file", as_nobody, writef, f666, b"nobody")
    eq(b"nobody", readf(f666), "content nobody wrote into root's 0666 file")
    expect_errno("EACCES", "nobody: stat in root's 0700 directory (search)", as_nobody, os.stat,
                 J(d700, "x"))
    expect_errno("EACCES", "nobody: readdir of root's 0700 directory", as_nobody, os.listdir,
                 d700)
    expect_errno("EACCES", "nobody: open in root's 0700 directory", as_nobody, readf,
                 J(d700, "x"))
    expect_ok("nobody: stat in root's 0711 directory (search only)", as_nobody, os.stat,
              J(d711, "y"))
    expect_errno("EACCES", "nobody: readdir of root's 0711 directory", as_nobody, os.listdir,
                 d711)
    expect_errno("EACCES", "nobody: create in a 0766 directory (write but no search)",
                 as_nobody, open_close, J(d766, "z"), os.O_WRONLY | os.O_CREAT)
    eq((False, True), as_nobody(lambda: (os.access(f644, os.W_OK), os.access(f644, os.R_OK))),
       "access(2) W_OK, R_OK of root's 0644 file for nobody")

    # The class that matches decides, even when another class would grant more.
    fg = J(d, "fgroup")
    writef(fg, b"g")
    os.chown(fg, 0, NOBODY)
    os.chmod(fg, 0o040)
    eq(b"g", expect_ok("nobody: read through the group class (0040, group nobody)", as_nobody,
                       readf, fg), "what nobody reads through the group class")
    os.chmod(fg, 0o404)
    expect_errno("EACCES", "nobody: read of a 0404 file of its group (group class has none)",
                 as_nobody, readf, fg)
    fo = J(d, "fowner")
    writef(fo, b"o")
    os.chown(fo, NOBODY, NOBODY)
    os.chmod(fo, 0o044)
    expect_errno("EACCES", "nobody: read of its own 0044 file (owner class has none)", as_nobody,
                 readf, fo)
    os.chmod(fo, 0o200)
    expect_ok("nobody: write of its own 0200 file", as_nobody, writef, fo, b"w")
    expect_errno("EACCES", "nobody: read of its own 0200 file", as_nobody, readf, fo)

    # root: CAP_DAC_OVERRIDE reads and writes files and lists directories without permission
    f000 = J(d, "f000")
    writef(f000, b"zero")
    os.chmod(f000, 0)
    eq(b"zero", expect_ok("root: read of a 0000 file", readf, f000), "what root reads")
    expect_ok("root: write of a 0000 file", writef, f000, b"root")
    d000 = J(d, "d000")
    os.mkdir(d000, 0)
    expect_ok("root: readdir of a 0000 directory", os.listdir, d000)
    expect_ok("root: create in a 0000 directory", writef, J(d000, "r"), b"r")

    # sticky directory: only the owner of a file (or of the directory) removes or renames it
    st = J(d, "sticky")
    os.mkdir(st)
    os.chmod(st, 0o1777)
    rf = J(st, "rootfile")
    writef(rf, b"r", 0o666)
    os.chmod(rf, 0o666)
    expect_errno("EPERM", "nobody: unlink of root's file in a sticky directory", as_nobody,
                 os.unlink, rf)
    expect_errno("EPERM", "nobody: rename of root's file in a sticky directory", as_nobody,
                 os.rename, rf, J(st, "x"))
    nf = J(st, "nobodyfile")
    expect_ok("nobody: create in a sticky 01777 directory", as_nobody, writef, nf, b"n")
    expect_ok("nobody: unlink of its file in a sticky directory", as_nobody, os.unlink, nf)
    expect_ok("root: unlink of its file in a sticky directory", os.unlink, rf)


@case
def chmod_chown(d):
    """chmod(2), fchmod, chown(2): modes round-trip; EPERM for a non-owner; the group rules"""
    f = J(d, "f")
    writef(f, b"x")
    for m in (0, 0o777, 0o4755, 0o2755, 0o1755, 0o7777, 0o640):
        expect_ok("chmod %o" % m, os.chmod, f, m)
        eq(m, mode_of(f), "mode after chmod %o" % m)
    fd = os.open(f, os.O_RDONLY)
    try:
        expect_ok("fchmod 0600", os.fchmod, fd, 0o600)
        eq(0o600, stat.S_IMODE(os.fstat(fd).st_mode), "mode after fchmod (fstat)")
    finally:
        os.close(fd)
    sub = J(d, "sub")
    os.mkdir(sub)
    expect_ok("chmod 01777 of a directory", os.chmod, sub, 0o1777)
    eq(0o1777, mode_of(sub), "mode of a directory after chmod 01777")
    check(stat.S_ISDIR(os.stat(sub).st_mode), "chmod keeps the file type")
    expect_errno("ENOENT", "chmod of a missing name", os.chmod, J(d, "missing"), 0o644)

    expect_errno("EPERM", "nobody: chmod of root's file", as_nobody, os.chmod, f, 0o666)
    expect_errno("EPERM", "nobody: chown of root's file to nobody", as_nobody, os.chown, f,
                 NOBODY, -1)
    expect_errno("EPERM", "nobody: chgrp of root's file to nobody's group", as_nobody, os.chown,
                 f, -1, NOBODY)
    expect_errno("EPERM", "nobody: chmod of root's directory", as_nobody, os.chmod, sub, 0o777)
    eq(0o600, mode_of(f), "mode after nobody's refused chmod")

    g = J(d, "g")
    writef(g, b"g")
    expect_ok("root: chown to 65534:65534", os.chown, g, NOBODY, NOBODY)
    eq((NOBODY, NOBODY), owner_of(g), "owner after root's chown")
    expect_ok("nobody: chmod of its file", as_nobody, os.chmod, g, 0o600)
    eq(0o600, mode_of(g), "mode after nobody's chmod")
    expect_errno("EPERM", "nobody: chown of its file to root", as_nobody, os.chown, g, 0, -1)
    expect_errno("EPERM", "nobody: chgrp of its file to a group it is not in", as_nobody,
                 os.chown, g, -1, 0)
    expect_ok("nobody: chgrp of its file to its own group", as_nobody, os.chown, g, -1, NOBODY)
    expect_ok("nobody: chown of its file to itself", as_nobody, os.chown, g, NOBODY, -1)
    eq((NOBODY, NOBODY), owner_of(g), "owner after nobody's own chowns")
    # chmod(2): S_ISGID is turned off without an error when the caller is not in the group
    os.chown(g, NOBODY, 0)
    expect_ok("nobody: chmod 02755 of its file whose group is 0", as_nobody, os.chmod, g,
              0o2755)
    eq(0o755, mode_of(g), "mode after that chmod (S_ISGID silently dropped)")
    expect_ok("root: chown of a directory", os.chown, sub, NOBODY, NOBODY)
    eq((NOBODY, NOBODY), owner_of(sub), "owner of the directory after chown")
    fd = os.open(f, os.O_RDONLY)
    try:
        expect_ok("fchown", os.fchown, fd, 1, 2)
        eq((1, 2), owner_of(f), "owner after fchown")
    finally:
        os.close(fd)


@case
def setid_cleared_by_chown(d):
    """chown(2) NOTES: chown of a regular file clears S_ISUID, and S_ISGID if group-execute is
    set; a directory keeps them"""
    for m, want in ((0o6755, 0o755), (0o4755, 0o755), (0o2755, 0o755), (0o4644, 0o644),
                    (0o2644, 0o2644), (0o6754, 0o754)):
        f = J(d, "f%o" % m)
        writef(f, b"x")
        os.chmod(f, m)
        expect_ok("root: chown of a %o file" % m, os.chown, f, NOBODY, NOBODY)
        eq(want, mode_of(f), "mode of a %o file after chown" % m)
    f = J(d, "fchgrp")
    writef(f, b"x")
    os.chmod(f, 0o6755)
    os.chown(f, -1, NOBODY)
    eq(0o755, mode_of(f), "mode of a 6755 file after chgrp only")
    sub = J(d, "sub")
    os.mkdir(sub)
    os.chmod(sub, 0o2755)
    os.chown(sub, NOBODY, NOBODY)
    eq(0o2755, mode_of(sub), "mode of a 2755 directory after chown")


def setid_file(d, name, m, owner=0, group=0):
    f = J(d, name)
    writef(f, b"0123456789")
    os.chown(f, owner, group)
    os.chmod(f, m)
    return f


def setid_mode(want, seen, what):
    """want: the mode expected, or None for "S_ISUID cleared, S_ISGID not checked"."""
    if want is None:
        check(not seen & stat.S_ISUID, "mode %s has S_ISUID cleared" % what, oct(seen))
    else:
        eq(want, seen, "mode " + what)


@case
def setid_cleared_by_write(d):
    """A write or truncate by a user other than root clears S_ISUID, and S_ISGID when
    group-execute is set; S_ISGID without group-execute stays (writer in the file's group);
    root's write keeps both"""
    os.chmod(d, 0o777)

    def nb_write(path):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"nb")
            return stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    def nb_pwrite(path):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, b"nb", 100)
        finally:
            os.close(fd)

    def nb_ftruncate(path):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, 3)
        finally:
            os.close(fd)

    def fd_write(fd):
        os.write(fd, b"nb")

    # (mode, group of the root-owned file, mode expected after nobody's write). S_ISGID
    # without group-execute is kept for a writer in the file's group; for one outside it
    # Linux 6.x clears it too (setattr_should_drop_sgid), older kernels did not: unchecked.
    for m, grp, want in ((0o6777, 0, 0o777), (0o4777, 0, 0o777), (0o2777, 0, 0o777),
                         (0o6767, NOBODY, 0o2767), (0o6767, 0, None)):
        what = "of a %o file of group %d" % (m, grp)
        f = setid_file(d, "w%o.%d" % (m, grp), m, group=grp)
        seen = expect_ok("nobody: write(2) to a %o file" % m, as_nobody, nb_write, f)
        if seen is not None:
            setid_mode(want, seen, "%s in fstat after nobody's write(2)" % what)
        setid_mode(want, mode_of(f), "%s after nobody's write(2)" % what)
        eq(b"nb23456789", readf(f), "content after nobody's write(2)")

        f = setid_file(d, "fd%o.%d" % (m, grp), m, group=grp)
        fd = os.open(f, os.O_WRONLY)
        try:
            expect_ok("nobody: write(2) through a descriptor root opened before", as_nobody,
                      fd_write, fd)
        finally:
            os.close(fd)
        setid_mode(want, mode_of(f), "%s after nobody's write(2) through a descriptor root "
                   "opened before" % what)

        f = setid_file(d, "pw%o.%d" % (m, grp), m, group=grp)
        expect_ok("nobody: pwrite(2) to a %o file" % m, as_nobody, nb_pwrite, f)
        setid_mode(want, mode_of(f), "%s after nobody's pwrite(2)" % what)

        f = setid_file(d, "tr%o.%d" % (m, grp), m, group=grp)
        expect_ok("nobody: truncate(2) of a %o file" % m, as_nobody, os.truncate, f, 3)
        setid_mode(want, mode_of(f), "%s after nobody's truncate(2)" % what)
        eq(b"012", readf(f), "content after nobody's truncate(2)")

        f = setid_file(d, "ftr%o.%d" % (m, grp), m, group=grp)
        expect_ok("nobody: ftruncate(2) of a %o file" % m, as_nobody, nb_ftruncate, f)
        setid_mode(want, mode_of(f), "%s after nobody's ftruncate(2)" % what)

        f = setid_file(d, "ot%o.%d" % (m, grp), m, group=grp)
        expect_ok("nobody: open O_WRONLY|O_TRUNC of a %o file" % m, as_nobody, open_close, f,
                  os.O_WRONLY | os.O_TRUNC)
        setid_mode(want, mode_of(f), "%s after nobody's open O_TRUNC" % what)

    f = setid_file(d, "own4755", 0o4755, owner=NOBODY, group=NOBODY)
    expect_ok("nobody: write(2) to its own 4755 file", as_nobody, nb_write, f)
    eq(0o755, mode_of(f), "mode of its own 4755 file after nobody's write(2)")

    # CAP_FSETID: root's writes and truncates keep the bits
    f = setid_file(d, "root6777", 0o6777)
    writef(f, b"root", flags=os.O_WRONLY)
    eq(0o6777, mode_of(f), "mode of a 6777 file after root's write(2)")
    fd = os.open(f, os.O_WRONLY)
    os.pwrite(fd, b"r", 50)
    os.ftruncate(fd, 20)
    os.close(fd)
    eq(0o6777, mode_of(f), "mode of a 6777 file after root's pwrite and ftruncate")
    os.truncate(f, 5)
    eq(0o6777, mode_of(f), "mode of a 6777 file after root's truncate(2)")
    open_close(f, os.O_WRONLY | os.O_TRUNC)
    eq(0o6777, mode_of(f), "mode of a 6777 file after root's open O_TRUNC")
    # reading never clears them
    f = setid_file(d, "read6755", 0o6755)
    as_nobody(readf, f)
    eq(0o6755, mode_of(f), "mode of a 6755 file after nobody read it")


@case
def utimens(d):
    """utimensat(2): explicit times with nanoseconds, UTIME_NOW, UTIME_OMIT, permissions"""
    f = J(d, "f")
    writef(f, b"x")
    at, mt = (1_000_000_000, 123_456_789), (4_000_000_000, 1)  # 2001 and 2096
    before = os.stat(f)
    gap()
    expect_ok("utimensat with explicit times", utimensat, f, at, mt)
    st = os.stat(f)
    eq(at[0] * 10**9 + at[1], st.st_atime_ns, "atime (ns) after utimensat")
    eq(mt[0] * 10**9 + mt[1], st.st_mtime_ns, "mtime (ns) after utimensat")
    times_changed("utimensat", before, st, c=True)
    pre = -86400 * 365 * 10**9 + 999_999_999  # 1969-01-01 and a bit
    expect_ok("utime to a time before 1970", os.utime, f, ns=(pre, pre))
    st = os.stat(f)
    eq((pre, pre), (st.st_atime_ns, st.st_mtime_ns), "atime, mtime (ns) before 1970")

    age(f)
    t0 = time.time_ns()
    expect_ok("utimensat UTIME_OMIT, explicit mtime", utimensat, f, (0, UTIME_OMIT), mt)
    st = os.stat(f)
    eq(OLD_NS, st.st_atime_ns, "atime kept by UTIME_OMIT")
    eq(mt[0] * 10**9 + mt[1], st.st_mtime_ns, "mtime set beside UTIME_OMIT")
    expect_ok("utimensat UTIME_NOW, UTIME_OMIT", utimensat, f, (0, UTIME_NOW), (0, UTIME_OMIT))
    t1 = time.time_ns()
    st = os.stat(f)
    near_now("atime after UTIME_NOW", st.st_atime_ns, t0, t1)
    eq(mt[0] * 10**9 + mt[1], st.st_mtime_ns, "mtime kept by UTIME_OMIT")
    age(f)
    expect_ok("utimensat UTIME_OMIT, UTIME_OMIT", utimensat, f, (0, UTIME_OMIT), (0, UTIME_OMIT))
    st = os.stat(f)
    eq((OLD_NS, OLD_NS), (st.st_atime_ns, st.st_mtime_ns), "times after UTIME_OMIT for both")
    t0 = time.time_ns()
    expect_ok("utimensat UTIME_NOW, UTIME_NOW", utimensat, f, (0, UTIME_NOW), (0, UTIME_NOW))
    expect_ok("utimes(NULL) (touch)", os.utime, f)
    t1 = time.time_ns()
    st = os.stat(f)
    near_now("atime after UTIME_NOW", st.st_atime_ns, t0, t1)
    near_now("mtime after UTIME_NOW", st.st_mtime_ns, t0, t1)
    expect_errno("EINVAL", "utimensat with tv_nsec 1000000000", utimensat, f, (0, 10**9),
                 (0, 0))
    expect_errno("ENOENT", "utimensat of a missing name", utimensat, J(d, "no"), at, mt)

    # An explicit time set while the file is open for writing survives the close (cp -p).
    fd = os.open(f, os.O_WRONLY)
    try:
        os.write(fd, b"data")
        age(f)
    finally:
        os.close(fd)
    st = os.stat(f)
    eq(OLD_NS, st.st_mtime_ns, "mtime set by utime after a write survives close")

    # Permissions: UTIME_NOW needs write access or ownership; explicit times need ownership.
    w = J(d, "w666")
    writef(w, b"w")
    os.chmod(w, 0o666)
    r = J(d, "r644")
    writef(r, b"r")
    expect_ok("nobody: UTIME_NOW on root's 0666 file", as_nobody, utimensat, w, (0, UTIME_NOW),
              (0, UTIME_NOW))
    expect_ok("nobody: utimes(NULL) on root's 0666 file", as_nobody, os.utime, w)
    expect_errno("EPERM", "nobody: explicit times on root's 0666 file", as_nobody, utimensat, w,
                 at, mt)
    expect_errno("EACCES", "nobody: UTIME_NOW on root's 0644 file", as_nobody, utimensat, r,
                 (0, UTIME_NOW), (0, UTIME_NOW))
    expect_errno("EPERM", "nobody: explicit times on root's 0644 file", as_nobody, utimensat, r,
                 at, mt)
    own = J(d, "own")
    writef(own, b"o")
    os.chown(own, NOBODY, NOBODY)
    os.chmod(own, 0o444)
    expect_ok("nobody: explicit times on its own 0444 file", as_nobody, utimensat, own, at, mt)
    eq(mt[0] * 10**9 + mt[1], os.stat(own).st_mtime_ns, "mtime nobody set on its own file")


@case
def times_write_read(d):
    """write(2) updates mtime and ctime (seen by fstat before close and by stat after);
    read(2) changes neither"""
    f = J(d, "f")
    writef(f, b"hello")
    age(f)
    before = os.stat(f)
    gap()
    fd = os.open(f, os.O_WRONLY)
    try:
        t0 = time.time_ns()
        os.write(fd, b"HE")
        t1 = time.time_ns()
        st = os.fstat(fd)
        times_changed("write(2), in fstat before close,", before, st, m=True, c=True)
        near_now("mtime after write(2)", st.st_mtime_ns, t0, t1)
        times_changed("write(2), in stat by path before close,", before, os.stat(f), m=True,
                      c=True)
    finally:
        os.close(fd)
    st = os.stat(f)
    times_changed("write(2), after close,", before, st, m=True, c=True, a=False)
    near_now("mtime after write(2) and close", st.st_mtime_ns, t0, t1)

    f2 = J(d, "f2")
    writef(f2, b"hello")
    age(f2)
    before = os.stat(f2)
    gap()
    fd = os.open(f2, os.O_WRONLY)
    os.pwrite(fd, b"X", 3 * MiB)
    os.close(fd)
    times_changed("pwrite(2) beyond the end", before, os.stat(f2), m=True, c=True)

    age(f2)
    before = os.stat(f2)
    gap()
    readf(f2)
    fd = os.open(f2, os.O_RDWR)
    os.pread(fd, 10, 0)
    os.close(fd)
    times_changed("read(2)", before, os.stat(f2), m=False, c=False)


@case
def times_truncate(d):
    """truncate(2) and ftruncate(2) that change the size update mtime and ctime; Linux's
    ftruncate updates them even when the size stays (POSIX requires it only on a change)"""
    f = J(d, "f")
    writef(f, data(100, 1))
    for label, fn in (("truncate(2) down", lambda: os.truncate(f, 10)),
                      ("truncate(2) up", lambda: os.truncate(f, 3 * MiB)),
                      ("ftruncate(2) down", lambda: ftrunc(f, 5)),
                      ("ftruncate(2) up", lambda: ftrunc(f, 50)),
                      ("ftruncate(2) to the same size (Linux)", lambda: ftrunc(f, 50))):
        age(f)
        before = os.stat(f)
        gap()
        expect_ok(label, fn)
        times_changed(label, before, os.stat(f), m=True, c=True)


def ftrunc(path, n):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, n)
    finally:
        os.close(fd)


@case
def times_metadata(d):
    """chmod, chown and setting times update ctime and leave mtime; create, unlink, mkdir, rmdir
    and rename update the parent's mtime and ctime; rename updates the moved file's ctime"""
    f = J(d, "f")
    writef(f, b"x")
    for label, fn in (("chmod", lambda: os.chmod(f, 0o600)),
                      ("chown", lambda: os.chown(f, NOBODY, NOBODY)),
                      ("chown to the same owner", lambda: os.chown(f, NOBODY, NOBODY))):
        age(f)
        before = os.stat(f)
        gap()
        expect_ok(label, fn)
        times_changed(label, before, os.stat(f), m=False, c=True, a=False)

    def parent_update(label, parents, fn):
        for p in parents:
            age(p)
        befores = [os.stat(p) for p in parents]
        gap()
        t0 = time.time_ns()
        r = expect_ok(label, fn)
        t1 = time.time_ns()
        for p, b in zip(parents, befores):
            st = os.stat(p)
            times_changed("%s, in the parent %s," % (label, os.path.basename(p)), b, st,
                          m=True, c=True)
            near_now("%s: mtime of the parent %s" % (label, os.path.basename(p)),
                     st.st_mtime_ns, t0, t1)
        return r

    a = J(d, "a")
    b = J(d, "b")
    os.mkdir(a)
    os.mkdir(b)
    t0 = time.time_ns()
    parent_update("create", [a], lambda: creat(J(a, "n")))
    t1 = time.time_ns()
    st = os.stat(J(a, "n"))
    for field in ("st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
        near_now("%s of a new file" % field[3:8], getattr(st, field), t0, t1)
    parent_update("mkdir", [a], lambda: os.mkdir(J(a, "sub")))
    parent_update("rmdir", [a], lambda: os.rmdir(J(a, "sub")))
    writef(J(a, "m"), b"moved")
    moved = J(a, "m")
    age(moved)
    mbefore = os.stat(moved)
    parent_update("rename between directories", [a, b], lambda: os.rename(moved, J(b, "m")))
    st = os.stat(J(b, "m"))
    times_changed("rename, in the moved file,", mbefore, st, m=False, c=True)
    parent_update("rename within a directory", [b], lambda: os.rename(J(b, "m"), J(b, "m2")))
    writef(J(a, "over"), b"over")
    parent_update("rename over an existing file", [a, b],
                  lambda: os.rename(J(b, "m2"), J(a, "over")))
    os.mkdir(J(a, "dsub"))
    parent_update("rename of a directory between directories", [a, b],
                  lambda: os.rename(J(a, "dsub"), J(b, "dsub")))
    parent_update("unlink", [a], lambda: os.unlink(J(a, "over")))

    g = J(d, "g")
    writef(g, b"g")
    age(g)
    before = os.stat(g)
    gap()
    os.setxattr(g, "user.t", b"1")
    times_changed("setxattr", before, os.stat(g), m=False)


@case
def o_trunc(d):
    """open(2) O_TRUNC truncates an existing file to 0 and updates mtime and ctime (also when it
    was empty); a shorter write then leaves no stale bytes"""
    for flags, label in ((os.O_WRONLY | os.O_TRUNC, "O_WRONLY|O_TRUNC"),
                         (os.O_RDWR | os.O_TRUNC, "O_RDWR|O_TRUNC"),
                         (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "O_WRONLY|O_CREAT|O_TRUNC")):
        f = J(d, "f")
        writef(f, b"hello")
        age(f)
        before = os.stat(f)
        gap()
        fd = os.open(f, flags, 0o644)
        try:
            eq(0, os.fstat(fd).st_size, "size in fstat right after open %s" % label)
            os.write(fd, b"xy")
        finally:
            os.close(fd)
        eq(b"xy", readf(f), "content after open %s and writing 'xy' over 'hello'" % label)
        st = os.stat(f)
        eq(2, st.st_size, "size after open %s and 'xy'" % label)
        times_changed("open %s" % label, before, st, m=True, c=True)
        os.unlink(f)

    f = J(d, "big")
    writef(f, data(3 * MiB + 123, 2))
    fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    st = os.stat(f)
    eq((0, 0), (st.st_size, st.st_blocks), "size and blocks of a 3 MiB file after open O_TRUNC")
    eq(b"", readf(f), "content of a 3 MiB file after open O_TRUNC")
    writef(f, b"ab", flags=os.O_WRONLY)
    eq(b"ab", readf(f), "content after 'ab' into the truncated 3 MiB file")

    e = J(d, "empty")
    creat(e)
    age(e)
    before = os.stat(e)
    gap()
    open_close(e, os.O_WRONLY | os.O_TRUNC)
    times_changed("open O_TRUNC of an empty file", before, os.stat(e), m=True, c=True)

    s = J(d, "shell")
    writef(s, b"hello")
    age(s)
    before = os.stat(s)
    gap()
    r = subprocess.run(["sh", "-c", ': > "$1"', "sh", s], capture_output=True, text=True)
    check(r.returncode == 0, "the shell's ': > f'", r.stderr.strip())
    st = os.stat(s)
    eq(0, st.st_size, "size after the shell's ': > f'")
    times_changed("the shell's ': > f'", before, st, m=True, c=True)
    writef(s, b"hello", flags=os.O_WRONLY)
    r = subprocess.run(["sh", "-c", 'printf xy > "$1"', "sh", s], capture_output=True, text=True)
    check(r.returncode == 0, "the shell's 'printf xy > f'", r.stderr.strip())
    eq(b"xy", readf(s), "content after the shell's 'printf xy > f' over 'hello'")


@case
def o_trunc_while_open(d):
    """open O_TRUNC while other descriptors hold the file: they see the new content"""
    for holder_flags, label in ((os.O_RDONLY, "O_RDONLY"), (os.O_RDWR, "O_RDWR")):
        f = J(d, "f")
        writef(f, b"hello world")
        hold = os.open(f, holder_flags)
        try:
            eq(b"hello world", os.pread(hold, 100, 0), "read through the %s holder" % label)
            fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
            try:
                eq(0, os.fstat(hold).st_size,
                   "size in the %s holder's fstat after another open O_TRUNC" % label)
                os.write(fd, b"xy")
            finally:
                os.close(fd)
            eq(b"xy", os.pread(hold, 100, 0),
               "read through the %s holder after open O_TRUNC and 'xy'" % label)
            eq(2, os.fstat(hold).st_size, "size in the %s holder's fstat" % label)
        finally:
            os.close(hold)
        eq(b"xy", readf(f), "content after the holder closed (%s)" % label)
        os.unlink(f)


TRUNC_HOWS = ("truncate(2) down, up", "ftruncate(2) down, up", "open O_TRUNC, ftruncate up",
              "truncate down, pwrite beyond", "truncate down, fallocate up",
              "truncate(2) down, up while another descriptor holds it")


def trunc_variant(path, orig, down, up, how):
    """Apply one way of shrinking to down and growing to up; return the expected content."""
    writef(path, orig)
    if how == TRUNC_HOWS[0]:
        os.truncate(path, down)
        os.truncate(path, up)
        return orig[:down] + bytes(up - down)
    if how == TRUNC_HOWS[1]:
        fd = os.open(path, os.O_RDWR)
        try:
            os.ftruncate(fd, down)
            os.ftruncate(fd, up)
            want = orig[:down] + bytes(up - down)
            eq(want, read_fd(fd), "%s: read through the same descriptor" % how)
        finally:
            os.close(fd)
        return want
    if how == TRUNC_HOWS[2]:
        fd = os.open(path, os.O_RDWR | os.O_TRUNC)
        try:
            os.ftruncate(fd, up)
        finally:
            os.close(fd)
        return bytes(up)
    if how == TRUNC_HOWS[3]:
        os.truncate(path, down)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, b"TAIL", up - 4)
        finally:
            os.close(fd)
        return orig[:down] + bytes(up - 4 - down) + b"TAIL"
    if how == TRUNC_HOWS[4]:
        os.truncate(path, down)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, up)
        finally:
            os.close(fd)
        return orig[:down] + bytes(up - down)
    if how == TRUNC_HOWS[5]:
        hold = os.open(path, os.O_RDONLY)
        try:
            os.pread(hold, 4096, 0)
            os.truncate(path, down)
            os.truncate(path, up)
            want = orig[:down] + bytes(up - down)
            eq(want, read_fd(hold), "%s: read through the holder" % how)
        finally:
            os.close(hold)
        return want
    raise ValueError(how)


def truncate_down_up(d, orig, down, up, label):
    for i, how in enumerate(TRUNC_HOWS):
        f = J(d, "t%d" % i)
        try:
            want = trunc_variant(f, orig, down, up, how)
        except OSError as e:
            fail("%s, %s: %s failed: %s" % (label, how, ename(e.errno), e.strerror))
            continue
        eq(up, os.stat(f).st_size, "%s, %s: size" % (label, how))
        eq(want, readf(f), "%s, %s: content read after reopening" % (label, how))
        os.unlink(f)


@case
def truncate_small(d):
    """A closed 100-byte file shrunk to 10 and grown to 50 reads 10 bytes then 40 zeros, by
    every way of truncating"""
    truncate_down_up(d, data(100, 3), 10, 50, "100 -> 10 -> 50 bytes")


@case
def truncate_pages(d):
    """The same across page boundaries (1 MiB pages): 3 MiB+123 -> 1 MiB+5 -> 3 MiB, and a cut at
    exactly a page boundary"""
    orig = data(3 * MiB + 123, 4)
    truncate_down_up(d, orig, MiB + 5, 3 * MiB, "3 MiB+123 -> 1 MiB+5 -> 3 MiB")
    truncate_down_up(d, orig, MiB, 2 * MiB + 1, "3 MiB+123 -> 1 MiB -> 2 MiB+1")
    f = J(d, "zero")
    writef(f, orig)
    os.truncate(f, 0)
    eq((0, 0), (os.stat(f).st_size, os.stat(f).st_blocks), "size, blocks after truncate to 0")
    os.truncate(f, MiB + 1)
    eq(bytes(MiB + 1), readf(f), "content after truncate to 0 then up to 1 MiB+1")


@case
def nlink(d):
    """st_nlink: 1 for a file, 2 plus subdirectories for a directory, 0 for an unlinked file
    that is still open, whose data stays readable and writable until the last close"""
    f = J(d, "f")
    writef(f, b"x")
    eq(1, os.stat(f).st_nlink, "st_nlink of a file")
    sub = J(d, "sub")
    os.mkdir(sub)
    eq(2, os.stat(sub).st_nlink, "st_nlink of an empty directory")
    for i in range(3):
        os.mkdir(J(sub, "c%d" % i))
    writef(J(sub, "file"), b"f")
    eq(5, os.stat(sub).st_nlink, "st_nlink of a directory with 3 subdirectories and a file")
    os.rmdir(J(sub, "c0"))
    eq(4, os.stat(sub).st_nlink, "st_nlink after rmdir of one subdirectory")
    os.rename(J(sub, "c1"), J(d, "c1"))
    eq(3, os.stat(sub).st_nlink, "st_nlink after moving a subdirectory out")
    eq(4, os.stat(d).st_nlink, "st_nlink of the directory it moved into (sub and c1)")
    subdirs = [n for n in os.listdir(Ctx.pool) if os.path.isdir(J(Ctx.pool, n))]
    eq(2 + len(subdirs), os.stat(Ctx.pool).st_nlink, "st_nlink of the pool directory")

    content = data(3 * MiB + 123, 5)
    u = J(d, "unlinked")
    writef(u, content)
    fd = os.open(u, os.O_RDWR)
    try:
        ino = os.fstat(fd).st_ino
        os.unlink(u)
        st = os.fstat(fd)
        eq(0, st.st_nlink, "st_nlink in fstat of an unlinked open file")
        eq(len(content), st.st_size, "st_size in fstat of an unlinked open file")
        eq(ino, st.st_ino, "st_ino in fstat of an unlinked open file")
        expect_errno("ENOENT", "stat of the unlinked name", os.stat, u)
        check("unlinked" not in os.listdir(d), "readdir does not list the unlinked name")
        eq(content, read_fd(fd), "data read through the descriptor of an unlinked file")
        os.pwrite(fd, b"more", len(content))
        eq(content[-4:] + b"more", os.pread(fd, 8, len(content) - 4),
           "data written through the descriptor of an unlinked file")
        writef(u, b"new")
        check(os.stat(u).st_ino != ino, "a new file of the same name is another inode")
        eq(b"new", readf(u), "content of the new file of the same name")
        eq(content[:16], os.pread(fd, 16, 0), "the old descriptor still reads the old data")
    finally:
        os.close(fd)

    old = J(d, "old")
    writef(old, b"old data")
    writef(J(d, "newer"), b"newer")
    fd = os.open(old, os.O_RDONLY)
    try:
        os.rename(J(d, "newer"), old)
        eq(0, os.fstat(fd).st_nlink, "st_nlink in fstat of an open file replaced by rename")
        eq(b"old data", read_fd(fd), "data of an open file replaced by rename")
    finally:
        os.close(fd)
    eq(b"newer", readf(old), "content of the name after rename over it")


@case
def unsupported_types(d):
    """link(2), symlink(2) and mknod(2) of a FIFO, device or socket fail with EPERM (a pool holds
    regular files and directories only), and leave no name behind"""
    f = J(d, "f")
    writef(f, b"x")
    sub = J(d, "sub")
    os.mkdir(sub)
    expect_errno("EPERM", "link(2) of a file", os.link, f, J(d, "l"))
    expect_errno("EPERM", "link(2) of a directory", os.link, sub, J(d, "ld"))
    expect_errno("EPERM", "symlink(2)", os.symlink, "f", J(d, "s"))
    expect_errno("EPERM", "symlink(2) to a dangling target", os.symlink, "/nowhere", J(d, "s2"))
    expect_errno("EPERM", "mkfifo(3)", os.mkfifo, J(d, "fifo"))
    expect_errno("EPERM", "mknod(2) of a FIFO", os.mknod, J(d, "fifo2"), stat.S_IFIFO | 0o644)
    expect_errno("EPERM", "mknod(2) of a character device", os.mknod, J(d, "chr"),
                 stat.S_IFCHR | 0o644, os.makedev(1, 3))
    expect_errno("EPERM", "mknod(2) of a block device", os.mknod, J(d, "blk"),
                 stat.S_IFBLK | 0o644, os.makedev(7, 0))
    expect_errno("EPERM", "mknod(2) of a socket", os.mknod, J(d, "sock"), stat.S_IFSOCK | 0o644)

    def bind_unix(path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
        finally:
            s.close()
    expect_errno("EPERM", "bind(2) of a unix socket", bind_unix, J(d, "usock"))
    expect_ok("mknod(2) of a regular file", os.mknod, J(d, "reg"), stat.S_IFREG | 0o600)
    if os.path.exists(J(d, "reg")):
        eq(0o600, mode_of(J(d, "reg")), "mode of a regular file made with mknod")
        os.unlink(J(d, "reg"))
    eq(["f", "sub"], sorted(os.listdir(d)), "names after the refused calls")
    os.chmod(d, 0o777)
    expect_errno("EPERM", "nobody: link(2)", as_nobody, os.link, f, J(d, "nl"))
    expect_errno("EPERM", "nobody: symlink(2)", as_nobody, os.symlink, "f", J(d, "ns"))
    expect_errno("EPERM", "nobody: mkfifo(3)", as_nobody, os.mkfifo, J(d, "nfifo"))
    expect_errno("EPERM", "nobody: mknod(2) of a character device", as_nobody, os.mknod,
                 J(d, "nchr"), stat.S_IFCHR | 0o644, os.makedev(1, 3))
    expect_errno("EPERM", "nobody: bind(2) of a unix socket", as_nobody, bind_unix,
                 J(d, "nsock"))
    eq(["f", "sub"], sorted(os.listdir(d)), "names after nobody's refused calls")


@case
def readdir(d):
    """readdir(3) lists exactly what was created, once each, with d_type and d_ino; "." and
    ".." come too"""
    files = ["f%03d" % i for i in range(300)]
    dirs = ["d%d" % i for i in range(5)]
    for n in files:
        creat(J(d, n))
    for n in dirs:
        os.mkdir(J(d, n))
    ents = raw_readdir(d)
    names = [e[0].decode() for e in ents]
    eq(len(set(names)), len(names), "readdir returns each name once")
    eq(sorted(files + dirs + [".", ".."]), sorted(names), "names readdir returns")
    bad_type = [(e[0], e[1]) for e in ents if e[0] not in (b".", b"..") and
                e[1] != (DT_DIR if e[0].startswith(b"d") else DT_REG)]
    eq([], bad_type, "entries whose d_type is not DT_REG for files and DT_DIR for directories")
    bad_ino = [(e[0], e[2]) for e in ents if e[0] not in (b".", b"..") and
               e[2] != os.lstat(J(d, e[0].decode())).st_ino]
    eq([], bad_ino, "entries whose d_ino differs from st_ino")
    dot = [e for e in ents if e[0] == b"."]
    if dot:
        eq(DT_DIR, dot[0][1], "d_type of '.'")
    with os.scandir(d) as it:
        got = {e.name: e.is_dir(follow_symlinks=False) for e in it}
    eq({**{n: False for n in files}, **{n: True for n in dirs}}, got,
       "scandir names and types")
    for n in files[::2]:
        os.unlink(J(d, n))
    eq(sorted(files[1::2] + dirs), sorted(os.listdir(d)), "readdir after unlinking half")
    r = subprocess.run(["ls", "-l", d], capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("total")]
    eq(0, r.returncode, "ls -l exit status (%s)" % r.stderr.strip())
    eq(len(files[1::2]) + len(dirs), len(lines), "lines of ls -l")
    fields = {ln.split()[-1]: ln.split()[:5] for ln in lines if ln.split()}
    eq(["-rw-r--r--", "1", "root", "root", "0"], fields.get(files[1]),
       "ls -l mode, links, owner, group, size of a file")
    eq(["drwxr-xr-x", "2", "root", "root"], (fields.get("d0") or [])[:4],
       "ls -l mode, links, owner, group of a directory")
    empty = J(d, "d0")
    eq([".", ".."], sorted(e[0].decode() for e in raw_readdir(empty)),
       "readdir of an empty directory")
    eq(sorted(files[1::2] + dirs), sorted(expect_ok("nobody: readdir of a 0755 directory",
                                                      as_nobody, os.listdir, d) or []),
       "what nobody's readdir returns")


@case
def ctl_directory(d):
    """The .kvfs control directory lists stats and ctl: readdir, ls -a and ls -l (READDIRPLUS)"""
    ctl = J(Ctx.mnt, ".kvfs")
    check(stat.S_ISDIR(os.stat(ctl).st_mode), ".kvfs is a directory")
    eq(["ctl", "stats"], sorted(os.listdir(ctl)), "os.listdir of .kvfs")
    ents = expect_ok("readdir(3) of .kvfs", raw_readdir, ctl) or []
    eq({b".": DT_DIR, b"..": DT_DIR, b"ctl": DT_REG, b"stats": DT_REG},
       {e[0]: e[1] for e in ents}, "names and d_type readdir returns for .kvfs")
    r = subprocess.run(["ls", "-a", ctl], capture_output=True, text=True)
    eq(0, r.returncode, "ls -a .kvfs exit status (%s)" % r.stderr.strip())
    eq([".", "..", "ctl", "stats"], sorted(r.stdout.split()), "ls -a .kvfs")
    r = subprocess.run(["ls", "-l", ctl], capture_output=True, text=True)
    eq(0, r.returncode, "ls -l .kvfs exit status (%s)" % r.stderr.strip())
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("total")]
    eq(["ctl", "stats"], sorted(ln.split()[-1] for ln in lines if ln.split()), "names ls -l shows")
    for ln in lines:
        check(ln.startswith("-"), "ls -l shows %s as a regular file" % ln.split()[-1], ln)
        if ln.endswith(" stats"):
            check("w" not in ln.split()[0], "ls -l shows stats read-only", ln)
    check(os.stat(J(ctl, "stats")).st_size >= 0 and len(readf(J(ctl, "stats"))) > 0,
          "stats reads as a non-empty document")
    eq(["ctl", "stats"], sorted(expect_ok("nobody: readdir of .kvfs", as_nobody, os.listdir,
                                          ctl) or []), "what nobody's readdir of .kvfs returns")
    check(".kvfs" not in os.listdir(Ctx.mnt), "the root's readdir hides .kvfs")


@case
def stat_fields(d):
    """stat(2): size, blocks, blksize, type, owner, device and inode numbers"""
    e = J(d, "empty")
    creat(e)
    try:
        page = int(os.getxattr(e, "user.kvfs.page_size"))  # the pool's allocation unit
    except OSError:
        page = MiB
    st = os.stat(e)
    eq((0, 0), (st.st_size, st.st_blocks), "size and blocks of an empty file")
    check(stat.S_ISREG(st.st_mode), "st_mode of a file says regular file")
    check(st.st_blksize > 0, "st_blksize is positive", st.st_blksize)
    sizes = (1, 4095, 4096, MiB - 1, MiB, MiB + 1, 3 * MiB + 123)
    inos = {os.stat(d).st_ino, st.st_ino}
    for n in sizes:
        f = J(d, "s%d" % n)
        writef(f, data(n, n))
        st = os.stat(f)
        eq(n, st.st_size, "st_size of a %d-byte file" % n)
        check(n <= st.st_blocks * 512 <= -(-n // page) * page,
              "st_blocks of a %d-byte file covers it and at most whole pages" % n,
              "%d blocks" % st.st_blocks)
        eq(os.stat(d).st_dev, st.st_dev, "st_dev of a file and its directory")
        inos.add(st.st_ino)
    eq(len(sizes) + 2, len(inos), "distinct inode numbers")
    sp = J(d, "sparse")
    fd = os.open(sp, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 1 << 40)
        st = os.fstat(fd)
        eq((1 << 40, 0), (st.st_size, st.st_blocks), "size and blocks of a 1 TiB sparse file")
        eq(bytes(4096), os.pread(fd, 4096, 1 << 39), "a hole reads as zeros")
        os.pwrite(fd, b"z", 1 << 39)
        os.fsync(fd)
        st = os.fstat(fd)
        check(0 < st.st_blocks * 512 <= page, "st_blocks after one byte in a 1 TiB file",
              st.st_blocks)
        eq(b"\0z\0", os.pread(fd, 3, (1 << 39) - 1), "the byte written in the sparse file")
        eq(st.st_ino, os.stat(sp).st_ino, "st_ino in fstat and stat")
    finally:
        os.close(fd)
    g = J(d, "grow")
    fd = os.open(g, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"12345")
        eq(5, os.stat(g).st_size, "st_size by path while the writer still holds the file")
    finally:
        os.close(fd)
    sub = J(d, "sub")
    os.mkdir(sub)
    check(stat.S_ISDIR(os.stat(sub).st_mode), "st_mode of a directory says directory")
    os.chmod(d, 0o777)
    nb = J(d, "nb")
    as_nobody(writef, nb, b"1234567")
    st = os.stat(nb)
    eq((NOBODY, NOBODY, 7), (st.st_uid, st.st_gid, st.st_size), "uid, gid, size of nobody's file")
    eq(st.st_size, expect_ok("nobody: stat", as_nobody, lambda: os.stat(nb).st_size),
       "st_size nobody sees")


@case
def statfs(d):
    """statvfs(3): f_bsize 4096, sane totals, f_namemax 255, anywhere in the mount"""
    for p in (Ctx.mnt, Ctx.pool, d, J(Ctx.mnt, ".kvfs"), J(Ctx.mnt, ".kvfs", "stats")):
        s = expect_ok("statvfs of %s" % p, os.statvfs, p)
        if not s:
            continue
        eq(4096, s.f_bsize, "f_bsize of %s" % p)
        check(s.f_frsize > 0 and s.f_blocks > 0, "f_frsize and f_blocks of %s are positive" % p,
              (s.f_frsize, s.f_blocks))
        check(s.f_bavail <= s.f_bfree <= s.f_blocks, "f_bavail <= f_bfree <= f_blocks at %s" % p,
              (s.f_bavail, s.f_bfree, s.f_blocks))
        check(s.f_ffree <= s.f_files, "f_ffree <= f_files at %s" % p, (s.f_ffree, s.f_files))
        eq(255, s.f_namemax, "f_namemax of %s" % p)
    before = os.statvfs(d)
    f = J(d, "f")
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data(8 * MiB, 6))
        os.fsync(fd)
    finally:
        os.close(fd)
    after = os.statvfs(d)
    check(before.f_bfree - after.f_bfree >= 8 * MiB // after.f_frsize,
          "f_bfree falls by at least 8 MiB after writing 8 MiB",
          "%d -> %d blocks of %d" % (before.f_bfree, after.f_bfree, after.f_frsize))
    expect_ok("nobody: statvfs", as_nobody, os.statvfs, d)
    os.unlink(f)


USER_KVFS = {"user.kvfs.pool", "user.kvfs.page_size", "user.kvfs.pages", "user.kvfs.nodes",
             "user.kvfs.tier", "user.kvfs.version"}


@case
def xattr_user(d):
    """xattr(7) user attributes: set, get, list, replace, remove; ENODATA, EEXIST, ERANGE"""
    f = J(d, "f")
    writef(f, b"x")
    eq(set(), set(os.listxattr(f)) - USER_KVFS, "stored attributes of a new file")
    expect_ok("setxattr user.a", os.setxattr, f, "user.a", b"1")
    eq(b"1", os.getxattr(f, "user.a"), "getxattr user.a")
    check("user.a" in os.listxattr(f), "listxattr lists user.a", os.listxattr(f))
    expect_errno("EEXIST", "setxattr XATTR_CREATE of an existing name", os.setxattr, f,
                 "user.a", b"2", os.XATTR_CREATE)
    expect_errno("ENODATA", "setxattr XATTR_REPLACE of a missing name", os.setxattr, f,
                 "user.b", b"2", os.XATTR_REPLACE)
    expect_ok("setxattr XATTR_REPLACE", os.setxattr, f, "user.a", b"22", os.XATTR_REPLACE)
    eq(b"22", os.getxattr(f, "user.a"), "value after XATTR_REPLACE")
    expect_ok("setxattr XATTR_CREATE of a new name", os.setxattr, f, "user.c", b"c",
              os.XATTR_CREATE)
    binary = bytes(range(256)) * 4
    expect_ok("setxattr of a 1 KiB binary value with NULs", os.setxattr, f, "user.bin", binary)
    eq(binary, os.getxattr(f, "user.bin"), "the binary value")
    expect_ok("setxattr of an empty value", os.setxattr, f, "user.empty", b"")
    eq(b"", os.getxattr(f, "user.empty"), "the empty value")
    eq({"user.a", "user.c", "user.bin", "user.empty"}, set(os.listxattr(f)) - USER_KVFS,
       "listxattr of the stored attributes")
    raw = b"user.\xfe\xff"  # attribute names are bytes too
    if expect_ok("setxattr of a name that is not UTF-8", os.setxattr, f, raw, b"raw"):
        eq(b"raw", expect_ok("getxattr of a name that is not UTF-8", os.getxattr, f, raw),
           "value of the name that is not UTF-8")
        check(os.fsdecode(raw) in os.listxattr(f), "listxattr lists the name that is not UTF-8")
        os.removexattr(f, raw)
    expect_errno("ENODATA", "getxattr of a missing name", os.getxattr, f, "user.missing")
    expect_errno("ENODATA", "removexattr of a missing name", os.removexattr, f, "user.missing")
    expect_ok("removexattr user.c", os.removexattr, f, "user.c")
    expect_errno("ENODATA", "getxattr after removexattr", os.getxattr, f, "user.c")
    check("user.c" not in os.listxattr(f), "listxattr after removexattr")

    eq(2, expect_ok("getxattr size query", getxattr_sized, f, "user.a", 0), "length getxattr "
       "reports for a 2-byte value")
    expect_errno("ERANGE", "getxattr into a buffer one byte too small", getxattr_sized, f,
                 "user.bin", len(binary) - 1)
    eq(binary, expect_ok("getxattr into an exact buffer", getxattr_sized, f, "user.bin",
                         len(binary)), "value read into an exact buffer")
    total = expect_ok("listxattr size query", listxattr_sized, f, 0)
    if total:
        expect_errno("ERANGE", "listxattr into a buffer one byte too small", listxattr_sized, f,
                     total - 1)
        lst = expect_ok("listxattr into an exact buffer", listxattr_sized, f, total)
        if lst:
            eq(set(os.listxattr(f)), {n.decode() for n in lst.split(b"\0") if n},
               "names listxattr returns into an exact buffer")

    long_name = "user." + "n" * 250
    expect_ok("setxattr of a 255-byte name", os.setxattr, f, long_name, b"v")
    eq(b"v", os.getxattr(f, long_name), "value of the 255-byte name")
    expect_errno("ERANGE", "setxattr of a 256-byte name", os.setxattr, f, long_name + "x", b"v")
    expect_errno("E2BIG", "setxattr of a value over 64 KiB", os.setxattr, f, "user.huge",
                 bytes(65537))
    expect_errno("EOPNOTSUPP", "setxattr of trusted.x (only user.* is stored)", os.setxattr, f,
                 "trusted.x", b"1")
    expect_errno("EOPNOTSUPP", "setxattr of an unknown namespace", os.setxattr, f, "bogus.x",
                 b"1")
    expect_errno("ENODATA", "getxattr of trusted.x", os.getxattr, f, "trusted.x")

    fd = os.open(f, os.O_RDONLY)
    try:
        expect_ok("fsetxattr", os.setxattr, fd, "user.fd", b"fd")
        eq(b"fd", os.getxattr(fd, "user.fd"), "fgetxattr")
    finally:
        os.close(fd)
    sub = J(d, "sub")
    os.mkdir(sub)
    expect_ok("setxattr on a directory", os.setxattr, sub, "user.dir", b"d")
    eq(b"d", os.getxattr(sub, "user.dir"), "getxattr on a directory")
    os.rename(f, J(d, "g"))
    eq(b"22", os.getxattr(J(d, "g"), "user.a"), "attribute kept by rename")
    os.unlink(J(d, "g"))
    writef(f, b"new")
    eq(set(), set(os.listxattr(f)) - USER_KVFS, "a new file of an unlinked name has no attributes")


@case
def xattr_permissions(d):
    """xattr(7): read permission to get user attributes, write permission to change them"""
    r = J(d, "r644")
    writef(r, b"r")
    os.setxattr(r, "user.a", b"1")
    w = J(d, "w666")
    writef(w, b"w")
    os.chmod(w, 0o666)
    p = J(d, "p600")
    writef(p, b"p")
    os.chmod(p, 0o600)
    os.setxattr(p, "user.a", b"1")
    eq(b"1", expect_ok("nobody: getxattr of root's 0644 file", as_nobody, os.getxattr, r,
                       "user.a"), "value nobody reads")
    expect_errno("EACCES", "nobody: setxattr of root's 0644 file", as_nobody, os.setxattr, r,
                 "user.b", b"1")
    expect_errno("EACCES", "nobody: removexattr of root's 0644 file", as_nobody, os.removexattr,
                 r, "user.a")
    expect_errno("EACCES", "nobody: getxattr of root's 0600 file", as_nobody, os.getxattr, p,
                 "user.a")
    expect_ok("nobody: setxattr of root's 0666 file", as_nobody, os.setxattr, w, "user.nb",
              b"nb")
    eq(b"nb", os.getxattr(w, "user.nb"), "value nobody set")
    expect_ok("nobody: removexattr of root's 0666 file", as_nobody, os.removexattr, w, "user.nb")
    eq(b"1", os.getxattr(r, "user.a"), "root's attribute after nobody's refused remove")


@case
def xattr_bound(d):
    """Attributes are bounded: 10,000 user attributes of 100 bytes on one file end with ENOSPC
    (or E2BIG) and listxattr still works afterwards"""
    f = J(d, "f")
    writef(f, b"x")
    r = errno_of(os.setxattr, f, "user.big", bytes(65536))
    check(r in ("OK", "E2BIG", "ENOSPC"), "setxattr of a 64 KiB value succeeds or says "
          "E2BIG/ENOSPC", r)
    if r == "OK":
        os.removexattr(f, "user.big")
    value = b"v" * 100
    n, stop = 0, None
    t = time.monotonic()
    for n in range(10000):
        try:
            os.setxattr(f, "user.bound.%05d" % n, value)
        except OSError as e:
            stop = e.errno
            break
    else:
        n = 10000
    print("    %d attributes set in %.1f s, then %s" % (
        n, time.monotonic() - t, ename(stop) if stop else "no error"), flush=True)
    check(stop in (errno.ENOSPC, errno.E2BIG), "setting 10,000 attributes of 100 bytes ends "
          "with ENOSPC or E2BIG", "%d set, then %s" % (n, ename(stop) if stop else "no error"))
    names = expect_ok("listxattr after the loop", os.listxattr, f)
    if names is not None:
        eq(n, len([x for x in names if x.startswith("user.bound.")]),
           "attributes listxattr returns after the loop")
    if n:
        eq(value, expect_ok("getxattr of the last one set", os.getxattr, f,
                            "user.bound.%05d" % (n - 1)), "the last value set")
    expect_ok("unlink of the file with many attributes", os.unlink, f)


@case
def io_basic(d):
    """read(2), write(2), pread, pwrite, O_APPEND, lseek, holes, fsync, O_DIRECT"""
    f = J(d, "f")
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        eq(5, os.write(fd, b"hello"), "write(2) count")
        eq(5, os.lseek(fd, 0, os.SEEK_CUR), "offset after write(2)")
        os.lseek(fd, 0, os.SEEK_SET)
        eq(b"hello", os.read(fd, 100), "read(2) of what was written")
        eq(b"", os.read(fd, 100), "read(2) at the end of file")
        eq(2, os.pwrite(fd, b"XY", 1), "pwrite(2) count")
        eq(b"hXYlo", os.pread(fd, 100, 0), "content after pwrite(2)")
        eq(b"Ylo", os.pread(fd, 3, 2), "pread(2) in the middle")
        eq(5, os.lseek(fd, 0, os.SEEK_END), "lseek SEEK_END")
        os.pwrite(fd, b"Z", 10)
        eq(b"hXYlo\0\0\0\0\0Z", os.pread(fd, 100, 0), "a hole before a write past the end")
        eq(11, os.fstat(fd).st_size, "size after a write past the end")
        expect_ok("fsync", os.fsync, fd)
        expect_ok("fdatasync", os.fdatasync, fd)
    finally:
        os.close(fd)
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"A")
        os.pwrite(fd, b"B", 0)  # Linux: pwrite on an O_APPEND descriptor appends (pwrite(2) BUGS)
    finally:
        os.close(fd)
    eq(b"hXYlo\0\0\0\0\0ZAB", readf(f), "O_APPEND writes at the end")

    big = data(3 * MiB + 123, 7)
    g = J(d, "g")
    writef(g, big)
    eq(big, readf(g), "3 MiB+123 bytes read back")
    fd = os.open(g, os.O_RDWR)
    try:
        os.pwrite(fd, b"0123456789", MiB - 5)
        eq(b"0123456789", os.pread(fd, 10, MiB - 5), "pwrite across a page boundary read back")
    finally:
        os.close(fd)
    eq(big[:MiB - 5] + b"0123456789" + big[MiB + 5:], readf(g),
       "content after a write across a page boundary")

    import mmap
    buf = mmap.mmap(-1, 8192)
    buf.write(data(8192, 8))
    h = J(d, "direct")
    try:
        fd = os.open(h, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError as e:
        fail("open O_DIRECT: %s" % ename(e.errno))
    else:
        try:
            eq(8192, os.pwrite(fd, buf, 0), "O_DIRECT pwrite count")
            rb = mmap.mmap(-1, 8192)
            eq(8192, os.preadv(fd, [rb], 0), "O_DIRECT preadv count")
            eq(bytes(buf), bytes(rb), "O_DIRECT read back")
        finally:
            os.close(fd)
        eq(bytes(buf), readf(h), "O_DIRECT data read through the page cache")

    os.chmod(d, 0o777)

    def nb_io(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"abc")
            os.pwrite(fd, b"Z", 5)
            os.fsync(fd)
            os.posix_fallocate(fd, 0, 8)
            got = os.pread(fd, 10, 0)
            os.ftruncate(fd, 2)
            return got + b"|" + os.pread(fd, 10, 0)
        finally:
            os.close(fd)
    eq(b"abc\0\0Z\0\0|ab", expect_ok("nobody: write, pwrite, fsync, fallocate, pread, "
                                     "ftruncate", as_nobody, nb_io, J(d, "nb")),
       "what nobody reads back")
    expect_ok("nobody: unlink of its file", as_nobody, os.unlink, J(d, "nb"))


@case
def coherence(d):
    """Within one node, a read through any descriptor sees every completed write and truncate"""
    f = J(d, "f")
    writef(f, b"old content")
    r = os.open(f, os.O_RDONLY)
    w = os.open(f, os.O_WRONLY)
    try:
        eq(b"old content", os.pread(r, 100, 0), "first read")
        os.pwrite(w, b"NEW", 0)
        eq(b"NEW content", os.pread(r, 100, 0), "read after a write through another descriptor")
        os.ftruncate(w, 3)
        eq(b"NEW", os.pread(r, 100, 0), "read after ftruncate through another descriptor")
        os.pwrite(w, b"+more", 3)
        eq(b"NEW+more", os.pread(r, 100, 0), "read after an extending write elsewhere")
        eq(8, os.fstat(r).st_size, "fstat size of the reader")
        os.truncate(f, 1)
        eq(b"N", os.pread(r, 100, 0), "read after truncate by path")
    finally:
        os.close(r)
        os.close(w)
    r2 = os.open(f, os.O_RDONLY)
    try:
        os.pread(r2, 100, 0)
        writef(f, b"replaced", flags=os.O_WRONLY)
        eq(b"replaced", os.pread(r2, 100, 0), "cached reader after a writer opened and closed")
    finally:
        os.close(r2)


@case
def fallocate_modes(d):
    """fallocate(2): mode 0 extends with zeros, KEEP_SIZE keeps the size, other modes
    EOPNOTSUPP"""
    f = J(d, "f")
    writef(f, b"0123456789")
    fd = os.open(f, os.O_RDWR)
    try:
        expect_ok("posix_fallocate to 3 MiB", os.posix_fallocate, fd, 0, 3 * MiB)
        st = os.fstat(fd)
        eq(3 * MiB, st.st_size, "size after fallocate mode 0")
        check(st.st_blocks * 512 >= 3 * MiB, "st_blocks after fallocate covers the range",
              st.st_blocks)
        eq(b"0123456789" + bytes(3 * MiB - 10), read_fd(fd), "content after fallocate mode 0")
        expect_ok("fallocate KEEP_SIZE beyond the end", fallocate, fd, FALLOC_FL_KEEP_SIZE,
                  0, 5 * MiB)
        eq(3 * MiB, os.fstat(fd).st_size, "size after fallocate KEEP_SIZE")
        expect_ok("posix_fallocate inside the file", os.posix_fallocate, fd, 100, 1000)
        eq(3 * MiB, os.fstat(fd).st_size, "size after fallocate inside the file")
        expect_errno("EOPNOTSUPP", "fallocate PUNCH_HOLE|KEEP_SIZE", fallocate, fd,
                     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)
        expect_errno("EINVAL", "fallocate with length 0", fallocate, fd, 0, 0, 0)
    finally:
        os.close(fd)
    eq(b"0123456789", readf(f)[:10], "data kept by fallocate")


@case
def setgid_directory(d):
    """inode(7): in a set-group-ID directory new files take the directory's group and new
    directories also get the set-group-ID bit"""
    sg = J(d, "sg")
    os.mkdir(sg)
    os.chown(sg, 0, NOBODY)
    os.chmod(sg, 0o2777)
    f = J(sg, "rootfile")
    creat(f)
    eq(NOBODY, os.stat(f).st_gid, "group of root's file in a setgid directory of group 65534")
    sub = J(sg, "rootdir")
    os.mkdir(sub)
    st = os.stat(sub)
    eq(NOBODY, st.st_gid, "group of root's directory in a setgid directory")
    check(st.st_mode & stat.S_ISGID, "a directory made in a setgid directory is setgid",
          oct(st.st_mode))
    sg0 = J(d, "sg0")
    os.mkdir(sg0)
    os.chmod(sg0, 0o2777)
    nf = J(sg0, "nbfile")
    if expect_ok("nobody: create in a setgid directory of group 0", as_nobody, creat, nf):
        eq((NOBODY, 0), owner_of(nf), "owner of nobody's file in a setgid directory of group 0")


# ----------------------------------------------------------------------------------------------


class CaseTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise CaseTimeout("case did not finish within %d s" % CASE_TIMEOUT)


def main(argv):
    args = [a for a in argv[1:] if a != "-v"]
    Run.verbose = "-v" in argv[1:]
    if not args:
        sys.stderr.write(__doc__)
        return 2
    Ctx.mnt = os.path.abspath(args[0])
    Ctx.pool = J(Ctx.mnt, "kv")
    Ctx.other_pool = J(Ctx.mnt, "mamba")
    Ctx.base = J(Ctx.pool, "posix")
    want = set(args[1:])
    unknown = want - {c.__name__ for c in CASES}
    if unknown:
        sys.stderr.write("unknown case(s): %s\n" % " ".join(sorted(unknown)))
        return 2
    if os.geteuid() != 0:
        sys.stderr.write("posix.py must run as root\n")
        return 2
    os.umask(0o022)
    try:
        as_nobody(os.stat, os.path.dirname(Ctx.mnt))
    except OSError as e:
        sys.stderr.write("user %d cannot reach %s (%s): make its parents searchable\n" % (
            NOBODY, os.path.dirname(Ctx.mnt), e.strerror))
        return 2
    if os.path.exists(Ctx.base):
        subprocess.run(["rm", "-rf", Ctx.base], check=True)
    os.mkdir(Ctx.base)
    os.chmod(Ctx.base, 0o755)
    signal.signal(signal.SIGALRM, on_alarm)

    ran = 0
    failed_cases = []
    t_all = time.monotonic()
    for fn in CASES:
        if want and fn.__name__ not in want:
            continue
        Run.case, Run.checks = fn.__name__, 0
        nfail = len(Run.failures)
        doc = " ".join(fn.__doc__.split())
        print("== %s: %s" % (fn.__name__, doc), flush=True)
        t = time.monotonic()
        signal.alarm(CASE_TIMEOUT)
        try:
            fn(case_dir(fn.__name__))
        except Exception as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = "posix.py:%d" % tb[-1].lineno if tb else "?"
            if isinstance(e, OSError) and e.errno is not None:
                fail("unexpected %s (%s) at %s; the rest of the case was skipped" % (
                    ename(e.errno), e.strerror, where))
            else:
                fail("unexpected %s: %s at %s; the rest of the case was skipped" % (
                    type(e).__name__, e, where))
        finally:
            signal.alarm(0)
        ran += 1
        n = len(Run.failures) - nfail
        if n:
            failed_cases.append(fn.__name__)
        print("   %s %s: %d checks, %d failed (%.1f s)" % (
            "FAIL" if n else "ok", fn.__name__, Run.checks, n, time.monotonic() - t), flush=True)

    print("\n%d cases in %.1f s, %d failed, %d failed checks" % (
        ran, time.monotonic() - t_all, len(failed_cases), len(Run.failures)))
    for c, msg in Run.failures:
        print("FAIL [%s] %s" % (c, msg))
    sys.stdout.flush()
    return 1 if Run.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
