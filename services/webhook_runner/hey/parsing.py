"""``hey`` command lines → ``Options``, with hey's flags, defaults and checks.

The line is split like a POSIX shell would split it (``shlex``: quotes and backslashes, no
variables, globs, pipes or redirections; nothing is ever run by a shell). The arguments are
then read with the rules of Go's ``flag`` package, which hey uses:

- ``-flag value``, ``-flag=value``; ``--flag`` is the same as ``-flag``;
- a boolean flag takes no value (``-flag``) or an attached one (``-flag=false``);
- a value may start with ``-`` (``-H -x`` sets the header ``-x``);
- flags stop at the first argument that is not a flag (or after ``--``); exactly one URL must
  come next;
- integers are read as Go reads them (``0x1f``, ``017`` octal, ``1_000``), durations as Go's
  ``time.ParseDuration`` (``10s``, ``1m``, ``1h30m``, ``1.5h``, ``300ms``);
- a flag given twice keeps its last value, except ``-H`` which adds a header each time.

Every problem raises ``UsageError``: its first line says what is wrong in the words of Go's flag
package or of hey (``flag provided but not defined: -foo``, ``invalid value "abc" for flag -n:
parse error``, ``-n cannot be less than -c.``), then the usage text follows, as hey prints it.

Where Sluice differs from hey on purpose, the difference is stricter or safer:
``-q``, ``-t`` and ``-z`` must not be negative (hey silently treats them as "no limit"), an
unknown ``-o`` is an error (hey would use it as a Go template), the URL must be http(s) with a
host, header values must not contain control characters, and the text of ``-H`` and ``-a``
values is never quoted back (they carry credentials). ``-h2`` and ``-cpus`` are accepted and
noted in ``Options.notes`` (requests always use HTTP/1.1, on one event loop).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
import re
import shlex

import yarl

from libs import errors, logs
from services.webhook_runner import urls
from services.webhook_runner.hey import goflags

HEY_USER_AGENT = "hey/0.0.1"  # what hey sends (after any user agent of the user's own)

USAGE = """\
Usage: hey [options...] <url>

Sluice runs this command line with its own load generator (no shell, no hey binary).

Options:
  -n  Requests to send in total (default 200), shared equally by the workers; the
      remainder of -n divided by -c is not sent. Ignored when -z is set.
  -c  Workers sending requests at the same time (default 50). -n cannot be smaller.
  -q  Rate limit of each worker, in requests per second (default 0: no limit).
      "-q 10 -c 2" sends at most 20 requests per second.
  -z  Send requests for this long, then stop (e.g. 30s, 5m, 1h30m); -n is ignored.
  -o  Output type: "csv" writes one line per response instead of the summary.

  -m  HTTP method (default GET).
  -H  Custom header as "Name: value"; repeat the flag for more headers.
  -t  Timeout of each request in seconds (default 20; 0 means no timeout).
  -A  Accept header.
  -d  Request body.
  -D  Request body read from a file under SLUICE_LOADTESTER_DATA_DIR.
  -T  Content-Type header (default "text/html").
  -U  User-Agent; "hey/0.0.1" is appended to it.
  -a  Basic authentication as username:password.
  -x  HTTP proxy as host:port.
  -h2 Accepted for compatibility; requests use HTTP/1.1.

  -host  Host header.

  -disable-compression  Do not ask for compressed responses.
  -disable-keepalive    Open a new connection for every request.
  -disable-redirects    Do not follow redirects; count the 3xx responses.
  -cpus                 Accepted for compatibility; has no effect.
