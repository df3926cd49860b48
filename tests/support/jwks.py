"""A local identity provider's key set: RSA keys, a JWKS endpoint on 127.0.0.1, signed tokens."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://idp.example.test"
AUDIENCE = "https://memory.example.test/mcp"


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return jwk | {"kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(
        self,
        subject: str = "alice",
        *,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        expires_in: int = 300,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {"sub": subject, "iss": issuer, "aud": audience, "iat": now, "exp": now + expires_in}
        return jwt.encode(payload | claims, self.private, algorithm="RS256", headers={"kid": self.kid})


class JwksServer:
    """Serves the public half of `keys` at /jwks.json; counts the fetches."""

    def __init__(self, *keys: SigningKey) -> None:
        document = json.dumps({"keys": [key.public_jwk() for key in keys]}).encode()
        owner = self
        self.fetches = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
