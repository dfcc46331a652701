"""A backend that trusts only jwtgate's signed assertion, verified with
PyJWT (an independent JOSE library) against the JWKS jwtgate publishes.

    python3 assertion_backend.py PORT JWKS_URL AUDIENCE ISSUER

Every request is answered
200 with JSON: `{"assertion": null}` when the header is absent, else
`{"verified": true, "claims": …, "header": …, "raw": …, "kid_is_thumbprint": …}`
or `{"verified": false, "error": …}`. The JWKS is fetched on every request
(no cache), so each answer reflects what jwtgate publishes at that moment.
"""

import base64
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

PORT, JWKS_URL, AUDIENCE, ISSUER = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
HEADER = "X-Jwtgate-Assertion"


def thumbprint(jwk):
    """RFC 7638, written out here rather than trusted to the gateway."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.headers.get(HEADER)
        if token is None:
            self.answer({"assertion": None})
            return
        try:
            client = jwt.PyJWKClient(JWKS_URL, cache_jwk_set=False, cache_keys=False)
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["ES256", "EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
            header = jwt.get_unverified_header(token)
            self.answer(
                {
                    "verified": True,
                    "claims": claims,
                    "header": header,
                    "raw": token,
                    "kid_is_thumbprint": thumbprint(key._jwk_data) == header["kid"],
                }
            )
        except Exception as error:  # the test reads why
            self.answer({"verified": False, "error": f"{type(error).__name__}: {error}", "raw": token})

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
