"""The listening socket of the gateway, with TCP_NODELAY so small responses are never held back.

uvicorn writes a response's head and body separately; with Nagle's algorithm on, the body waits for the ACK of the
head, which the client delays by up to 40 ms: a fixed 40 ms added to every completion. Accepted sockets inherit
TCP_NODELAY from the listener on Linux, so setting it once here covers every connection.
"""

from __future__ import annotations

import socket


def listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
