#!/usr/bin/env python3
"""Writes hostile pprof profiles (gzip) for tests/tools/mprof_hostile.sh, encoded by hand:
  deep.pb.gz      one sample whose stack is 200 000 frames of one location (about 1 KB)
  wide.pb.gz      300 000 samples, each a different function called from one caller
  frames.pb.gz    one location with 100 000 inlined lines, named by 10 000 samples (1e9 frames)
  many.pb.gz      3 000 000 samples of four bytes each (12 MB of protobuf in a few KB)
Usage: hostile_profiles.py OUTDIR"""
import gzip
import sys


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, payload):  # length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def uint(num, v):
    return varint(num << 3) + varint(v)


def packed(num, vals):
    return field(num, b"".join(varint(v) for v in vals))


def profile(strings, samples, locations, functions):
    out = bytearray()
    out += field(1, uint(1, 1) + uint(2, 2))  # sample_type inuse_space/bytes
    for locs, value in samples:
        out += field(2, packed(1, locs) + packed(2, [value]))
    for lid, lines in locations:
        body = uint(1, lid)
        for fid in lines:
            body += field(4, uint(1, fid) + uint(2, 1))
        out += field(4, body)
    for fid, name in functions:
        out += field(5, uint(1, fid) + uint(2, name))
    for s in strings:
        out += field(6, s.encode())
    return bytes(out)


def main():
    d = sys.argv[1]
    base = ["", "inuse_space", "bytes"]
    # deep: one location (function "f"), repeated 200 000 times in one stack
    p = profile(base + ["f"], [([1] * 200000, 4096)], [(1, [1])], [(1, 3)])
    open(f"{d}/deep.pb.gz", "wb").write(gzip.compress(p, 9))
    # wide: 300 000 leaves under "main"
    n = 300000
    strings = base + ["main"] + [f"fn{i}" for i in range(n)]
    locations = [(1, [1])] + [(i + 2, [i + 2]) for i in range(n)]
    functions = [(1, 3)] + [(i + 2, 4 + i) for i in range(n)]
    samples = [([i + 2, 1], 1 + i % 7) for i in range(n)]
    open(f"{d}/wide.pb.gz", "wb").write(gzip.compress(profile(strings, samples, locations, functions), 6))
    # frames: one location with 100 000 lines, named by 10 000 samples
    p = profile(base + ["g"], [([1], 1)] * 10000, [(1, [1] * 100000)], [(1, 3)])
    open(f"{d}/frames.pb.gz", "wb").write(gzip.compress(p, 9))
    # many: 3 000 000 empty samples (each one location id, no values)
    p = profile(base + ["h"], [], [(1, [1])], [(1, 3)]) + field(2, packed(1, [1])) * 3000000
    open(f"{d}/many.pb.gz", "wb").write(gzip.compress(p, 9))


main()
