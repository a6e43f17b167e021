"""Who may see the dashboard: anyone on loopback; elsewhere only holders of HOWHOT_ANALYTICS_DASHBOARD_TOKEN.

The same token is the query API's bearer token, so the dashboard forwards what the visitor presented and the API
stays the final judge (a dashboard started without the token in its environment still works for a visitor who has it).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = {"localhost"}


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; None or '' (Streamlit binds every interface then) is not loopback."""
    if not address:
        return False
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so treat it as public
        return False


@dataclass(frozen=True)
class Access:
    """The gate's verdict: whether to show data, the token to send to the query API, and why not."""

    allowed: bool
    api_token: str | None
    reason: str = ""


def decide_access(bind_address: str | None, configured: str | None, presented: str | None) -> Access:
    """Loopback: open (the configured token is forwarded to the API). Public: the presented token must match."""
    if is_loopback(bind_address):
        return Access(True, presented or configured)
    if not configured:
        return Access(
            False, None, "This dashboard listens on a public address without a token: set "
            "HOWHOT_ANALYTICS_DASHBOARD_TOKEN (and restart) or bind it to 127.0.0.1.",
        )
    if presented and hmac.compare_digest(presented.encode(), configured.encode()):
        return Access(True, presented)
    return Access(False, None, "Enter the dashboard token." if not presented else "That token is not right.")
