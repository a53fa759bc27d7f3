"""`airflow dags test monetate_metadata_refresh` against the loopback fake of the Metadata API."""

from __future__ import annotations

from airflow_harness import conn_env, mysql_conn_env
from warehouse import query

from session_stream import lookups

OBJECTS = {
    "customtarget": [{"id": 11, "title": "Loyalty tier"}],
    "pageevent": [{"id": 21, "title": "Add to cart"}, {"id": 22, "title": "Checkout"}],
    "variant": [
        {"id": 501, "experience_id": 900, "experience_name": "Hero banner", "split_name": "A"}
    ],
    "experience-summary": [{"id": 900, "experience_name": "Hero banner", "status": "active"}],
    "account": [{"id": 1, "name": "acme.com"}],
}


def test_dag_fills_the_lookup_tables(
    airflow_home, metadata_server, monetate_key_pair, fresh_db_url
):
    metadata_server.objects.update(OBJECTS)
    private_pem, _ = monetate_key_pair
    env = {
        **mysql_conn_env(fresh_db_url),
        **conn_env(
            "monetate_api",
            conn_type="generic",
            login=metadata_server.api_user,
            password=private_pem,
            extra={
                "retailer_shortname": metadata_server.retailer,
                "api_base": metadata_server.api_base,
                "auth_base": metadata_server.auth_base,
                "timeout": 5,
                "max_wait_seconds": 10,
            },
        ),
    }
    result = airflow_home.run("dags", "test", "monetate_metadata_refresh", "2026-11-20", env=env)
    assert result.returncode == 0, result.explain()
    counts = {
        lk.kind: query(fresh_db_url, f"SELECT COUNT(*) FROM `{lk.table}`")[0][0]
        for lk in lookups.LOOKUPS
    }
    assert counts == {kind: len(objects) for kind, objects in OBJECTS.items()}
    assert query(fresh_db_url, "SELECT title FROM monetate_page_events ORDER BY id") == [
        ("Add to cart",),
        ("Checkout",),
    ]
