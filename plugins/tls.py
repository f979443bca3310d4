"""tls - the certificate of a server block's encrypted listeners (DoT, DoH).

Syntax::

    tls CERT KEY [CA] {
        client_auth nocert|request|require|verify_if_given|require_and_verify
    }

CERT and KEY are PEM files (the certificate chain, leaf first, and its private key); CA a PEM
file of the certificate authorities that client certificates are checked against (default:
the system's). A relative path is relative to the Corefile's directory. ``client_auth`` is
the client-certificate policy, as CoreDNS's (Go's ClientAuthType): ``nocert`` (default) asks
for none; ``request`` asks for one but takes any or none; ``require`` wants one, not
checked; ``verify_if_given`` checks one if sent; ``require_and_verify`` wants a valid one.
(Python's TLS stack checks every certificate it is sent, so ``request`` and ``require``
check a given certificate too.)

The files are read at start and at every reload: a reload with a new certificate serves it
to every connection made after the reload while connections already open keep theirs, and a
certificate or key that cannot be read, does not parse or does not match is a setup error
with the file and line of the ``tls`` line: at start dnsfw does not start, at a reload the
old configuration and its certificate go on serving. TLS 1.2 is the oldest version offered.

The first DNS name of the certificate's subjectAltName is the target name of the discovery
answers (``_dns.resolver.arpa`` SVCB, RFC 9462: see the firewall's ``bypass_signals``).

For ``quic://`` (DNS over QUIC, with the optional extra ``dnsfw[quic]``) the same
certificate and key are used, and reloaded the same way. aioquic cannot ask a client for a
certificate, so a ``client_auth`` other than ``nocert`` in a block with a ``quic://`` key is a
setup error (with the file and line of the ``client_auth`` line) rather than a policy that
would not be applied: put DoQ in a block of its own.

The directive is needed by ``tls://``, ``https://`` and ``quic://`` blocks (see README, "Encrypted DNS")
and allowed in others, where it does nothing (as in CoreDNS). With several blocks on one
listener, the first block's ``tls`` applies.

Example::

    tls://.:853 https://.:443 {
        tls /etc/dnsfw/dns.crt /etc/dnsfw/dns.key
        forward . 127.0.0.1:5301
    }
"""

from __future__ import annotations

import os
import ssl

from cryptography import x509

from proxy.config import TLS_ALPN, SetupContext
from proxy.corefile import Directive, Token

ONCE = True

# client_auth value (CoreDNS's names) -> how the handshake treats a client certificate
CLIENT_AUTH: dict[str, ssl.VerifyMode] = {
    "nocert": ssl.CERT_NONE,
    "request": ssl.CERT_OPTIONAL,
    "require": ssl.CERT_REQUIRED,
    "verify_if_given": ssl.CERT_OPTIONAL,
    "require_and_verify": ssl.CERT_REQUIRED,
}


def setup(directive: Directive, ctx: SetupContext) -> None:
    if not 2 <= len(directive.args) <= 3:
        raise directive.arg_error()
    client_auth = "nocert"
    for line in directive.block or ():
        if line.name.text != "client_auth":
            raise line.unknown_property(("client_auth",))
        if len(line.args) != 1:
            raise line.arg_error()
        client_auth = line.args[0].text
        if client_auth not in CLIENT_AUTH:
            raise line.error(
                f"unknown client_auth '{client_auth}' (one of {', '.join(CLIENT_AUTH)})",
                line.args[0],
            )
        if client_auth != "nocert" and any(k.scheme == "quic" for k in ctx.block.keys):
            # served without it, a policy meant to keep clients out would let them all in
            raise line.error(
                f"client_auth {client_auth} cannot apply to quic:// (DNS over QUIC): aioquic, "
                "its QUIC stack, cannot ask clients for a certificate; serve quic:// from a "
                "block without client_auth",
                line.args[0],
            )
    base = os.path.dirname(os.path.abspath(ctx.app.conf_path))
    cert, key, *ca = (_path(base, token) for token in directive.args)
    for scheme, alpn in TLS_ALPN.items():
        if scheme == "quic":
            continue
        context = server_context(directive, cert, key, ca[0] if ca else None, client_auth)
        context.set_alpn_protocols(list(alpn))
        ctx.block.tls[scheme] = context
    try:
        from proxy import doq  # the optional extra dnsfw[quic] (aioquic)
    except ImportError:
        return None  # a quic:// key is refused with the extra to install (proxy.config)
    ctx.block.tls["quic"] = doq.configuration(cert, key)  # OpenSSL took them: they load
    ctx.block.tls_names = dns_names(cert)  # a certificate OpenSSL took: it parses
    return None


def _path(base: str, token: Token) -> str:
    return os.path.join(base, token.text)


def server_context(
    directive: Directive, cert: str, key: str, ca: str | None, client_auth: str
) -> ssl.SSLContext:
    """A server-side context with the certificate loaded now; errors name the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as err:
        # OpenSSL's error names no file: say which of the two is missing
        missing = next((path for path in (cert, key) if not os.path.exists(path)), cert)
        raise directive.error(f"tls: cannot read {missing}: {err.strerror}") from None
    except (ssl.SSLError, OSError) as err:
        raise directive.error(
            f"tls: certificate {cert} or key {key} is not a valid PEM pair: {_reason(err)}"
        ) from None
    mode = CLIENT_AUTH[client_auth]
    if mode != ssl.CERT_NONE:
        try:
            if ca is None:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
            else:
                context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as err:
            raise directive.error(f"tls: cannot load CA {ca}: {_reason(err)}") from None
    context.verify_mode = mode
    return context


def dns_names(cert: str) -> tuple[str, ...]:
    """The DNS names of the (already loaded) certificate's subjectAltName."""
    with open(cert, "rb") as f:
        leaf = x509.load_pem_x509_certificate(f.read())
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)
    return str(reason).lower().replace("_", " ")
