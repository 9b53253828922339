"""hey command lines → ``Options``: every flag, Go's flag syntax, and every way to get it wrong."""

from __future__ import annotations

import base64

import pytest

from libs import errors
from services.webhook_runner.hey import parsing

URL = "http://podinfo-canary.test:9898/api/info"


def parse(line: str) -> parsing.Options:
    return parsing.parse(line)


def problem(line: str) -> parsing.UsageError:
    with pytest.raises(parsing.UsageError) as caught:
        parsing.parse(line)
    return caught.value


# ----------------------------------------------------------------------------- defaults and flags


def test_defaults_are_heys() -> None:
    options = parse(f"hey {URL}")
    assert options == parsing.Options(url=URL)
    assert (options.requests, options.concurrency, options.qps, options.duration_s) == (
        200,
        50,
        0.0,
        0.0,
    )
    assert (options.method, options.timeout_s, options.content_type, options.output) == (
        "GET",
        20.0,
        "text/html",
        "",
    )
    assert options.requests_per_worker == 4
    assert options.request_headers() == (
        ("Content-Type", "text/html"),
        ("User-Agent", "hey/0.0.1"),
    )


def test_the_flagger_tutorial_command() -> None:
    options = parse(
        "hey -z 1m -q 10 -c 2 -h2 -host app.example.com http://apisix-gateway.apisix/api/info"
    )
    assert options.duration_s == 60.0
    assert options.qps == 10.0
    assert options.concurrency == 2
    assert options.http2 is True
    assert options.host == "app.example.com"
    assert options.requests_per_worker is None
    assert options.notes == ("-h2: requests use HTTP/1.1 (so does hey for an http:// URL)",)


FLAGS = [
    # (flags, field, expected)
    ("-n 1000", "requests", 1000),
    ("-c 10 -n 10", "concurrency", 10),
    ("-q 10", "qps", 10.0),
    ("-q 2.5", "qps", 2.5),
    ("-q 0", "qps", 0.0),
    ("-z 30s", "duration_s", 30.0),
    ("-o csv", "output", "csv"),
    ("-m post", "method", "POST"),
    ("-m PATCH", "method", "PATCH"),
    ("-t 5", "timeout_s", 5.0),
    ("-t 0", "timeout_s", 0.0),
    ("-A application/json", "accept", "application/json"),
    ("-d hello", "body", b"hello"),
    ("-d 'a b c'", "body", b"a b c"),
    ("-D bodies/order.json", "body_file", "bodies/order.json"),
    ("-T application/json", "content_type", "application/json"),
    ("-U probe/1.0", "user_agent", "probe/1.0"),
    ("-a user:secret", "basic_auth", ("user", "secret")),
    ("-a user:pa:ss", "basic_auth", ("user:pa", "ss")),  # hey's regexp is greedy
    ("-x 127.0.0.1:3128", "proxy", "http://127.0.0.1:3128"),
    ("-x http://proxy.local:3128/", "proxy", "http://proxy.local:3128"),
    ("-x http://u:p@proxy.local:3128", "proxy", "http://u:p@proxy.local:3128"),
    ("-host app.example.com", "host", "app.example.com"),
    ("-h2", "http2", True),
    ("-cpus 4", "cpus", 4),
    ("-disable-compression", "disable_compression", True),
    ("-disable-keepalive", "disable_keepalive", True),
    ("-disable-redirects", "disable_redirects", True),
    ("-H 'X-Trace: 1'", "headers", (("X-Trace", "1"),)),
    (
        "-H 'x-trace:1' -H 'X-Other: two words'",
        "headers",
        (("X-Trace", "1"), ("X-Other", "two words")),
    ),
    ("-H 'X-Trace: 1' -H 'x-trace: 2'", "headers", (("X-Trace", "2"),)),  # Set, not Add
]


@pytest.mark.parametrize(("flags", "field", "expected"), FLAGS)
def test_every_flag(flags: str, field: str, expected: object) -> None:
    assert getattr(parse(f"hey {flags} {URL}"), field) == expected


