"""The demand workflow and a verification, driven only through the Python client that
openapi-python-client generated from the gateway's OpenAPI document.

Run by the end-to-end test `a_generated_python_client_runs_the_workflow` (tests/e2e/api.rs) with
the generated package `tongban_client` on PYTHONPATH:

    python workflow.py BASE_URL PASSWORD SYSTEM_ID SYSTEM_API_KEY PERSON_ID PERSON_NAME

A demander in Guangdong files a demand for Henan's household registration, the Henan office
passes its conformity review, the Henan police approve as supplier, and the Guangdong system
then verifies a person under the new grant. Prints one JSON line of what each step answered,
which the test checks.
"""

import datetime
import json
import sys

from tongban_client import AuthenticatedClient, Client
from tongban_client.api.data import verify
from tongban_client.api.demands import act, file_demand, get_demand
from tongban_client.api.grants import in_force
from tongban_client.api.sessions import sign_in
from tongban_client.models import (
    DemandInput,
    PassConformityActionRequest,
    PassConformityActionRequestAction,
    Problem,
    SignIn,
    SubmitActionRequest,
    SubmitActionRequestAction,
    SupplierApproveActionRequest,
    SupplierApproveActionRequestAction,
    Terms,
    VerifyRequest,
    VerifyRequestClaims,
)

HOUSEHOLD = "A01-410000-0001"


def answered(response):
    """The parsed answer of a call, failing with the problem document if it was refused."""
    if isinstance(response.parsed, Problem) or response.parsed is None:
        raise SystemExit(f"{response.status_code}: {response.content.decode()}")
    return response.parsed


def session(base_url, username, password):
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    signed_in = answered(sign_in.sync_detailed(client=anonymous, body=SignIn(username=username, password=password)))
    assert signed_in.expires_at.tzinfo is not None, "timestamps carry their offset"
    return AuthenticatedClient(base_url=base_url, token=signed_in.token, raise_on_unexpected_status=True)


def main():
    base_url, password, system_id, api_key, person_id, person_name = sys.argv[1:7]
    demander = session(base_url, "demander.guangdong-police", password)
    office = session(base_url, "reviewer.henan", password)
    supplier = session(base_url, "supplier.henan-police", password)

    terms = Terms(
        items=["id_number", "name", "status"],
        division_prefix="41",
        rate_per_second=10,
        daily_quota=1000,
        valid_until=datetime.date.today() + datetime.timedelta(days=365),
    )
    filed = answered(
        file_demand.sync_detailed(
            client=demander,
            body=DemandInput(
                resource_code=HOUSEHOLD,
                system_id=system_id,
                service_item="KSTB-GA-004",
                purpose="办理跨省通办事项时核验申请人信息",
                legal_basis="《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》",
                terms=terms,
            ),
        )
    )
    steps = [filed.state.value]

    def current(client):
        return answered(get_demand.sync_detailed(filed.id, client=client)).version

    def step(client, body):
        """Takes one workflow step as `client` and notes the state it led to."""
        demand = answered(act.sync_detailed(filed.id, client=client, body=body))
        steps.append(demand.state.value)
        return demand

    step(demander, SubmitActionRequest(action=SubmitActionRequestAction.SUBMIT, version=current(demander)))
    step(
        office,
        PassConformityActionRequest(
            action=PassConformityActionRequestAction.PASS_CONFORMITY, terms=terms, version=current(office)
        ),
    )
    approved = step(
        supplier,
        SupplierApproveActionRequest(
            action=SupplierApproveActionRequestAction.SUPPLIER_APPROVE, terms=terms, version=current(supplier)
        ),
    )

    system = AuthenticatedClient(base_url=base_url, token=api_key, raise_on_unexpected_status=True)
    grants = answered(in_force.sync_detailed(client=system))
    granted = [g for g in grants.items if g.demand_id == filed.id]

    claims = VerifyRequestClaims()
    claims["name"] = person_name
    verified = answered(
        verify.sync_detailed(
            client=system,
            body=VerifyRequest(resource=HOUSEHOLD, key=person_id, claims=claims),
            x_tongban_service_item="KSTB-GA-004",
            x_tongban_case_number="GD-2026-PY-0001",
            # HTTP clients send header values as ASCII; a staff number travels anywhere.
            x_tongban_operator="GD-PS-0042",
        )
    )
    print(
        json.dumps(
            {
                "demand": filed.id,
                "states": steps,
                "history": [t.kind.value for t in approved.history],
                "grants": len(granted),
                "granted_items": [i.name for i in granted[0].items] if granted else [],
                "results": verified.results.to_dict(),
                "record_found": verified.record_found,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
