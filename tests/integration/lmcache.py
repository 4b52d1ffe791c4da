#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""lmcache.py - LMCache local_disk's I/O pattern against a directory.

LMCache's LocalDiskBackend names a chunk `<model>@<world size>@<worker>@<chunk hash>@<dtype>.pt`
(with / in the model name replaced by -), writes it with os.open(O_CREAT|O_WRONLY|O_DIRECT) and
ONE os.write of a block-aligned buffer when the size is a multiple of the disk block size, and
reads it back buffered (open(..., "rb").readinto) or with O_DIRECT.

Phases (all must pass):
  1. --threads threads write --count chunks with O_DIRECT from page-aligned (mmap) buffers
  2. buffered reads back (one readinto of the size), stat sizes, compare
  3. O_DIRECT reads into aligned buffers, compare
  4. coherence: a buffered read fills the page cache, an O_DIRECT pwrite replaces a block in
     the middle, a buffered read must see the new block; a buffered write must be seen by an
     O_DIRECT read; an O_DIRECT rewrite of a whole chunk (no O_TRUNC) replaces it
Prints a JSON summary; exits 1 on any mismatch, with the first errors.
"""
import argparse
import hashlib
import json
import mmap
import os
import random
import sys
import threading
import time

BS = 4096


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def chunk_name(i):
    h = random.Random(i).getrandbits(64) - (1 << 63)  # a signed 64-bit hash, as LMCache prints
    return "Qwen-Qwen3-8B@1@0@%d@bfloat16.pt" % h


def aligned(size):
    return mmap.mmap(-1, max(size, BS))  # page aligned, as O_DIRECT wants


def fill(buf, size, seed):
    buf[:size] = random.Random(seed).randbytes(size)


def odirect_write(path, buf, size, flags=os.O_CREAT | os.O_WRONLY):
    fd = os.open(path, flags | os.O_DIRECT, 0o644)
    try:
        n = os.write(fd, memoryview(buf)[:size])
    finally:
        os.close(fd)
    if n != size:
        raise OSError("O_DIRECT write of %d bytes returned %d" % (size, n))


def odirect_read(path, size):
    buf = aligned(size)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    with os.fdopen(fd, "rb", buffering=0) as f:
        n = f.readinto(memoryview(buf)[:size])
    return n, bytes(buf[:size])


def buffered_read(path, size):
    b = bytearray(size)
    with open(path, "rb") as f:
        n = f.readinto(b)
        extra = f.read(1)
    return n, bytes(b), extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--sizes", default="4K,256K,1060K,4M")
    a = ap.parse_args()
    sizes = [size_arg(s) for s in a.sizes.split(",")]
    for s in sizes:
        if s % BS:
            sys.exit("size %d is not a multiple of %d" % (s, BS))
    os.makedirs(a.dir, exist_ok=True)
    errors = []
    lock = threading.Lock()
    sha = {}

    def err(msg):
        with lock:
            errors.append(msg)

    # 1. O_DIRECT writes from several threads
    def writer(t):
        buf = aligned(max(sizes))
        for i in range(t, a.count, a.threads):
            size = sizes[i % len(sizes)]
            fill(buf, size, i)
            path = os.path.join(a.dir, chunk_name(i))
            try:
                odirect_write(path, buf, size)
            except OSError as e:
                err("write %s: %s" % (chunk_name(i), e))
                continue
            with lock:
                sha[i] = hashlib.sha256(buf[:size]).hexdigest()

    t0 = time.monotonic()
    ts = [threading.Thread(target=writer, args=(t,)) for t in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t1 = time.monotonic()

    # 2. buffered reads, 3. O_DIRECT reads
    for i in sorted(sha):
        size = sizes[i % len(sizes)]
        path = os.path.join(a.dir, chunk_name(i))
        try:
            st = os.stat(path)
            if st.st_size != size:
                err("%s: size %d, expected %d" % (chunk_name(i), st.st_size, size))
            n, data, extra = buffered_read(path, size)
            if n != size or extra:
                err("%s: buffered read returned %d (+%d past the end) of %d"
                    % (chunk_name(i), n, len(extra), size))
            elif hashlib.sha256(data).hexdigest() != sha[i]:
                err("%s: buffered read returned other content" % chunk_name(i))
            n, data = odirect_read(path, size)
            if n != size:
                err("%s: O_DIRECT read returned %d of %d" % (chunk_name(i), n, size))
            elif hashlib.sha256(data).hexdigest() != sha[i]:
                err("%s: O_DIRECT read returned other content" % chunk_name(i))
        except OSError as e:
            err("%s: %s" % (chunk_name(i), e))
    t2 = time.monotonic()

    # 4. coherence between the page cache and O_DIRECT
    try:
        size = 1 << 20
        path = os.path.join(a.dir, "coherence@1@0@1@bfloat16.pt")
        buf = aligned(size)
        fill(buf, size, 77)
        odirect_write(path, buf, size)
        n, data, _ = buffered_read(path, size)  # now in the page cache
        blk = aligned(BS)
        fill(blk, BS, 78)
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        try:
            n = os.pwrite(fd, memoryview(blk)[:BS], 37 * BS)
        finally:
            os.close(fd)
        if n != BS:
            err("coherence: O_DIRECT pwrite returned %d" % n)
        want = bytearray(buf[:size])
        want[37 * BS:38 * BS] = blk[:BS]
        n, data, _ = buffered_read(path, size)
        if data != bytes(want):
            err("coherence: a buffered read after an O_DIRECT pwrite returned stale data")
        # buffered write, O_DIRECT read
        b2 = random.Random(79).randbytes(size)
        with open(path, "r+b") as f:
            f.write(b2)
        n, data = odirect_read(path, size)
        if data != b2:
            err("coherence: an O_DIRECT read after a buffered write returned stale data")
        # O_DIRECT rewrite of the whole chunk without O_TRUNC
        fill(buf, size, 80)
        odirect_write(path, buf, size, os.O_WRONLY)
        n, data, _ = buffered_read(path, size)
        if data != bytes(buf[:size]):
            err("coherence: a buffered read after an O_DIRECT rewrite returned stale data")
    except OSError as e:
        err("coherence: %s" % e)

    print(json.dumps({"chunks": len(sha), "count": a.count, "threads": a.threads,
                      "write_s": round(t1 - t0, 3), "verify_s": round(t2 - t1, 3),
                      "errors": len(errors)}))
    for e in errors[:20]:
        print("ERROR: " + e)
    return 1 if errors or len(sha) != a.count else 0


if __name__ == "__main__":
    sys.exit(main())
