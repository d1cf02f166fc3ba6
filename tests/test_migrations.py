"""The schema that the Alembic revisions build equals the SQLAlchemy models."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from smartcache.catalog.migrate import current_revision, downgrade, head_revision, upgrade
from smartcache.catalog.models import Base
from smartcache.catalog.store import Store


def test_migrated_schema_equals_models(catalog_url):
    store = Store.open(catalog_url)
    assert current_revision(store.engine) is None
    assert upgrade(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    store.close()
    assert diff == []


def test_upgrade_is_idempotent_and_downgrade_works(catalog_url):
    store = Store.open(catalog_url)
    upgrade(store.engine)
    assert upgrade(store.engine) == head_revision()
    assert downgrade(store.engine, "base") == ""
    assert upgrade(store.engine) == head_revision()
    store.close()
