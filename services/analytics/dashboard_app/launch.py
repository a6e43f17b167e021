"""How ``howhot up`` starts the dashboard: a Streamlit command line for services/analytics/dashboard.py."""

from __future__ import annotations

import sys
from pathlib import Path

from libs.common.settings import Settings

DASHBOARD_SCRIPT = Path(__file__).resolve().parents[1] / "dashboard.py"


def dashboard_command(settings: Settings) -> list[str]:
    """The argv that serves the dashboard on HOWHOT_ANALYTICS_HOST:HOWHOT_ANALYTICS_DASHBOARD_PORT.

    Run it with the stack's environment (the script reads Settings itself: the API's host/port and the dashboard
    token). Headless with no usage statistics and no file watcher: a service, not a development session. On a
    non-loopback host the dashboard refuses to show data unless HOWHOT_ANALYTICS_DASHBOARD_TOKEN is set.
    """
    return [
        sys.executable, "-m", "streamlit", "run", str(DASHBOARD_SCRIPT),
        "--server.address", settings.analytics.host,
        "--server.port", str(settings.analytics.dashboard_port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # no "Deploy" button or developer menu for operators
        "--theme.base", "light",
    ]
