"""The ``log`` plugin without sockets: Corefile validation, CoreDNS placeholders, response
classes, and Route 53 JSON lines compared byte for byte with real Route 53 log lines."""

from __future__ import annotations

import calendar
import io
import json
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from commands.audit.scan import Inventory
from plugins import log as logplugin
from plugins.log import formats
from plugins.log import route53 as schema
from proxy.config import AppContext, BlockContext, SetupContext
from proxy.corefile import CorefileError
from proxy.names import in_zones, wire_to_text
from proxy.request import Request, Response
from tests.kit.corefiles import corefile
from tests.kit.directives import directive, log_settings
from tests.kit.dnsfw import run_cli
from tests.kit.messages import Decision, make_reply, make_request


def error(body: str, tmp_path: Path | None = None) -> str:
    with pytest.raises(CorefileError) as info:
        log_settings(body, tmp_path)
    return str(info.value)


# --- arguments and options ----------------------------------------------------------------


def test_defaults():
    s = log_settings("log")
    assert s.names == (".",)
    assert s.format == formats.COMMON
    assert s.classes == frozenset()
    assert s.output == "stdout"
    assert s.buffer == 65536
    assert (s.account_id, s.region, s.vpc_id, s.identity_ec2, s.firewall_allow) == (
        "",
        "",
        "",
        False,
        False,
    )


def test_one_argument_is_always_a_name():
    assert log_settings("log {common}").names == ("{common}.",)
    assert log_settings("log Example.ORG").names == ("example.org.",)


def test_last_argument_with_brace_is_the_format():
    s = log_settings('log a.example b.example. "{type} {name}"')
    assert s.names == ("a.example.", "b.example.")
    assert s.format == "{type} {name}"
    s = log_settings("log a.example b.example")
    assert s.names == ("a.example.", "b.example.")
    assert s.format == formats.COMMON


def test_classes_add_up_and_all_means_every_class():
    s = log_settings("log {\n class denial\n class error success\n}")
    assert s.classes == {"denial", "error", "success"}
    assert log_settings("log {\n class denial all\n}").classes == frozenset()


def test_block_options():
    s = log_settings(
        "log . {\n format route53\n output stderr\n buffer 10\n account_id 123456789012\n"
        " region ap-northeast-1\n vpc_id vpc-0abc\n identity ec2\n firewall_allow\n}"
    )
    assert s.format == "route53"
    assert s.output == "stderr"
    assert s.buffer == 10
    assert (s.account_id, s.region, s.vpc_id) == ("123456789012", "ap-northeast-1", "vpc-0abc")
    assert s.identity_ec2 and s.firewall_allow
    assert log_settings("log {\n format combined\n}").format == formats.COMBINED
    assert log_settings('log {\n format "{name} {rcode}"\n}').format == "{name} {rcode}"


