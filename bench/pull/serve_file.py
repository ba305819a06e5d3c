"""Serves one file over HTTP/1.1 on 127.0.0.1 for `npm run bench -- pull`.

Usage: python3 serve_file.py FILE. Prints the port it listens on, then answers every GET (any path)
with the whole file, its Content-Length and an ETag, handing the bytes to the kernel with
sendfile(2): the server copies nothing in user space, so its CPU does not limit either client.
One thread per connection; it runs until SIGTERM.
"""
import os
import signal
import socket
import sys
import threading


def serve(conn: socket.socket, path: str) -> None:
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(65536)
            if not data:
                return
            request += data
            if len(request) > 65536:
                return
        method = request.split(b" ", 1)[0]
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = (
                "HTTP/1.1 200 OK\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {size}\r\n"
                f'ETag: "{size}"\r\n'
                "Connection: close\r\n\r\n"
            ).encode()
            conn.sendall(head)
            if method == b"GET":
                conn.sendfile(f)


def main() -> None:
    path = sys.argv[1]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, path), daemon=True).start()


if __name__ == "__main__":
    main()
