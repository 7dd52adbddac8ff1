"""Report files served to approvers (Data Docs, drift and gate reports), boxed in: a report is third-party HTML and
script (Great Expectations, Evidently) opened in the approver's own Airflow origin, so it gets a sandbox.

Every report answers a Content-Security-Policy with ``sandbox allow-scripts`` and never ``allow-same-origin``: the
page runs in an opaque origin, so even a hostile script in it cannot read Airflow's cookies, the pages' DOM, or
call the API as the approver (``connect-src 'none'`` on top). Scripts, styles, fonts and images may come only from
this server (``'self'``) or be inline (the reports are single files with inline code); no third-party origin at all.

Data Docs load their libraries from CDNs (jQuery, Bootstrap, Vega, …; some on floating versions, most without
integrity). Exact copies from the npm registry live in ``static/vendor/`` with a manifest (package, version, file,
sha384); Data Docs HTML is rewritten on the way out so each CDN URL points at its copy with an ``integrity``
attribute, and any other external script or stylesheet is dropped. The copies are public files, served without
authentication and with ``Access-Control-Allow-Origin: *``: the sandboxed page is cross-origin to everything, so
its ``crossorigin="anonymous"`` requests (which integrity checks need) carry no cookie.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import PurePosixPath

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

VENDOR_URL = "/static/vendor"
_COMMON = [
    "default-src 'none'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
]
REPORT_CSP = "; ".join(["sandbox allow-scripts", "script-src 'self' 'unsafe-inline'", *_COMMON])
# Vega compiles its chart expressions with ``new Function``: Data Docs' charts need 'unsafe-eval', in the sandbox.
DATA_DOCS_CSP = "; ".join(
    ["sandbox allow-scripts", "script-src 'self' 'unsafe-inline' 'unsafe-eval'", *_COMMON]
)
ASSET_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
TYPES = {".js": "text/javascript", ".css": "text/css", ".woff2": "font/woff2"}


@dataclass(frozen=True)
class Vendored:
    """One vendored file: where it is served under ``static/vendor/`` and its SRI hash."""

    package: str
    version: str
    path: str
    sha384: str
    replaces: tuple[str, ...]


@lru_cache(maxsize=1)
def vendored() -> dict[str, Vendored]:
    """The manifest, by served path."""
    raw = json.loads((resources.files("airgate.web") / "static" / "vendor" / "manifest.json").read_text())
    files = [
        Vendored(f["package"], f["version"], f["path"], f["sha384"], tuple(f.get("replaces", ())))
        for f in raw["files"]
    ]
    return {f.path: f for f in files}


@lru_cache(maxsize=1)
def by_cdn_url() -> dict[str, Vendored]:
    return {url: f for f in vendored().values() for url in f.replaces}


_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_LINK = re.compile(r"<link\b([^>]*?)/?>", re.IGNORECASE)
_ATTR = re.compile(r"""([^\s=/>]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?""")
_EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//|\\\\)", re.IGNORECASE)
# Images and CSS backgrounds from elsewhere (data: and blob: stay: they never leave the browser). GX's logo <img>
# is a usage beacon (``?d=<time>&dataContextId=<id>``) and its dark theme a S3 background: the CSP blocks both, but
# the browser still tries (a console error per page), so they are taken out of the markup instead.
_FOREIGN = r"""(?:(?!data:|blob:)[a-z][a-z0-9+.-]*:|//|\\\\)"""
_IMG = re.compile(r"<img\b([^>]*?)/?>", re.IGNORECASE)
_STYLE = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.IGNORECASE | re.DOTALL)
_CSS_URL = re.compile(rf"""url\(\s*['"]?\s*{_FOREIGN}[^)]*\)""", re.IGNORECASE)


def _attrs(text: str) -> dict[str, str]:
    return {m.group(1).lower(): (m.group(2) or "").strip("\"'") for m in _ATTR.finditer(text)}


def _pinned(tag: str, attrs: dict[str, str], url_attr: str, vendor_root: str) -> str | None:
    """The tag pointed at the vendored copy of its external URL, or None (drop it) when there is none."""
    copy = by_cdn_url().get(attrs[url_attr].strip())
    if copy is None:
        return None
    kept = {k: v for k, v in attrs.items() if k not in {url_attr, "integrity", "crossorigin"}}
    kept.update(
        {
            url_attr: f"{vendor_root}{VENDOR_URL}/{copy.path}",
            "integrity": copy.sha384,
            "crossorigin": "anonymous",
        }
    )
    rendered = " ".join(f'{k}="{v}"' for k, v in kept.items())
    return f"<script {rendered}></script>" if tag == "script" else f"<link {rendered}>"


def _script(m: re.Match[str], vendor_root: str) -> str:
    attrs = _attrs(m.group(1))
    if "src" not in attrs or not _EXTERNAL.match(attrs["src"]):
        return m.group(0)
    return _pinned("script", attrs, "src", vendor_root) or ""


def _link(m: re.Match[str], vendor_root: str) -> str:
    attrs = _attrs(m.group(1))
    if "href" not in attrs or not _EXTERNAL.match(attrs["href"]):
        return m.group(0)
    return _pinned("link", attrs, "href", vendor_root) or ""


def _img(m: re.Match[str]) -> str:
    """An ``<img>`` from another origin keeps its alt text and loses its ``src`` (and ``srcset``)."""
    attrs = _attrs(m.group(1))
    if not any(re.match(rf"\s*{_FOREIGN}", attrs.get(k, ""), re.IGNORECASE) for k in ("src", "srcset")):
        return m.group(0)
    kept = {k: v for k, v in attrs.items() if k not in {"src", "srcset"}}
    return "<img " + " ".join(f'{k}="{v}"' for k, v in kept.items()) + ">"


def rewrite_data_docs(html: str, vendor_root: str) -> str:
    """Data Docs HTML with every external ``<script src>``/``<link href>`` replaced by its vendored copy (with
    integrity) or removed, and external images and ``<style>`` ``url()``s taken out; ``vendor_root`` is where the
    plugin is mounted (``/airgate``). Only markup is touched: the report's data is escaped text, never a tag."""
    html = _SCRIPT.sub(lambda m: _script(m, vendor_root), html)
    html = _LINK.sub(lambda m: _link(m, vendor_root), html)
    html = _IMG.sub(_img, html)
    return _STYLE.sub(lambda m: m.group(1) + _CSS_URL.sub("none", m.group(2)) + m.group(3), html)


def report_response(body: bytes, media_type: str, *, vendor_root: str | None = None) -> Response:
    """A report file, sandboxed; HTML of a Data Docs site (``vendor_root`` given) rewritten to the vendored files."""
    csp = REPORT_CSP
    if vendor_root is not None:
        csp = DATA_DOCS_CSP
        if media_type.startswith("text/html"):
            try:
                body = rewrite_data_docs(body.decode("utf-8"), vendor_root).encode("utf-8")
            except UnicodeDecodeError:
                pass  # served as stored: the CSP still blocks every third-party origin
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type=media_type, headers=headers)


router = APIRouter(tags=["vendored assets"])


@router.get(VENDOR_URL + "/{path:path}", responses={404: {"description": "Not a vendored file."}})
def vendored_asset(path: str) -> Response:
    """A vendored library file named in the manifest (nothing else): public, immutable, CORS-readable."""
    entry = vendored().get(path)
    if entry is None:
        raise HTTPException(404, "not a vendored file")
    data = (
        (resources.files("airgate.web") / "static" / "vendor").joinpath(*entry.path.split("/")).read_bytes()
    )
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Cache-Control": "public, max-age=31536000, immutable",
        "Content-Security-Policy": ASSET_CSP,
    }
    return Response(
        data, media_type=TYPES.get(PurePosixPath(path).suffix, "application/octet-stream"), headers=headers
    )
