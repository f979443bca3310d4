"""Where a Route 53 query log says it comes from: account, region and VPC, read from EC2.

``identity ec2`` asks the EC2 instance metadata service (IMDSv2) once, at start-up:

1. ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` for a session token;
2. ``GET /latest/dynamic/instance-identity/document``: JSON with ``accountId`` and ``region``;
3. ``GET /latest/meta-data/mac``, then ``GET /latest/meta-data/network/interfaces/macs/MAC/vpc-id``
   (the VPC of the primary network interface).

The whole exchange must finish within :data:`TIMEOUT` (1 s): off EC2 the address does not
answer and start-up must not hang. The endpoint is ``$DNSFW_IMDS_ENDPOINT`` (default
``http://169.254.169.254``), so tests run a fake on 127.0.0.1. A successful answer is kept for
the life of the process (a reload does not ask again); a failure is not, so the next reload
retries. IMDSv1 (no token) is not used: AWS recommends requiring IMDSv2.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

import aiohttp

ENDPOINT_ENV = "DNSFW_IMDS_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254"
TIMEOUT = 1.0
TOKEN_TTL = "21600"

_known: dict[str, Ec2Identity] = {}


@dataclass(frozen=True)
class Ec2Identity:
    account_id: str
    region: str
    vpc_id: str


class ImdsError(Exception):
    """The metadata service did not answer, or answered something unexpected."""


def endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV, DEFAULT_ENDPOINT).rstrip("/")


async def ec2_identity(base: str | None = None, *, timeout: float = TIMEOUT) -> Ec2Identity:
    """The instance's account, region and VPC (cached per endpoint once known).

    Raises :class:`ImdsError` on a timeout, a connection error or an unexpected answer.
    """
    base = endpoint() if base is None else base
    cached = _known.get(base)
    if cached is not None:
        return cached
    try:
        async with asyncio.timeout(timeout):
            identity = await _ask(base, timeout)
    except TimeoutError:
        raise ImdsError(f"no answer from {base} within {timeout:g}s") from None
    except (aiohttp.ClientError, OSError, ValueError, KeyError, TypeError) as err:
        raise ImdsError(f"{base}: {type(err).__name__}: {err}") from None
    _known[base] = identity
    return identity


async def _ask(base: str, timeout: float) -> Ec2Identity:
    # trust_env stays off: an HTTP proxy from the environment must not see metadata requests
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.put(
            f"{base}/latest/api/token",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL},
        ) as resp:
            token = await _text(resp)
        headers = {"X-aws-ec2-metadata-token": token}

        async def get(path: str) -> str:
            async with session.get(f"{base}{path}", headers=headers) as resp:
                return await _text(resp)

        document = json.loads(await get("/latest/dynamic/instance-identity/document"))
        mac = (await get("/latest/meta-data/mac")).strip()
        vpc_id = (await get(f"/latest/meta-data/network/interfaces/macs/{mac}/vpc-id")).strip()
    return Ec2Identity(str(document["accountId"]), str(document["region"]), vpc_id)


async def _text(resp: aiohttp.ClientResponse) -> str:
    if resp.status != 200:
        raise ImdsError(f"{resp.method} {resp.url.path}: HTTP {resp.status}")
    return await resp.text()
