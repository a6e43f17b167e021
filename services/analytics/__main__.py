"""``python -m services.analytics``: ingest every topic into the analytics store and serve the query API."""

from __future__ import annotations

from libs.common.logs import configure_logging
from libs.common.service import run_service
from libs.common.settings import get_settings
from services.analytics.app import SERVICE_NAME, create_app


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE_NAME, settings.core.log_level, settings.core.log_json)
    run_service(create_app(settings), settings.analytics.host, settings.analytics.port)


if __name__ == "__main__":
    main()
