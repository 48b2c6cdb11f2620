#!/usr/bin/env python3
"""Hostile clients for scripts/faults.sh, against 127.0.0.1 only.

  attack.py slowloris PORT N SECONDS   N connections each sending a request
                                       head one byte per second
  attack.py idle PORT N SECONDS        N connections that send nothing

Holds them for SECONDS (or until the proxy closes them) and prints one line
of JSON: how many connected, were answered 503 too_many_connections, were
closed by the proxy (and when: median and max seconds), and were still open
at the end.
"""
import json
import resource
import selectors
import socket
import sys
import time

HEAD = b"GET /token_service/item HTTP/1.1\r\nhost: x\r\nx-fp-caller: faults\r\nx-pad: " + b"a" * 4000


def main():
    mode, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    conns = {}
    failed = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            failed += 1
            s.close()
            continue
        conns[s] = {"sent": 0, "answer": b"", "closed": None}
        sel.register(s, selectors.EVENT_READ)
    refused = 0
    next_byte = time.monotonic()
    while time.monotonic() - start < seconds and any(c["closed"] is None for c in conns.values()):
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            c = conns[s]
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                c["answer"] += data
                continue
            c["closed"] = time.monotonic() - start
            if b" 503 " in c["answer"][:16] and b"too_many_connections" in c["answer"]:
                refused += 1
            sel.unregister(s)
            s.close()
        if mode == "slowloris" and time.monotonic() >= next_byte:
            next_byte += 1.0
            for s, c in conns.items():
                if c["closed"] is None and c["sent"] < len(HEAD):
                    try:
                        s.send(HEAD[c["sent"] : c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        pass
    closed = sorted(c["closed"] for c in conns.values() if c["closed"] is not None)
    open_left = sum(1 for c in conns.values() if c["closed"] is None)
    print(json.dumps({
        "mode": mode,
        "connected": len(conns),
        "connect_failed": failed,
        "refused_503": refused,
        "closed_by_proxy": len(closed) - refused,
        "closed_median_s": round(closed[len(closed) // 2], 1) if closed else None,
        "closed_max_s": round(closed[-1], 1) if closed else None,
        "open_at_end": open_left,
    }))
    for s in conns:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
