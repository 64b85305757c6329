"""A loopback HTTP proxy in front of an S3-compatible server (moto) that answers S3's own
500 InternalError for PUTs of keys ending with a chosen suffix, and forwards everything else."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
         b'<Message>We encountered an internal error. Please try again.</Message></Error>')
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class S3FaultProxy:
    def __init__(self, upstream: str, fail_put_suffix: str):
        self.upstream, self.fail_put_suffix = upstream.rstrip("/"), fail_put_suffix
        self.failed_puts = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                if self.command == "PUT" and path.endswith(proxy.fail_put_suffix):
                    proxy.failed_puts += 1
                    self._reply(500, {"Content-Type": "application/xml"}, ERROR)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                r = httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=body,
                                  timeout=30)
                self._reply(r.status_code, {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP},
                            r.content)

            def _reply(self, status, headers, body):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
