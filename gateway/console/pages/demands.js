// Demands (需求清单): filing, following, and every workflow step, plus the review queue of
// data offices and suppliers with its deadline countdowns.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { label, t } from '../i18n.js';
import { Deadline, ErrorBox, Field, Loaded, StateBadge, Table, TermsForm, TermsView, formatTime, navigate, useLoad } from '../ui.js';

const STATES = ['draft', 'submitted', 'conformity_correction', 'supplier_review', 'supplier_correction', 'approved', 'refused_at_conformity', 'refused_by_supplier', 'disputed', 'finally_refused', 'withdrawn'];

async function departments() {
  const list = await all('/departments');
  return Object.fromEntries(list.map((d) => [d.code, d]));
}

function shortId(id) {
  return id.slice(-8);
}

function demandColumns(depts, resources) {
  return [
    { title: t('demands.id'), render: (d) => html`<code title=${d.id}>${shortId(d.id)}</code>` },
    { title: t('demands.applicant'), render: (d) => depts[d.applicant_department]?.name ?? d.applicant_department },
    { title: t('demands.resource'), render: (d) => resources[d.resource_code]?.name ?? d.resource_code },
    { title: t('demands.service_item'), key: 'service_item' },
    { title: t('demands.purpose'), className: 'clip', render: (d) => html`<span title=${d.purpose}>${d.purpose}</span>` },
    { title: t('demands.state'), render: (d) => html`<${StateBadge} state=${d.state} />` },
    { title: t('demands.deadline'), render: (d) => html`<${Deadline} demand=${d} />` },
    { title: t('grants.at'), render: (d) => formatTime(d.updated_at) },
  ];
}

async function context() {
  const [depts, resources] = await Promise.all([departments(), all('/catalog/resources')]);
  return { depts, resources: Object.fromEntries(resources.map((r) => [r.code, r])) };
}

export function Demands({ me }) {
  const [state, setState] = useState('');
  const result = useLoad(async () => ({ ...(await context()), demands: await all('/demands', { state }) }), [state]);
  return html`<section>
    <div class="heading">
      <h1>${t('nav.demands')}</h1>
      ${me.user.roles.includes('demander') ? html`<a class="button primary" href="#/demands/new">${t('demands.new')}</a>` : null}
    </div>
    <div class="filters">
      <select name="state" value=${state} onChange=${(e) => setState(e.target.value)}>
        <option value="">${t('demands.filter_state')}: ${t('common.all')}</option>
        ${STATES.map((s) => html`<option value=${s}>${label('state', s)}</option>`)}
      </select>
    </div>
    <${Loaded} result=${result}>${({ depts, resources, demands }) => html`<${Table} testid="demands" rows=${demands}
      onRow=${(d) => navigate(`#/demands/${d.id}`)} columns=${demandColumns(depts, resources)} />`}<//>
  </section>`;
}

// The data office's queue (conformity checks and disputes on its province's data) or the
// supplier's (conditional demands on its resources), most urgent first.
export function ReviewQueue({ me }) {
  const roles = me.user.roles;
  const states = [
    ...(roles.includes('data_office_reviewer') ? ['submitted', 'disputed'] : []),
    ...(roles.includes('supplier_admin') ? ['supplier_review'] : []),
  ];
  const result = useLoad(async () => {
    const lists = await Promise.all(states.map((state) => all('/demands', { state })));
    const demands = lists.flat().sort((a, b) => (a.clock?.deadline ?? '9999').localeCompare(b.clock?.deadline ?? '9999'));
    return { ...(await context()), demands };
  }, []);
  return html`<section>
    <h1>${t('nav.review')}</h1>
    <${Loaded} result=${result}>${({ depts, resources, demands }) => html`
      <p class="muted">${t('review.queue')}: <strong data-testid="queue-size">${demands.length}</strong>
        · ${t('review.overdue')}: <strong class="overdue" data-testid="queue-overdue">${demands.filter((d) => d.overdue).length}</strong></p>
      <${Table} testid="review-queue" rows=${demands} empty=${t('review.empty')}
        rowClass=${(d) => (d.overdue ? 'overdue-row' : '')}
        onRow=${(d) => navigate(`#/demands/${d.id}`)} columns=${demandColumns(depts, resources)} />`}<//>
  </section>`;
}

