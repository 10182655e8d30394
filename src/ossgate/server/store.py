"""Stored responses (Responses API `store` / `previous_response_id` / GET /v1/responses/{id})."""

from __future__ import annotations

import json
import time
from typing import Any

from ossgate.errors import NotFound
from ossgate.server.db import Database

SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    owner TEXT NOT NULL,
    body TEXT NOT NULL,
    conversation TEXT NOT NULL
)"""


class ResponseStore:
    """A response's JSON and the conversation it continued (its input items, previous turns included).

    `owner` is the API key id (or "" when the server runs without keys): one key cannot read or
    continue another key's responses.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(SCHEMA)

    def put(self, response: dict[str, Any], conversation: list[dict[str, Any]], owner: str) -> None:
        self.db.execute(
            "INSERT INTO responses (id, created_at, owner, body, conversation) VALUES (?, ?, ?, ?, ?)",
            (response["id"], time.time(), owner, json.dumps(response), json.dumps(conversation)),
        )

    def _row(self, response_id: str, owner: str) -> tuple:
        rows = self.db.query(
            "SELECT body, conversation FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
        )
        if not rows:
            raise NotFound(
                f"response {response_id!r} not found (it may not have been stored: store=false)",
                param="previous_response_id",
            )
        return rows[0]

    def get(self, response_id: str, owner: str) -> dict[str, Any]:
        return json.loads(self._row(response_id, owner)[0])

    def history(self, response_id: str, owner: str) -> list[dict[str, Any]]:
        """Input items that continue `response_id`: its conversation followed by its output."""
        body, conversation = self._row(response_id, owner)
        return json.loads(conversation) + json.loads(body)["output"]

    def delete(self, response_id: str, owner: str) -> None:
        if not self.db.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)):
            raise NotFound(f"response {response_id!r} not found")
