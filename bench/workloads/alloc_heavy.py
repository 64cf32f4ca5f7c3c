"""An allocation-heavy Python program for the mprof benchmark suite.

Builds and discards many dicts, lists, strings and bytes objects of varied sizes, serialises them
to JSON and back, sorts and groups them. Deterministic. Usage: python3 alloc_heavy.py [SCALE]
"""
import json
import sys


def make_record(i):
    return {
        "id": i,
        "name": "item-%d-%s" % (i, "x" * (i % 40)),
        "tags": ["t%d" % (j * i % 97) for j in range(i % 12)],
        "payload": bytes((i * 31 + j) & 0xFF for j in range(16 + (i * 13) % 600)),
        "score": (i * 2654435761) % 100003 / 7.0,
    }


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 40000
    checksum = 0
    for rnd in range(4):
        records = [make_record(i + rnd) for i in range(scale)]
        groups = {}
        for r in records:
            groups.setdefault(len(r["tags"]), []).append(r)
        text = json.dumps([{k: v for k, v in r.items() if k != "payload"} for r in records[: scale // 2]])
        back = json.loads(text)
        back.sort(key=lambda r: (r["score"], r["name"]))
        joined = ",".join(r["name"] for r in back)
        blobs = [r["payload"] * (1 + r["id"] % 8) for r in records[:: 3]]
        checksum += len(text) + len(joined) + sum(len(b) for b in blobs) + len(groups)
        del records, groups, text, back, joined, blobs
    print("checksum", checksum)


if __name__ == "__main__":
    main()
