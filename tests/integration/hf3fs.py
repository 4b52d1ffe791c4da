#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""hf3fs.py - SGLang HiCacheHF3FS's POSIX client pattern against one big sparse file.

HiCacheHF3FS keeps one file per rank, ftruncate'd to its full size up front (here 1 TiB),
and moves whole KV pages with pwrite/pread at page_index * page_size from a thread pool that
shares one file descriptor. The metadata server hands out page indices, so they are scattered.

Checks, in order:
  1. ftruncate to --file-size costs nothing: st_size is the size, st_blocks is 0
  2. --threads threads pwrite --pages distinct random pages (plus one 4-page run each),
     every pwrite returns the full length
  3. every thread preads every written page and compares; unwritten pages and the last page
     of the file read as zeros; a pread at the end returns 0 bytes
  4. after fsync: st_size unchanged, st_blocks * 512 == pages written * page size
  5. close, reopen: same content (close-to-open); overwrite half the pages from threads,
     reopen read-only, verify the final content and the block count again
Prints a JSON summary; exits 1 on the first failed check (with what was expected).
"""
import argparse
import hashlib
import json
import os
import random
import sys
import threading
import time


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = s.strip().upper()
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


class Failed(Exception):
    pass


def page_data(idx, ver, psz):
    seed = hashlib.sha256(b"%d/%d" % (idx, ver)).digest()
    return (seed * (psz // 32 + 1))[:psz]


def run_threads(n, fn):
    errs = []

    def wrap(t):
        try:
            fn(t)
        except (OSError, Failed) as e:
            errs.append("thread %d: %s" % (t, e))

    ts = [threading.Thread(target=wrap, args=(t,)) for t in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise Failed("; ".join(errs[:5]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--file-size", type=size_arg, default=1 << 40)
    ap.add_argument("--page-size", type=size_arg, required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--pages", type=int, default=32, help="single pages per thread")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    psz, fsz = a.page_size, a.file_size
    npages_file = fsz // psz
    rng = random.Random(a.seed)
    t0 = time.monotonic()

    fd = os.open(a.file, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, fsz)
    st = os.fstat(fd)
    if st.st_size != fsz or st.st_blocks != 0:
        raise Failed("after ftruncate: size %d blocks %d, expected %d and 0"
                     % (st.st_size, st.st_blocks, fsz))

    # Distinct pages: per thread, --pages scattered pages and one run of 4 contiguous ones.
    # The last page of the file is left unwritten on purpose.
    chosen = set()
    plan = []
    for t in range(a.threads):
        singles = []
        while len(singles) < a.pages:
            p = rng.randrange(npages_file - 1)
            if p not in chosen:
                chosen.add(p)
                singles.append(p)
        while True:
            r = rng.randrange(npages_file - 5)
            if not any(r + k in chosen for k in range(4)):
                break
        chosen.update(range(r, r + 4))
        plan.append((singles, r))
    version = {p: 1 for p in chosen}

    def write_pages(t):
        singles, run = plan[t]
        for p in singles:
            n = os.pwrite(fd, page_data(p, 1, psz), p * psz)
            if n != psz:
                raise Failed("pwrite of page %d returned %d of %d" % (p, n, psz))
        buf = b"".join(page_data(run + k, 1, psz) for k in range(4))
        n = os.pwrite(fd, buf, run * psz)
        if n != 4 * psz:
            raise Failed("pwrite of pages %d..%d returned %d of %d" % (run, run + 3, n, 4 * psz))

    def verify_all(rfd, what):
        pages = sorted(version)

        def check(t):
            for p in pages[t::a.threads] + pages[(t + 1) % a.threads::a.threads]:
                b = os.pread(rfd, psz, p * psz)
                if len(b) != psz:
                    raise Failed("%s: pread of page %d returned %d of %d" % (what, p, len(b), psz))
                if b != page_data(p, version[p], psz):
                    kind = "zeros" if b == bytes(psz) else "other data"
                    raise Failed("%s: page %d (version %d) reads %s" % (what, p, version[p], kind))
            hrng = random.Random(t + 100)
            for _ in range(16):
                p = hrng.randrange(npages_file)
                if p in version:
                    continue
                b = os.pread(rfd, psz, p * psz)
                if b != bytes(psz):
                    raise Failed("%s: hole page %d does not read as %d zeros (got %d bytes)"
                                 % (what, p, psz, len(b)))

        run_threads(a.threads, check)
        b = os.pread(rfd, psz, fsz - psz)
        if b != bytes(psz):
            raise Failed("%s: the last page (a hole) does not read as zeros" % what)
        b = os.pread(rfd, 4096, fsz - 100)
        if b != bytes(100):
            raise Failed("%s: a pread across the end returned %d bytes, expected 100 zeros"
                         % (what, len(b)))
        if os.pread(rfd, 4096, fsz) != b"":
            raise Failed("%s: a pread at the end of the file returned data" % what)

    def check_stat(sfd, what):
        st = os.fstat(sfd)
        want_blocks = len(version) * psz // 512
        if st.st_size != fsz:
            raise Failed("%s: st_size %d, expected %d" % (what, st.st_size, fsz))
        if st.st_blocks != want_blocks:
            raise Failed("%s: st_blocks %d, expected %d (%d pages of %d bytes)"
                         % (what, st.st_blocks, want_blocks, len(version), psz))

    run_threads(a.threads, write_pages)
    t1 = time.monotonic()
    verify_all(fd, "first pass")
    os.fsync(fd)
    check_stat(fd, "after fsync")
    os.close(fd)

    fd = os.open(a.file, os.O_RDWR)
    verify_all(fd, "after reopen")
    pages = sorted(version)
    rewrite = pages[::2]

    def overwrite(t):
        for p in rewrite[t::a.threads]:
            n = os.pwrite(fd, page_data(p, 2, psz), p * psz)
            if n != psz:
                raise Failed("rewrite of page %d returned %d" % (p, n))

    run_threads(a.threads, overwrite)
    for p in rewrite:
        version[p] = 2
    verify_all(fd, "after overwrite")
    os.close(fd)

    fd = os.open(a.file, os.O_RDONLY)
    verify_all(fd, "read-only reopen")
    check_stat(fd, "read-only reopen")
    os.close(fd)
    st = os.stat(a.file)
    if st.st_size != fsz:
        raise Failed("stat by path: st_size %d, expected %d" % (st.st_size, fsz))
    print(json.dumps({"file_size": fsz, "page_size": psz, "pages_written": len(version),
                      "pages_rewritten": len(rewrite), "write_s": round(t1 - t0, 3),
                      "total_s": round(time.monotonic() - t0, 3),
                      "st_blocks": st.st_blocks}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        print("ERROR: %s" % e)
        sys.exit(1)
