#!/usr/bin/env python3
"""A TLS-terminating TCP proxy for the PACS tests: listens on 127.0.0.1 (a free port, printed on
stdout) with the given certificate + key PEM and forwards each connection, decrypted, to
127.0.0.1:<target>. Debian 12's Orthanc 1.10 resets its own HTTPS connections after the
handshake, so the HTTPS tests put this real OpenSSL endpoint (Python's ssl module) in front of
Orthanc's HTTP port instead.

    python3 tests/reference/tls_proxy.py <cert+key.pem> <target port>
"""
import socket
import ssl
import sys
import threading


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    pem, target = sys.argv[1], int(sys.argv[2])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()  # a client that does not trust us: it hangs up during the handshake
            continue
        up = socket.create_connection(("127.0.0.1", target))
        threading.Thread(target=pump, args=(tls, up), daemon=True).start()
        threading.Thread(target=pump, args=(up, tls), daemon=True).start()


if __name__ == "__main__":
    main()
