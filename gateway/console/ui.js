// Pieces every page uses: loading data, showing errors, tables, badges, deadlines and the
// form for a demand's terms.

import { html, useCallback, useEffect, useState } from './vendor/htm-preact.js';
import { t, label } from './i18n.js';

export { html };

// Loads with `load()` whenever `deps` change; `reload` loads again without clearing what is shown.
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

export function Loading() {
  return html`<p class="muted" role="status">${t('common.loading')}</p>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  if (error.status === 403) return html`<p class="error" role="alert" data-code=${error.code}>${t('common.forbidden')} (${error.message})</p>`;
  const reasons = error.reasons?.length
    ? html`<ul>${error.reasons.map((r) => html`<li data-code=${r.code}>${label('code', r.code)}${r.detail ? `: ${r.detail}` : ''}</li>`)}</ul>`
    : null;
  return html`<div class="error" role="alert" data-code=${error.code ?? ''}>
    <strong>${t('common.error')}</strong> <span title=${error.code ?? ''}>${label('code', error.code)}</span> ${error.message}${reasons}
  </div>`;
}

// Shows `children(data)` once loaded, the error if loading failed.
export function Loaded({ result, children }) {
  if (result.error) return html`<${ErrorBox} error=${result.error} />`;
  if (result.data === null) return html`<${Loading} />`;
  return children(result.data);
}

// A table of `rows` with `columns` = [{ key, title, render?, className? }].
export function Table({ columns, rows, onRow, empty, testid, rowClass }) {
  if (!rows.length) return html`<p class="muted" data-testid=${testid}>${empty ?? t('common.none')}</p>`;
  return html`<div class="table-wrap"><table data-testid=${testid}>
    <thead><tr>${columns.map((c) => html`<th class=${c.className}>${c.title}</th>`)}</tr></thead>
    <tbody>${rows.map(
      (row, i) => html`<tr key=${row.id ?? i} class=${`${onRow ? 'clickable' : ''} ${rowClass ? rowClass(row) : ''}`} onClick=${onRow ? () => onRow(row) : undefined}>
        ${columns.map((c) => html`<td class=${c.className}>${c.render ? c.render(row) : row[c.key]}</td>`)}
      </tr>`,
    )}</tbody>
  </table></div>`;
}

export function Badge({ kind, children }) {
  return html`<span class=${`badge badge-${kind}`}>${children}</span>`;
}

const STATE_KIND = {
  approved: 'ok',
  refused_at_conformity: 'bad',
  refused_by_supplier: 'bad',
  finally_refused: 'bad',
  withdrawn: 'muted',
  draft: 'muted',
  disputed: 'warn',
};

export function StateBadge({ state }) {
  return html`<${Badge} kind=${STATE_KIND[state] ?? 'info'}>${label('state', state)}<//>`;
}

const EFFECTIVE_KIND = { active: 'ok', suspended: 'warn', revoked: 'bad', superseded: 'muted', expired: 'muted', not_yet_valid: 'info' };

export function EffectiveBadge({ effective }) {
  return html`<${Badge} kind=${EFFECTIVE_KIND[effective] ?? 'info'}>${label('effective', effective)}<//>`;
}

// Today in Beijing time, the platform's calendar for deadlines, as UTC midnight for counting days.
function today() {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' }).format(new Date());
  const [y, m, d] = parts.split('-').map(Number);
  return Date.UTC(y, m - 1, d);
}

// The countdown of a demand's running review stage: days left, due today, or overdue.
export function Deadline({ demand }) {
  const clock = demand.clock;
  if (!clock) return html`<span class="muted">—</span>`;
  if (demand.state.endsWith('_correction')) return html`<span class="muted">${t('deadline.paused')}</span>`;
  const [y, m, d] = clock.deadline.split('-').map(Number);
  const days = Math.round((Date.UTC(y, m - 1, d) - today()) / 86400000);
  if (demand.overdue || days < 0) {
    return html`<span class="deadline overdue" title=${clock.deadline}>${t('deadline.over', { days: Math.max(-days, 1) })}</span>`;
  }
  if (days === 0) return html`<span class="deadline due" title=${clock.deadline}>${t('deadline.today')}</span>`;
  return html`<span class="deadline" title=${clock.deadline}>${t('deadline.left', { days })}</span>`;
}

export function Field({ label: text, children, wide }) {
  return html`<label class=${wide ? 'field wide' : 'field'}><span>${text}</span>${children}</label>`;
}

// The terms of a demand or approval. When `allowed` (the requested terms) is given, items can
// only be unticked and limits only lowered, as an approval may narrow but never widen.
export function TermsForm({ terms, onChange, itemLabels = {}, allowed }) {
  const set = (patch) => onChange({ ...terms, ...patch });
  const choices = allowed ? allowed.items : Object.keys(itemLabels);
  const toggle = (item) =>
    set({ items: terms.items.includes(item) ? terms.items.filter((i) => i !== item) : [...terms.items, item] });
  return html`<fieldset class="terms">
    <legend>${t('terms.items')}</legend>
    <div class="checks">
      ${choices.map(
        (item) => html`<label class="check"><input type="checkbox" name=${`item-${item}`} checked=${terms.items.includes(item)}
          onChange=${() => toggle(item)} /> ${itemLabels[item] ? `${itemLabels[item]} (${item})` : item}</label>`,
      )}
    </div>
    <div class="grid">
      <${Field} label=${t('terms.division_prefix')}>
        <input name="division_prefix" value=${terms.division_prefix} pattern="[0-9]{0,12}"
          onInput=${(e) => set({ division_prefix: e.target.value.trim() })} />
      <//>
      <${Field} label=${t('terms.rate')}>
        <input name="rate_per_second" type="number" min="1" max=${allowed?.rate_per_second} value=${terms.rate_per_second}
          onInput=${(e) => set({ rate_per_second: Number(e.target.value) })} />
      <//>
      <${Field} label=${t('terms.quota')}>
        <input name="daily_quota" type="number" min="1" max=${allowed?.daily_quota} value=${terms.daily_quota}
          onInput=${(e) => set({ daily_quota: Number(e.target.value) })} />
      <//>
      <${Field} label=${t('terms.valid_until')}>
        <input name="valid_until" type="date" max=${allowed?.valid_until} value=${terms.valid_until}
          onInput=${(e) => set({ valid_until: e.target.value })} />
      <//>
    </div>
  </fieldset>`;
}

export function TermsView({ terms, itemLabels = {} }) {
  return html`<dl class="kv">
    <dt>${t('terms.items')}</dt><dd>${terms.items.map((i) => itemLabels[i] ?? i).join('、')}</dd>
    <dt>${t('terms.division_prefix')}</dt><dd>${terms.division_prefix || t('common.all')}</dd>
    <dt>${t('terms.rate')}</dt><dd>${terms.rate_per_second}</dd>
    <dt>${t('terms.quota')}</dt><dd>${terms.daily_quota}</dd>
    <dt>${t('terms.valid_until')}</dt><dd>${terms.valid_until}</dd>
  </dl>`;
}

export function formatTime(value) {
  if (!value) return '';
  // The platform's timestamps without a zone are Beijing time (UTC+8); the exchange log's carry
  // their own. The console shows them in the reader's zone.
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}+08:00`;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString(document.documentElement.lang, { hour12: false });
}

export function percent(part, whole) {
  if (!whole) return '—';
  return `${((100 * part) / whole).toFixed(1)}%`;
}

export function navigate(hash) {
  window.location.hash = hash;
}
