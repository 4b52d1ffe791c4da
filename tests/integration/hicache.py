#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""hicache.py - SGLang HiCacheFile's publish pattern, racing writers against readers.

HiCacheFile stores each KV page as DIR/<sha256hex>_<model>_<rank>_<tp size>.bin. A writer
writes the whole page to NAME.tmp.<pid>.<tid>.<uuid> and renames it over NAME; a reader checks
existence with os.stat, opens NAME and reads the expected size with ONE readinto(), treating
anything else as a miss. So a reader must only ever see one writer's complete page: never a
short read, a wrong size, or a mix of two versions; and once a key is published (it is never
deleted here) it must never look absent, since rename over an existing name is atomic.

Modes:
  race    --procs P --threads T writer threads and --readers R reader processes on --keys K
          shared keys for --seconds S; then every published key is verified and no temporary
          file may remain.
  bench   one process publishes --count N files of --size bytes; prints files/s (used by
          scripts/bench.sh).
  exists  publish --count N keys, then os.stat N present and N absent keys; all answers must
          be right.

Content of a page: a 32-byte header (magic, writer id, sequence, size), then per 4 KiB block a
sha256 of (header, block index) repeated, so any tear, shift or mix shows up.
Prints one JSON summary line; exits 1 on any verification error.
"""
import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import struct
import sys
import threading
import time
import uuid

MAGIC = b"KVFSHC01"
HDR = struct.Struct("<8sQQQ")


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def key_name(i, model, rank, tp):
    return "%s_%s_%d_%d.bin" % (hashlib.sha256(b"hicache-key-%d" % i).hexdigest(), model, rank, tp)


def content(wid, seq, size):
    hdr = HDR.pack(MAGIC, wid, seq, size)
    nblk = (size + 4095) // 4096
    body = b"".join(hashlib.sha256(hdr + i.to_bytes(8, "little")).digest() * 128
                    for i in range(nblk))
    return (hdr + body[HDR.size:])[:size] if size >= HDR.size else hdr[:size]


def verify(buf, size):
    """Return None if buf is one writer's complete page of this size, else a description."""
    if size < HDR.size:
        return None
    magic, wid, seq, hsize = HDR.unpack_from(buf, 0)
    if magic != MAGIC or hsize != size:
        return "bad header (magic %r size %d): not a page or torn at the start" % (magic, hsize)
    want = content(wid, seq, size)
    if buf == want:
        return None
    mv = memoryview(buf)
    first = next(i for i in range(size) if mv[i] != want[i])
    last = max(i for i in range(size) if mv[i] != want[i])
    zeros = all(b == 0 for b in mv[first:last + 1])
    return ("content of writer %d seq %d differs in bytes [%d, %d]%s" %
            (wid, seq, first, last, " (zeros)" if zeros else ""))


def write_all(fd, data):
    mv = memoryview(data)
    done = 0
    while done < len(mv):
        n = os.write(fd, mv[done:])
        if n <= 0:
            raise OSError("write returned %d" % n)
        done += n


def publish(d, name, data):
    final = os.path.join(d, name)
    tmp = "%s.tmp.%d.%d.%s" % (final, os.getpid(), threading.get_native_id(), uuid.uuid4().hex)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, final)


def read_page(path, size, buf):
    """HiCacheFile.get: one readinto of the expected size. Returns (n, st_size)."""
    with open(path, "rb", buffering=0) as f:
        n = f.readinto(buf)
        return n, os.fstat(f.fileno()).st_size


# ----------------------------------------------------------------------------------------------
# race


def writer_proc(a, pidx, q):
    res = {"writes": 0, "errors": [], "published": set()}
    lock = threading.Lock()
    deadline = time.monotonic() + a.seconds

    def run(tidx):
        wid = pidx * 1000 + tidx + 1
        rng = random.Random(wid)
        seq = 0
        while time.monotonic() < deadline:
            k = rng.randrange(a.keys)
            seq += 1
            try:
                publish(a.dir, key_name(k, a.model, 0, 1), content(wid, seq, a.size))
            except OSError as e:
                with lock:
                    res["errors"].append("writer %d key %d: %s" % (wid, k, e))
                return
            with lock:
                res["writes"] += 1
                res["published"].add(k)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res["published"] = sorted(res["published"])
    q.put(res)


