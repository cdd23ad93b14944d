#!/usr/bin/python3
"""ICMP echo with a chosen identifier, for the lab (Debian's ping picks its
own): pingid.py DEST ID COUNT INTERVAL_S sends COUNT echo requests one
INTERVAL_S apart and prints "id=ID sent=COUNT received=N", counting the
replies that carry this id and sequence.  Needs a raw socket (root)."""
import select
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def main():
    if len(sys.argv) != 5:
        sys.stderr.write("usage: pingid.py DEST ID COUNT INTERVAL_S\n")
        return 2
    dest, ident, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    received = 0
    for seq in range(count):
        msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"uplinkd-lab-ping"
        msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
        s.sendto(msg, (dest, 0))
        end = time.monotonic() + interval
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            pkt = s.recv(2048)
            ihl = (pkt[0] & 15) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
            if kind == 0 and rid == ident and rseq == seq:
                received += 1
    print("id=%d sent=%d received=%d" % (ident, count, received))
    return 0


if __name__ == "__main__":
    sys.exit(main())
