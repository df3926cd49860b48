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
    """Serves the public half of `keys` at /jwks.json; counts the fetches.

    With `dribble` set (seconds), the whole answer, status line included, goes out one byte at
    a time at that pace: a provider that is slow rather than down.
    """

    def __init__(self, *keys: SigningKey, dribble: float | None = None) -> None:
        document = json.dumps({"keys": [key.public_jwk() for key in keys]}).encode()
        owner = self
        self.dribble = dribble
        self._fetches = 0
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._count_lock:
                    owner._fetches += 1
                if owner.dribble is not None:
                    self._dribble(owner.dribble)
                    return
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def _dribble(self, interval: float) -> None:
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(document)}\r\n\r\n".encode()
                self.close_connection = True
                for byte in head + document:
                    if owner._stopping.wait(interval):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    @property
    def fetches(self) -> int:
        """Requests received so far, finished or not."""
        with self._count_lock:
            return self._fetches

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
