"""The dashboard's only way to data: the analytics service's HTTP query API (never chDB: one process per directory).

Answers become pandas DataFrames with the API's column order; datetime columns (ISO strings, UTC) become
timezone-aware timestamps so Altair draws them on a UTC axis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import requests

from libs.common.settings import Settings

API_URL_ENV = "HOWHOT_ANALYTICS_API_URL"  # overrides host:port, e.g. a dashboard on another machine, or the tests
REQUEST_TIMEOUT_S = 30.0  # a cold chDB answering a 7-day series can take seconds; beyond 30 s something is wrong
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}  # bind-all addresses: connect through loopback instead
TIME_COLUMNS = {"minute", "start", "end", "peak_minute"}  # columns the queries answer as datetimes


class QueryApiError(RuntimeError):
    """The query API answered an error (``status`` 401 means: a token is missing or wrong)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def api_url(settings: Settings) -> str:
    """Base URL of the analytics service's query API, from HOWHOT_ANALYTICS_API_URL or its host and port."""
    override = settings.analytics.api_url or os.environ.get(API_URL_ENV)  # env: Settings read before it was set
    if override:
        return override.rstrip("/")
    host = settings.analytics.host
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{host}:{settings.analytics.port}"


def to_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """The API's {"columns", "rows"} as a DataFrame; known time columns parsed as UTC timestamps."""
    frame = pd.DataFrame(doc["rows"], columns=doc["columns"])
    for column in TIME_COLUMNS & set(frame.columns):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


@dataclass
class QueryClient:
    """A keep-alive HTTP session to the query API; ``token`` is sent as a bearer token when set."""

    base_url: str
    token: str | None = None

    def __post_init__(self) -> None:
        self._session = requests.Session()

    def run(self, name: str, **params: str | datetime | None) -> pd.DataFrame:
        """Run the named query; datetimes are sent as ISO 8601, None parameters are left out."""
        query = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in params.items() if v is not None}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self._session.get(
            f"{self.base_url}/api/v1/query/{name}", params=query, headers=headers, timeout=REQUEST_TIMEOUT_S
        )
        if response.status_code != 200:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text[:300]
            raise QueryApiError(response.status_code, message)
        return to_frame(response.json())

    def close(self) -> None:
        self._session.close()
