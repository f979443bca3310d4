"""schemathesis against the admin API's own OpenAPI document (bounded examples per operation).

Every operation gets schema-valid (positive) and schema-violating (negative) requests with
the token; schemathesis's default checks apply (no server error, status codes, content types,
headers and bodies as documented, schema-violating input refused with 4xx, the token
enforced) except ``positive_data_acceptance``: a schema cannot say what a DNS name, a query
type or a domain list entry is, so a schema-valid request may still get a 400 with the reason.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.kit.api import TOKEN, Api
from tests.kit.corefiles import ADMIN, TOKEN_FILE, corefile
from tests.kit.dnsfw import free_port

EXAMPLES = 60  # per operation and generation mode


@pytest.fixture
def live(dnsfw, upstream, tmp_path: Path) -> Api:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "blocked.txt").write_text("blocked.w.example.com\n")
    (tmp_path / "hosts.txt").write_text("0.0.0.0 hosted.w.example.com\n")
    port = free_port()
    dnsfw(corefile(ADMIN, ADMIN=port, AUTH=TOKEN_FILE, UPSTREAM=upstream.address))
    api = Api(port)
    api.wait()
    return api


def test_no_server_error_and_the_document_holds(live: Api) -> None:
    document = live.ok("GET", "/v1/openapi.json")
    schema = schemathesis.openapi.from_dict(document)
    base_url = f"http://127.0.0.1:{live.port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 11
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=base_url,
                    headers=headers,
                    timeout=30,
                    excluded_checks=[schemathesis.checks.positive_data_acceptance],
                )

            check()
