"""A tiny, dependency-free HTML renderer: ``string.Template`` files with every value HTML-escaped by default.

Pages are a handful of static shells whose dynamic parts (status, faces) are filled in by the browser from the API,
so a template engine would be more machinery than the job needs. Values are escaped unless wrapped in :class:`Markup`
(trusted HTML we built ourselves), so a photo id or a query parameter can never inject markup.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
VERSION_CHARS = 10  # of the sha256: enough to make stale caches impossible in practice


class Markup(str):
    """HTML we wrote ourselves: inserted as-is."""

    __slots__ = ()


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATE_DIR / name).read_text(encoding="utf-8"))


@cache
def static_version(name: str) -> str:
    """A content hash of a static file, used as ``?v=`` so pages can let browsers cache assets for a year."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:VERSION_CHARS]


def static_url(name: str) -> str:
    return f"{STATIC_PREFIX}{name}?v={static_version(name)}"


def _value(value: object) -> str:
    if isinstance(value, Markup):
        return value
    return html.escape(str(value), quote=True)


def render(name: str, **values: object) -> str:
    """Fill template ``name``; a missing value raises KeyError (a bug we want to see in tests, not a blank page)."""
    return _template(name).substitute({key: _value(value) for key, value in values.items()})


@dataclass(frozen=True)
class Page:
    """What the layout needs from a page: its title and description, body HTML and the scripts it runs."""

    title: str
    description: str
    body: Markup
    scripts: tuple[str, ...] = ()
    page_class: str = ""
    robots: str = "index,follow"


def render_page(page: Page) -> str:
    """The page inside the shared layout (header, footer, stylesheet); scripts load deferred from /static."""
    scripts = Markup("".join(f'<script src="{static_url(s)}" defer></script>' for s in page.scripts))
    return render(
        "layout.html",
        title=page.title,
        description=page.description,
        body=page.body,
        scripts=scripts,
        page_class=page.page_class,
        robots=page.robots,
        stylesheet=static_url("site.css"),
        favicon=static_url("favicon.svg"),
    )