def test_output_path_is_relative_to_the_corefile(tmp_path):
    (tmp_path / "logs").mkdir()
    s = log_settings("log {\n output logs/query.log\n}", tmp_path)
    assert s.output == str(tmp_path / "logs" / "query.log")
    text = corefile("log {\n output $DIR/q.log\n}", DIR=tmp_path)
    assert log_settings(text).output == str(tmp_path / "q.log")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("log {\n class\n}", "Corefile:3 - Error during parsing: Wrong argument count or "
         "unexpected line ending after 'class'"),
        ("log {\n class denial bogus\n}", "Corefile:3 - Error during parsing: invalid Class: bogus"),
        ("log {\n bogus 1\n}", "Corefile:3 - Error during parsing: unknown property 'bogus'"),
        ("log {\n format\n}", "Corefile:3 - Error during parsing: Wrong argument count"),
        ("log {\n format json\n}", "Corefile:3 - Error during parsing: unknown format 'json'"),
        ('log a.example "{name}" {\n format common\n}', "Corefile:3 - Error during parsing: "
         "format given twice"),
        ("log {\n output stdout\n output stderr\n}", "Corefile:4 - Error during parsing: 'output' "
         "given twice (first at line 3)"),
        ("log {\n buffer 0\n}", "Corefile:3 - Error during parsing: buffer must be a number"),
        ("log {\n buffer many\n}", "Corefile:3 - Error during parsing: buffer must be a number"),
        ("log {\n account_id 1\n}", "Corefile:3 - Error during parsing: 'account_id' applies to "
         "format route53 only"),
        ("log {\n firewall_allow\n}", "Corefile:3 - Error during parsing: 'firewall_allow' applies"),
        ("log {\n format route53\n identity aws\n}", "Corefile:4 - Error during parsing: unknown "
         "identity source 'aws'"),
        ("log {\n format route53\n firewall_allow yes\n}", "Corefile:4 - Error during parsing: "
         "Wrong argument count"),
        ("log {\n output /nonexistent-dir/q.log\n}", "Corefile:3 - Error during parsing: output "
         "directory /nonexistent-dir does not exist"),
        ("log {\n output /tmp\n}", "Corefile:3 - Error during parsing: output /tmp is a directory"),
        ("log {\n class denial {\n }\n}", "Corefile:3 - Error during parsing: 'class' takes no block"),
        ("log a..example", "Corefile:2 - Error during parsing: zone is not a valid domain name"),
    ],
)  # fmt: skip
def test_errors_name_file_and_line(body, message):
    assert error(body).startswith(message)


def test_check_reports_plugin_file_and_line(tmp_path):
    conf = tmp_path / "Corefile"
    conf.write_text(".:1053 {\n    whoami\n    log {\n        class none\n    }\n}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"plugin/log: {conf}:4 - Error during parsing: invalid Class: none "
        "(success, denial, error or all)"
    )


def test_setup_registers_metrics():
    app = AppContext(conf_path="Corefile")
    ctx = SetupContext(BlockContext(keys=(), file="Corefile", line=1), app)
    plugin = logplugin.setup(directive("log"), ctx)
    assert plugin.name == "log"
    assert "dnsfw_log_dropped_total" in app.metrics.metrics
    assert "dnsfw_log_lines_total" in app.metrics.metrics
    assert "dnsfw_log_dropped_total" in app.metrics.render()


# --- records for the formatters -----------------------------------------------------------


def line(fmt: str, req: Request, resp: Response, duration: float = 0.037990251) -> str:
    return formats.TextFormat(fmt).line(req, resp, req.start + duration)


# --- CoreDNS formats ------------------------------------------------------------------------


def test_common_format_as_coredns_prints_it():
    # CoreDNS README: [::1]:50759 - 29008 "A IN example.org. udp 41 false 4096" NOERROR
    # qr,rd,ra,ad 68 0.037990251s
    req = make_request()
    resp = make_reply(req, answers=("example.org. 300 IN A 93.184.216.34",), flags="QR RD RA AD")
    text = line(formats.COMMON, req, resp)
    size = len(req.wire)
    assert text == (
        f'[::1]:50759 - 29008 "A IN example.org. udp {size} false 4096" NOERROR qr,rd,ra,ad '
        f"{len(resp.wire)} 0.037990251s"
    )
    assert line("{combined}", req, resp).endswith(' 0.037990251s "0"')


