"""Hand-built multipart bodies, so upload tests can send bytes no well-behaved client library would produce."""

from __future__ import annotations

BOUNDARY = "howhot-test-boundary"
RAW_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def part(name: str, body: bytes, *, filename: bytes | None = None, content_type: str | None = None) -> bytes:
    """One raw multipart part (filename as raw bytes: NUL, ../ and non-UTF-8 included)."""
    disposition = b'form-data; name="' + name.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    head = b"Content-Disposition: " + disposition + b"\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n".encode()
    return b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n" + body + b"\r\n"


def raw_body(*parts: bytes) -> bytes:
    """The parts followed by the closing boundary."""
    return b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"