"""


class UsageError(errors.InvalidInput):
    """A command line hey would refuse (or that Sluice refuses for safety).

    ``problem`` is the one-line reason; ``str(error)`` is the reason, a blank line and the
    usage text, like hey's own output. ``flag`` names the flag at fault (``-n``) when one is.
    """

    def __init__(self, problem: str, *, flag: str = "") -> None:
        super().__init__(f"{problem}\n\n{USAGE}", path=flag, expected="a valid hey command line")
        self.problem = problem
        self.flag = flag


class _Kind(enum.Enum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    DURATION = "duration"
    STRING = "string"
    HEADER = "header"  # -H: a string that accumulates


_FLAGS: dict[str, _Kind] = {
    "n": _Kind.INT,
    "c": _Kind.INT,
    "q": _Kind.FLOAT,
    "z": _Kind.DURATION,
    "o": _Kind.STRING,
    "m": _Kind.STRING,
    "H": _Kind.HEADER,
    "h": _Kind.STRING,  # hey's deprecated header flag: defined, so it takes a value
    "t": _Kind.INT,
    "A": _Kind.STRING,
    "d": _Kind.STRING,
    "D": _Kind.STRING,
    "T": _Kind.STRING,
    "U": _Kind.STRING,
    "a": _Kind.STRING,
    "x": _Kind.STRING,
    "host": _Kind.STRING,
    "h2": _Kind.BOOL,
    "cpus": _Kind.INT,
    "disable-compression": _Kind.BOOL,
    "disable-keepalive": _Kind.BOOL,
    "disable-redirects": _Kind.BOOL,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """One hey command line, parsed and checked. Durations are seconds.

    Credentials and bodies stay out of ``repr`` (``headers``, ``body``, ``basic_auth``).
    """

    url: str
    requests: int = 200  # -n (ignored when duration_s > 0)
    concurrency: int = 50  # -c
    qps: float = 0.0  # -q, per worker; 0 = no limit
    duration_s: float = 0.0  # -z; 0 = send ``requests`` requests
    output: str = ""  # -o: "" (summary) or "csv"
    method: str = "GET"  # -m, upper case
    headers: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)  # -H
    timeout_s: float = 20.0  # -t; 0 = no timeout
    accept: str = ""  # -A
    body: bytes = dataclasses.field(default=b"", repr=False)  # -d
    body_file: str = ""  # -D, read by the generator inside its data directory
    content_type: str = "text/html"  # -T
    user_agent: str = ""  # -U
    basic_auth: tuple[str, str] | None = dataclasses.field(default=None, repr=False)  # -a
    proxy: str = ""  # -x, as http://host:port
    host: str = ""  # -host
    http2: bool = False  # -h2 (no effect)
    cpus: int | None = None  # -cpus (no effect)
    disable_compression: bool = False
    disable_keepalive: bool = False
    disable_redirects: bool = False
    notes: tuple[str, ...] = ()  # what Sluice does differently for this line, for the log

    @property
    def requests_per_worker(self) -> int | None:
        """Requests each worker sends (hey drops the remainder), or None with ``-z``."""
        if self.duration_s > 0:
            return None
        return self.requests // self.concurrency

    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers of every request, composed in hey's order: Content-Type from ``-T``,
        then ``-H`` (a later value of the same name replaces an earlier one), Accept from
        ``-A``, the User-Agent, Host from ``-host``, Authorization from ``-a``.

        Accept-Encoding is the generator's business (``-disable-compression``)."""
        out: dict[str, tuple[str, str]] = {}

        def put(name: str, value: str) -> None:
            out[name.lower()] = (name, value)

        put("Content-Type", self.content_type)
        for name, value in self.headers:
            put(name, value)
        if self.accept:
            put("Accept", self.accept)
        user_agent = out.get("user-agent", ("", ""))[1]
        if self.user_agent:
            user_agent = self.user_agent
        put("User-Agent", f"{user_agent} {HEY_USER_AGENT}" if user_agent else HEY_USER_AGENT)
        if self.host:
            put("Host", self.host)
        if self.basic_auth is not None:
            credentials = ":".join(self.basic_auth).encode()
            put("Authorization", "Basic " + base64.b64encode(credentials).decode("ascii"))
        return tuple(out.values())


