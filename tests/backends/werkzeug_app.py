"""werkzeug (Flask's router and development server): a URL map with an
admin endpoint and a catch-all, as a Flask app would declare them."""
import sys

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, run_simple
from werkzeug.wrappers import Request, Response

urls = Map([
    Rule("/admin", endpoint="admin"),
    Rule("/admin/<path:rest>", endpoint="admin"),
    Rule("/reports", endpoint="reports"),
    Rule("/reports/<path:rest>", endpoint="reports"),
    Rule("/", endpoint="public"),
    Rule("/<path:rest>", endpoint="public"),
])


@Request.application
def app(request):
    try:
        endpoint, _ = urls.bind_to_environ(request.environ).match()
    except HTTPException as e:
        return e
    subject = request.environ.get("HTTP_X_AUTH_SUBJECT", "")
    return Response(f"served:{endpoint} method:{request.method} subject:{subject}\n")


class Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


print("ready", flush=True)
run_simple("127.0.0.1", int(sys.argv[1]), app, request_handler=Quiet)
