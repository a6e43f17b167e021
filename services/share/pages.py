"""The HTML of the share page and its friendly error pages, plus their one stylesheet.

Plain string templates with every interpolated value passed through ``html.escape`` (quotes too: values land in
attributes). No inline script or style, so the page runs under a strict CSP (see routes.SECURITY_HEADERS).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from services.share.content import BRAND

STYLESHEET_PATH = "/s/static/share.css"  # under /s/ because the public site proxies only /s/* and /cards/* to us
CTA_TEXT = "How old do you look? Try it yourself"
OG_WIDTH, OG_HEIGHT = 1200, 630  # the og card's size, announced so previews lay out before the image arrives

STYLESHEET = """\
*{box-sizing:border-box}
html,body{margin:0;padding:0}
body{min-height:100vh;background:linear-gradient(160deg,#1b0a3c 0%,#5b1380 55%,#c2185b 100%);color:#fff;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;display:flex;justify-content:center}
main{width:100%;max-width:760px;padding:24px 16px 48px;text-align:center}
.brand{display:inline-block;color:#ffd23f;font-weight:800;font-size:28px;text-decoration:none;margin-bottom:12px}
h1{font-size:clamp(22px,5vw,34px);line-height:1.2;margin:8px 0 20px}
p{color:#f0deff;margin:0 0 20px}
.card{display:block;width:100%;height:auto;border-radius:16px;box-shadow:0 12px 40px rgba(0,0,0,.45);margin:0 0 28px}
.cta{display:inline-block;background:#ffd23f;color:#1b0a3c;font-weight:800;font-size:clamp(18px,4.5vw,24px);
padding:18px 28px;border-radius:999px;text-decoration:none;box-shadow:0 8px 24px rgba(0,0,0,.35)}
.cta:hover,.cta:focus{background:#fff}
.fine{font-size:14px;margin-top:18px;color:#f0deff}
"""


@dataclass(frozen=True)
class SharePage:
    """Everything the share page prints; URLs are absolute where crawlers need them (og:url, og:image)."""

    share_id: str
    title: str
    description: str
    page_url: str
    og_image_url: str
    image_alt: str
    card_src: str
    cta_href: str


def share_page_html(page: SharePage) -> str:
    """The public share page: link-preview tags for every platform, the card, and the call to action."""
    e = _attr
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<meta name="description" content="{e(page.description)}">
<meta name="robots" content="noindex">
<link rel="canonical" href="{e(page.page_url)}">
<link rel="stylesheet" href="{e(STYLESHEET_PATH)}">
<meta property="og:type" content="website">
<meta property="og:site_name" content="{e(BRAND)}">
<meta property="og:title" content="{e(page.title)}">
<meta property="og:description" content="{e(page.description)}">
<meta property="og:url" content="{e(page.page_url)}">
<meta property="og:image" content="{e(page.og_image_url)}">
<meta property="og:image:type" content="image/png">
<meta property="og:image:width" content="{OG_WIDTH}">
<meta property="og:image:height" content="{OG_HEIGHT}">
<meta property="og:image:alt" content="{e(page.image_alt)}">
<meta name="twitter:card" content="summary_large_image">
<meta name="twitter:title" content="{e(page.title)}">
<meta name="twitter:description" content="{e(page.description)}">
<meta name="twitter:image" content="{e(page.og_image_url)}">
<meta name="twitter:image:alt" content="{e(page.image_alt)}">
</head>
<body>
<main>
<a class="brand" href="/">{escape(BRAND)}</a>
<h1>{escape(page.title)}</h1>
<img class="card" src="{e(page.card_src)}" width="{OG_WIDTH}" height="{OG_HEIGHT}" alt="{e(page.image_alt)}">
<a class="cta" href="{e(page.cta_href)}">{escape(CTA_TEXT)}</a>
<p class="fine">Free. One photo. Delete it whenever you like.</p>
</main>
</body>
</html>
"""


def message_page_html(title: str, message: str, cta_href: str = "/") -> str:
    """A friendly dead end (not shared, deleted, unavailable) that still invites the visitor to try it."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · {escape(BRAND)}</title>
<meta name="robots" content="noindex">
<link rel="stylesheet" href="{_attr(STYLESHEET_PATH)}">
</head>
<body>
<main>
<a class="brand" href="/">{escape(BRAND)}</a>
<h1>{escape(title)}</h1>
<p>{escape(message)}</p>
<a class="cta" href="{_attr(cta_href)}">{escape(CTA_TEXT)}</a>
</main>
</body>
</html>
"""


NOT_SHARED = (
    "Nothing to see here (yet)",
    "This result isn't public. Maybe the link is incomplete, or it was never shared.",
)
DELETED = ("This result was deleted", "Its owner deleted the photo, so the result is gone for good.")
UNAVAILABLE = ("We'll be right back", "We couldn't load this result just now. Please try again in a moment.")


def _attr(value: str) -> str:
    """Escape for a double-quoted attribute (html.escape with quote=True also escapes ' and ")."""
    return escape(value, quote=True)