def reader_proc(a, ridx, q):
    res = {"reads": 0, "misses": 0, "vanished": 0, "errors": []}
    rng = random.Random(-1 - ridx)
    buf = bytearray(a.size)
    seen = set()  # keys this reader saw: published, never deleted, so they must stay visible
    deadline = time.monotonic() + a.seconds

    def vanished(k, what):
        res["vanished"] += 1
        if res["vanished"] <= 3:
            res["errors"].append("key %d: %s failed with ENOENT after the key was published "
                                 "(a rename over an existing name must be atomic)" % (k, what))

    while time.monotonic() < deadline and len(res["errors"]) < 10:
        k = rng.randrange(a.keys)
        path = os.path.join(a.dir, key_name(k, a.model, 0, 1))
        try:
            st = os.stat(path)  # HiCacheFile.exists
        except FileNotFoundError:
            if k in seen:
                vanished(k, "stat")
            else:
                res["misses"] += 1
            continue
        seen.add(k)
        if st.st_size != a.size:
            res["errors"].append("key %d: stat size %d, expected %d" % (k, st.st_size, a.size))
            continue
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            vanished(k, "open")
            continue
        except OSError as e:
            res["errors"].append("key %d: open after a successful stat: %s" % (k, e))
            continue
        try:
            with f:
                n = f.readinto(buf)
                fsize = os.fstat(f.fileno()).st_size
        except OSError as e:
            res["errors"].append("key %d: read: %s" % (k, e))
            continue
        if n != a.size:
            res["errors"].append("key %d: short read: one readinto returned %d of %d bytes"
                                 % (k, n, a.size))
            continue
        if fsize != a.size:
            res["errors"].append("key %d: fstat size %d, expected %d" % (k, fsize, a.size))
        why = verify(buf, a.size)
        if why:
            res["errors"].append("key %d: %s" % (k, why))
        res["reads"] += 1
    q.put(res)


def mode_race(a):
    os.makedirs(a.dir, exist_ok=True)
    q = mp.Queue()
    procs = [mp.Process(target=writer_proc, args=(a, p, q)) for p in range(a.procs)]
    procs += [mp.Process(target=reader_proc, args=(a, r, q)) for r in range(a.readers)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [q.get(timeout=a.seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    errors = []
    published = set()
    writes = reads = misses = gone = 0
    for r in results:
        errors += r["errors"]
        writes += r.get("writes", 0)
        reads += r.get("reads", 0)
        misses += r.get("misses", 0)
        gone += r.get("vanished", 0)
        published |= set(r.get("published", []))
    crashed = [p.exitcode for p in procs if p.exitcode != 0]
    if crashed:
        errors.append("worker processes exited with %s" % crashed)

    # After the race: each published key holds one writer's complete page, the others are
    # absent, and no temporary file is left behind.
    buf = bytearray(a.size)
    for k in range(a.keys):
        path = os.path.join(a.dir, key_name(k, a.model, 0, 1))
        if k not in published:
            if os.path.exists(path):
                errors.append("key %d exists but was never published" % k)
            continue
        try:
            n, fsize = read_page(path, a.size, buf)
        except OSError as e:
            errors.append("final: key %d: %s" % (k, e))
            continue
        if n != a.size or fsize != a.size:
            errors.append("final: key %d: read %d bytes, size %d, expected %d" %
                          (k, n, fsize, a.size))
            continue
        why = verify(buf, a.size)
        if why:
            errors.append("final: key %d: %s" % (k, why))
    names = os.listdir(a.dir)
    tmps = [n for n in names if ".tmp." in n]
    if tmps:
        errors.append("%d temporary files left, e.g. %s" % (len(tmps), tmps[0]))
    extra = set(names) - {key_name(k, a.model, 0, 1) for k in published} - set(tmps)
    if extra:
        errors.append("unexpected names in the directory: %s" % sorted(extra)[:5])
    out = {"mode": "race", "size": a.size, "keys": a.keys, "published": len(published),
           "writes": writes, "reads_verified": reads, "misses": misses, "vanished": gone,
           "seconds": round(elapsed, 3), "errors": len(errors)}
    print(json.dumps(out))
    for e in errors[:20]:
        print("ERROR: " + e)
    if writes == 0 or reads == 0:
        print("ERROR: the race did not happen (writes %d, verified reads %d)" % (writes, reads))
        return 1
    return 1 if errors else 0


# ----------------------------------------------------------------------------------------------


def mode_bench(a):
    os.makedirs(a.dir, exist_ok=True)
    data = content(1, 1, a.size)  # one buffer: measure the filesystem, not the generator
    t0 = time.monotonic()
    for i in range(a.count):
        publish(a.dir, key_name(i, a.model, 0, 1), data)
    el = time.monotonic() - t0
    print(json.dumps({"mode": "bench", "size": a.size, "count": a.count,
                      "seconds": round(el, 4), "files_per_s": round(a.count / el, 1)}))
    return 0


def mode_exists(a):
    os.makedirs(a.dir, exist_ok=True)
    t0 = time.monotonic()
    for i in range(a.count):
        publish(a.dir, key_name(i, a.model, 0, 1), content(1, i, a.size))
    t1 = time.monotonic()
    wrong = []
    for i in range(2 * a.count):
        present = os.path.exists(os.path.join(a.dir, key_name(i, a.model, 0, 1)))
        if present != (i < a.count):
            wrong.append(i)
    t2 = time.monotonic()
    print(json.dumps({"mode": "exists", "count": a.count, "publish_s": round(t1 - t0, 3),
                      "exists_checks": 2 * a.count, "exists_s": round(t2 - t1, 3),
                      "wrong": len(wrong)}))
    if wrong:
        print("ERROR: wrong existence answers for keys %s" % wrong[:10])
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["race", "bench", "exists"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--size", type=size_arg, default=1 << 20)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--model", default="Qwen3-8B")
    a = ap.parse_args()
    return {"race": mode_race, "bench": mode_bench, "exists": mode_exists}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
