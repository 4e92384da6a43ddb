"""The Flask app: factory, health check, error bodies."""

import pytest

from webmap import create_app


@pytest.fixture
def client(db_url):
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    yield app.test_client()
    app.extensions["gridmap.engine"].dispose()


def test_healthz_and_index(client):
    assert client.get("/healthz").json == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and "gridmap demo" in page.get_data(as_text=True)


def test_unknown_route_is_json_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_app_builds_with_database_down_healthz_200_readyz_503():
    app = create_app({"DATABASE_URL": "postgresql+psycopg://gm:pw@127.0.0.1:9/gridmap"})
    assert app.test_client().get("/healthz").json == {"status": "ok"}
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.json["error"]
    assert body["code"] == "database_unavailable" and "pw" not in body["message"]
    assert response.headers["Retry-After"]
