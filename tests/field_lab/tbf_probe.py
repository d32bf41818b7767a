"""Run inside a network namespace whose `lo` has a tc tbf shaper: time a one-way TCP transfer.

Usage: python tbf_probe.py NBYTES  -> prints the seconds from the first byte written to the last
byte read at the receiver. Used by test_link_tbf.py; loopback only, bounded by a timeout.
"""

from __future__ import annotations

import socket
import sys
import threading
import time


def transfer(nbytes: int, timeout: float = 60.0) -> float:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[float] = []

    def receive() -> None:
        conn, _ = listener.accept()
        conn.settimeout(timeout)
        got = 0
        while got < nbytes:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        received.append(time.monotonic())
        conn.close()

    thread = threading.Thread(target=receive)
    thread.start()
    sender = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    time.sleep(0.2)  # let the handshake's packets drain the bucket's burst
    start = time.monotonic()
    sender.sendall(b"x" * nbytes)
    thread.join(timeout)
    sender.close()
    listener.close()
    if not received:
        raise SystemExit("the transfer did not finish")
    return received[0] - start


if __name__ == "__main__":
    print(f"{transfer(int(sys.argv[1])):.6f}")
