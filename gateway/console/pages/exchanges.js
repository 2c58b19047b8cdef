// The exchange-log search, with filters kept in the address so a search can be shared, and
// one record in full.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { departmentNames } from './catalog.js';
import { label, t } from '../i18n.js';
import { Badge, Field, Loaded, Table, formatTime, navigate, useLoad } from '../ui.js';

// `before` and `limit` come from paging (and links), not from the form.
const FILTERS = ['from', 'to', 'department', 'system', 'resource', 'operation', 'status', 'code', 'before', 'limit'];
const OPERATIONS = ['verify', 'lookup', 'sql', 'proxy'];

function filtersFromHash() {
  const params = new URLSearchParams(window.location.hash.split('?')[1] ?? '');
  return Object.fromEntries(FILTERS.map((name) => [name, params.get(name) ?? '']));
}

// `datetime-local` inputs hold local time without a zone; the API wants an instant.
function instant(local) {
  if (!local) return '';
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

function StatusBadge({ status }) {
  const kind = status < 300 ? 'ok' : status === 429 ? 'warn' : status < 500 ? 'bad' : 'fail';
  return html`<${Badge} kind=${kind}>${status}<//>`;
}

export function Exchanges({ me }) {
  const applied = filtersFromHash();
  const [draft, setDraft] = useState(applied);
  const result = useLoad(async () => {
    const [page, systems, departments] = await Promise.all([
      api('/exchanges', { query: { ...applied, from: instant(applied.from), to: instant(applied.to), limit: applied.limit || 200 } }),
      all('/systems').catch(() => []),
      departmentNames().catch(() => ({})),
    ]);
    return { rows: page.rows, next: page.next, systemNames: Object.fromEntries(systems.map((s) => [s.id, s.name])), departments };
  }, [window.location.hash]);
  const search = (event) => {
    event.preventDefault();
    // A new search starts from the newest records.
    const params = new URLSearchParams(Object.entries({ ...draft, before: '' }).filter(([, v]) => v));
    navigate(`#/exchanges?${params}`);
  };
  const set = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  // Older pages keep the search and start below the last record shown.
  const page = (before) => {
    const params = new URLSearchParams(Object.entries({ ...applied, before }).filter(([, v]) => v));
    navigate(`#/exchanges?${params}`);
  };
  const oversees = me.user.roles.some((r) => r === 'operator' || r === 'platform_admin');
  return html`<section>
    <h1>${t('nav.exchanges')}</h1>
    <form class="card filters-form" onSubmit=${search} data-testid="log-filters">
      <div class="grid">
        <${Field} label=${t('log.from')}><input type="datetime-local" name="from" value=${draft.from} onInput=${set('from')} /><//>
        <${Field} label=${t('log.to')}><input type="datetime-local" name="to" value=${draft.to} onInput=${set('to')} /><//>
        ${oversees ? html`<${Field} label=${t('log.department')}><input name="department" value=${draft.department} onInput=${set('department')} /><//>` : null}
        <${Field} label=${t('log.system')}><input name="system" value=${draft.system} onInput=${set('system')} /><//>
        <${Field} label=${t('log.resource')}><input name="resource" value=${draft.resource} onInput=${set('resource')} /><//>
        <${Field} label=${t('log.operation')}>
          <select name="operation" value=${draft.operation} onChange=${set('operation')}>
            <option value="">${t('common.all')}</option>
            ${OPERATIONS.map((o) => html`<option value=${o}>${label('operation', o)}</option>`)}
          </select>
        <//>
        <${Field} label=${t('log.status')}><input name="status" inputmode="numeric" pattern="[1-5][0-9][0-9]" value=${draft.status} onInput=${set('status')} /><//>
        <${Field} label=${t('log.code')}><input name="code" value=${draft.code} onInput=${set('code')} /><//>
      </div>
      <div class="row"><button type="submit" class="primary">${t('common.search')}</button></div>
    </form>
    <${Loaded} result=${result}>${({ rows, next, systemNames, departments }) => html`
      <p class="muted" data-testid="log-count">${t('log.count', { n: rows.length })}</p>
      <${Table} testid="log" rows=${rows} onRow=${(r) => navigate(`#/exchanges/${r.id}`)} columns=${[
        { title: t('log.time'), render: (r) => formatTime(r.started_at) },
        { title: t('log.operation'), render: (r) => label('operation', r.operation) },
        { title: t('log.department'), render: (r) => html`<span title=${r.department ?? ''}>${departments[r.department] ?? r.department ?? ''}</span>` },
        { title: t('log.system'), render: (r) => html`<span data-field="system" title=${r.system ?? ''}>${systemNames[r.system] ?? (r.system ?? '').slice(-8)}</span>` },
        { title: t('log.resource'), render: (r) => html`<code>${(r.resources ?? []).join(', ')}</code>` },
        { title: t('demands.service_item'), render: (r) => r.service_item ?? '' },
        { title: t('log.status'), render: (r) => html`<${StatusBadge} status=${r.status} />` },
        { title: t('log.code'), render: (r) => html`<span data-code=${r.code ?? ''} title=${r.code ?? ''}>${label('code', r.code)}</span>` },
        { title: t('log.cache'), render: (r) => r.cache ?? '' },
        { title: t('log.duration'), render: (r) => (r.duration_us === null ? '' : (r.duration_us / 1000).toFixed(2)), className: 'num' },
      ]} />
      <div class="row" data-testid="log-pages">
        ${applied.before ? html`<button type="button" data-action="newest" onClick=${() => page('')}>${t('log.newest')}</button>` : null}
        ${next ? html`<button type="button" data-action="older" onClick=${() => page(String(next))}>${t('log.older')}</button>` : null}
      </div>`}<//>
  </section>`;
}

function Value({ value }) {
  if (value === null || value === undefined) return html`<span class="muted">—</span>`;
  if (Array.isArray(value)) return value.length ? value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(', ') : html`<span class="muted">—</span>`;
  if (typeof value === 'object') return html`<pre>${JSON.stringify(value, null, 2)}</pre>`;
  return String(value);
}

export function ExchangeDetail({ id }) {
  const result = useLoad(() => api(`/exchanges/${encodeURIComponent(id)}`), [id]);
  return html`<section>
    <div class="heading"><h1>${t('log.detail')} <small><code>${id}</code></small></h1>
      <button type="button" onClick=${() => history.back()}>${t('common.back')}</button></div>
    <${Loaded} result=${result}>${(record) => html`<dl class="kv record" data-testid="record">
      ${Object.entries(record).map(([key, value]) => html`<dt>${key}</dt><dd data-field=${key}>${key.endsWith('_at') && typeof value === 'string' ? `${formatTime(value)} (${value})` : html`<${Value} value=${value} />`}</dd>`)}
    </dl>`}<//>
  </section>`;
}
