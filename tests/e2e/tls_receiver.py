"""An HTTPS receiver on 127.0.0.1 for the worker's TLS tests: a test CA and
a server certificate made with the openssl command line, and a server that
speaks HTTP/2 (python3-h2) when ALPN selects it and HTTP/1.1 otherwise.
Requests are recorded like harness.Receiver's (method, path, lower-case
headers, body) plus the protocol they came over."""

import pathlib
import socket
import ssl
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events

from harness import RequestLog


def make_certificates(directory):
    """Writes ca.pem (a test CA) and server.pem/server.key (signed by it,
    for IP 127.0.0.1) into 'directory'; returns their paths."""
    d = pathlib.Path(directory)
    ca_key, ca, key, csr, cert, ext = (d / n for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "server.ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=hookd test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign",
                    "-keyout", ca_key, "-out", ca], check=True, capture_output=True)
    subprocess.run(["openssl", "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
                   check=True, capture_output=True)
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
                   check=True, capture_output=True)
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}


class TlsReceiver(RequestLog):
    """Answers every request with 'status' (204), over HTTP/2 or HTTP/1.1
    as negotiated; 'alpn' is what it offers."""

    def __init__(self, certs, alpn=("h2", "http/1.1"), status=204):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs["cert"], certs["key"])
        self.ctx.set_alpn_protocols(list(alpn))
        self.status = status
        self.init_log()
        self.handshakes = 0         # completed
        self.failed_handshakes = 0  # refused by the client (or broken)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path="/hook"):
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        while not self.stopped:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _record(self, proto, method, path, headers, body):
        self.record({"proto": proto, "method": method, "path": path, "headers": headers,
                     "body": bytes(body), "time": time.time()})

    def _serve(self, raw):
        raw.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self.cond:
                self.failed_handshakes += 1
            raw.close()
            return
        with self.cond:
            self.handshakes += 1
        try:
            if tls.selected_alpn_protocol() == "h2":
                self._serve_h2(tls)
            else:
                self._serve_h1(tls)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()

    def _serve_h1(self, tls):
        f = tls.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                h = f.readline().decode("latin-1")
                if h in ("\r\n", "\n", ""):
                    break
                name, value = h.split(":", 1)
                headers[name.strip().lower()] = value.strip()
            body = f.read(int(headers.get("content-length") or 0))
            self._record("http/1.1", method, path, headers, body)
            tls.sendall(b"HTTP/1.1 %d Answer\r\nContent-Length: 0\r\n\r\n" % self.status)

    def _serve_h2(self, tls):
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        streams = {}
        while True:
            data = tls.recv(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = (dict(ev.headers), bytearray())
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id][1].extend(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    headers, body = streams.pop(ev.stream_id)
                    fields = {k.lower(): v for k, v in headers.items() if not k.startswith(":")}
                    self._record("h2", headers[":method"], headers[":path"], fields, body)
                    conn.send_headers(ev.stream_id, [(":status", str(self.status)),
                                                     ("content-length", "0")], end_stream=True)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    tls.sendall(conn.data_to_send())
                    return
            out = conn.data_to_send()
            if out:
                tls.sendall(out)