def test_placeholders():
    req = make_request(
        "WWW.Example.ORG.", "MX", client=("192.0.2.1", 1234), transport="tcp", want_dnssec=True
    )
    resp = make_reply(req, dns.rcode.SERVFAIL, flags="QR AA TC RD RA CD")
    fmt = "{remote}|{port}|{local}|{type}|{class}|{name}|{proto}|{>bufsize}|{>do}|{>id}|{>opcode}|{rcode}|{>rflags}"
    assert line(fmt, req, resp) == (
        "192.0.2.1|1234|127.0.0.1|MX|IN|www.example.org.|tcp|65535|true|29008|0|SERVFAIL|"
        "qr,aa,tc,rd,ra,cd"
    )
    assert line("{>bufsize}", make_request(edns=False, client=("192.0.2.1", 1)), resp) == "512"
    wildcard = make_request(server="dns://:53")
    assert line("{local}", wildcard, resp) == "-"
    v6 = make_request(server="dns://[::1]:53")
    assert line("{local}", v6, resp) == "[::1]"
    assert line("{type}", make_request(rdtype="TYPE65280"), resp) == "TYPE65280"
    assert line("{rcode}", req, Response(resp.wire, 23, "local")) == "BADCOOKIE"
    assert line("{rcode}", req, Response(resp.wire, 99, "local")) == "99"


def test_unknown_and_odd_placeholders():
    req = make_request()
    resp = make_reply(req)
    assert line("{foo} {>foo} {/nothing}", req, resp) == "- - -"
    assert line("{ {type} }", req, resp) == "{ A }"
    assert line("A } {type}", req, resp) == "A } A"
    assert line("{name", req, resp) == "{name"
    assert line("{common}", req, resp) == line(formats.COMMON, req, resp)


def test_metadata_placeholders_read_annotations():
    req = make_request()
    resp = make_reply(req, dns.rcode.NXDOMAIN)
    req.meta["firewall"] = Decision("BLOCK", "Scenario", "block-all", "All-Domains")
    req.meta["geo/country"] = "JP"
    req.meta["plain"] = {"key": "v"}
    fmt = "{/firewall/action} {/firewall/group} {/firewall/rule} {/firewall/list} {/geo/country} {/plain/key} {/firewall/nope}"
    assert line(fmt, req, resp) == "BLOCK Scenario block-all All-Domains JP v -"
    assert line("{/log/class} {/log/type}", req, resp) == "denial NXDOMAIN"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.037990251, "0.037990251"), (1.0, "1"), (1.5e-05, "0.000015"), (2.0000000001, "2"),
     (0.0001234567891, "0.000123457"), (0.0, "0")],
)  # fmt: skip
def test_duration_as_go_prints_it(seconds, text):
    assert formats.go_seconds(seconds) == text


@pytest.mark.parametrize(
    ("rcode", "answers", "authority", "kind", "cls"),
    [
        (dns.rcode.NOERROR, ("x. 60 IN A 192.0.2.1",), (), "NOERROR", "success"),
        (dns.rcode.NXDOMAIN, (), (". 60 IN SOA a. b. 1 2 3 4 5",), "NXDOMAIN", "denial"),
        (dns.rcode.NXDOMAIN, (), (), "NXDOMAIN", "denial"),
        (dns.rcode.NOERROR, (), (". 60 IN SOA a. b. 1 2 3 4 5",), "NODATA", "denial"),
        (dns.rcode.NOERROR, (), (), "NODATA", "denial"),
        (dns.rcode.NOERROR, (), ("example. 60 IN NS ns.example.",), "DELEGATION", "success"),
        (dns.rcode.SERVFAIL, (), (), "OTHERERROR", "error"),
        (dns.rcode.REFUSED, (), (), "OTHERERROR", "error"),
        (dns.rcode.FORMERR, (), (), "OTHERERROR", "error"),
    ],
)
def test_response_classes(rcode, answers, authority, kind, cls):
    req = make_request()
    resp = make_reply(req, rcode, answers, authority)
    assert formats.response_type(resp) == kind
    assert formats.response_class(resp) == cls


