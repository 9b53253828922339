"""A webhook's URL is the user's secret: check it before use, and scrub it from every text.

Webhook URLs carry tokens in their query, path or userinfo (Slack-style hooks, load testers
behind basic auth). ``url_problem`` says what makes a URL unusable without quoting it, and
``scrub`` replaces every spelling of it (raw, normalised, its path and query alone, its
credentials) in an error text with ``logs.redact_url``'s short form.
"""

from __future__ import annotations

import re

import yarl

from libs import logs

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s")

# Longer URLs are refused before any parsing: no webhook needs one, and parsing, scrubbing and
# the patterns built from a megabyte-long URL would hold the event loop for seconds.
MAX_URL_CHARS = 2048
MAX_TEXT_CHARS = 4096  # of a text to scrub (an error text; what is kept of it is shorter)


def url_problem(url: str) -> str | None:
    """What makes ``url`` unusable for a webhook, in words that never quote its path, query or
    credentials; ``None`` when it is fine."""
    if len(url) > MAX_URL_CHARS:
        return f"is {len(url)} characters long; expected at most {MAX_URL_CHARS}"
    if _CONTROL.search(url):
        return "contains control characters"
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        return f"cannot be parsed ({scrub(str(exc), url)})"
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme[:16]
        return f'scheme must be http or https, got "{scheme}"' if scheme else "no http(s) scheme"
    if not parsed.host:
        return "no host"
    if _WHITESPACE.search(parsed.host):
        return "host contains whitespace"
    return None


# scheme://authority then the rest (path, query, fragment), read without parsing the URL
_SPLIT = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:(?://(?P<authority>[^/?#]*))?(?P<rest>.*)$", re.S)
# any URL-looking word in a text; trailing punctuation is left out
# (the scheme's length is bounded so that scanning a long text stays linear)
_ANY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s\"'<>]*[^\s\"'<>)\]},.;:!?]")


def _url_forms(url: str) -> dict[str, str]:
    """Every spelling of ``url`` or of its secret-bearing parts an error text may contain,
    each with what replaces it."""
    whole = logs.redact_url(url)
    forms: dict[str, str] = {}

    def add(text: str | None, replacement: str, min_len: int = 2) -> None:
        if text and len(text) >= min_len and text not in ("/", "//"):
            forms.setdefault(text, replacement)

    def rest_forms(authority: str | None, rest: str) -> None:
        add(rest, "/…" if rest.startswith("/") else "…")
        query = rest.partition("?")[2].partition("#")[0]
        add("?" + query if query else None, "?…")
        if authority and "@" in authority:
            userinfo = authority.rpartition("@")[0]
            add(userinfo + "@", "")
            add(userinfo, "…", min_len=4)
            add(userinfo.partition(":")[2], "…", min_len=4)  # the password alone

    for text in (url, url.strip()):
        add(text, whole)
        match = _SPLIT.match(text)
        if match:
            rest_forms(match.group("authority"), match.group("rest"))
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        return forms
    for spelling in (str(parsed), parsed.human_repr()):
        add(spelling, whole)
        match = _SPLIT.match(spelling)
        if match:
            rest_forms(match.group("authority"), match.group("rest"))
    add(parsed.raw_path_qs, "/…")
    add(parsed.path_qs, "/…")
    return forms


def scrub(text: str, url: str, *, other_urls: bool = True) -> str:
    """``text`` with ``url`` (whole, or its path + query, or its credentials, in any spelling)
    replaced by its redacted form ``logs.redact_url(url)``; with ``other_urls`` every other
    URL-looking word is redacted too (a redirect target may carry a token as well).

    A text longer than ``MAX_TEXT_CHARS`` is cut first; a URL longer than ``MAX_URL_CHARS``
    (refused by ``url_problem``) is not looked for: the text becomes a placeholder if it
    contains its start."""
    text = text[:MAX_TEXT_CHARS]
    if len(url) > MAX_URL_CHARS:
        return "<text withheld: it may quote an over-long url>" if url[:64] in text else text
    forms = _url_forms(url)
    if forms:
        pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
        text = pattern.sub(lambda m: forms[m.group(0)], text)
    if other_urls:
        text = _ANY_URL.sub(lambda m: logs.redact_url(m.group(0)), text)
    return text
