"""``python -m services.share``: render result cards and serve share pages (started by ``howhot up``)."""

from __future__ import annotations

from libs.common.logs import configure_logging
from libs.common.service import run_service
from libs.common.settings import get_settings
from services.share.app import SERVICE, create_app


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, settings.core.log_level, settings.core.log_json)
    run_service(create_app(settings), settings.share.host, settings.share.port)


if __name__ == "__main__":
    main()