GO_SYNTAX = [
    # (flags, field, expected): the same flag in each spelling Go's flag package accepts
    ("-n=300", "requests", 300),
    ("--n 300", "requests", 300),
    ("--n=300", "requests", 300),
    ("-n 300 -n 400", "requests", 400),  # the last one wins
    ("-n 0x12C", "requests", 300),
    ("-n 0454", "requests", 300),  # a leading 0 means octal
    ("-n 0o454", "requests", 300),
    ("-n 0b100101100", "requests", 300),
    ("-n 3_00", "requests", 300),
    ("-n +300", "requests", 300),
    ("-disable-keepalive=true", "disable_keepalive", True),
    ("-disable-keepalive=false", "disable_keepalive", False),
    ("-disable-keepalive=1", "disable_keepalive", True),
    ("-disable-keepalive=F", "disable_keepalive", False),
    ("--disable-keepalive=TRUE", "disable_keepalive", True),
    ("-h2=0", "http2", False),
    ("-d -x", "body", b"-x"),  # a value may look like a flag
    ("-d=", "body", b""),
    ("-H=X-A:b", "headers", (("X-A", "b"),)),
    ("-q 1e1", "qps", 10.0),
    ("-q .5", "qps", 0.5),
    ("-q 5.", "qps", 5.0),
    ("-q 0x1p-2", "qps", 0.25),
    ("-q 1_0.5", "qps", 10.5),
]


@pytest.mark.parametrize(("flags", "field", "expected"), GO_SYNTAX)
def test_go_flag_syntax(flags: str, field: str, expected: object) -> None:
    assert getattr(parse(f"hey {flags} {URL}"), field) == expected


def test_double_dash_ends_the_flags() -> None:
    assert parse(f"hey -n 10 -c 1 -- {URL}").requests == 10
    assert parsing.parse_args(["hey", "--", URL]).url == URL


@pytest.mark.parametrize("program", ["hey", "/usr/local/bin/hey", "./hey", "/hey"])
def test_the_program_is_hey(program: str) -> None:
    assert parsing.parse_args([program, URL]).url == URL