async def test_class_filter_and_the_text_line():
    plugin = logplugin.Log(log_settings("log {\n class denial\n}"))

    async def answer(rcode: int = dns.rcode.NOERROR, answers: tuple[str, ...] = ()):
        async def upstream(req):
            return make_reply(req, rcode, answers=answers)

        return await plugin.serve(make_request(), upstream)

    await answer(answers=("x. 1 IN A 192.0.2.1",))
    assert list(plugin.sink.lines) == []  # a success: not in the filter's classes
    await answer(dns.rcode.NXDOMAIN)
    (text,) = plugin.sink.lines
    assert text.startswith('[INFO] [::1]:50759 - 29008 "A IN')
    to_file = logplugin.Log(log_settings("log {\n output /tmp/x.log\n}"))
    req = make_request()
    assert to_file._text_line(req, make_reply(req)).line.startswith("[::1]:50759 - ")


def test_name_scopes():
    plugin = logplugin.Log(log_settings("log example.org 10.0.0.0/8"))

    def takes(req: Request) -> bool:
        return in_zones(req.qname_wire, plugin._zones)

    assert takes(make_request("example.org."))
    assert takes(make_request("a.b.EXAMPLE.org."))
    assert takes(make_request("4.3.2.10.in-addr.arpa.", "PTR"))
    assert not takes(make_request("example.com."))
    assert not takes(make_request("notexample.org."))
    assert not takes(make_request(".", "NS"))
    assert logplugin.Log(log_settings("log"))._zones is None  # "." takes everything


def test_cidr_names_are_every_reverse_zone_of_the_cidr():
    # a /27 is the 32 zones of its addresses, as server block keys are (not the whole /24)
    plugin = logplugin.Log(log_settings("log 10.0.0.0/27"))
    assert plugin.settings.names == tuple(f"{i}.0.0.10.in-addr.arpa." for i in range(32))
    assert in_zones(make_request("31.0.0.10.in-addr.arpa.", "PTR").qname_wire, plugin._zones)
    assert not in_zones(make_request("32.0.0.10.in-addr.arpa.", "PTR").qname_wire, plugin._zones)


# --- Route 53 JSON --------------------------------------------------------------------------

# Real Route 53 lines (docs/route53-dns-firewall.md §7.3), srcids emptied: dnsfw cannot know
# the client's instance ID, so it always writes {} there.
ROUTE53_CNAME = (
    '{"version":"1.100000","account_id":"626345947581","region":"us-east-1","vpc_id":"vpc-01e31a7c",'
    '"query_timestamp":"2021-12-11T22:48:33Z","query_name":"abcd.example.com.","query_type":"A",'
    '"query_class":"IN","rcode":"NOERROR","answers":[{"Rdata":"test.example.com.","Type":"CNAME",'
    '"Class":"IN"},{"Rdata":"1.128.3.4","Type":"A","Class":"IN"}],"srcaddr":"172.31.86.159",'
    '"srcport":"52785","transport":"UDP","srcids":{}}'
)
ROUTE53_BLOCK = (
    '{"version":"1.100000","account_id":"123456789012","region":"us-east-2",'
    '"vpc_id":"vpc-xxxxxxxxxxxxxxxxx","query_timestamp":"2026-07-10T19:09:28Z",'
    '"query_name":"www.example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR",'
    '"answers":[],"srcaddr":"10.0.16.116","srcport":"54089","transport":"UDP","srcids":{},'
    '"firewall_rule_action":"BLOCK","firewall_rule_group_id":"rslvr-frg-xxxxxxxxxxxxxxxx",'
    '"firewall_domain_list_id":"rslvr-fdl-xxxxxxxxxxxxxxxx"}'
)
ROUTE53_SERVFAIL = (
    '{"version":"1.100000","account_id":"111111111","region":"us-west-2","vpc_id":"vpc-thevpc",'
    '"query_timestamp":"2023-09-11T19:01:45Z","query_name":"preprod-dmz.example.com.",'
    '"query_type":"A","query_class":"IN","rcode":"SERVFAIL","answers":[],"srcaddr":"10.100.51.140",'
    '"srcport":"38214","transport":"UDP","srcids":{}}'
)


