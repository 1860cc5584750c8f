"""The durable record: every decision, the feedback on it, and the review cases, in one database.

SQLite in a file by default (embedded, shared by the workers of one machine, kept across restarts);
PostgreSQL for several machines. ``engine`` opens and migrates it, ``records`` holds the queries the
server makes, ``decision_log`` writes decisions off the request path.
"""

from smallguard.server.store.decision_log import DecisionLog
from smallguard.server.store.engine import default_store_url
from smallguard.server.store.records import FeedbackRow, Scored, Store, StoredDecision, open_store

__all__ = ["DecisionLog", "FeedbackRow", "Scored", "Store", "StoredDecision", "default_store_url", "open_store"]
