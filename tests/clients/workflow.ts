// The demand workflow and a verification, written against the types openapi-typescript
// generates from the gateway's OpenAPI document (`./api.d.ts`, written beside this file by the
// end-to-end test `the_typescript_client_builds` in tests/e2e/api.rs) and called through
// openapi-fetch. The test compiles it with `tsc --strict`: a path, method, parameter or body
// the document does not describe is a compile error, so the document stays usable from
// TypeScript.

import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Terms = components["schemas"]["Terms"];
type DemandView = components["schemas"]["DemandView"];

const HOUSEHOLD = "A01-410000-0001";

async function session(baseUrl: string, username: string, password: string) {
  const anonymous = createClient<paths>({ baseUrl });
  const { data, error } = await anonymous.POST("/api/v1/sessions", { body: { username, password } });
  if (!data) throw new Error(`sign-in: ${error?.code}`);
  return createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${data.token}` } });
}

export async function workflow(
  baseUrl: string,
  password: string,
  systemId: string,
  apiKey: string,
  person: { id: string; name: string },
): Promise<{ states: string[]; verified: Record<string, string> }> {
  const demander = await session(baseUrl, "demander.guangdong-police", password);
  const office = await session(baseUrl, "reviewer.henan", password);
  const supplier = await session(baseUrl, "supplier.henan-police", password);
  const terms: Terms = {
    items: ["id_number", "name", "status"],
    division_prefix: "41",
    rate_per_second: 10,
    daily_quota: 1000,
    valid_until: "2099-12-31",
  };
  const filed = await demander.POST("/api/v1/demands", {
    body: {
      resource_code: HOUSEHOLD,
      system_id: systemId,
      service_item: "KSTB-GA-005",
      purpose: "办理跨省通办事项时核验申请人信息",
      legal_basis: "《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》",
      terms,
    },
  });
  if (!filed.data) throw new Error(`file: ${filed.error?.code}`);
  const id = filed.data.id;
  const states: string[] = [filed.data.state];
  const step = async (
    client: Awaited<ReturnType<typeof session>>,
    action: components["schemas"]["ActionRequest"],
  ): Promise<DemandView> => {
    const answer = await client.POST("/api/v1/demands/{id}/actions", { params: { path: { id } }, body: action });
    if (!answer.data) throw new Error(`${action.action}: ${answer.error?.code}`);
    states.push(answer.data.state);
    return answer.data;
  };
  const version = async (client: Awaited<ReturnType<typeof session>>): Promise<number> => {
    const { data } = await client.GET("/api/v1/demands/{id}", { params: { path: { id } } });
    if (!data) throw new Error("read demand");
    return data.version;
  };
  await step(demander, { action: "submit", version: await version(demander) });
  await step(office, { action: "pass_conformity", terms, version: await version(office) });
  await step(supplier, { action: "supplier_approve", terms, version: await version(supplier) });

  const system = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${apiKey}` } });
  const verified = await system.POST("/api/v1/data/verify", {
    params: {
      header: {
        "X-Tongban-Service-Item": "KSTB-GA-005",
        "X-Tongban-Case-Number": "GD-2026-TS-0001",
        "X-Tongban-Operator": "GD-PS-0043",
      },
    },
    body: { resource: HOUSEHOLD, key: person.id, claims: { name: person.name } },
  });
  if (!verified.data) throw new Error(`verify: ${verified.error?.code}`);
  return { states, verified: verified.data.results };
}
