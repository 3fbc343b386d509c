"""The OpenAPI document and docs/api.md come from the one declaration of the API.

Every route the daemon's aiohttp app serves is in ``GET /openapi.json`` (and
nothing else is), with the shapes the daemon validates against; docs/api.md's
endpoint table is rendered from the same declarations.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from filetwin import shapes
from filetwin.config import Config
from filetwin.daemon.api import Api
from filetwin.daemon.engine import Engine
from filetwin.daemon.openapi import OPENAPI, render_endpoints, with_endpoints
from filetwin.policy import BACKUP_MODES, RECOVERY_MODES, SYNC_MODES
from filetwin.repo.manifest import CAUSES
from tests.api.rawhttp import raw_request
from tests.helpers import Daemon

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented() -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, item in OPENAPI["paths"].items() for m in item}


def test_every_route_the_app_serves_is_in_the_openapi_document(tmp_path: Path) -> None:
    engine = Engine(Config.load(state_dir=tmp_path / "state"))
    app = Api(engine).app()
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None  # HEAD: aiohttp's twin of each GET
    }
    assert served, "no route found: the walk itself is broken"
    assert served - documented() == set(), "served but not in shapes.ROUTES"
    assert documented() - served == set(), "documented but not served"


def test_the_document_is_valid_json_with_an_operation_per_route() -> None:
    doc = json.loads(json.dumps(OPENAPI))
    assert doc["openapi"].startswith("3.1")
    assert len(documented()) == len(shapes.ROUTES)
    for r in shapes.ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        assert r.media in op["responses"]["200"]["content"]
        assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorAnswer"
        )
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [shapes.PROMETHEUS] and metrics[shapes.PROMETHEUS]["schema"] == {
        "type": "string"
    }
    write = doc["paths"]["/write"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert write["required"] == ["path", "offset", "data"]
    assert write["properties"]["offset"]["maximum"] == shapes.INT_MAX
    assert write["additionalProperties"] is False


def test_served_document_is_the_generated_one(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "state").start()
    try:
        status, doc = raw_request(d.socket_path, "GET", "/openapi.json")
        status_m, text = raw_request(d.socket_path, "GET", "/metrics")
    finally:
        d.stop()
    assert status == 200 and doc == json.loads(json.dumps(OPENAPI))
    assert status_m == 200 and isinstance(text, str) and "filetwin_" in text


def test_the_literals_are_the_policy_and_repository_rules() -> None:
    """The enums the schema states are the ones Policy and the repository enforce."""

    def values(t: Any) -> set[str]:
        while typing.get_origin(t) is typing.Annotated:
            t = typing.get_args(t)[0]
        return set(typing.get_args(t))

    assert values(shapes.BackupMode) == set(BACKUP_MODES)
    assert values(shapes.RecoveryMode) == set(RECOVERY_MODES)
    assert values(shapes.SyncMode) == set(SYNC_MODES)
    hints = typing.get_type_hints(shapes.Version, include_extras=False)
    assert set(typing.get_args(hints["cause"])) == set(CAUSES)


@pytest.mark.parametrize(
    ("kind", "data", "ok"),
    [
        (shapes.WriteBody, {"path": "/a", "offset": 0, "data": ""}, True),
        (shapes.WriteBody, {"path": "/a", "offset": -1, "data": ""}, False),
        (shapes.WriteBody, {"path": "/a", "offset": True, "data": ""}, False),
        (shapes.WriteBody, {"path": "/a", "data": ""}, False),
        (shapes.CloseBody, {"path": "/a", "ok": 1}, False),
        (shapes.PathBody, {"path": "/a", "colour": "blue"}, False),
        (shapes.RestoreBody, {"path": "/a", "version": "abcd"}, True),
        (shapes.RestoreBody, {"path": "/a", "version": "xy"}, False),
        (shapes.RecoverBody, {"path": "/a", "trigger": "later"}, False),
    ],
)
def test_declarations_validate(kind: type[Any], data: dict[str, Any], ok: bool) -> None:
    if ok:
        msgspec.convert(data, kind, strict=True)
    else:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(data, kind, strict=True)


def test_docs_api_md_endpoint_table_is_generated() -> None:
    """docs/api.md holds the table render_endpoints makes (regenerate it with
    `.venv/bin/python -m filetwin.daemon.openapi docs/api.md`)."""
    page = PAGE.read_text()
    assert render_endpoints() in page
    assert with_endpoints(page) == page
    for r in shapes.ROUTES:
        assert f"`{r.method} {r.path}`" in page
