"""Example webhook receiver for docker-compose: verifies Standard Webhooks
signatures with the secret in WEBHOOK_SECRET (optional) and logs each delivery."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import sys

SECRET = os.environ.get("WEBHOOK_SECRET", "")


def verify(headers, body):
    if not SECRET:
        return None
    key = base64.b64decode(SECRET.split("_", 1)[1]) if SECRET.startswith("whsec_") else SECRET.encode()
    msg = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1)[1] == expected for sig in headers.get("webhook-signature", "").split())


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = verify({k.lower(): v for k, v in self.headers.items()}, body)
        print(json.dumps({"path": self.path, "webhook_id": self.headers.get("webhook-id"),
                          "signature_ok": ok, "bytes": len(body)}), flush=True)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
