// Grants: the list, one grant with its versions, and suspending, resuming or revoking it.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { label, t } from '../i18n.js';
import { EffectiveBadge, ErrorBox, Field, Loaded, Table, formatTime, navigate, useLoad } from '../ui.js';
import { departmentNames } from './catalog.js';

export function Grants() {
  const result = useLoad(async () => ({ grants: await all('/grants'), names: await departmentNames() }), []);
  return html`<section>
    <h1>${t('nav.grants')}</h1>
    <${Loaded} result=${result}>${({ grants, names }) => html`<${Table} testid="grants" rows=${grants.map((g) => ({ id: g.grant.id, ...g }))}
      onRow=${(g) => navigate(`#/grants/${g.grant.id}`)}
      columns=${[
        { title: t('grants.id'), render: (g) => html`<code title=${g.grant.id}>${g.grant.id.slice(-8)}</code>` },
        { title: t('grants.consumer'), render: (g) => names[g.grant.consumer_department] ?? g.grant.consumer_department },
        { title: t('demands.resource'), render: (g) => html`<code>${g.grant.resource_code}</code>` },
        { title: t('demands.service_item'), render: (g) => g.grant.service_item },
        { title: t('grants.items'), render: (g) => g.grant.items.length, className: 'num' },
        { title: t('grants.valid'), render: (g) => `${g.grant.valid_from} — ${g.grant.valid_until}` },
        { title: t('grants.effective'), render: (g) => html`<${EffectiveBadge} effective=${g.effective} />` },
      ]} />`}<//>
  </section>`;
}

// Who may change a grant: the supplier's administrators and the reviewers of its province.
function mayChange(me, grant, resource, depts) {
  const roles = me.user.roles;
  if (roles.includes('supplier_admin') && resource?.supplier === me.department.code) return true;
  const supplier = depts[resource?.supplier];
  return roles.includes('data_office_reviewer') && supplier && supplier.region.slice(0, 2) === me.department.region.slice(0, 2);
}

export function GrantDetail({ me, id }) {
  const result = useLoad(async () => {
    const detail = await api(`/grants/${encodeURIComponent(id)}`);
    const [resource, depts] = await Promise.all([
      api(`/catalog/resources/${encodeURIComponent(detail.grant.resource_code)}/versions/${detail.grant.resource_version}`).catch(() => null),
      all('/departments').then((list) => Object.fromEntries(list.map((d) => [d.code, d]))),
    ]);
    return { detail, resource, depts };
  }, [id]);
  return html`<section>
    <${Loaded} result=${result}>${({ detail, resource, depts }) => {
      const g = detail.grant;
      const labels = Object.fromEntries((resource?.items ?? []).map((i) => [i.name, i.label]));
      return html`
        <div class="heading">
          <h1>${t('grants.id')} <small><code>${g.id}</code> v${g.version}</small></h1>
          <span data-testid="grant-effective"><${EffectiveBadge} effective=${detail.effective} /></span>
        </div>
        <dl class="kv">
          <dt>${t('grants.consumer')}</dt><dd>${depts[g.consumer_department]?.name ?? g.consumer_department}</dd>
          <dt>${t('demands.resource')}</dt><dd>${resource?.name ?? ''} <code>${g.resource_code}</code> v${g.resource_version}</dd>
          <dt>${t('demands.service_item')}</dt><dd>${g.service_item}</dd>
          <dt>${t('demands.purpose')}</dt><dd>${g.purpose}</dd>
          <dt>${t('terms.division_prefix')}</dt><dd>${g.division_prefix || t('common.all')}</dd>
          <dt>${t('terms.rate')}</dt><dd>${g.rate_per_second}</dd>
          <dt>${t('terms.quota')}</dt><dd>${g.daily_quota}</dd>
          <dt>${t('grants.valid')}</dt><dd>${g.valid_from} — ${g.valid_until}</dd>
          <dt>${t('demands.id')}</dt><dd><a href=${`#/demands/${g.demand_id}`}><code>${g.demand_id}</code></a></dd>
          ${g.superseded_by ? html`<dt>${t('grants.superseded_by')}</dt>
            <dd data-testid="superseded-by"><a href=${`#/grants/${g.superseded_by}`}><code>${g.superseded_by}</code></a></dd>` : null}
        </dl>
        <h2>${t('grants.items')}</h2>
        <${Table} rows=${g.items} columns=${[
          { title: t('catalog.item.name'), render: (i) => html`<code>${i.name}</code>` },
          { title: t('catalog.item.label'), render: (i) => labels[i.name] ?? '' },
          { title: t('grants.mask'), render: (i) => label('mask', i.mask) },
        ]} />
        ${mayChange(me, g, resource, depts) ? html`<${ChangePanel} detail=${detail} onDone=${result.reload} />` : null}
        <h2>${t('grants.versions')}</h2>
        <${Table} testid="grant-versions" rows=${detail.versions} columns=${[
          { title: t('catalog.version'), render: (v) => v.grant.version, className: 'num' },
          { title: t('grants.at'), render: (v) => formatTime(v.at) },
          { title: t('grants.changed_by'), key: 'changed_by' },
          { title: t('grants.effective'), render: (v) => label('effective', v.grant.status) },
          { title: t('common.reason'), render: (v) => v.reason ?? '' },
        ]} />`;
    }}<//>
  </section>`;
}

function ChangePanel({ detail, onDone }) {
  const [action, setAction] = useState(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState(null);
  const status = detail.grant.status;
  const choices = status === 'active' ? ['suspend', 'revoke'] : status === 'suspended' ? ['resume', 'revoke'] : [];
  if (!choices.length) return null;
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await api(`/grants/${detail.grant.id}/changes`, { method: 'POST', body: { version: detail.version, reason, action } });
      setAction(null);
      setReason('');
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<div class="card actions" data-testid="grant-actions">
    <h2>${t('grants.change')}</h2>
    <div class="row">${choices.map((c) => html`<button type="button" data-action=${c} class=${action === c ? 'primary' : ''} onClick=${() => setAction(c)}>${label('change', c)}</button>`)}</div>
    ${action ? html`<form onSubmit=${submit}>
      <${Field} label=${t('common.reason')} wide><textarea name="reason" required rows="2" value=${reason} onInput=${(e) => setReason(e.target.value)}></textarea><//>
      <${ErrorBox} error=${error} />
      <div class="row"><button type="submit" class="primary" data-testid="confirm">${t('common.confirm')}: ${label('change', action)}</button></div>
    </form>` : null}
  </div>`;
}
