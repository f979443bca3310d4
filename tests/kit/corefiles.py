"""Corefile templates and their builder: ``corefile(TEMPLATE, NAME=value, ...)``.

A template is a Corefile with ``$NAME`` (or ``${NAME}``) placeholders, ``string.Template``
style, so its braces are written as they are in a Corefile. ``$PORT`` is left for
``Dnsfw`` to fill with the port it picked, unless a value is given.
"""

from __future__ import annotations

import re
from string import Template

# the one `. { }` block of the in-process setup tests: BODY starts on line 2
BLOCK = """\
$KEYS {
$BODY
}
"""

# LINES (from line 2 on) then whoami, for `dnsfw check` and the in-process setup tests
BLOCK_WHOAMI = """\
$KEYS {
    $LINES
    whoami
}
"""

# a listener answering every query itself (no upstream)
WHOAMI = """\
.:$PORT {
    bind 127.0.0.1
    whoami
}
"""

# whoami with TCP timeouts: TIMEOUTS is the `timeouts` block's lines ("read 1s")
WHOAMI_TIMEOUTS = """\
.:$PORT {
    bind 127.0.0.1
    timeouts {
        $TIMEOUTS
    }
    whoami
}
"""

# plain DNS on $PORT and the encrypted listeners KEYS ("tls://.:5853 https://.:5443") with the
# certificate CERT/KEY and the TCP timeouts read 1s, idle 2s, both answering with PLUGINS
ENCRYPTED = """\
.:$PORT $KEYS {
    bind 127.0.0.1
    tls $CERT $KEY
    timeouts {
        read 1s
        idle 2s
    }
    $PLUGINS
}
"""

# everything forwarded to the test upstream
FORWARD = """\
.:$PORT {
    bind 127.0.0.1
    forward . $UPSTREAM
}
"""

# the admin API (AUTH: TOKEN_FILE or nothing) over a firewall with file, hosts and inline lists
ADMIN = """
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN $AUTH
    firewall {
        list blocked file blocked.txt
        list hosts   file hosts.txt format hosts
        list inline  domains inline.w.example.com
        group main 10 {
            rule block-listed 10 BLOCK blocked response nxdomain
            rule watch-inline 20 ALERT inline
            rule block-hosts  30 BLOCK hosts
        }
    }
    cache
    forward . $UPSTREAM
}
"""

# the admin API's token read from the file `token` beside the Corefile
TOKEN_FILE = """\
{
    token_file token
}"""

# Route 53 query logs written to OUTPUT (OPTIONS: more log options), PLUGINS, then the upstream
ROUTE53_LOG = """
.:$PORT {
    bind 127.0.0.1
    log . {
        format route53
        output $OUTPUT
        $OPTIONS
    }
    $PLUGINS
    forward . $UPSTREAM
}
"""

# docs/scenario.md §1, step 2, as a firewall block
SCENARIO_FIREWALL = """\
firewall {
    list Google domains gmail.com *.google.com
    list AWS domains *.amazonaws.com *.amazon.pool.ntp.org
    list EC2-Internal domains *.compute.internal __cloud_init_expected_not_found__ does-not-exist.example.com example.invalid
    list External-Service domains *.fedoraproject.org
    list All-Domains domains *
    group Scenario 100 {
        rule allow-google 1 ALLOW Google redirection trust
        rule allow-aws 2 ALLOW AWS
        rule allow-ec2 3 ALLOW EC2-Internal
        rule allow-external 4 ALLOW External-Service
        rule block-all 100 BLOCK All-Domains response nodata
    }
}"""


def corefile(template: str, /, **values: object) -> str:
    """``template`` with each ``$NAME`` replaced by ``values[NAME]`` and ``$$`` by ``$``.

    A value of several lines continues at the indentation of its placeholder's line, so a
    block or a few directives line up wherever they go. A placeholder without a value, or a
    value without a placeholder, is an error (a typo would otherwise go unseen).
    """
    given = {"PORT": "$PORT", **values}
    used: set[str] = set()

    def replace(m: re.Match[str]) -> str:
        if m["escaped"] is not None:
            return "$"
        name = m["named"] or m["braced"]
        if name is None:
            raise ValueError(f"invalid placeholder at offset {m.start('invalid')}:\n{template}")
        if name not in given:
            raise KeyError(f"no value for ${name} in:\n{template}")
        used.add(name)
        line = template[template.rfind("\n", 0, m.start()) + 1 : m.start()]
        indent = line[: len(line) - len(line.lstrip(" "))]
        return str(given[name]).replace("\n", "\n" + indent)

    text = Template.pattern.sub(replace, template)
    if unused := values.keys() - used:
        raise KeyError(f"no placeholder for {sorted(unused)} in:\n{template}")
    return text
