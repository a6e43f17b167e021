"""The public website served by the upload service (one origin with the API, so no CORS and first-party cookies).

- GET /                 landing + upload (pages.py)          - GET /p/{photo_id}   result page (live status)
- GET /rate             rate-others page                     - GET /privacy        what we keep and for how long
- GET /static/{name}    CSS/JS/SVG (static.py)               - /s/*, /cards/*      reverse proxy to the share service
visitor.py owns the anonymous visitor cookie and attribution; pageviews.py publishes PageViewed without blocking;
security.py adds the CSP and friends to every HTML answer and renders HTML error pages for browsers.
"""
