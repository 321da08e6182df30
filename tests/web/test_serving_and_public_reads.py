"""What the web app stands on, over plain HTTP: its files and their policy,
the development sign-in (and its refusal outside development), and the public
reads — a visitor reads boards without a token, never a hidden idea, and
nothing else."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from services.gateway import settings as gateway_settings
from services.kit import auth, config
from services.kit.config import ConfigError
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.support import Platform

IDEAS = "cocreate.ideas.v1.IdeaService"
RELEASES = "cocreate.ideas.v1.ReleaseService"


async def test_the_app_and_its_files_are_served_under_a_strict_policy(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway()
    page = await gateway.request("GET", "/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b'<script type="module" src="assets/app.js">' in page.body
    policy = dict(
        (d.strip().partition(" ")[0], d.strip().partition(" ")[2])
        for d in page.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"
    for name, kind in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        asset = await gateway.request("GET", f"/assets/{name}")
        assert asset.status == 200
        assert asset.headers["Content-Type"].startswith(kind)
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        again = await gateway.request(
            "GET", f"/assets/{name}", headers={"If-None-Match": asset.headers["Etag"]}
        )
        assert again.status == 304
    missing = await gateway.request("GET", "/assets/nothing.js")
    assert missing.status == 404
    assert missing.json["error"]["message"] == "no such file: /assets/nothing.js"
    for path in ("/assets/..%2Fweb.py", "/assets/../app.py", "/assets/%2e%2e%2fapp.py"):
        assert (await gateway.request("GET", path)).status == 404
    # Text from the platform only ever goes in as text.
    script = (await gateway.request("GET", "/assets/app.js")).body.decode()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


async def test_the_console_moved_to_console(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    console = await gateway.request("GET", "/console")
    assert console.status == 200
    assert b"cocreate JSON-RPC 2.0 gateway" in console.body


async def test_development_sign_in_mints_a_token_for_a_member_and_role(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(dev_tokens=auth.TokenPolicy(issuer="community", audience="c"))
    assert (await gateway.request("GET", "/web/config")).json["devSignIn"] is True
    answer = await gateway.post({"memberId": "alice", "role": "pm"}, path="/dev/token")
    assert answer.status == 200
    policy = auth.TokenPolicy(issuer="community", audience="c")
    caller = auth.verify_token("Bearer " + answer.json["token"], config.DEV_JWT_SECRET, policy)
    assert caller == auth.Caller("alice", auth.Role.PM)
    claims = jwt.decode(answer.json["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == answer.json["expiresInSeconds"]

    short = await start_gateway(dev_tokens=auth.TokenPolicy(max_ttl_seconds=600))
    capped = await short.post({"memberId": "bob"}, path="/dev/token")
    assert capped.json["expiresInSeconds"] == 600


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"memberId": "", "role": "member"}, "memberId"),
        ({"memberId": " alice", "role": "member"}, "memberId"),
        ({"memberId": "a\u0007b"}, "memberId"),
        ({"memberId": "x" * 65}, "memberId"),
        ({"memberId": 7}, "memberId"),
        ({"memberId": "alice", "role": "owner"}, "role"),
    ],
)
async def test_development_sign_in_refuses_bad_input_in_words(
    start_gateway: StartGateway, body: dict[str, Any], field: str
) -> None:
    gateway = await start_gateway(dev_tokens=auth.TokenPolicy())
    answer = await gateway.post(body, path="/dev/token")
    assert answer.status == 400
    assert answer.json["error"]["field"] == field
    assert field in answer.json["error"]["message"]


async def test_development_sign_in_refuses_a_body_that_is_not_json(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(dev_tokens=auth.TokenPolicy())
    for raw in (b"{", b"[1]", b"\xff"):
        answer = await gateway.post(raw=raw, path="/dev/token")
        assert answer.status == 400
        assert "JSON" in answer.json["error"]["message"]


async def test_there_is_no_development_sign_in_outside_development(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(sign_in_url="https://community.example/login")
    assert (await gateway.request("GET", "/web/config")).json == {
        "devSignIn": False,
        "signInUrl": "https://community.example/login",
    }
    answer = await gateway.post({"memberId": "alice", "role": "admin"}, path="/dev/token")
    assert answer.status == 404
    assert "identity provider" in answer.json["error"]["message"]
    # As for `cocreate token`: development mode and the development secret only.
    production = gateway_settings.load({"COCREATE_ENV": "production"})
    assert production.dev_tokens is None
    own_secret = {"COCREATE_ENV": "development", "COCREATE_JWT_SECRET": "s" * 40}
    assert gateway_settings.load(own_secret).dev_tokens is None
    development = gateway_settings.load({"COCREATE_ENV": "development"})
    assert development.dev_tokens is not None
    with pytest.raises(ConfigError, match="COCREATE_GATEWAY_SIGN_IN_URL"):
        gateway_settings.load({"COCREATE_GATEWAY_SIGN_IN_URL": "javascript:alert(1)"})


async def _public_gateway(platform: Platform, start_gateway: StartGateway) -> GatewayClient:
    ideas = await platform.start("ideas")
    return await start_gateway(targets={"ideas": ideas.address})


async def _as(gateway: GatewayClient, method: str, params: Any, **headers: str) -> Any:
    return await gateway.call(method, params, headers=headers)


async def test_a_visitor_reads_boards_but_never_a_hidden_idea(
    platform: Platform, start_gateway: StartGateway
) -> None:
    gateway = await _public_gateway(platform, start_gateway)
    admin, pm, member = bearer("admin-1", "admin"), bearer("pm-1", "pm"), bearer("m1", "member")
    product = (await _as(gateway, f"{IDEAS}.CreateProduct", {"name": "Board"}, **admin))["result"]
    product_id = product["product"]["id"]
    shown, hidden = [
        (
            await _as(
                gateway,
                f"{IDEAS}.SubmitIdea",
                {"productId": product_id, "title": title},
                **member,
            )
        )["result"]["idea"]["id"]
        for title in ("Offline maps please", "Offline maps spam")
    ]
    await _as(gateway, f"{IDEAS}.AddComment", {"ideaId": shown, "body": "Yes!"}, **member)
    hide = {"ideaId": hidden, "reason": "spam"}
    assert "result" in await _as(gateway, f"{IDEAS}.HideIdea", hide, **pm)

    reads: list[tuple[str, dict[str, Any]]] = [
        ("ListProducts", {}),
        ("GetProduct", {"productId": product_id}),
        ("ListIdeas", {"filter": {"productId": product_id}}),
        ("GetIdea", {"ideaId": shown}),
        ("FindSimilarIdeas", {"title": "Offline maps", "productId": product_id}),
        ("ListComments", {"ideaId": shown}),
        ("ListIdeaHistory", {"ideaId": shown}),
    ]
    answers = {name: (await gateway.call(f"{IDEAS}.{name}", params)) for name, params in reads}
    assert all("result" in a for a in answers.values()), answers
    assert [i["id"] for i in answers["ListIdeas"]["result"]["ideas"]] == [shown]
    similar = answers["FindSimilarIdeas"]["result"]["similarIdeas"]
    assert [s["idea"]["id"] for s in similar] == [shown]
    assert answers["ListComments"]["result"]["comments"][0]["body"] == "Yes!"
    for name in ("ListReleases", "GetReleaseNotes"):
        params = {"releaseId": "00000000-0000-4000-8000-000000000000"}
        answer = await gateway.call(f"{RELEASES}.{name}", {} if name == "ListReleases" else params)
        assert "result" in answer or answer["error"]["data"]["grpcStatus"] == "NOT_FOUND"

    # The hidden idea is not found, even asked for by id or with include_hidden.
    missing = await gateway.call(f"{IDEAS}.GetIdea", {"ideaId": hidden})
    assert missing["error"]["data"]["grpcStatus"] == "NOT_FOUND"
    asked = await gateway.call(
        f"{IDEAS}.ListIdeas", {"filter": {"productId": product_id, "includeHidden": True}}
    )
    assert asked["error"]["code"] == -32602
    assert asked["error"]["data"]["fieldViolations"][0]["field"] == "filter.include_hidden"
    comments = await gateway.call(f"{IDEAS}.ListComments", {"ideaId": hidden})
    assert comments["error"]["data"]["grpcStatus"] == "NOT_FOUND"

    # Everything else still needs a token; a wrong token is refused even on a read.
    for method, params in [
        (f"{IDEAS}.SubmitIdea", {"productId": product_id, "title": "Sneaky idea"}),
        (f"{IDEAS}.AddComment", {"ideaId": shown, "body": "anonymous"}),
        (f"{IDEAS}.ListReportedIdeas", {}),
        (f"{RELEASES}.ListIterations", {}),
    ]:
        refused = await gateway.call(method, params)
        assert refused["error"]["data"]["grpcStatus"] == "UNAUTHENTICATED", method
    forged = jwt.encode({"sub": "x", "role": "admin", "exp": 4102444800}, "w" * 40, "HS256")
    wrong = await _as(gateway, f"{IDEAS}.ListIdeas", {}, Authorization=f"Bearer {forged}")
    assert wrong["error"]["data"]["grpcStatus"] == "UNAUTHENTICATED"
    ideas = (await _as(gateway, f"{IDEAS}.ListIdeas", {}, **admin))["result"]["ideas"]
    assert {i["id"] for i in ideas} == {shown}


def test_the_public_list_is_only_reads() -> None:
    readers = ("List", "Get", "Find")
    for path in auth.PUBLIC_METHODS:
        assert path.rpartition("/")[2].startswith(readers), path
    assert auth.VISITOR.is_staff is False
