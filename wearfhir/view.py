"""Serve the SMART on FHIR viewer (the static files under ``viewer/``) over HTTP: ``wearfhir view``.

The viewer is plain static files (HTML, JS, CSS and a vendored ``fhirclient``); any web server can host them.
This one adds the headers a SMART app wants — a Content-Security-Policy that allows scripts only from the
app's own origin (no inline script, no CDN), ``Referrer-Policy: no-referrer`` (the authorization code is in
the redirect URL) and ``Cache-Control: no-store`` — and logs only the path, never a query string (which
carries codes and patient ids).
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["VIEWER_DIR", "ViewerHandler", "make_server", "serve_viewer", "start_in_thread"]

VIEWER_DIR = Path(__file__).resolve().parents[1] / "viewer"
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src *; base-uri 'none'; form-action 'self'; object-src 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
log = logging.getLogger(__name__)


class ViewerHandler(SimpleHTTPRequestHandler):
    """Static files from the viewer directory, with the security headers above; no directory listings."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".map": "application/json"}

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(404, "Not found")
        return None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("viewer %s %s", self.command, self.path.split("?", 1)[0])


def make_server(host: str = "127.0.0.1", port: int = 8765, directory: Path = VIEWER_DIR) -> ThreadingHTTPServer:
    """A (not yet serving) HTTP server for ``directory``; ``port=0`` picks a free port (``server.server_port``)."""
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"the viewer's files are missing: no index.html in {directory}")
    return ThreadingHTTPServer((host, port), partial(ViewerHandler, directory=str(directory)))


def start_in_thread(host: str = "127.0.0.1", port: int = 0,
                    directory: Path = VIEWER_DIR) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve in a daemon thread (for tests and embedding); stop with ``server.shutdown()``."""
    server = make_server(host, port, directory)
    thread = threading.Thread(target=server.serve_forever, name="wearfhir-viewer", daemon=True)
    thread.start()
    return server, thread


def serve_viewer(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the viewer until interrupted (Ctrl-C); prints the launch and open-server URLs."""
    server = make_server(host, port)
    base = f"http://{host}:{server.server_port}"
    print(f"wearfhir viewer on {base}/\n"
          f"  SMART launch URL (register with the EHR): {base}/launch.html   redirect URI: {base}/index.html\n"
          f"  open FHIR server (no auth): {base}/index.html?fhirServiceUrl=FHIR_BASE&patient=PATIENT_ID")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