def offset_for(req: Request, stamp: str) -> float:
    """The wall-clock offset that makes ``req`` arrive 0.4 s into ``stamp``."""
    epoch = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    return epoch + 0.4 - req.start


def route53(identity: tuple[str, str, str], *, allow: bool = False) -> formats.Route53Format:
    fmt = formats.Route53Format(log_allow=allow)
    fmt.set_identity(*identity)
    return fmt


def test_route53_cname_chain_line_is_byte_identical_to_route53():
    fmt = route53(("626345947581", "us-east-1", "vpc-01e31a7c"))
    req = make_request("abcd.example.com.", client=("172.31.86.159", 52785))
    resp = make_reply(
        req,
        answers=(
            "abcd.example.com. 60 IN CNAME test.example.com.",
            "test.example.com. 60 IN A 1.128.3.4",
        ),
    )
    resp.info = resp.answer_info()  # as forward computes it once per upstream answer
    fmt.wall_offset = offset_for(req, "2021-12-11T22:48:33Z")
    assert fmt.line(req, resp) == ROUTE53_CNAME
    assert list(json.loads(ROUTE53_CNAME)) == [
        "version", "account_id", "region", "vpc_id", "query_timestamp", "query_name",
        "query_type", "query_class", "rcode", "answers", "srcaddr", "srcport", "transport",
        "srcids",
    ]  # fmt: skip


def test_route53_block_line_is_byte_identical_to_route53():
    fmt = route53(("123456789012", "us-east-2", "vpc-xxxxxxxxxxxxxxxxx"))
    req = make_request("www.example.com.", client=("10.0.16.116", 54089))
    req.meta["firewall"] = Decision(
        "BLOCK", "rslvr-frg-xxxxxxxxxxxxxxxx", "block-all", "rslvr-fdl-xxxxxxxxxxxxxxxx"
    )
    resp = make_reply(req)  # NODATA built locally: no AnswerInfo yet
    fmt.wall_offset = offset_for(req, "2026-07-10T19:09:28Z")
    assert fmt.line(req, resp) == ROUTE53_BLOCK
    assert resp.info is None  # an empty answer is never parsed


def test_route53_servfail_line_is_byte_identical_to_route53():
    fmt = route53(("111111111", "us-west-2", "vpc-thevpc"))
    req = make_request("preprod-dmz.example.com.", client=("10.100.51.140", 38214))
    resp = make_reply(req, dns.rcode.SERVFAIL)
    fmt.wall_offset = offset_for(req, "2023-09-11T19:01:45Z")
    assert fmt.line(req, resp) == ROUTE53_SERVFAIL


def test_route53_schema_module_names_the_fields_of_real_lines():
    """plugins.log.route53, by which the writer writes and dnsfw audit reads, is Route 53's."""
    block = json.loads(ROUTE53_BLOCK)
    assert list(block) == [*schema.FIELDS, *schema.FIREWALL_FIELDS]
    assert block[schema.VERSION_KEY] == schema.VERSION
    assert list(json.loads(ROUTE53_CNAME)[schema.ANSWERS][0]) == list(schema.ANSWER_FIELDS)


def test_audit_reads_the_lines_the_writer_writes():
    fmt = route53(("123456789012", "us-east-2", "vpc-0abc"))
    req = make_request("WWW.Example.com.", client=("10.0.16.116", 54089))
    req.meta["firewall"] = Decision("BLOCK", "egress", "block-all", "all")
    fmt.wall_offset = offset_for(req, "2026-07-10T19:09:28Z")
    line = fmt.line(req, make_reply(req))
    inventory = Inventory(lambda name: name)
    inventory.read_stream(io.BytesIO(line.encode() + b"\n"), "query.log")
    assert (inventory.accepted, inventory.bad) == (1, 0)
    stats = inventory.names["www.example.com"]
    assert stats.actions == {"BLOCK egress/all": 1} and stats.types == {"A": 1}
    assert stats.sources == ("10.0.16.116",) and stats.rcodes == {"NOERROR": 1}


