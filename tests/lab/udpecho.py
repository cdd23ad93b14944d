#!/usr/bin/python3
"""One UDP datagram and its echo, with the addresses chosen, for the lab.

udpecho.py server PORT LOG   echoes every datagram; appends "TEXT IP:PORT"
                             (the source it saw) to LOG for each
udpecho.py once SRC SPORT DEST PORT TEXT TIMEOUT_S
                             sends TEXT from SRC:SPORT, exits 0 when the
                             echo comes back within TIMEOUT_S, 1 if not"""
import socket
import sys


def server(port, log):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    with open(log, "a", buffering=1) as f:
        while True:
            data, peer = s.recvfrom(512)
            f.write("%s %s:%d\n" % (data.decode(errors="replace"), peer[0], peer[1]))
            s.sendto(data, peer)


def once(src, sport, dest, port, text, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, sport))
    s.settimeout(timeout)
    s.sendto(text.encode(), (dest, port))
    try:
        data = s.recvfrom(512)[0]
    except socket.timeout:
        print("no echo within %g s" % timeout)
        return 1
    return 0 if data.decode(errors="replace") == text else 1


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "server":
        server(int(a[1]), a[2])
        return 0
    if len(a) == 7 and a[0] == "once":
        return once(a[1], int(a[2]), a[3], int(a[4]), a[5], float(a[6]))
    sys.stderr.write("usage: udpecho.py server PORT LOG | once SRC SPORT DEST PORT TEXT TIMEOUT_S\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