def parse(command: str) -> Options:
    """Parse a whole ``hey ...`` command line (as a Flagger loadtester webhook carries it)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise UsageError(f"cannot split the command line: {str(exc).lower()}") from None
    return parse_args(argv)


def parse_args(argv: list[str]) -> Options:
    """Parse ``["hey", flags..., url]``."""
    if not argv:
        raise UsageError("empty command: expected hey [options...] <url>")
    program = argv[0]
    if program != "hey" and not program.endswith("/hey"):
        raise UsageError(
            f"unsupported command {goflags.quote(program)}: only hey command lines run here"
        )
    values, rest = _read_flags(argv[1:])
    return _build(values, rest)


# ----------------------------------------------------------------------------- Go's flag rules


def _read_flags(args: list[str]) -> tuple[dict[str, object], list[str]]:
    values: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            i += 1
            break
        name = arg[2:] if arg[1] == "-" else arg[1:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {logs.clip(arg, 100)}")
        i += 1
        name, eq, value = name.partition("=")
        kind = _FLAGS.get(name)
        if kind is None:
            if name == "help":
                raise UsageError("flag: help requested")
            shown = f"-{logs.clip(name, 100)}"
            raise UsageError(f"flag provided but not defined: {shown}", flag=shown)
        if kind is _Kind.BOOL:
            if not eq or value in ("1", "t", "T", "TRUE", "true", "True"):
                values[name] = True
            elif value in ("0", "f", "F", "FALSE", "false", "False"):
                values[name] = False
            else:
                raise UsageError(
                    f"invalid boolean value {goflags.quote(value)} for -{name}: parse error",
                    flag=f"-{name}",
                )
            continue
        if not eq:
            if i >= len(args):
                raise UsageError(f"flag needs an argument: -{name}", flag=f"-{name}")
            value = args[i]
            i += 1
        if kind is _Kind.HEADER:
            headers = values.setdefault(name, [])
            assert isinstance(headers, list)
            headers.append(value)
            continue
        try:
            values[name] = _convert(kind, value)
        except goflags.ValueProblem as exc:
            raise UsageError(
                f"invalid value {goflags.quote(value)} for flag -{name}: {exc}", flag=f"-{name}"
            ) from None
    return values, args[i:]


def _convert(kind: _Kind, text: str) -> object:
    if kind is _Kind.INT:
        return goflags.parse_int(text)
    if kind is _Kind.FLOAT:
        return goflags.parse_float(text)
    if kind is _Kind.DURATION:
        return goflags.parse_duration(text)
    return text


# ----------------------------------------------------------------------------- hey's own checks

# hey: ``^([\w-]+):\s*(.+)`` and ``^(.+):([^\s].+)`` with Go's ASCII classes
_HEADER = re.compile(r"([0-9A-Za-z_-]+):[\t\n\f\r ]*(.+)")
_AUTH = re.compile(r"(.+):([^\t\n\f\r ].+)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed in header values
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP method (RFC 9110 token)


def _canonical(name: str) -> str:
    """Go's canonical header key: ``content-type`` → ``Content-Type``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _header_value(flag: str, name: str, value: str) -> str:
    if _CONTROL.search(value):
        raise UsageError(
            f"flag {flag}: invalid header field value for {goflags.quote(name)}: control characters",
            flag=flag,
        )
    return value


class _Values:
    """The flags read from the command line, with typed access and hey's defaults."""

    def __init__(self, values: dict[str, object]) -> None:
        self._values = values

    def given(self, name: str) -> bool:
        return name in self._values

    def integer(self, name: str, default: int) -> int:
        value = self._values.get(name, default)
        assert isinstance(value, int)
        return value

    def number(self, name: str, default: float) -> float:
        value = self._values.get(name, default)
        assert isinstance(value, float | int)
        return float(value)

    def text(self, name: str, default: str = "") -> str:
        value = self._values.get(name, default)
        assert isinstance(value, str)
        return value

    def switch(self, name: str) -> bool:
        value = self._values.get(name, False)
        assert isinstance(value, bool)
        return value

    def texts(self, name: str) -> list[str]:
        value = self._values.get(name, [])
        assert isinstance(value, list)
        return value