def test_route53_firewall_fields_only_for_alert_and_block_unless_allow_is_asked():
    req = make_request("gmail.com.", "MX", client=("10.0.0.150", 41000), transport="tcp")
    resp = make_reply(req, answers=("gmail.com. 300 IN MX 5 gmail-smtp-in.l.google.com.",))
    allow = Decision("ALLOW", "Scenario", "allow-google", "Google")
    req.meta["firewall"] = allow
    plain = json.loads(route53(("1", "r", "v")).line(req, resp))
    assert "firewall_rule_action" not in plain
    assert plain["transport"] == "TCP" and plain["query_type"] == "MX"
    assert plain["answers"] == [
        {"Rdata": "5 gmail-smtp-in.l.google.com.", "Type": "MX", "Class": "IN"}
    ]
    logged = json.loads(route53(("1", "r", "v"), allow=True).line(req, resp))
    assert list(logged)[-3:] == [
        "firewall_rule_action",
        "firewall_rule_group_id",
        "firewall_domain_list_id",
    ]
    assert (logged["firewall_rule_action"], logged["firewall_rule_group_id"]) == (
        "ALLOW",
        "Scenario",
    )
    req.meta["firewall"] = Decision("ALERT", "Trial", "alert-rest", "All-Domains")
    alert = json.loads(route53(("1", "r", "v")).line(req, resp))
    assert alert["firewall_rule_action"] == "ALERT"
    assert alert["firewall_domain_list_id"] == "All-Domains"


def test_route53_escapes_and_types():
    fmt = route53(('acct"1', "r", "v"))
    req = make_request('we\\"ird.example.', "TYPE65280", client=("2001:db8::1", 5))
    resp = make_reply(req, answers=('we\\"ird.example. 60 IN TXT "caf\\195\\169" "a\\"b"',))
    text = fmt.line(req, resp)
    assert text.isascii()
    obj = json.loads(text)
    assert obj["account_id"] == 'acct"1'
    assert obj["query_name"] == 'we\\"ird.example.'
    assert obj["query_type"] == "TYPE65280"
    assert obj["srcaddr"] == "2001:db8::1"
    assert obj["answers"][0]["Type"] == "TXT"
    assert json.dumps(obj, separators=(",", ":")) == text  # json.dumps layout, ASCII escapes


def test_route53_answers_are_serialised_once_per_answer_info(monkeypatch):
    from plugins.log import answers

    calls = []
    original = answers.summarise

    def counting(data: bytes):
        calls.append(1)
        return original(data)

    monkeypatch.setattr(answers, "summarise", counting)
    fmt = route53(("1", "r", "v"))
    req = make_request("abcd.example.com.")
    resp = make_reply(req, answers=("abcd.example.com. 60 IN A 192.0.2.1",))
    info = resp.answer_info()
    hit = Response(resp.wire, 0, "cache", info)  # a cache hit shares the AnswerInfo
    first = fmt.line(req, resp)
    assert fmt.line(req, hit) == first
    assert fmt.line(req, hit) == first
    assert len(calls) == 1


def test_route53_memo_of_an_answer_info_never_lends_its_text_to_another_question():
    fmt = route53(("1", "r", "v"))
    req = make_request("abcd.example.com.")
    resp = make_reply(req, answers=("abcd.example.com. 60 IN A 192.0.2.1",))
    info = resp.answer_info()
    assert json.loads(fmt.line(req, resp))["query_name"] == "abcd.example.com."
    other = make_request("other.example.com.", "AAAA")
    logged = json.loads(fmt.line(other, Response(resp.wire, 0, "cache", info)))
    assert (logged["query_name"], logged["query_type"]) == ("other.example.com.", "AAAA")
    nx = json.loads(fmt.line(req, Response(resp.wire, 3, "cache", info)))
    assert nx["rcode"] == "NXDOMAIN" and nx["query_name"] == "abcd.example.com."


