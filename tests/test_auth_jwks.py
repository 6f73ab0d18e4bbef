"""Identity providers: RS256/ES256 tokens with keys from a JWKS URL (served here by a real HTTP
server), audience and issuer checks, key rotation, and the verified-token cache."""
import asyncio
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from quart_app.config import load_settings
from quart_app.errors import ConfigError, Unauthorized
from quart_app.realtime.auth import TokenVerifier, mint_token

from .conftest import SECRET, serve_app
from .test_direct import RawWs, frame


class Jwks:
    """A JWKS endpoint whose key set the test can rotate."""

    def __init__(self):
        self.keys = {}
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                jwks.fetches += 1
                body = json.dumps({"keys": [
                    {**json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(
                        key.public_key())), "kid": kid, "alg": alg, "use": "sig"}
                    for kid, (alg, key) in jwks.keys.items()]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, kid, alg):
        key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
        self.keys[kid] = (alg, key)
        return key

    def token(self, kid, sub=7, ttl=600, **claims):
        alg, key = self.keys[kid]
        now = int(time.time())
        return jwt.encode({"sub": str(sub), "type": "access", "iat": now, "exp": now + ttl,
                           **claims}, key, algorithm=alg, headers={"kid": kid})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks():
    server = Jwks()
    yield server
    server.close()


def _auth(jwks_url, **extra):
    env = {"JWT_SECRET": SECRET, "PULSE_JWKS_URL": jwks_url, **extra}
    return load_settings(env).auth


async def test_rs256_and_es256_tokens_verify_with_keys_from_the_jwks_url(jwks):
    jwks.add("rsa-1", "RS256")
    jwks.add("ec-1", "ES256")
    verifier = TokenVerifier(SECRET, _auth(jwks.url))
    await verifier.refresh()
    assert verifier.verify(jwks.token("rsa-1", sub=7)).user_id == 7
    assert verifier.verify(jwks.token("ec-1", sub=8)).user_id == 8
    assert verifier.verify(mint_token(SECRET, 9)).user_id == 9      # HS256 still accepted
    forged = jwks.token("rsa-1", sub=7)[:-6] + "AAAAAA"
    with pytest.raises(Unauthorized, match="Invalid token"):
        verifier.verify(forged)
    none = jwt.encode({"sub": "1", "type": "access", "exp": time.time() + 60}, None,
                      algorithm="none")
    with pytest.raises(Unauthorized, match="algorithm"):
        verifier.verify(none)


async def test_audience_and_issuer_are_checked_when_configured(jwks):
    jwks.add("k", "RS256")
    verifier = TokenVerifier(SECRET, _auth(jwks.url, PULSE_JWT_AUDIENCE="pulse",
                                           PULSE_JWT_ISSUER="https://id.example"))
    await verifier.refresh()
    good = jwks.token("k", aud="pulse", iss="https://id.example")
    assert verifier.verify(good).user_id == 7
    with pytest.raises(Unauthorized, match="audience"):
        verifier.verify(jwks.token("k", aud="other", iss="https://id.example"))
    with pytest.raises(Unauthorized, match="issuer"):
        verifier.verify(jwks.token("k", aud="pulse", iss="https://evil.example"))
    with pytest.raises(Unauthorized, match="'aud'|audience"):
        verifier.verify(jwks.token("k", iss="https://id.example"))


async def test_a_rotated_key_is_fetched_once_and_the_retry_succeeds(jwks):
    jwks.add("old", "RS256")
    verifier = TokenVerifier(SECRET, _auth(jwks.url))
    await verifier.refresh()
    jwks.add("new", "RS256")
    token = jwks.token("new")
    verifier._fetched -= TokenVerifier.JWKS_MIN_REFETCH_SECONDS  # the last fetch is old enough
    with pytest.raises(Unauthorized, match="unknown signing key"):
        verifier.verify(token)
    with pytest.raises(Unauthorized, match="unknown signing key"):
        verifier.verify(token)                                      # no second fetch queued
    await verifier._refetch
    assert jwks.fetches == 2
    assert verifier.verify(token).user_id == 7


def test_verified_tokens_are_cached_until_they_expire():
    verifier = TokenVerifier(SECRET)
    token = mint_token(SECRET, 3, ttl_seconds=60)
    first = verifier.verify(token)
    assert verifier.verify(token) is first and verifier.hits == 1
    verifier._cache[token] = replace(first, expires_at=time.time() - 1)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(token)


async def test_a_live_server_takes_jwks_tokens_on_ws_and_rest(settings, jwks):
    jwks.add("rsa-1", "RS256")
    settings = replace(settings, auth=_auth(jwks.url, PULSE_JWT_AUDIENCE="pulse"))
    async with serve_app(settings) as (address, _app):
        ws = await RawWs.connect(address, f"?token={jwks.token('rsa-1', sub=5, aud='pulse')}")
        ws.send(frame('{"action":"subscribe","channel":"mining"}'))
        assert (await ws.recv_json())["type"] == "subscribed"
        ws.close()
        ws = await RawWs.connect(address, f"?token={jwks.token('rsa-1', sub=5, aud='x')}")
        assert await ws.recv_close() == (4001, "Token is for another audience")
        ws.close()
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            ok = await client.get("/dashboard/stats", headers={
                "Authorization": f"Bearer {jwks.token('rsa-1', sub=5, aud='pulse')}"})
            assert ok.status_code == 200


@pytest.mark.parametrize("env, message", [
    ({"PULSE_JWKS_URL": "ftp://x"}, "PULSE_JWKS_URL"),
    ({"PULSE_JWT_ALGORITHMS": "RS256"}, "PULSE_JWKS_URL"),
    ({"PULSE_JWT_ALGORITHMS": "HS257"}, "unknown algorithm"),
])
def test_bad_identity_settings_stop_the_start(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)