function defaultValidity() {
  const date = new Date();
  date.setFullYear(date.getFullYear() + 1);
  return date.toISOString().slice(0, 10);
}

// Items a demand may ask for: those the resource shares at all.
function shareable(resource) {
  const rank = { unconditional: 0, conditional: 1, not_shared: 2 };
  return resource.items.filter((i) => Math.max(rank[i.share_type], rank[resource.share_type]) < 2);
}

export function DemandForm({ me }) {
  const wanted = new URLSearchParams(window.location.hash.split('?')[1] ?? '').get('resource') ?? '';
  const result = useLoad(async () => {
    const [resources, remote, serviceItems, systems, grants] = await Promise.all([
      all('/catalog/resources'),
      all('/catalog/remote-resources').catch(() => []),
      all('/service-items'),
      all('/systems').catch(() => []),
      all('/grants').catch(() => []),
    ]);
    // Other provinces' resources are filed under their remote ids, named with their province.
    const peers = remote.map((r) => ({ ...r.resource, code: r.id, name: `${r.resource.name}（${r.region_name}）` }));
    return {
      resources: resources
        .filter((r) => r.share_type !== 'not_shared' && r.supplier !== me.department.code)
        .concat(peers),
      serviceItems,
      systems: systems.filter((s) => s.department_code === me.department.code),
      // The department's own grants that still stand: a new approval for one's purpose
      // replaces it.
      standing: grants
        .map((g) => g.grant)
        .filter((g) => g.consumer_department === me.department.code && (g.status === 'active' || g.status === 'suspended')),
    };
  }, []);
  return html`<section>
    <h1>${t('demands.new')}</h1>
    <${Loaded} result=${result}>${(loaded) => html`<${FilingForm} loaded=${loaded} initial=${wanted} />`}<//>
  </section>`;
}

