"""The store: SQLAlchemy 2 Core on SQLite (default) or PostgreSQL.

* :mod:`sync.store.db` opens a store (``open_store``, ``open_project_store``) and migrates it.
* :mod:`sync.store.migrations` holds the ordered, versioned migration steps.
* :mod:`sync.store.schema` is the current shape of the tables, used to build queries.
* :mod:`sync.store.repo` writes contacts, identities and events (upserts, dedupe).
"""

from sync.store.errors import StoreError

__all__ = ["StoreError"]