def _build(values: dict[str, object], rest: list[str]) -> Options:
    flags = _Values(values)
    if not rest:
        raise UsageError("missing URL: expected hey [options...] <url>")
    if len(rest) > 1:
        extra = " ".join(goflags.quote(a) for a in rest[1:4]) + (" ..." if len(rest) > 4 else "")
        raise UsageError(
            f"expected exactly one URL after the flags, got {len(rest)} arguments "
            f"(extra: {extra}); flags must come before the URL"
        )
    url = rest[0]

    requests = flags.integer("n", 200)
    concurrency = flags.integer("c", 50)
    duration_s = flags.number("z", 0.0)
    if duration_s < 0:
        raise UsageError("-z cannot be negative.", flag="-z")
    if duration_s > 0:
        if concurrency <= 0:
            raise UsageError("-c cannot be smaller than 1.", flag="-c")
    else:
        if requests <= 0 or concurrency <= 0:
            flag = "-n" if requests <= 0 else "-c"
            raise UsageError("-n and -c cannot be smaller than 1.", flag=flag)
        if requests < concurrency:
            raise UsageError("-n cannot be less than -c.", flag="-n")

    qps = flags.number("q", 0.0)
    if math.isnan(qps) or math.isinf(qps) or qps < 0:
        raise UsageError(
            f"invalid value for flag -q: expected 0 (no limit) or a positive rate, got {qps}",
            flag="-q",
        )
    timeout = flags.integer("t", 20)
    if timeout < 0:
        raise UsageError("-t cannot be negative (0 means no timeout).", flag="-t")

    if flags.text("h"):
        raise UsageError("Flag '-h' is deprecated, please use '-H' instead.", flag="-h")

    headers: dict[str, tuple[str, str]] = {}
    for raw in flags.texts("H"):
        match = _HEADER.match(raw)
        if match is None:
            # the value is not quoted back: it is often an Authorization header
            raise UsageError(
                'flag -H: could not parse the provided input; expected "Name: value"',
                flag="-H",
            )
        name = _canonical(match.group(1))
        headers[name.lower()] = (name, _header_value("-H", name, match.group(2)))

    basic_auth: tuple[str, str] | None = None
    auth = flags.text("a")
    if auth:
        match = _AUTH.match(auth)
        if match is None:
            raise UsageError(
                "flag -a: could not parse the provided input; expected username:password "
                "(a password of at least two characters, as hey requires)",
                flag="-a",
            )
        basic_auth = (match.group(1), match.group(2))
        if _CONTROL.search(auth):
            raise UsageError("flag -a: control characters in username:password", flag="-a")

    output = flags.text("o")
    if output not in ("", "csv"):
        raise UsageError(
            f'invalid output type {goflags.quote(output)} for flag -o: only "csv" is supported',
            flag="-o",
        )

    method = flags.text("m", "GET").upper()
    if not _TOKEN.fullmatch(method):
        raise UsageError(f"net/http: invalid method {goflags.quote(method)}", flag="-m")

    problem = urls.url_problem(url)
    if problem is not None:
        raise UsageError(f"invalid URL: {problem}")

    proxy = _proxy(flags.text("x"))
    content_type = _header_value("-T", "Content-Type", flags.text("T", "text/html"))
    accept = _header_value("-A", "Accept", flags.text("A"))
    user_agent = _header_value("-U", "User-Agent", flags.text("U"))
    host = _header_value("-host", "Host", flags.text("host"))

    notes: list[str] = []
    http2 = flags.switch("h2")
    if http2:
        if url.lower().startswith("http://"):
            notes.append("-h2: requests use HTTP/1.1 (so does hey for an http:// URL)")
        else:
            notes.append("-h2: Sluice's load generator speaks HTTP/1.1 only")
    cpus = flags.integer("cpus", 0) if flags.given("cpus") else None
    if cpus is not None:
        notes.append("-cpus has no effect: the load generator runs on one event loop")
    if duration_s == 0 and requests % concurrency:
        sent = requests // concurrency * concurrency
        notes.append(
            f"-n {requests} is not a multiple of -c {concurrency}: "
            f"{sent} requests are sent, as hey does"
        )
    if duration_s > 0 and flags.given("n"):
        notes.append("-n is ignored because -z is set")
    body_file = flags.text("D")
    if body_file and flags.text("d"):
        notes.append("-D replaces the body given with -d")

    return Options(
        url=url,
        requests=requests,
        concurrency=concurrency,
        qps=qps,
        duration_s=duration_s,
        output=output,
        method=method,
        headers=tuple(headers.values()),
        timeout_s=float(timeout),
        accept=accept,
        body=flags.text("d").encode(),
        body_file=body_file,
        content_type=content_type,
        user_agent=user_agent,
        basic_auth=basic_auth,
        proxy=proxy,
        host=host,
        http2=http2,
        cpus=cpus,
        disable_compression=flags.switch("disable-compression"),
        disable_keepalive=flags.switch("disable-keepalive"),
        disable_redirects=flags.switch("disable-redirects"),
        notes=tuple(notes),
    )


def _proxy(text: str) -> str:
    """``-x host:port`` (hey's documented form) or ``http://host:port`` → ``http://host:port``."""
    if not text:
        return ""
    candidate = text if "://" in text else f"http://{text}"
    if candidate.lower().startswith("http://"):
        problem = urls.url_problem(candidate)
        if problem is None:
            parsed = yarl.URL(candidate)
            if parsed.path in ("", "/") and not parsed.query_string and not parsed.fragment:
                return candidate.rstrip("/")
            problem = "expected host:port without a path"
    else:
        problem = "only http:// proxies are supported"
    raise UsageError(f"invalid value {goflags.quote(text)} for flag -x: {problem}", flag="-x")
