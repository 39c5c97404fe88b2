"""The lifecycle both loopback test servers share (the Hub's and the OpenAI-compatible one): a
ThreadingHTTPServer on 127.0.0.1 (port 0) serving from a daemon thread, usable as a context manager."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class LoopbackServer:
    handler_base: type  # the BaseHTTPRequestHandler subclass to serve with
    state_name: str  # the handler attribute that points back at the server object

    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self):
        handler = type("Handler", (self.handler_base,), {self.state_name: self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # a short poll interval: stop() waits for the serve loop's next poll
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """http://127.0.0.1:<port>"""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
