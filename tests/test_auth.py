import json
import time

import jwt
import pytest
import websockets
from hypothesis import given, settings, strategies as st

from quart_app.realtime import auth
from quart_app.realtime.auth import mint_token, token_from_request, verify_token
from quart_app.errors import Unauthorized

from .conftest import SECRET


def _raw(claims, secret=SECRET, algorithm="HS256"):
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_valid_token_gives_principal():
    token = mint_token(SECRET, 42, projects=["p1"], name="ann", address="bc1q")
    who = verify_token(SECRET, token)
    assert who.user_id == 42 and who.projects == frozenset({"p1"})
    assert who.name == "ann" and who.address == "bc1q"


@pytest.mark.parametrize("token, reason", [
    (None, "Missing"),
    ("", "Missing"),
    ("not-a-jwt", "Invalid token"),
    (_raw({"sub": "1", "type": "access", "exp": int(time.time()) - 5}), "expired"),
    (_raw({"sub": "1", "type": "access", "exp": int(time.time()) + 3600}, secret="other-secret-" * 3),
     "Invalid token"),
    (_raw({"sub": "1", "type": "refresh", "exp": int(time.time()) + 3600}), "Wrong token type"),
    (_raw({"type": "access", "exp": int(time.time()) + 3600}), "sub"),
    (_raw({"sub": "1", "type": "access"}), "exp"),
    (_raw({"sub": "abc", "type": "access", "exp": int(time.time()) + 3600}), "not a user id"),
    (_raw({"sub": "1", "type": "access", "exp": int(time.time()) + 3600}, secret=SECRET * 2,
          algorithm="HS512"),
     "Invalid token"),
])
def test_rejections(token, reason):
    with pytest.raises(Unauthorized) as info:
        verify_token(SECRET, token)
    assert reason.lower() in info.value.detail.lower()
    if token:
        assert token not in info.value.detail


def test_token_sources_in_order():
    assert token_from_request({"token": "q"}, {"access_token": "c"},
                              {"Authorization": "Bearer h"}) == "q"
    assert token_from_request({}, {"access_token": "c"}, {"Authorization": "Bearer h"}) == "c"
    assert token_from_request({}, {}, {"Authorization": "Bearer h"}) == "h"
    assert token_from_request({}, {}, {"Authorization": "Basic h"}) is None


async def test_rest_matrix(client, token):
    good = token(5)
    expired = mint_token(SECRET, 5, ttl_seconds=-10)
    cases = [
        ({"query_string": {"token": good}}, 200),
        ({"headers": {"Authorization": f"Bearer {good}"}}, 200),
        ({"headers": {"Cookie": f"access_token={good}"}}, 200),
        ({}, 401),
        ({"query_string": {"token": expired}}, 401),
        ({"headers": {"Authorization": "Bearer garbage"}}, 401),
    ]
    for kwargs, status in cases:
        response = await client.get("/history", query_string={
            "channel": "mining", **kwargs.pop("query_string", {})}, **kwargs)
        assert response.status_code == status, kwargs
        if status == 401:
            body = await response.get_json()
            assert set(body) == {"detail"} and body["detail"]


async def _close_code(uri, **kwargs):
    async with websockets.connect(uri, **kwargs) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        return info.value.rcvd.code, info.value.rcvd.reason


async def test_ws_matrix(live_server, token):
    address, _ = live_server
    expired = mint_token(SECRET, 5, ttl_seconds=-10)
    wrong_type = _raw({"sub": "5", "type": "refresh", "exp": int(time.time()) + 3600})
    for uri in (f"ws://{address}/ws?token=bad", f"ws://{address}/ws?token={expired}",
                f"ws://{address}/ws?token={wrong_type}"):
        code, reason = await _close_code(uri)
        assert code == 4001 and reason
    # cookie and bearer header work, as does first-frame auth
    for headers in ({"Cookie": f"access_token={token(5)}"},
                    {"Authorization": f"Bearer {token(5)}"}):
        async with websockets.connect(f"ws://{address}/ws", additional_headers=headers) as ws:
            await ws.send(json.dumps({"action": "ping", "ts": 1}))
            assert json.loads(await ws.recv())["type"] == "pong"
    async with websockets.connect(f"ws://{address}/ws") as ws:
        await ws.send(json.dumps({"action": "auth", "token": token(5)}))
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
    # a first frame that is not auth closes with 4001 before any other message
    async with websockets.connect(f"ws://{address}/ws") as ws:
        await ws.send(json.dumps({"action": "ping"}))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd.code == 4001


# -- the segment check (auth._base64url_segment) against PyJWT's own ------------------------
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_segments = st.one_of(
    st.binary(max_size=64),
    st.text(alphabet=_ALPHABET + "=+/!. \x00", max_size=64).map(str.encode),
    st.binary(max_size=48).map(lambda raw: jwt.utils.base64url_encode(raw)),
    st.tuples(st.binary(max_size=48), st.integers(0, 4)).map(
        lambda pair: jwt.utils.base64url_encode(pair[0]) + b"=" * pair[1]),
)


def _outcome(check, segment: bytes):
    try:
        return ("ok", check(segment, "payload"))
    except jwt.DecodeError as exc:
        return ("error", str(exc))


@settings(max_examples=3000, deadline=None)
@given(_segments)
def test_segment_check_agrees_with_pyjwt(segment):
    """Every segment PyJWT accepts decodes to the same bytes; every one it refuses is refused
    with the same message."""
    theirs = jwt.api_jws.PyJWS._decode_base64url_segment
    assert _outcome(auth._base64url_segment, segment) == _outcome(theirs, segment)


def test_our_pyjwt_uses_the_segment_check():
    assert auth._JWT._jws._decode_base64url_segment is auth._base64url_segment
    token = mint_token(SECRET, 7)
    header, payload, signature = token.split(".")
    for damaged in (f"{header}.{payload}!.{signature}", f"{header}.{payload}.{signature}===",
                    f"{header}.{payload[:-1]}.{signature}"):
        with pytest.raises(Unauthorized, match="Invalid token"):
            verify_token(SECRET, damaged)
    assert verify_token(SECRET, f"{header}.{payload}.{signature}").user_id == 7