function FilingForm({ loaded, initial }) {
  const [code, setCode] = useState(loaded.resources.some((r) => r.code === initial) ? initial : loaded.resources[0]?.code ?? '');
  const resource = loaded.resources.find((r) => r.code === code);
  const items = resource ? shareable(resource) : [];
  const [systemId, setSystemId] = useState('');
  const [serviceItem, setServiceItem] = useState('');
  const [purpose, setPurpose] = useState('');
  const [basis, setBasis] = useState('');
  const [terms, setTerms] = useState({ items: [], division_prefix: '', rate_per_second: 10, daily_quota: 10000, valid_until: defaultValidity() });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const serviceItems = loaded.serviceItems.filter((s) => !resource || resource.service_items.includes(s.code));
  const replaces = loaded.standing.find((g) => g.resource_code === code && g.service_item === serviceItem
    && (g.consumer_system ?? '') === systemId);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const filed = await api('/demands', {
        method: 'POST',
        body: { resource_code: code, system_id: systemId || null, service_item: serviceItem, purpose, legal_basis: basis, terms },
      });
      // Filing saves a draft; the form's one button also sends it to review, as people expect.
      await api(`/demands/${filed.id}/actions`, { method: 'POST', body: { version: filed.version, action: 'submit' } }).catch(() => {});
      navigate(`#/demands/${filed.id}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card" onSubmit=${submit} data-testid="demand-form">
    <div class="grid">
      <${Field} label=${t('demands.resource')}>
        <select name="resource" value=${code} onChange=${(e) => { setCode(e.target.value); setTerms({ ...terms, items: [] }); setServiceItem(''); }}>
          ${loaded.resources.map((r) => html`<option value=${r.code}>${r.name} (${r.code})</option>`)}
        </select>
      <//>
      <${Field} label=${t('demands.service_item')}>
        <select name="service_item" required value=${serviceItem} onChange=${(e) => setServiceItem(e.target.value)}>
          <option value="">—</option>
          ${serviceItems.map((s) => html`<option value=${s.code}>${s.name} (${s.code})</option>`)}
        </select>
      <//>
      <${Field} label=${t('demands.system')}>
        <select name="system" value=${systemId} onChange=${(e) => setSystemId(e.target.value)}>
          <option value="">${t('demands.any_system')}</option>
          ${loaded.systems.map((s) => html`<option value=${s.id}>${s.name}</option>`)}
        </select>
      <//>
      <${Field} label=${t('demands.legal_basis')}><input name="legal_basis" required value=${basis} onInput=${(e) => setBasis(e.target.value)} /><//>
      <${Field} label=${t('demands.purpose')} wide><textarea name="purpose" required rows="2" value=${purpose} onInput=${(e) => setPurpose(e.target.value)}></textarea><//>
    </div>
    ${replaces ? html`<p class="notice" role="status" data-testid="replaces-grant">
      ${t('demands.replaces_grant')} <a href=${`#/grants/${replaces.id}`}><code>${replaces.id.slice(-8)}</code></a>
      (${replaces.rate_per_second}/s, ${replaces.daily_quota}, ${replaces.valid_until})</p>` : null}
    <${TermsForm} terms=${terms} onChange=${setTerms} itemLabels=${Object.fromEntries(items.map((i) => [i.name, i.label]))} />
    <${ErrorBox} error=${error} />
    <div class="row"><button type="submit" class="primary" disabled=${busy || !terms.items.length}>${t('action.submit')}</button></div>
  </form>`;
}

// Which steps the signed-in person may take on `demand` now. The gateway decides; this only
// keeps buttons away from people who would be refused.
function actionsFor(demand, me, depts) {
  const roles = me.user.roles;
  const own = me.department.code;
  const out = [];
  if (roles.includes('demander') && demand.applicant_department === own) {
    const byState = {
      draft: ['submit'],
      conformity_correction: ['resubmit'],
      supplier_correction: ['resubmit'],
      refused_by_supplier: ['dispute'],
    };
    out.push(...(byState[demand.state] ?? []));
    if (!['approved', 'refused_at_conformity', 'finally_refused', 'withdrawn'].includes(demand.state)) out.push('withdraw');
  }
  const supplierProvince = depts[demand.supplier_department]?.region.slice(0, 2);
  if (roles.includes('data_office_reviewer') && me.department.region.slice(0, 2) === supplierProvince) {
    if (demand.state === 'submitted') out.push('pass_conformity', 'refuse_conformity', 'request_correction');
    if (demand.state === 'disputed') out.push('decide_approve', 'decide_refuse');
  }
  if (roles.includes('supplier_admin') && demand.supplier_department === own && demand.state === 'supplier_review') {
    out.push('supplier_approve', 'supplier_refuse', 'request_correction');
  }
  return out;
}

const TERMS_ACTIONS = ['pass_conformity', 'resubmit', 'supplier_approve', 'decide_approve'];
const REFUSAL_ACTIONS = ['refuse_conformity', 'supplier_refuse', 'decide_refuse'];
const REASON_ACTIONS = ['request_correction', 'dispute', 'withdraw'];

export function DemandDetail({ me, id }) {
  const result = useLoad(async () => {
    const demand = await api(`/demands/${encodeURIComponent(id)}`);
    const [depts, resource] = await Promise.all([
      departments(),
      api(`/catalog/resources/${encodeURIComponent(demand.resource_code)}/versions/${demand.resource_version}`),
    ]);
    return { demand, depts, resource };
  }, [id]);
  return html`<section>
    <${Loaded} result=${result}>${({ demand: d, depts, resource }) => {
      const labels = Object.fromEntries(resource.items.map((i) => [i.name, i.label]));
      const name = (code) => depts[code]?.name ?? code;
      return html`
        <div class="heading">
          <h1>${resource.name} <small><code>${d.id}</code></small></h1>
          <span data-testid="demand-state"><${StateBadge} state=${d.state} /></span>
        </div>
        <dl class="kv">
          <dt>${t('demands.applicant')}</dt><dd>${name(d.applicant_department)}</dd>
          <dt>${t('catalog.supplier')}</dt><dd>${name(d.supplier_department)}</dd>
          <dt>${t('demands.resource')}</dt><dd><a href=${`#/catalog/${encodeURIComponent(d.resource_code)}`}>${d.resource_code}</a> v${d.resource_version}</dd>
          <dt>${t('demands.service_item')}</dt><dd>${d.service_item}</dd>
          <dt>${t('demands.purpose')}</dt><dd>${d.purpose}</dd>
          <dt>${t('demands.legal_basis')}</dt><dd>${d.legal_basis}</dd>
          <dt>${t('demands.deadline')}</dt><dd><${Deadline} demand=${d} /> ${d.clock ? html`<span class="muted">(${d.clock.deadline})</span>` : null}</dd>
        </dl>
        <div class="columns">
          <div data-testid="requested"><h2>${t('demands.requested')}</h2><${TermsView} terms=${d.requested} itemLabels=${labels} /></div>
          ${d.approved ? html`<div><h2>${t('demands.approved')}</h2><${TermsView} terms=${d.approved} itemLabels=${labels} /></div>` : null}
        </div>
        ${d.refusal
          ? html`<div class=${d.state === 'approved' ? 'notice' : 'notice bad'} data-testid="refusal">
              <strong>${t(d.state === 'approved' ? 'demands.refusal_overruled' : 'demands.refusal')}:</strong> ${d.refusal.reason}
              <span class="muted">(${t('common.basis')}: ${d.refusal.basis})</span></div>`
          : null}
        <${ActionPanel} demand=${d} actions=${actionsFor(d, me, depts)} labels=${labels} resource=${resource} onDone=${result.reload} />
        <h2>${t('demands.history')}</h2>
        <${Table} testid="history" rows=${d.history} columns=${[
          { title: t('grants.at'), render: (h) => formatTime(h.at) },
          { title: t('grants.changed_by'), key: 'actor' },
          { title: t('demands.actions'), render: (h) => label('action', h.kind) },
          { title: t('demands.state'), render: (h) => html`${label('state', h.from)} → ${label('state', h.to)}` },
          { title: t('common.reason'), render: (h) => h.reason ?? '' },
          { title: t('demands.deadline'), render: (h) => (h.stage_deadline ? html`<span class=${h.at.slice(0, 10) > h.stage_deadline ? 'overdue' : ''}>${h.stage_deadline}</span>` : '') },
        ]} />`;
    }}<//>
  </section>`;
}

function ActionPanel({ demand, actions, labels, resource, onDone }) {
  const [open, setOpen] = useState(null);
  const [terms, setTerms] = useState(demand.approved ?? demand.requested);
  const [reason, setReason] = useState('');
  const [basis, setBasis] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  if (!actions.length) return null;
  const choose = (action) => {
    setOpen(action);
    setError(null);
    setTerms(demand.approved ?? demand.requested);
  };
  const act = async (event) => {
    event.preventDefault();
    const body = { version: demand.version, action: open };
    if (TERMS_ACTIONS.includes(open)) body.terms = terms;
    if (REFUSAL_ACTIONS.includes(open)) body.refusal = { reason, basis };
    if (REASON_ACTIONS.includes(open)) body.reason = reason;
    setBusy(true);
    setError(null);
    try {
      await api(`/demands/${demand.id}/actions`, { method: 'POST', body });
      setOpen(null);
      setReason('');
      setBasis('');
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const itemLabels = open === 'resubmit' ? Object.fromEntries(shareable(resource).map((i) => [i.name, i.label])) : labels;
  return html`<div class="card actions" data-testid="actions">
    <h2>${t('demands.actions')}</h2>
    <div class="row">
      ${actions.map((a) => html`<button type="button" data-action=${a} class=${open === a ? 'primary' : ''} onClick=${() => choose(a)}>${label('action', a)}</button>`)}
    </div>
    ${open ? html`<form onSubmit=${act} data-testid="action-form">
      ${TERMS_ACTIONS.includes(open)
        ? html`<${TermsForm} terms=${terms} onChange=${setTerms} itemLabels=${itemLabels} allowed=${open === 'resubmit' ? undefined : demand.approved ?? demand.requested} />`
        : null}
      ${REFUSAL_ACTIONS.includes(open) || REASON_ACTIONS.includes(open)
        ? html`<${Field} label=${t('common.reason')} wide><textarea name="reason" required rows="2" value=${reason} onInput=${(e) => setReason(e.target.value)}></textarea><//>`
        : null}
      ${REFUSAL_ACTIONS.includes(open)
        ? html`<${Field} label=${t('common.basis')} wide><input name="basis" required value=${basis} onInput=${(e) => setBasis(e.target.value)} /><//>`
        : null}
      <${ErrorBox} error=${error} />
      <div class="row">
        <button type="submit" class="primary" data-testid="confirm" disabled=${busy}>${t('common.confirm')}: ${label('action', open)}</button>
        <button type="button" onClick=${() => setOpen(null)}>${t('common.cancel')}</button>
      </div>
    </form>` : null}
  </div>`;
}