ANSWER_SETS = [
    ("A", ("x.example. 60 IN A 192.0.2.1", "x.example. 60 IN A 10.0.0.255")),
    ("AAAA", ("x.example. 60 IN AAAA 2001:db8::7", "x.example. 60 IN AAAA ::ffff:1.2.3.4",
              "x.example. 60 IN AAAA ::", "x.example. 60 IN AAAA 1:0:0:1:0:0:0:1")),
    ("A", ("x.example. 60 IN CNAME Mixed.Case.example.", "mixed.case.example. 60 IN CNAME y.",
           "y. 60 IN A 192.0.2.9")),
    ("NS", ("example. 60 IN NS ns1.example.", "example. 60 IN NS ns2.example.")),
    ("PTR", ("1.2.0.192.in-addr.arpa. 60 IN PTR host.example.",)),
    ("MX", ("example. 60 IN MX 10 mail.example.", "example. 60 IN MX 0 .")),
    ("SRV", ("_sip._tcp.example. 60 IN SRV 10 60 5060 sip.example.",)),
    ("SOA", ("example. 60 IN SOA ns1.example. hostmaster.example. 2024010101 7200 3600 1209600 60",)),
    ("TXT", ('x.example. 60 IN TXT "v=spf1 -all"', 'x.example. 60 IN TXT "a\\"b" "c\\\\d" "\\195\\169 t"',
             'x.example. 60 IN TXT ""')),
    ("DNAME", ("dname.example. 60 IN DNAME example.com.",)),
    ("CAA", ('x.example. 60 IN CAA 0 issue "ca.example"',)),  # not read from the wire
    ("HTTPS", ('x.example. 60 IN HTTPS 1 . alpn="h2,h3"',)),
]  # fmt: skip


@pytest.mark.parametrize(("rdtype", "records"), ANSWER_SETS)
def test_answers_read_from_the_wire_as_dnspython_shows_them(rdtype, records):
    from plugins.log import answers

    req = make_request("x.example.", rdtype)
    resp = make_reply(req, answers=records)
    expected = resp.answer_info().summary()
    fast = answers.summarise(resp.wire)
    if rdtype in ("CAA", "HTTPS"):
        assert fast is None  # the caller falls back to summary()
    else:
        assert fast is not None
        assert [(r.lower(), t, c) for r, t, c in fast] == [
            (r.lower(), t, c) for r, t, c in expected
        ]
    line = json.loads(route53(("1", "r", "v")).line(req, Response(resp.wire, 0, "local")))
    assert [(a["Rdata"].lower(), a["Type"]) for a in line["answers"]] == [
        (r.lower(), t) for r, t, _ in expected
    ]


def test_answers_of_broken_replies_fall_back():
    from plugins.log import answers

    req = make_request("x.example.", edns=False)
    resp = make_reply(req, answers=("x.example. 60 IN A 192.0.2.1",))
    assert answers.summarise(resp.wire) == (("192.0.2.1", "A", "IN"),)
    assert answers.summarise(resp.wire[:-2]) is None
    assert answers.summarise(resp.wire[:5]) is None


@pytest.mark.parametrize(
    "name",
    [
        b"\x00",
        b"\x03www\x07example\x03com\x00",
        b"\x01a\x00",
        b"\x01*\x04_tcp\x01-\x00",
        b"\x03a.b\x03com\x00",  # a dot inside a label
        b'\x02a"\x00',
        b"\x02a\\\x00",
        b"\x02a\xff\x00",
        b"\x02a \x00",
        b"\x02a;\x00",
        bytes([46]) + b"a" * 46 + b"\x00",  # a length byte that is "."
    ],
)
def test_name_text_fast_path_agrees_with_wire(name):
    assert formats.name_text(name) == wire_to_text(name)
    assert json.loads(formats._name_json(name)) == wire_to_text(name)