DURATIONS = [
    ("0", 0.0),
    ("5s", 5.0),
    ("+5s", 5.0),
    ("1m", 60.0),
    ("1h30m", 5400.0),
    ("1.5h", 5400.0),
    ("300ms", 0.3),
    (".5s", 0.5),
    ("1.s", 1.0),
    ("2us", 2e-6),
    ("2\u00b5s", 2e-6),
    ("2\u03bcs", 2e-6),
    ("100ns", 1e-7),
    ("1h2m3.5s", 3723.5),
    ("1m1m", 120.0),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations_as_go_reads_them(text: str, seconds: float) -> None:
    assert parsing.parse_args(["hey", "-z", text, URL]).duration_s == pytest.approx(seconds)


# ----------------------------------------------------------------------------- malformed lines

MALFORMED = [
    # (command line, first line of the error, flag at fault)
    ("", "empty command: expected hey [options...] <url>", ""),
    (f"curl {URL}", 'unsupported command "curl": only hey command lines run here', ""),
    (f"heyy {URL}", 'unsupported command "heyy": only hey command lines run here', ""),
    ("hey", "missing URL: expected hey [options...] <url>", ""),
    ("hey -n 10 -c 1", "missing URL: expected hey [options...] <url>", ""),
    (f'hey -H "X-A: b {URL}', "cannot split the command line: no closing quotation", ""),
    (f"hey {URL} \\", "cannot split the command line: no escaped character", ""),
    (f"hey -foo {URL}", "flag provided but not defined: -foo", "-foo"),
    (f"hey -N 10 {URL}", "flag provided but not defined: -N", "-N"),
    (f"hey -help {URL}", "flag: help requested", ""),
    (f"hey --- {URL}", "bad flag syntax: ---", ""),
    (f"hey -=5 {URL}", "bad flag syntax: -=5", ""),
    ("hey -n", "flag needs an argument: -n", "-n"),
    (f"hey -n abc {URL}", 'invalid value "abc" for flag -n: parse error', "-n"),
    (f"hey -n 1.5 {URL}", 'invalid value "1.5" for flag -n: parse error', "-n"),
    (f"hey -n 1e3 {URL}", 'invalid value "1e3" for flag -n: parse error', "-n"),
    (f"hey -n 08 {URL}", 'invalid value "08" for flag -n: parse error', "-n"),
    (f"hey -n 1__0 {URL}", 'invalid value "1__0" for flag -n: parse error', "-n"),
    (f"hey -n _10 {URL}", 'invalid value "_10" for flag -n: parse error', "-n"),
    (f"hey -n 0x {URL}", 'invalid value "0x" for flag -n: parse error', "-n"),
    (f"hey -n '' {URL}", 'invalid value "" for flag -n: parse error', "-n"),
    (f"hey -n \u0661 {URL}", 'invalid value "\u0661" for flag -n: parse error', "-n"),
    (
        f"hey -n 99999999999999999999 {URL}",
        'invalid value "99999999999999999999" for flag -n: value out of range',
        "-n",
    ),
    (f"hey -c abc {URL}", 'invalid value "abc" for flag -c: parse error', "-c"),
    (f"hey -n 0 {URL}", "-n and -c cannot be smaller than 1.", "-n"),
    (f"hey -n -5 {URL}", "-n and -c cannot be smaller than 1.", "-n"),
    (f"hey -c 0 {URL}", "-n and -c cannot be smaller than 1.", "-c"),
    (f"hey -n 10 -c 20 {URL}", "-n cannot be less than -c.", "-n"),
    (f"hey -n 10 {URL}", "-n cannot be less than -c.", "-n"),  # -c defaults to 50
    (f"hey -z 10s -c 0 {URL}", "-c cannot be smaller than 1.", "-c"),
    (f"hey -q abc {URL}", 'invalid value "abc" for flag -q: parse error', "-q"),
    (f"hey -q 1e400 {URL}", 'invalid value "1e400" for flag -q: value out of range', "-q"),
    (f"hey -q 0x1 {URL}", 'invalid value "0x1" for flag -q: parse error', "-q"),
    (f"hey -q ' 1' {URL}", 'invalid value " 1" for flag -q: parse error', "-q"),
    (
        f"hey -q -1 {URL}",
        "invalid value for flag -q: expected 0 (no limit) or a positive rate, got -1.0",
        "-q",
    ),
    (
        f"hey -q NaN {URL}",
        "invalid value for flag -q: expected 0 (no limit) or a positive rate, got nan",
        "-q",
    ),
    (
        f"hey -q inf {URL}",
        "invalid value for flag -q: expected 0 (no limit) or a positive rate, got inf",
        "-q",
    ),
    (f"hey -z 10 {URL}", 'invalid value "10" for flag -z: parse error', "-z"),
    (f"hey -z 5x {URL}", 'invalid value "5x" for flag -z: parse error', "-z"),
    (f"hey -z s {URL}", 'invalid value "s" for flag -z: parse error', "-z"),
    (f"hey -z .s {URL}", 'invalid value ".s" for flag -z: parse error', "-z"),
    (f"hey -z 1e3s {URL}", 'invalid value "1e3s" for flag -z: parse error', "-z"),
    (f"hey -z '5 s' {URL}", 'invalid value "5 s" for flag -z: parse error', "-z"),
    (f"hey -z '' {URL}", 'invalid value "" for flag -z: parse error', "-z"),
    (f"hey -z 3000000h {URL}", 'invalid value "3000000h" for flag -z: parse error', "-z"),
    (f"hey -z -1s {URL}", "-z cannot be negative.", "-z"),
    (f"hey -t 1.5 {URL}", 'invalid value "1.5" for flag -t: parse error', "-t"),
    (f"hey -t -1 {URL}", "-t cannot be negative (0 means no timeout).", "-t"),
    (f"hey -cpus x {URL}", 'invalid value "x" for flag -cpus: parse error', "-cpus"),
    (
        f"hey -o json {URL}",
        'invalid output type "json" for flag -o: only "csv" is supported',
        "-o",
    ),
    (
        f"hey -H novalue {URL}",
        'flag -H: could not parse the provided input; expected "Name: value"',
        "-H",
    ),
    (
        f"hey -H 'Bad Name: v' {URL}",
        'flag -H: could not parse the provided input; expected "Name: value"',
        "-H",
    ),
    (
        f"hey -H 'X-A:' {URL}",
        'flag -H: could not parse the provided input; expected "Name: value"',
        "-H",
    ),
    (
        f"hey -H $'X-A: b\\rc' {URL}",  # shlex keeps "$'...'" literal: still no CR allowed below
        'flag -H: invalid header field value for "X-A": control characters',
        "-H",
    ),
    (
        f"hey -a user {URL}",
        "flag -a: could not parse the provided input; expected username:password "
        "(a password of at least two characters, as hey requires)",
        "-a",
    ),
    (
        f"hey -a u:p {URL}",
        "flag -a: could not parse the provided input; expected username:password "
        "(a password of at least two characters, as hey requires)",
        "-a",
    ),
    (f"hey -h 'X: y' {URL}", "Flag '-h' is deprecated, please use '-H' instead.", "-h"),
    (f"hey -m 'G T' {URL}", 'net/http: invalid method "G T"', "-m"),
    (f"hey -m '' {URL}", 'net/http: invalid method ""', "-m"),
    (
        f"hey -x ftp://proxy:21 {URL}",
        'invalid value "ftp://proxy:21" for flag -x: only http:// proxies are supported',
        "-x",
    ),
    (
        f"hey -x proxy:3128/path {URL}",
        'invalid value "proxy:3128/path" for flag -x: expected host:port without a path',
        "-x",
    ),
    (
        f"hey -x :3128 {URL}",
        'invalid value ":3128" for flag -x: cannot be parsed '
        "(Invalid URL: host is required for absolute urls with the http scheme)",
        "-x",
    ),
    ("hey ftp://files.example.com/", 'invalid URL: scheme must be http or https, got "ftp"', ""),
    ("hey http://", "invalid URL: no host", ""),
    ("hey podinfo:9898", 'invalid URL: scheme must be http or https, got "podinfo"', ""),
    (
        f"hey {URL} extra",
        'expected exactly one URL after the flags, got 2 arguments (extra: "extra"); '
        "flags must come before the URL",
        "",
    ),
    (
        f"hey {URL} -n 5",  # flags stop at the URL, as in Go
        'expected exactly one URL after the flags, got 3 arguments (extra: "-n" "5"); '
        "flags must come before the URL",
        "",
    ),
    (
        f"hey -disable-redirects=maybe {URL}",
        'invalid boolean value "maybe" for -disable-redirects: parse error',
        "-disable-redirects",
    ),
    (f"hey -h2=yes {URL}", 'invalid boolean value "yes" for -h2: parse error', "-h2"),
    (
        f"hey -T $'text/html\\n' {URL}",
        'flag -T: invalid header field value for "Content-Type": control characters',
        "-T",
    ),
]


@pytest.mark.parametrize(("line", "expected", "flag"), MALFORMED)
def test_malformed_command_lines(line: str, expected: str, flag: str) -> None:
    if "$'" in line:  # write control characters literally (shlex does not know $'...')
        line = line.replace("$'", "'").replace("\\r", "\r").replace("\\n", "\n")
    error = problem(line)
    assert error.problem == expected
    assert error.flag == flag
    assert str(error) == f"{expected}\n\n{parsing.USAGE}"


def test_a_usage_error_is_a_permanent_invalid_input() -> None:
    error = problem(f"hey -n abc {URL}")
    assert isinstance(error, errors.InvalidInput)
    assert not error.temporary
    assert error.path == "-n"


@pytest.mark.parametrize(
    "line",
    [
        f"hey -H 'Authorization Bearer SECRET' {URL}",
        f"hey -a SECRET {URL}",
        f"hey -a user:S {URL}",
    ],
)
def test_credentials_are_never_quoted_back(line: str) -> None:
    error = problem(line)
    assert "SECRET" not in str(error)
    assert ":S" not in error.problem


def test_credentials_stay_out_of_repr() -> None:
    options = parse(f"hey -a user:SECRET -H 'Authorization: Bearer SECRET' -d SECRET {URL}")
    assert "SECRET" not in repr(options)


def test_long_values_are_clipped_in_messages() -> None:
    error = problem(f"hey -n {'9' * 5000}x {URL}")
    assert len(error.problem) < 300


def test_the_usage_lists_every_flag() -> None:
    for flag in [
        "-n",
        "-c",
        "-q",
        "-z",
        "-o",
        "-m",
        "-H",
        "-t",
        "-A",
        "-d",
        "-D",
        "-T",
        "-U",
        "-a",
        "-x",
        "-h2",
        "-host",
        "-disable-compression",
        "-disable-keepalive",
        "-disable-redirects",
        "-cpus",
    ]:
        assert f"  {flag} " in parsing.USAGE, flag


# ----------------------------------------------------------------------------- composed requests


def test_request_headers_in_heys_order_and_precedence() -> None:
    options = parse(
        "hey -T application/json -H 'content-type: text/plain' -H 'Accept: a/b' -A c/d "
        f"-H 'User-Agent: probe' -host app.example.com -a user:secret {URL}"
    )
    assert options.request_headers() == (
        ("Content-Type", "text/plain"),  # -H replaces -T, as header.Set does in hey
        ("Accept", "c/d"),  # -A replaces -H Accept
        ("User-Agent", "probe hey/0.0.1"),
        ("Host", "app.example.com"),
        ("Authorization", "Basic " + base64.b64encode(b"user:secret").decode()),
    )


def test_user_agent_flag_replaces_a_header_user_agent() -> None:
    options = parse(f"hey -H 'User-Agent: probe' -U mine {URL}")
    assert dict(options.request_headers())["User-Agent"] == "mine hey/0.0.1"


def test_notes_say_what_has_no_effect() -> None:
    assert parse(f"hey -h2 -cpus 2 -n 10 -c 3 {URL}").notes == (
        "-h2: requests use HTTP/1.1 (so does hey for an http:// URL)",
        "-cpus has no effect: the load generator runs on one event loop",
        "-n 10 is not a multiple of -c 3: 9 requests are sent, as hey does",
    )
    assert parse("hey -h2 https://app.example.com/").notes == (
        "-h2: Sluice's load generator speaks HTTP/1.1 only",
    )
    assert parse(f"hey -z 1s -n 5 -d a -D b {URL}").notes == (
        "-n is ignored because -z is set",
        "-D replaces the body given with -d",
    )
