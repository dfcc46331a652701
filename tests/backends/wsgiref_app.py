"""CPython's wsgiref serving a plain WSGI app: the app routes on PATH_INFO
as wsgiref decodes it, and reads the caller from HTTP_X_AUTH_SUBJECT."""
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"].upper()
    if path == "/admin" or path.startswith("/admin/"):
        resource = "admin"
    elif path == "/reports" or path.startswith("/reports/"):
        resource = "reports"
    else:
        resource = "public"
    subject = environ.get("HTTP_X_AUTH_SUBJECT", "")
    body = f"served:{resource} method:{method} subject:{subject}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet)
print("ready", flush=True)
server.serve_forever()
