"""The service fuzzed from its own OpenAPI description (schemathesis): whatever it is sent, no 5xx,
and every refusal says what is wrong. Bounded examples keep this well under a minute."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.generation import GenerationMode

from tests.fixtures.service import TOKEN, LiveService

pytestmark = pytest.mark.integration

EXAMPLES = 60
"""Per operation and generation mode: about 500 requests in all, a few seconds. (schemathesis's
pytest plugin fails to collect with this pytest, so the operations are walked here.)"""


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(live_service: LiveService, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /api/v1/jobs", "GET /api/v1/jobs", "GET /api/v1/jobs/{job_id}", "POST /api/v1/jobs/{job_id}/cancel",
        "GET /api/v1/health"}
    seen: dict[int, int] = {}

    for op in operations:
        if mode is GenerationMode.NEGATIVE and not (op.path_parameters or op.query or op.body):
            continue  # nothing to get wrong (GET /health)

        @hypothesis.given(case=op.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            if response.status_code >= 400:
                assert response.json()["error"], response.text

        check()
    assert sum(seen.values()) > len(operations)
