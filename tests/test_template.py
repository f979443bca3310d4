"""The ``template`` plugin as CoreDNS's: matching by class, type, zone and regex, the rendered
sections, rcode and EDE, fallthrough, SERVFAIL for failures (counted in CoreDNS's metrics),
replays only for answers that do not name the client, and CoreDNS's setup errors."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

import plugins.template as template_plugin
from tests.kit.checks import docstring_examples, setup_error
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, wait_http
from tests.kit.tools import dig

IP_A = """\
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        authority "example. 60 IN NS ns0.example."
        additional "ns0.example. 60 IN A 203.0.113.8"
        fallthrough
    }"""

SERVED = f"""\
.:$PORT {{
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS
{IP_A}
    template IN A example {{
        match "^ip0a(?P<b>[a-f0-9]{{2}})(?P<c>[a-f0-9]{{2}})(?P<d>[a-f0-9]{{2}})[.]example[.]$"
        answer "{{{{ .Name }}}} 60 IN A 10.{{{{ parseInt .Group.b 16 8 }}}}.{{{{ parseInt .Group.c 16 8 }}}}.{{{{ parseInt .Group.d 16 8 }}}}"
        fallthrough
    }}
    template IN TXT example {{
        match ^(?P<word>[a-z]+)[.]txt[.]example[.]$
        answer "{{{{ .Name }}}} IN TXT \\"{{{{ index .Match 1 }}}} {{{{ .Group.word }}}} {{{{ .Group.nope }}}} {{{{ .Type }}}} {{{{ .Class }}}} {{{{ .Zone }}}}\\""
        answer "{{{{ .Name }}}} IN TXT \\"{{{{ .Question.Qtype }}}}\\""
    }}
    template ANY ANY invalid {{
        rcode NXDOMAIN
        authority "invalid. 60 {{{{ .Class }}}} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
    }}
    template IN TXT remote.test {{
        answer "{{{{ .Name }}}} 0 IN TXT \\"{{{{ .Remote }}}}\\""
    }}
    template IN A broken.test {{
        match ^(a)[.]
        fallthrough
        answer "{{{{ .Name }}}} 60 IN TXT \\"{{{{ index .Match 2 }}}}\\""
    }}
    template IN A broken.test {{
        match ^b[.]
        fallthrough
        answer "{{{{ .Name }}}}"
    }}
    template IN A broken.test {{
        match ^c[.]
        fallthrough
        rcode SERVFAIL
    }}
    template IN A broken.test {{
        match ^d[.]
        answer "{{{{ .Name }}}} 60 IN A {{{{ .Grup.d }}}}"
    }}
    whoami
}}
"""


@pytest.fixture
def served(dnsfw):
    port = free_port()
    d = dnsfw(SERVED.replace("$METRICS", str(port)))
    d.metrics_port = port
    wait_http(port, "/metrics")
    return d


def texts(section) -> list[str]:
    return [f"{rrset.name} {rrset.ttl} {rd.to_text()}" for rrset in section for rd in rrset]


def metric_lines(port: int, name: str) -> list[str]:
    status, _, body = get(port, "/metrics")
    assert status == 200
    return [line for line in body.splitlines() if line.startswith(name + "{")]


def test_named_groups_and_sections(served):
    reply = served.query("ip-10-95-12-8.example", "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert texts(reply.answer) == ["ip-10-95-12-8.example. 60 10.95.12.8"]
    assert texts(reply.authority) == ["example. 60 ns0.example."]
    assert texts(reply.additional) == ["ns0.example. 60 203.0.113.8"]
    assert texts(served.query("ip0a5f0c09.example", "A").answer) == [
        "ip0a5f0c09.example. 60 10.95.12.9"
    ]


def test_fields_and_several_answers(served):
    reply = served.query("hello.txt.example", "TXT")
    # TTL 3600 by default (miekg/dns's NewRR); a missing group is Go's "<no value>"
    assert texts(reply.answer) == [
        'hello.txt.example. 3600 "hello hello <no value> TXT IN example."',
        'hello.txt.example. 3600 "16"',
    ]


def test_a_query_of_type_any_matches_and_type_is_the_templates(served):
    reply = served.query("ip-1-2-3-4.example", "ANY")
    assert texts(reply.answer) == ["ip-1-2-3-4.example. 60 1.2.3.4"]


def test_rcode_authority_and_ede(served):
    reply = served.query("x.invalid", "MX", use_edns=0)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
    assert texts(reply.authority) == ["invalid. 60 ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
    ede = [o for o in reply.options if o.otype == dns.edns.EDE]
    assert ede and ede[0].code == 21 and ede[0].text == "Blocked according to RFC2606"
    assert "status: NXDOMAIN" in dig(served.port, "x.invalid", "A")


def test_fallthrough_and_servfail_without_it(served):
    # the first two templates fall through, the TXT one does not apply to A: whoami answers
    other = served.query("other.example", "A")
    assert other.answer == [] and len(other.additional) == 2
    # the TXT template has no fallthrough: a name it does not match is SERVFAIL
    assert served.query("1.txt.example", "TXT").rcode() == dns.rcode.SERVFAIL
    # outside every template's zone: the next plugin
    assert len(served.query("example.org", "A").additional) == 2


def test_failures_are_servfail_and_counted(served):
    for name in ("a.broken.test", "b.broken.test", "c.broken.test", "d.broken.test"):
        reply = served.query(name, "A")
        assert reply.rcode() == dns.rcode.SERVFAIL, name
        assert not reply.flags & dns.flags.AA
    port = served.metrics_port
    failures = metric_lines(port, "coredns_template_template_failures_total")
    assert any('section="answer"' in line and "index .Match 2" in line for line in failures)
    assert any("Grup" in line for line in failures), failures
    rr_failures = metric_lines(port, "coredns_template_rr_failures_total")
    assert len(rr_failures) == 1 and rr_failures[0].endswith(" 1.0"), rr_failures
    matches = metric_lines(port, "coredns_template_matches_total")
    assert any('zone="broken.test."' in line and 'type="A"' in line for line in matches)


def test_replays_count_matches_but_never_reuse_a_clients_answer(served):
    query = dns.message.make_query("ip-9-9-9-9.example", "A")
    for _ in range(5):  # the first answer, then replays of the same bytes
        reply = dns.query.udp(query, "127.0.0.1", port=served.port, timeout=3)
        assert texts(reply.answer) == ["ip-9-9-9-9.example. 60 9.9.9.9"]
    counted = metric_lines(served.metrics_port, "coredns_template_matches_total")
    line = next(line for line in counted if 'zone="example."' in line)
    assert line.endswith(" 5.0"), counted
    # .Remote: each client gets its own address, from 127.0.0.1 and from 127.0.0.2
    query = dns.message.make_query("remote.test", "TXT")
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"):
        reply = dns.query.udp(query, "127.0.0.1", port=served.port, timeout=3, source=source)
        assert texts(reply.answer) == [f'remote.test. 0 "{source}"']


def test_the_docstring_examples_set_up_and_answer(dnsfw, upstream):
    examples = docstring_examples(template_plugin)
    assert len(examples) == 5
    for text in examples:
        assert setup_error(text) is None, text
    resolve = examples[2].replace(". {", ".:$PORT {\n    bind 127.0.0.1", 1)
    d = dnsfw(resolve.replace("8.8.8.8", upstream.address))
    assert texts(d.query("ip-192-0-2-1.example", "A").answer) == [
        "ip-192-0-2-1.example. 60 192.0.2.1"
    ]
    assert texts(d.query("1.2.0.192.in-addr.arpa", "PTR").answer) == [
        "1.2.0.192.in-addr.arpa. 60 ip-192-0-2-1.example."
    ]
    # a PTR outside the regex: SERVFAIL (no fallthrough); other names: forwarded
    assert d.query("x.in-addr.arpa", "PTR").rcode() == dns.rcode.SERVFAIL
    assert texts(d.query("mail.example.com", "A").answer) == ["mail.example.com. 300 192.0.2.25"]


# --- setup: CoreDNS's plugin/template/setup_test.go -----------------------------------------

ACCEPTED = [
    'template ANY ANY {\n answer "{{ parseInt }}"\n additional "{{ parseInt }}"\n }',
    "template ANY ANY {\n }",
    "template ANY A example.com {\n match ip-(?P<a>[0-9]*)[.]example[.]com\n"
    ' answer "{{ .Name }} A {{ .Group.a }}.{{ .Grup.d }}."\n fallthrough\n }',
    'template IN ANY example.com {\n match "[.](example[.]com[.]dc1[.]example[.]com[.])$"\n'
    " rcode NXDOMAIN\n"
    ' authority "{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} h.example.com (1 60 60 60 60)"\n'
    " fallthrough example.com\n }",
    'template ANY ANY invalid {\n rcode NXDOMAIN\n ederror 21 "Blocked according to RFC2606"\n }',
    "template ANY ANY {\n upstream\n }",
    'template ANY ANY {\n answer "{{- .Name -}} 60 IN A {{/* a comment */}}10.0.0.1"\n }',
    'template ANY ANY {\n answer "{{ .Meta \\"foo\\" }}{{ .Name }} A 10.0.0.1"\n }',
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_setup_accepts(body: str):
    assert setup_error(f".:53 {{\n{body}\n}}\n") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "template",
            "2 - Error during parsing: Wrong argument count or unexpected line ending after 'template'",
        ),
        ("template X", "2 - Error during parsing: Wrong argument count"),
        ("template ANY", "2 - Error during parsing: Wrong argument count"),
        ("template X ANY", "2 - Error during parsing: invalid query class X"),
        ("template ANY X", "2 - Error during parsing: invalid RR class X"),
        (
            "template ANY ANY {\n notavailable\n }",
            "3 - Error during parsing: Wrong argument count or unexpected line ending after 'notavailable'",
        ),
        ("template ANY ANY {\n answer\n }", "3 - Error during parsing: Wrong argument count"),
        ("template ANY ANY {\n additional\n }", "3 - Error during parsing: Wrong argument count"),
        ("template ANY ANY {\n rcode\n }", "3 - Error during parsing: Wrong argument count"),
        (
            "template ANY ANY {\n rcode UNDEFINED\n }",
            "3 - Error during parsing: unknown rcode UNDEFINED",
        ),
        (
            'template ANY ANY {\n answer "{{"\n }',
            "3 - Error during parsing: could not compile template: {{, ",
        ),
        (
            'template ANY ANY {\n authority "{{"\n }',
            "3 - Error during parsing: could not compile template: {{, ",
        ),
        (
            'template ANY ANY {\n answer "{{ notAFunction }}"\n }',
            '3 - Error during parsing: could not compile template: {{ notAFunction }}, template: answer:1: function "notAFunction" not defined',
        ),
        (
            'template ANY ANY {\n answer "{{ .Name | printf }}"\n }',
            "3 - Error during parsing: could not compile template: {{ .Name | printf }}, template: answer:1: unsupported in dnsfw",
        ),
        (
            'template ANY ANY {\n answer "{{ if .Name }}x{{ end }}"\n }',
            "3 - Error during parsing: could not compile template",
        ),
        (
            'template ANY ANY {\n answer "{{ .Message }}"\n }',
            "3 - Error during parsing: could not compile template: {{ .Message }}, template: answer:1: unsupported in dnsfw",
        ),
        (
            'template ANY ANY invalid {\n ederror invalid "Blocked"\n }',
            "3 - Error during parsing: error parsing extended DNS error code",
        ),
        (
            "template ANY ANY invalid {\n ederror too many arguments\n }",
            "3 - Error during parsing: Wrong argument count",
        ),
        (
            "template ANY ANY {\n match (\n }",
            "3 - Error during parsing: could not parse regex: (, ",
        ),
        (
            "template ANY A example.com {\n match " + "a" * 10001 + "\n }",
            "3 - Error during parsing: regex pattern too long: 10001 > 10000",
        ),
    ],
)
def test_setup_errors(body: str, message: str):
    error = setup_error(f".:53 {{\n{body}\n}}\n")
    assert error is not None and error.startswith(f"plugin/template: Corefile:{message}"), error


def test_coredns_readme_examples(dnsfw, upstream):
    """CoreDNS's README examples not in the docstring: the search-domain guard (by zone and by
    regex) and the fabricated CNAME (answered without the target's lookup, see the docstring)."""
    d = dnsfw(
        """\
.:$PORT {
    bind 127.0.0.1
    forward . $UPSTREAM
    template IN ANY example.com.dc1.example.com {
      rcode NXDOMAIN
      authority "{{ .Zone }} 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)"
    }
    template IN ANY example.com {
      match "example\\.com\\.(dc1\\.example\\.com\\.)$"
      rcode NXDOMAIN
      authority "{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.{{ index .Match 1 }} (1 60 60 60 60)"
      fallthrough
    }
    template IN ANY foogle.com {
      match "^foogle\\.com\\.$"
      answer "foogle.com 60 IN CNAME google.com"
    }
}
""".replace("$UPSTREAM", upstream.address)
    )
    reply = d.query("something.example.com.dc1.example.com", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert texts(reply.authority) == [
        "example.com.dc1.example.com. 60 ns.example.com. hostmaster.example.com. 1 60 60 60 60"
    ]
    # the regex form's zone example.com: a name its regex does not match falls through
    assert texts(d.query("mail.example.com", "A").answer) == ["mail.example.com. 300 192.0.2.25"]
    cname = d.query("foogle.com", "A")
    assert cname.flags & dns.flags.AA
    assert texts(cname.answer) == ["foogle.com. 60 google.com."]
